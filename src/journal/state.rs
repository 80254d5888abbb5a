//! Delivery state kept in the journal: per-event state, attempts, steps, replays.

use serde::{Deserialize, Serialize};

use super::EventId;

/// Where an event stands. `InFlight` exists only in the running process: after a crash an
/// event that was in flight is simply `Pending` (or `Retrying`) again and is redelivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its first (or a redriven) attempt.
    Pending,
    /// Failed at least once; waiting for its next attempt.
    Retrying,
    /// Delivered.
    Done,
    /// Gave up: in the dead-letter queue until redriven.
    Dead,
}

impl State {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Retrying => "retrying",
            State::Done => "done",
            State::Dead => "dead",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => State::Pending,
            "retrying" => State::Retrying,
            "done" => State::Done,
            "dead" => State::Dead,
            _ => return None,
        })
    }
}

/// An event's delivery state as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventState {
    /// The state.
    pub state: State,
    /// Attempts made so far, across redrives (replays not counted).
    pub attempts: u32,
    /// When the next attempt is due (ms since the Unix epoch), while retrying.
    pub next_at_ms: Option<u64>,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// How many times the event was redriven out of the dead-letter queue.
    pub redrives: u32,
    /// When it died (ms), while dead.
    pub dead_at_ms: Option<u64>,
    /// The ordering key, when its source orders deliveries.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order_key: String,
}

impl EventState {
    /// An event's state from the states of its deliveries (one per destination): the
    /// worst of them (dead before retrying before pending before done), attempts and
    /// redrives summed, the earliest next attempt, the latest death, and the last error
    /// of a delivery in the worst state. `None` for no deliveries.
    pub fn aggregate<'a>(deliveries: impl IntoIterator<Item = &'a EventState>) -> Option<Self> {
        fn rank(s: State) -> u8 {
            match s {
                State::Done => 0,
                State::Pending => 1,
                State::Retrying => 2,
                State::Dead => 3,
            }
        }
        let mut out: Option<EventState> = None;
        for d in deliveries {
            let Some(acc) = out.as_mut() else {
                out = Some(d.clone());
                continue;
            };
            acc.attempts += d.attempts;
            acc.redrives += d.redrives;
            acc.next_at_ms = match (acc.next_at_ms, d.next_at_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            acc.dead_at_ms = acc.dead_at_ms.max(d.dead_at_ms);
            if rank(d.state) > rank(acc.state) {
                acc.state = d.state;
                acc.last_error = d.last_error.clone().or(acc.last_error.take());
            } else if acc.last_error.is_none() {
                acc.last_error = d.last_error.clone();
            }
        }
        out
    }

    /// The state of an event never attempted.
    pub(crate) fn fresh(order_key: &str) -> Self {
        EventState {
            state: State::Pending,
            attempts: 0,
            next_at_ms: None,
            last_error: None,
            redrives: 0,
            dead_at_ms: None,
            order_key: order_key.to_owned(),
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The handler answered `Done`.
    Done,
    /// The handler answered `Retry`.
    Retry,
    /// The handler answered `Fail` (permanent).
    Fail,
    /// The attempt exceeded its timeout.
    Timeout,
    /// The handler panicked or its actor stopped.
    Crashed,
    /// No filter took the event (no destination's, no route's): it is done without a
    /// delivery, and the attempt records why.
    Filtered,
}

impl AttemptOutcome {
    /// Its name, as serialized (`done`, `retry`, `fail`, `timeout`, `crashed`,
    /// `filtered`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Fail => "fail",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::Crashed => "crashed",
            AttemptOutcome::Filtered => "filtered",
        }
    }
}

/// One delivery attempt, journaled when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based attempt number of this delivery (the original's, or the replay's).
    pub n: u32,
    /// When it started (ms since the Unix epoch).
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The error text, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The replay this attempt belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<u64>,
    /// The destination the attempt delivered to (empty: the source's only delivery).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
}

/// One destination's delivery of an event: each has its own attempts, retries and dead
/// state, so one destination failing neither delays nor dead-letters another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationState {
    /// The destination (empty: the source's only delivery).
    pub destination: String,
    /// Its delivery's state.
    #[serde(flatten)]
    pub state: EventState,
    /// While it is pending behind an earlier event of its ordering key to the same
    /// destination that is not done yet: that event, the key's head. It is not
    /// attempted before that one is done (or dead and then redriven and done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<super::EventId>,
}

/// A dead delivery: one entry of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadDelivery {
    /// The event.
    pub id: EventId,
    /// Its source.
    pub source: String,
    /// The destination that gave up (empty: the source's only delivery).
    pub destination: String,
}

/// A claimed delivery, as handed to a source actor: while the claim is held no other
/// claimer (here or on another node) gets the same delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The event.
    pub id: EventId,
    /// The attempt this delivery will be (1-based; a redrive or a replay starts again
    /// at 1).
    pub attempt: u32,
    /// The replay this delivery belongs to (`None`: the original delivery).
    pub replay: Option<u64>,
    /// The destination this delivery goes to (empty: the source's only delivery).
    pub destination: std::sync::Arc<str>,
    /// The due time the entry is filed under (ms); identifies it for the outcome.
    pub(crate) due_ms: u64,
    /// The ordering key, or empty.
    pub(crate) order_key: String,
    /// The source the delivery belongs to.
    pub(crate) source: std::sync::Arc<str>,
    /// The fencing token: every write for this claim presents it, and a claim taken
    /// back meanwhile matches nothing.
    pub(crate) token: u64,
    /// The event, when the backend read it with the claim (saving the delivery a
    /// separate read); `None` and the runtime reads it with [`Journal::get`].
    ///
    /// [`Journal::get`]: super::Journal::get
    pub(crate) event: Prefetched,
}

/// An event read together with its claim. Not part of a claim's identity: two claims
/// are equal whether or not either carries its event.
#[derive(Clone, Default)]
pub(crate) struct Prefetched(pub(crate) Option<std::sync::Arc<super::StoredEvent>>);

impl PartialEq for Prefetched {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Prefetched {}

impl std::fmt::Debug for Prefetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Prefetched(..)"
        } else {
            "None"
        })
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Delivered; for an original delivery that destination's state becomes `Done`.
    Done,
    /// Try again at this time (ms since the Unix epoch).
    RetryAt(u64),
    /// Give up with this reason: that destination's delivery becomes `Dead`.
    Dead(String),
}

/// Which dead events to redrive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveFilter {
    /// Exactly these events.
    #[serde(default)]
    pub ids: Option<Vec<EventId>>,
    /// Only this source.
    #[serde(default)]
    pub source: Option<String>,
    /// Only this event type (or `prefix*`).
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// Died at or after (ms).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Died before (ms).
    #[serde(default)]
    pub until_ms: Option<u64>,
    /// Only events redriven fewer times than this (a redrive policy's limit).
    #[serde(default)]
    pub max_redrives: Option<u32>,
    /// Only this destination's dead deliveries (the others stay dead).
    #[serde(default)]
    pub destination: Option<String>,
}

/// A replay: new deliveries of the events of a window, leaving their history alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayStatus {
    /// The replay's id.
    pub id: u64,
    /// Events matched (and queued for delivery).
    pub matched: u64,
    /// Deliveries that succeeded.
    pub done: u64,
    /// Deliveries that gave up.
    pub failed: u64,
    /// Only this destination, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// When it was created (ms).
    pub created_ms: u64,
}

/// What to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Received at or after (ms).
    pub since_ms: u64,
    /// Received before (ms).
    pub until_ms: u64,
    /// Only this source.
    pub source: Option<String>,
    /// Only these sources (with `source`, both apply).
    pub sources: Option<Vec<String>>,
    /// Only this type (or `prefix*`).
    pub event_type: Option<String>,
    /// Only events this filter takes, by type and body (the configuration's filter
    /// language, [`crate::filter`]); the bodies are read only when it needs them.
    pub filter: Option<crate::Filter>,
    /// Deliver only to this destination (without: to each destination the event was
    /// delivered to originally).
    pub destination: Option<String>,
    /// Count only; queue nothing.
    pub dry_run: bool,
}
