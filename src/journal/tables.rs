//! Every redb table, declared once.
//!
//! Event ids are time-ordered (`received_ms << 16 | n`, see [`EventId`](super::EventId)),
//! so `EVENTS` in key order *is* the `(received_at, seq)` index: a time-window query is a
//! key range, and each append writes one B-tree fewer.

use redb::TableDefinition;

/// id -> versioned event record (metadata, kept headers, body). Written once.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// (source, id) -> (): time-window queries per source.
pub(crate) const BY_SOURCE: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_source");

/// (source, provider delivery id) -> (event id, received ms): ingest deduplication.
pub(crate) const DEDUP: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("dedup");

/// source -> (events appended, events pending): per-source counters, updated once per
/// batch, so backlog limits survive restarts without a scan.
pub(crate) const SOURCES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("sources");

/// (source, due ms, id, replay id, destination) -> (attempt, ordering key): deliveries
/// waiting, by due time, one per event and destination. Fresh events are filed at their
/// receive time; retries at their next attempt; replays under their replay id (0 = the
/// original delivery).
pub(crate) const READY: TableDefinition<ReadyKey, ReadyValue> = TableDefinition::new("ready_v2");

/// A [`READY`] key: (source, due ms, id, replay id, destination).
pub(crate) type ReadyKey = (&'static str, u64, u64, u64, &'static str);

/// A [`READY`] value: (attempt, ordering key).
pub(crate) type ReadyValue = (u32, &'static str);

/// (id, destination) -> that delivery's state (JSON). Written at append for named
/// destinations and for ordered events, otherwise at the first outcome: an event with no
/// row has one delivery, to the unnamed destination, never attempted.
pub(crate) const STATE: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("state_v2");

/// (source, id, destination) -> dead ms: the dead-letter queue.
pub(crate) const DEAD: TableDefinition<(&str, u64, &str), u64> = TableDefinition::new("dead_v2");

/// (id, n) -> attempt (JSON): every attempt, original and replayed.
pub(crate) const ATTEMPTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("attempts");

/// (id, step name) -> the step's result (JSON): memoised steps.
pub(crate) const STEPS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("steps");

/// (source, destination, ordering key, id) -> (): deliveries of a key not yet done, for
/// per-key order (per destination).
pub(crate) const ORDER: TableDefinition<(&str, &str, &str, u64), ()> =
    TableDefinition::new("order_v2");

/// replay id -> replay status (JSON).
pub(crate) const REPLAYS: TableDefinition<u64, &[u8]> = TableDefinition::new("replays");

/// key -> value: format version and other journal-wide facts.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The delivery tables of format version 1 (one delivery per event), read once by the
/// migration to version 2 and then deleted.
pub(crate) mod v1 {
    use redb::TableDefinition;

    /// (source, due ms, id, replay id) -> (attempt, ordering key).
    pub(crate) const READY: TableDefinition<(&str, u64, u64, u64), (u32, &str)> =
        TableDefinition::new("ready");
    /// id -> delivery state (JSON).
    pub(crate) const STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("state");
    /// (source, id) -> dead ms.
    pub(crate) const DEAD: TableDefinition<(&str, u64), u64> = TableDefinition::new("dead");
    /// (source, ordering key, id) -> ().
    pub(crate) const ORDER: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("order");
}
