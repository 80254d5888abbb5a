//! What handlers are written against: [`Delivery`] in, [`Outcome`] out, and memoised
//! steps for exactly-once side effects.
//!
//! A handler is an actix actor that handles [`Delivery`] (an actix message whose result
//! is [`Outcome`]); see [`Runtime`](crate::Runtime) for how it is registered.
//!
//! ```
//! use actix::prelude::*;
//! use hookbox::{Delivery, Outcome};
//!
//! struct Invoices;
//! impl Actor for Invoices {
//!     type Context = Context<Self>;
//! }
//! impl Handler<Delivery> for Invoices {
//!     type Result = ResponseFuture<Outcome>;
//!
//!     fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Self::Result {
//!         Box::pin(async move {
//!             // Runs once per event, whatever happens after it: retries, crashes and
//!             // restarts read the stored result instead of charging twice.
//!             let charged = d
//!                 .step("charge", || async { Ok::<_, std::io::Error>(4200u64) })
//!                 .await;
//!             match charged {
//!                 Ok(_cents) => Outcome::Done,
//!                 Err(e) => Outcome::retry(e),
//!             }
//!         })
//!     }
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Claim, EventId, Journal, JournalError, StoredEvent};

/// One delivery of an event to a handler: the event, which attempt this is, and the
/// journal for memoised [`steps`](Delivery::step).
#[derive(Clone)]
pub struct Delivery {
    event: Arc<StoredEvent>,
    /// The claim this delivery runs under: its steps are stored with its fencing token.
    claim: Claim,
    journal: Arc<dyn Journal>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.event.id)
            .field("source", &self.event.source)
            .field("event_type", &self.event.event_type)
            .field("attempt", &self.claim.attempt)
            .field("replay", &self.claim.replay)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery of `event` under `claim` (from [`Journal::claim`]). The runtime
    /// builds these; tests of handlers may too.
    pub fn new(event: Arc<StoredEvent>, claim: Claim, journal: Arc<dyn Journal>) -> Self {
        Delivery {
            event,
            claim,
            journal,
        }
    }

    /// The event as journaled.
    pub fn event(&self) -> &StoredEvent {
        &self.event
    }

    /// The event's hookbox id.
    pub fn id(&self) -> EventId {
        self.event.id
    }

    /// The source it arrived at.
    pub fn source(&self) -> &str {
        &self.event.source
    }

    /// The provider's event type, when the scheme knows where to find it.
    pub fn event_type(&self) -> Option<&str> {
        self.event.event_type.as_deref()
    }

    /// The provider's delivery id, when it sends one.
    pub fn delivery_id(&self) -> Option<&str> {
        self.event.delivery_id.as_deref()
    }

    /// When hookbox received it.
    pub fn received_at(&self) -> std::time::SystemTime {
        self.event.received_at
    }

    /// The request headers kept with the event.
    pub fn headers(&self) -> &HeaderMap {
        &self.event.headers
    }

    /// The raw body, byte for byte as the provider signed it.
    pub fn body(&self) -> &Bytes {
        &self.event.body
    }

    /// The body parsed as JSON into `T` (`serde_json::Value` for untyped access).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.event.body)
    }

    /// Which attempt this is, from 1. A redrive starts a fresh round at 1, and each
    /// replay counts its own attempts.
    pub fn attempt(&self) -> u32 {
        self.claim.attempt
    }

    /// The replay this delivery belongs to (`None`: the original delivery).
    pub fn replay(&self) -> Option<u64> {
        self.claim.replay
    }

    /// The destination this delivery goes to: each destination of an event is a
    /// delivery of its own, with its own attempts and retries (empty: the source's only
    /// delivery).
    pub fn destination(&self) -> &str {
        &self.claim.destination
    }

    /// A stable key for an external call made in step `step`, to pass as the remote
    /// side's idempotency key (`evt_…:step`, with the replay for replays). It covers the
    /// one window memoisation cannot: a crash after the effect and before its result
    /// was journaled.
    pub fn idempotency_key(&self, step: &str) -> String {
        let dest = &*self.claim.destination;
        let step = if dest.is_empty() {
            step.to_owned()
        } else {
            format!("{dest}:{step}")
        };
        match self.claim.replay {
            None => format!("{}:{step}", self.event.id),
            Some(r) => format!("{}:replay-{r}:{step}", self.event.id),
        }
    }

    /// Runs `f` once per event and destination (once per replay, for replays) and
    /// journals its result:
    /// when a later attempt, a restart after a crash, or a retry of the handler reaches
    /// this step again, the stored result is returned and `f` is not called.
    ///
    /// The result is stored durably (fsync) before `step` returns. An `Err` from `f`
    /// is not stored: the step runs again on the next attempt.
    pub async fn step<T, E, F, Fut>(&self, name: &str, f: F) -> Result<T, StepError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // Scoped to the replay and the destination: each delivery memoises its own.
        let dest = &*self.claim.destination;
        let key = match (self.claim.replay, dest.is_empty()) {
            (None, true) => name.to_owned(),
            (None, false) => format!("to-{dest}/{name}"),
            (Some(r), true) => format!("replay-{r}/{name}"),
            (Some(r), false) => format!("replay-{r}/to-{dest}/{name}"),
        };
        let id = self.event.id;
        let decode = |stored: &[u8]| {
            serde_json::from_slice(stored).map_err(|e| StepError::Stored {
                step: name.to_owned(),
                problem: e.to_string(),
            })
        };
        if let Some(stored) = self.journal.step_result(id, &key).await? {
            return decode(&stored);
        }
        let value = f().await.map_err(StepError::Failed)?;
        let bytes = serde_json::to_vec(&value).map_err(|e| StepError::Stored {
            step: name.to_owned(),
            problem: e.to_string(),
        })?;
        // A delivery whose claim was taken back stores nothing (`LeaseLost`); the node
        // that holds it now runs the step under its own claim.
        self.journal.save_step(&self.claim, &key, bytes).await?;
        Ok(value)
    }
}

/// A memoised step did not produce a value.
#[derive(Debug, thiserror::Error)]
pub enum StepError<E> {
    /// The step's function failed; nothing was stored and it runs again next attempt.
    #[error("step failed: {0}")]
    Failed(E),
    /// The journal could not read or store the result.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The stored result does not fit the step's type (the handler's type changed).
    #[error("step `{step}`: the stored result does not fit: {problem}")]
    Stored {
        /// The step.
        step: String,
        /// What serde said.
        problem: String,
    },
}

/// What a handler answers for a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: the event is done.
    Done,
    /// Failed for now: try again, after `after` if given (within the retry policy's
    /// cap), else on the source's schedule. The last attempt's retry makes it dead.
    Retry {
        /// The handler's own delay.
        after: Option<Duration>,
        /// Why, journaled with the attempt.
        reason: String,
    },
    /// Failed for good: the event goes to the dead-letter queue at once.
    Fail {
        /// Why, journaled with the attempt and shown in the DLQ.
        reason: String,
    },
    /// Not for this handler (a filter did not take it): the event is done without a
    /// delivery, never dead.
    Filtered {
        /// Why, journaled with the attempt.
        reason: String,
    },
}

impl Outcome {
    /// `Retry` on the source's schedule, with `reason` as the error text.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Outcome::Retry {
            after: None,
            reason: reason.to_string(),
        }
    }

    /// `Retry` after `after` (within the cap).
    pub fn retry_after(after: Duration, reason: impl fmt::Display) -> Self {
        Outcome::Retry {
            after: Some(after),
            reason: reason.to_string(),
        }
    }

    /// `Fail`: straight to the dead-letter queue.
    pub fn fail(reason: impl fmt::Display) -> Self {
        Outcome::Fail {
            reason: reason.to_string(),
        }
    }
}
