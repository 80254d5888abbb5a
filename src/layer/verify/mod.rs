//! [`VerifyLayer`]: reads the body up to a limit, verifies its signature, answers
//! provider handshakes, and passes the request on with a [`Verified<Event>`] extension.
//!
//! Rejections are responses (`400`, `401`, `413`) with an `application/problem+json`
//! body naming the error kind, never a secret; each one counts in the
//! `hookbox_rejected_total{source, kind}` metric.
//!
//! ```
//! use axum::{routing::post, Extension, Router};
//! use hookbox::{Event, Verified, Verifier, VerifyLayer};
//!
//! async fn on_push(Extension(event): Extension<Verified<Event>>) -> &'static str {
//!     println!("{:?} {:?}", event.event_type, event.delivery_id);
//!     "thanks"
//! }
//!
//! let verifier = Verifier::builder("github").secret("It's a Secret to Everybody").build()?;
//! let app: Router = Router::new()
//!     .route("/hooks/github", post(on_push))
//!     .layer(VerifyLayer::new("github", verifier));
//! # Ok::<(), hookbox::BuildError>(())
//! ```
//!
//! [`Verified<Event>`]: crate::Verified

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::VerifyLayer;
pub(crate) use self::layer::DEFAULT_MAX_BODY;
pub use self::service::Verify;
