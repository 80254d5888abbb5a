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

/// id -> state record, for events that left `Pending` (absent = pending, never tried).
pub(crate) const STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("state");

/// (due ms, id) -> (): events waiting for a retry, by next attempt time.
pub(crate) const DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("due");

/// key -> value: format version and other journal-wide facts.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
