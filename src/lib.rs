//! # hookbox
//!
//! Receive webhooks and never lose one.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod error;
mod verify;

pub use error::{BuildError, Error, ErrorKind, VerifyError};
pub use verify::{
    sign, Algorithm, EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, Secret, SignInput,
    Signed, Verifier, VerifierBuilder, SCHEMES,
};
