//! github-sha1: not yet verified.

use std::time::SystemTime;

use super::{Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct GitHubSha1;

impl GitHubSha1 {
    pub(crate) fn new(_cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Err(BuildError::CannotSign("github-sha1", "not implemented yet"))
    }
}

impl Scheme for GitHubSha1 {
    fn name(&self) -> &str {
        "github-sha1"
    }

    fn verify(&self, _req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        Err(VerifyError::mismatch("not implemented yet"))
    }
}

pub(crate) fn sign(_cfg: &SchemeConfig, _input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Err(BuildError::CannotSign("github-sha1", "not implemented yet"))
}
