//! [`AckLayer`]: appends each verified event to the journal and lets the request on only
//! once the append is durable; [`Accepted`] answers `202 {"id": ...}`.
//!
//! A provider delivery id already journaled for the source inside the dedup window
//! (default 7 days) writes nothing and answers `200 {"id": ..., "duplicate": true}`.
//! A journal failure (queue over its bound, I/O error, full disk) answers `503` with
//! `Retry-After` and an `application/problem+json` body: never a 2xx.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::Router;
//! use tower::ServiceBuilder;
//! use hookbox::{Accepted, AckLayer, RedbJournal, Verifier, VerifyLayer};
//!
//! let journal = Arc::new(RedbJournal::open("data/hookbox.redb")?);
//! let verifier = Verifier::builder("stripe").secret("whsec_...").build()?;
//! let endpoint = ServiceBuilder::new()
//!     .layer(VerifyLayer::new("stripe", verifier))
//!     .layer(AckLayer::new(journal))
//!     .service(Accepted);
//! let app: Router = Router::new().route_service("/hooks/stripe", endpoint);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod service;

pub(crate) use self::service::DEFAULT_DEDUP_WINDOW;
pub use self::service::{Accepted, Ack, AckLayer, Acked};
