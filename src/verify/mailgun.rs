//! mailgun: not yet verified.

use std::time::SystemTime;

use super::{Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct Mailgun;

impl Mailgun {
    pub(crate) fn new(_cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Err(BuildError::CannotSign("mailgun", "not implemented yet"))
    }
}

impl Scheme for Mailgun {
    fn name(&self) -> &str {
        "mailgun"
    }

    fn verify(&self, _req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        Err(VerifyError::mismatch("not implemented yet"))
    }
}

pub(crate) fn sign(_cfg: &SchemeConfig, _input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Err(BuildError::CannotSign("mailgun", "not implemented yet"))
}
