//! paddle: not yet verified.

use std::time::SystemTime;

use super::{Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct Paddle;

impl Paddle {
    pub(crate) fn new(_cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Err(BuildError::CannotSign("paddle", "not implemented yet"))
    }
}

impl Scheme for Paddle {
    fn name(&self) -> &str {
        "paddle"
    }

    fn verify(&self, _req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        Err(VerifyError::mismatch("not implemented yet"))
    }
}

pub(crate) fn sign(_cfg: &SchemeConfig, _input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Err(BuildError::CannotSign("paddle", "not implemented yet"))
}
