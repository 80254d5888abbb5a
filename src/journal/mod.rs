//! The journal: hookbox's durable truth and its buffer.
//!
//! Every verified event is appended here *before* it is acknowledged; the delivery
//! runtime claims it back from here. [`Journal`] is the contract, with two backends:
//! [`PostgresJournal`] for several nodes on one database (see `postgres/`), and
//! [`RedbJournal`], the embedded default, one redb file with a group-commit writer:
//!
//! - one thread drains a bounded queue and writes each batch in one write transaction
//!   with `Durability::Immediate`; every append waiting in the batch is answered only
//!   when that commit (and its fsync) has returned;
//! - batches form from whatever is queued when the previous commit finishes, so there is
//!   no timer adding latency at low load, and the batch grows with the load;
//! - records are encoded (and their bodies LZ4-compressed when that pays) on the
//!   request's task, so the writer only inserts and commits.
//!
//! Event ids are time-ordered, which makes the events table its own time index.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Event, Verified};

mod error;
mod postgres;
#[cfg(test)]
mod powerloss;
mod record;
mod redb_journal;
pub(crate) mod retention;
mod state;
mod tables;
pub mod wal;
mod writer;

pub use error::{JournalError, OpenError};
pub(crate) use postgres::{is_url, redact as redact_url};
pub use postgres::{PostgresJournal, PostgresJournalBuilder, SslMode};
pub(crate) use record::{duration_ms, millis, millis_after};
pub use record::{EventSummary, StoredEvent};
pub use redb_journal::{RedbJournal, RedbJournalBuilder};
pub use state::{
    Attempt, AttemptOutcome, Claim, DeadDelivery, DestinationState, EventState, Next,
    RedriveFilter, ReplayFilter, ReplayStatus, State,
};

/// hookbox's id for an event: time-ordered (`received ms << 16 | n`), unique within a
/// journal, shown as `evt_` and 16 hex digits so that text order is time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub(crate) u64);

impl EventId {
    /// The raw value.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The smallest id at or after `t`.
    pub fn lower_bound(t: SystemTime) -> Self {
        EventId(record::millis(t) << 16)
    }

    /// When the id was allocated (millisecond precision).
    pub fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0 >> 16)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evt_{:016x}", self.0)
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for EventId {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("evt_")
            .ok_or("an event id starts with `evt_`")?;
        if hex.len() != 16 {
            return Err("an event id is `evt_` and 16 hex digits");
        }
        u64::from_str_radix(hex, 16)
            .map(EventId)
            .map_err(|_| "an event id is `evt_` and 16 hex digits")
    }
}

/// The result of a durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's id (the original's, for a duplicate).
    pub id: EventId,
    /// True when the provider's delivery id was already journaled for this source within
    /// the dedup window: nothing was written.
    pub duplicate: bool,
}

/// How loaded the journal is, read cheaply by the shed layer before a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Appends queued for the writer.
    pub queued: usize,
    /// The queue's bound.
    pub capacity: usize,
    /// Free bytes on the journal's disk (`u64::MAX` when unknown).
    pub disk_free: u64,
    /// False while the storage is failed and being recovered.
    pub healthy: bool,
}

/// The most events one [`Query`] page with a [`filter`](Query::filter) hands to the
/// filter: past this many, the page ends with what it has (possibly fewer than `limit`
/// events, or none) and a `next_cursor` to continue from, so that one request never
/// reads the bodies of the whole journal. Only events the other conditions (window,
/// source, type, state) take count.
pub const MAX_FILTER_SCAN: usize = 10_000;

/// A time-window query, newest first.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Events received at or after this time (compared to the millisecond: receive
    /// times are recorded in milliseconds, and bounds are truncated the same way).
    pub since: Option<SystemTime>,
    /// Events received before this time (to the millisecond, likewise).
    pub until: Option<SystemTime>,
    /// Only this source.
    pub source: Option<String>,
    /// Only this event type (exact), or a prefix when it ends in `*` (`invoice.*`).
    pub event_type: Option<String>,
    /// Only events in this delivery state.
    pub state: Option<State>,
    /// Only events this filter takes, by type and body (the configuration's filter
    /// language, [`crate::filter`]). A page then looks at no more than
    /// [`MAX_FILTER_SCAN`] events: it may come back short, even empty, with a
    /// `next_cursor` to follow.
    pub filter: Option<crate::Filter>,
    /// Continue after this id (the previous page's `next_cursor`).
    pub before: Option<EventId>,
    /// At most this many events (0 means 100).
    pub limit: usize,
}

/// One page of a [`Query`].
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The events, newest first.
    pub events: Vec<EventSummary>,
    /// Where the next page starts, when there may be one. With a
    /// [`filter`](Query::filter) a page may be short and still have one: follow it
    /// until it is `None`.
    pub next_cursor: Option<EventId>,
}

/// A time window of receipt, `[since, until)` in whole milliseconds: an event belongs
/// to it by its recorded receive time, which is kept to the millisecond. Bounds are
/// taken to the same precision ([`bound_ms`]: truncated, as receive times are), so an
/// event belongs to a window exactly when the millisecond it was received in does, the
/// same for listings, exports, replays, redrives and the CLI's relative times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) since_ms: u64,
    pub(crate) until_ms: u64,
}

/// How far past its receive time an event's id may lie: an id is the receive time
/// unless a later one was taken already (the next free one then), and an append waits
/// in its writer's queue for less than the request timeout.
const ID_SLACK_MS: u64 = 60_000;

impl Window {
    /// The window of a query's bounds (open ends: all time).
    pub(crate) fn of(since: Option<SystemTime>, until: Option<SystemTime>) -> Self {
        Window {
            since_ms: since.map_or(0, bound_ms),
            until_ms: until.map_or(u64::MAX, bound_ms),
        }
    }

    /// True when an event received at `received_ms` is inside.
    pub(crate) fn contains(&self, received_ms: u64) -> bool {
        self.since_ms <= received_ms && received_ms < self.until_ms
    }

    /// The ids to scan for the window's events (a superset: filter by [`contains`]).
    ///
    /// [`contains`]: Window::contains
    pub(crate) fn ids(&self) -> (u64, u64) {
        let lo = self.since_ms.min(u64::MAX >> 16) << 16;
        let hi = self
            .until_ms
            .saturating_add(ID_SLACK_MS)
            .min(u64::MAX >> 16)
            << 16;
        (lo, hi)
    }
}

/// A window bound in whole milliseconds since the epoch, truncated like receive times.
pub(crate) fn bound_ms(t: SystemTime) -> u64 {
    millis(t)
}

/// True when `event_type` matches `pattern`: exact, a `prefix*`, or `*`.
pub(crate) fn type_matches(pattern: &str, event_type: Option<&str>) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.is_some_and(|t| t.starts_with(prefix)),
        None => event_type == Some(pattern),
    }
}

/// How to append an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOptions {
    /// How long a provider delivery id of the same source counts as a duplicate
    /// (`None`: no deduplication).
    pub dedup_window: Option<Duration>,
    /// The ordering key: deliveries of one key happen one at a time, in order (per
    /// destination).
    pub order_key: Option<String>,
    /// The destinations the event goes to, each its own delivery with its own attempts,
    /// retries, dead state and order. Empty: one delivery, to the unnamed destination
    /// (`""`), which is what a source with one handler needs. A destination listed
    /// twice is one delivery.
    pub destinations: Vec<String>,
}

impl AppendOptions {
    /// The destinations, each once, in their order; a list of only the unnamed
    /// destination is the same as none.
    pub(crate) fn unique_destinations(&self) -> Vec<String> {
        if self.destinations.iter().all(String::is_empty) {
            return Vec::new();
        }
        // A handful of names per event: a scan of those before beats hashing them.
        let all = &self.destinations;
        all.iter()
            .enumerate()
            .filter(|(i, d)| !all[..*i].contains(d))
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// The future of every journal call that is not answered from counters: reads resolve
/// with what the journal holds, writes only once they are durable (or refused).
pub type JournalFuture<T> = Pin<Box<dyn Future<Output = Result<T, JournalError>> + Send>>;

/// The future of [`Journal::append`].
pub type AppendFuture = JournalFuture<Appended>;

/// The journal contract, one behaviour for every backend: [`RedbJournal`] (one process,
/// one file) and [`PostgresJournal`] (several nodes on one database) both pass the same
/// contract test suite (`tests/it/contract.rs`).
///
/// Deliveries are *claimed*: [`claim`](Journal::claim) hands out due deliveries with a
/// fencing token, and [`settle`](Journal::settle), [`save_step`](Journal::save_step)
/// and [`abandon`](Journal::abandon) present it. A claim that was taken back meanwhile
/// (its node was declared dead and another took the delivery over, or it was abandoned)
/// fails with [`JournalError::LeaseLost`] and changes nothing. No transaction or lock is
/// held while a delivery runs.
///
/// `load`, `backlog` and `sources` are answered from counters (refreshed about once a
/// second on PostgreSQL): the shed layer reads them before a body, per request.
pub trait Journal: Send + Sync + fmt::Debug + 'static {
    /// Appends a verified event; resolves only when it is durable (or refused).
    fn append(&self, event: &Verified<Event>, opts: &AppendOptions) -> AppendFuture;

    /// The current load, for shedding.
    fn load(&self) -> Load;

    /// Original deliveries of `source` (one per event and destination) not yet done or
    /// dead.
    fn backlog(&self, source: &str) -> u64;

    /// Every source with its backlog.
    fn sources(&self) -> Vec<(String, u64)>;

    /// How many events the journal holds.
    fn count(&self) -> JournalFuture<u64>;

    /// One event by id.
    fn get(&self, id: EventId) -> JournalFuture<Option<StoredEvent>>;

    /// Events in a time window, newest first.
    fn query(&self, query: &Query) -> JournalFuture<Page>;

    /// The event journaled for a provider delivery id, if any.
    fn lookup(&self, source: &str, delivery_id: &str) -> JournalFuture<Option<EventId>>;

    /// Claims up to `limit` deliveries of `source` due at `now`, oldest first: none that
    /// is claimed already (here or on another node), none held back by per-key order.
    fn claim(&self, source: &str, now: SystemTime, limit: usize) -> JournalFuture<Vec<Claim>>;

    /// When the earliest delivery of `source` due strictly after `after` is due (ms),
    /// if any: when a source with nothing ready now should look again.
    fn next_due(&self, source: &str, after: SystemTime) -> JournalFuture<Option<u64>>;

    /// Records an attempt of a claimed delivery and what follows it, and ends the claim.
    /// [`JournalError::LeaseLost`] when the claim is no longer held: nothing is
    /// recorded. Not fsynced on its own on redb: a crash may forget it, and the delivery
    /// then happens again.
    fn settle(&self, claim: Claim, attempt: Attempt, next: Next) -> JournalFuture<()>;

    /// Gives claims back without an attempt (shutdown, a restarted source actor): the
    /// deliveries are due again at once. Claims no longer held are ignored.
    fn abandon(&self, claims: Vec<Claim>) -> JournalFuture<()>;

    /// A memoised step's stored result.
    fn step_result(&self, id: EventId, name: &str) -> JournalFuture<Option<Vec<u8>>>;

    /// Stores a step's result durably, for the claimed delivery's event. The first
    /// writer wins: when the step is stored already, the stored value is kept.
    /// [`JournalError::LeaseLost`] when the claim is no longer held.
    fn save_step(&self, claim: &Claim, name: &str, value: Vec<u8>) -> JournalFuture<()>;

    /// An event's delivery state, over all its destinations (see
    /// [`EventState::aggregate`]); `None`: no such event.
    fn state(&self, id: EventId) -> JournalFuture<Option<EventState>>;

    /// The state of each destination's original delivery of an event, by destination
    /// name (empty: no such event).
    fn deliveries(&self, id: EventId) -> JournalFuture<Vec<DestinationState>>;

    /// Every attempt of an event, oldest first.
    fn attempts(&self, id: EventId) -> JournalFuture<Vec<Attempt>>;

    /// Dead deliveries (the DLQ), of one source or of all: the `limit` oldest, oldest
    /// event first, an event's destinations by name (byte order).
    fn dead(&self, source: Option<&str>, limit: usize) -> JournalFuture<Vec<DeadDelivery>>;

    /// How many deliveries are dead.
    fn dead_count(&self) -> JournalFuture<u64>;

    /// Moves matching dead deliveries back to pending; resolves to how many.
    fn redrive(&self, filter: RedriveFilter) -> JournalFuture<u64>;

    /// Queues new deliveries of the events of a window.
    fn replay(&self, filter: ReplayFilter) -> JournalFuture<ReplayStatus>;

    /// Retention: removes up to `limit` events that are `Done` and were received before
    /// `before`, with their state, attempts, steps and dedup entry; resolves to how many.
    /// Pending, retrying and dead events are kept, and so is an event with a delivery
    /// still waiting (a replay in progress). Call again while it returns `limit` or
    /// more: each call is one bounded, durable transaction (on PostgreSQL, whole days in
    /// which everything is done are dropped at once besides, so a call may return more).
    fn purge(&self, before: SystemTime, limit: usize) -> JournalFuture<u64>;

    /// A replay's progress.
    fn replay_status(&self, id: u64) -> JournalFuture<Option<ReplayStatus>>;

    /// Changes after each commit that appended events (the highest id), and after each
    /// redrive or replay (same value, still a change). On PostgreSQL it also changes when
    /// another node commits (LISTEN/NOTIFY); the runtime polls besides.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Finishes what is queued, then stops: later calls are refused. On PostgreSQL the
    /// node also gives its claims back, so other nodes take them over at once.
    fn close(&self) -> JournalFuture<()>;
}
