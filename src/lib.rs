//! # hookbox
//!
//! Receive webhooks and never lose one.
//!
//! ```text
//! POST /hooks/{source}
//!   -> VerifyLayer   body read up to a limit; the source's scheme verifies raw bytes
//!                    and headers -> Verified<Event>; 400/401/413 as problem+json
//!   -> your service  receives the request with the Verified<Event> extension
//! ```
//!
//! - [`Verifier`] checks one provider's signatures: 22 built-in [`SCHEMES`] (Stripe,
//!   GitHub, Standard Webhooks, Svix, Slack, Shopify, Twilio, ...) and a configurable
//!   `generic-hmac`, or your own [`Scheme`].
//! - [`VerifyLayer`] puts a verifier in front of any Tower service (an axum `Router`, a
//!   hyper service) and answers provider handshakes itself.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod config;
mod error;
mod event;
mod hookbox;
mod journal;
mod layer;
pub mod server;
mod verify;

pub use config::{ByteSize, Config, ConfigError, HumanDuration, ServerConfig, SourceConfig};
pub use error::{BuildError, Error, ErrorKind, VerifyError};
pub use event::{Event, Verified};
pub use hookbox::{Endpoint, Hookbox, Source};
pub use journal::{
    AppendFuture, AppendOptions, Appended, Attempt, AttemptOutcome, EventId, EventState,
    EventSummary, Journal, JournalError, Load, Next, OpenError, Page, Query, Ready, RedbJournal,
    RedbJournalBuilder, RedriveFilter, ReplayFilter, ReplayStatus, State, StoredEvent, WriteFuture,
};
pub use layer::ack::{Accepted, Ack, AckLayer, Acked};
pub use layer::shed::{Shed, ShedLayer};
pub use layer::verify::{ResponseFuture as VerifyResponseFuture, Verify, VerifyLayer};
pub use verify::{
    sign, Algorithm, EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, Secret, SignInput,
    Signed, Verifier, VerifierBuilder, SCHEMES,
};
