//! The HTTP edge: Tower layers, in the order a request meets them.
//!
//! ```text
//! ShedLayer   -> cheap 503/429 before the body is read        (shed/)
//! VerifyLayer -> body read up to a limit, signature verified  (verify/)
//! AckLayer    -> journal commit, then the inner service       (ack/)
//! Accepted    -> 202 {"id": ...}                              (ack/)
//! ```
//!
//! A rejection is a response, not an error: every layer answers its refusals itself as
//! `application/problem+json`, so the layers compose on any axum router or hyper service.

pub(crate) mod ack;
pub(crate) mod problem;
pub(crate) mod shed;
pub(crate) mod verify;
