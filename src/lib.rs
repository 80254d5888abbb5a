//! # hookbox
//!
//! Receive webhooks and never lose one: verify every request's signature, write it to
//! a durable journal, and acknowledge only once it is on disk.
//!
//! ```text
//! POST /hooks/{source}
//!   -> ShedLayer     503/429 + Retry-After before the body is read: journal writer
//!                    queue over its bound, disk under its floor, too many requests in
//!                    flight, the source's backlog over its maximum; 503 on timeout
//!   -> VerifyLayer   body read up to a limit (413); the source's scheme verifies raw
//!                    bytes + headers -> Verified<Event>; 400/401 as problem+json;
//!                    provider handshakes answered here
//!   -> AckLayer      Journal::append (group commit, fsync) -> Acked
//!   -> Accepted      202 {"id": ...}; a duplicate provider id -> 200 {"duplicate": true}
//! ```
//!
//! - [`Verifier`] checks one provider's signatures: 22 built-in [`SCHEMES`] (Stripe,
//!   GitHub, Standard Webhooks, Svix, Slack, Shopify, Twilio, ...) and a configurable
//!   `generic-hmac`, or your own [`Scheme`]. [`sign`] produces what a provider would send.
//! - [`VerifyLayer`], [`ShedLayer`] and [`AckLayer`] compose in a `ServiceBuilder` on any
//!   axum router or hyper service; [`Hookbox::endpoint`] gives all of them, ready, for
//!   `Router::route_service`.
//! - [`RedbJournal`] is the embedded [`Journal`]: one redb file, a group-commit writer,
//!   time-ordered [`EventId`]s, deduplication, and the delivery state (ready queue,
//!   attempts, memoised steps, dead letters, replays).
//! - [`Destination`] forwards journaled events to an HTTP endpoint, re-signed with
//!   Standard Webhooks (see [`forward`]).
//! - [`server`] builds the standalone `hookbox serve` from a [`Config`]; [`admin`] is its
//!   admin API (events, dead letters, replay, metrics), which the `hookbox` CLI talks to.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::Router;
//! use hookbox::{Hookbox, RedbJournal, Source, Verifier};
//!
//! let journal = Arc::new(RedbJournal::open("data/hookbox.redb")?);
//! let stripe = Verifier::builder("stripe").secret("whsec_...").build()?;
//! let hookbox = Hookbox::new(journal).source(Source::new("stripe", stripe));
//! let app: Router = Router::new().route_service("/hooks/stripe", hookbox.endpoint("stripe"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod actor;
pub mod admin;
mod config;
mod error;
mod event;
pub mod forward;
mod handler;
mod hookbox;
mod journal;
mod layer;
mod retry;
pub mod server;
mod verify;

pub use actor::{RedrivePolicy, Route, Runtime, RuntimeBuilder, SourceOptions, SourceStats};
pub use config::{
    AdminConfig, Backoff, ByteSize, Config, ConfigError, DestinationConfig, HumanDuration,
    RetryConfig, ServerConfig, SourceConfig,
};
pub use error::{BuildError, Error, ErrorKind, VerifyError};
pub use event::{Event, Verified};
pub use forward::{Delivered, Destination, ForwardError};
pub use handler::{Delivery, Outcome, StepError};
pub use hookbox::{Endpoint, Hookbox, Source};
pub use journal::{
    AppendFuture, AppendOptions, Appended, Attempt, AttemptOutcome, EventId, EventState,
    EventSummary, Journal, JournalError, Load, Next, OpenError, Page, Query, Ready, RedbJournal,
    RedbJournalBuilder, RedriveFilter, ReplayFilter, ReplayStatus, State, StoredEvent, WriteFuture,
};
pub use layer::ack::{Accepted, Ack, AckLayer, Acked};
pub use layer::shed::{Shed, ShedLayer};
pub use layer::verify::{ResponseFuture as VerifyResponseFuture, Verify, VerifyLayer};
pub use retry::{RetryPolicy, DEFAULT_SCHEDULE};
pub use verify::{
    sign, Algorithm, EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, Secret, SignInput,
    Signed, Verifier, VerifierBuilder, SCHEMES,
};
