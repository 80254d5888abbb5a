//! # hookbox
//!
//! Receive webhooks and never lose one: verify every request's signature, write it to
//! a durable journal, acknowledge only once it is on disk, then deliver it to handlers
//! with retries, a dead-letter queue, redrive and replay.
//!
//! ```text
//! POST /hooks/{source}
//!   -> ShedLayer     503/429 + Retry-After before the body is read: journal writer
//!                    queue over its bound, disk under its floor, too many requests in
//!                    flight, the source's backlog over its maximum; 503 on timeout
//!   -> VerifyLayer   body read up to a limit (413); the source's scheme verifies raw
//!                    bytes + headers -> Verified<Event>; 400/401 as problem+json;
//!                    provider handshakes answered here
//!   -> AckLayer      Journal::append (group commit, fsync) -> Acked; one delivery
//!                    per destination whose filter takes the event
//!   -> Accepted      202 {"id": ...}; a duplicate provider id -> 200 {"duplicate": true}
//!
//! journal commit -> Supervisor (actix, own thread), told with try_send
//!   -> SourceActor   one per source, bounded mailbox; claims due deliveries (event,
//!                    destination) from the journal (fencing token), at most
//!                    `concurrency` at once and `rate` per second
//!   -> handler       your actor (Handler<Delivery>) or an HTTP destination -> Outcome
//!   -> Journal       Done | RetryAt(backoff) | Dead (DLQ), per destination; every
//!                    attempt recorded; memoised steps make side effects exactly-once
//! ```
//!
//! - [`Verifier`] checks one provider's signatures: 22 built-in [`SCHEMES`] (Stripe,
//!   GitHub, Standard Webhooks, Svix, Slack, Shopify, Twilio, ...) and a configurable
//!   `generic-hmac`, or your own [`Scheme`]. [`sign`] produces what a provider would send.
//! - [`VerifyLayer`], [`ShedLayer`] and [`AckLayer`] compose in a `ServiceBuilder` on any
//!   axum router or hyper service; [`Hookbox::endpoint`] gives all of them, ready, for
//!   `Router::route_service`.
//! - [`Journal`] is the durable truth, one contract with two backends:
//!   [`RedbJournal`], the embedded default (one redb file, a group-commit writer), and
//!   [`PostgresJournal`], several nodes on one PostgreSQL database (group commit per
//!   node, claims with fencing tokens, leases and takeover of a dead node's deliveries,
//!   LISTEN/NOTIFY). Both keep time-ordered [`EventId`]s, deduplication and the delivery
//!   state (claims, attempts, memoised steps, dead letters, replays).
//! - [`Runtime`] delivers journaled events to handler actors routed by source and type
//!   ([`Route`]): a [`Delivery`] in, an [`Outcome`] out, [`Delivery::step`] for
//!   exactly-once effects, a [`RetryPolicy`] per source and per destination
//!   ([`SourceOptions::destination_retry`]), a [`RedrivePolicy`], per-key ordering
//!   ([`Source::order_by`]), graceful shutdown, recovery after a crash.
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
pub mod filter;
pub mod forward;
mod handler;
mod hookbox;
mod journal;
mod layer;
mod retry;
pub mod server;
mod ui;
mod verify;

/// The actix version hookbox's handler actors are written against.
pub use actix;
pub use actor::{RedrivePolicy, Route, Runtime, RuntimeBuilder, SourceOptions, SourceStats};
pub use config::{
    AdminConfig, Backoff, ByteSize, Config, ConfigError, DestinationConfig, DestinationRef,
    EnvOverride, HumanDuration, RedriveConfig, RetryConfig, ServerConfig, SourceConfig, ENV_PREFIX,
};
pub use error::{BuildError, Error, ErrorKind, VerifyError};
pub use event::{Event, Verified};
pub use filter::{Filter, FilterError, FilterInput};
pub use forward::{Delivered, Destination, ForwardError};
pub use handler::{Delivery, Outcome, StepError};
pub use hookbox::{Endpoint, Hookbox, Source};
pub use journal::wal;
pub use journal::{
    AppendFuture, AppendOptions, Appended, Attempt, AttemptOutcome, Claim, DeadDelivery,
    DestinationState, EventId, EventState, EventSummary, Journal, JournalError, JournalFuture,
    Load, Next, OpenError, Page, PostgresJournal, PostgresJournalBuilder, Query, RedbJournal,
    RedbJournalBuilder, RedriveFilter, ReplayFilter, ReplayStatus, SslMode, State, StoredEvent,
    MAX_FILTER_SCAN,
};
pub use layer::ack::{Accepted, Ack, AckLayer, Acked};
pub use layer::shed::{Shed, ShedLayer};
pub use layer::verify::{ResponseFuture as VerifyResponseFuture, Verify, VerifyLayer};
pub use retry::{RetryPolicy, DEFAULT_SCHEDULE};
pub use verify::{
    sign, Algorithm, EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, Secret, SignInput,
    Signed, Verifier, VerifierBuilder, SCHEMES,
};
