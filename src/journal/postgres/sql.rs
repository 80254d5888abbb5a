//! Every SQL statement of the PostgreSQL journal, and its migrations, in one place.
//!
//! Tables (all prefixed `hookbox_`):
//!
//! - `events`: one row per event, the same versioned record as redb (`record.rs`) plus
//!   the columns listings filter on. Written once.
//! - `deliveries`: one row per (event, target, replay). The original deliveries
//!   (`replay = 0`), one per destination of the event (`target`, `''` for the unnamed
//!   one), carry its state: each has its own attempts, retries, dead state and order;
//!   the event's state is their aggregate. Each replay adds rows.
//!   `owner` (a node) and `token` (the fencing token) are the claim: set by `claim`,
//!   presented by every later write, cleared by settle, abandon or the reaper.
//! - `dedup`: (source, provider delivery id) -> event, unique: the same delivery posted
//!   to two nodes at once makes one event.
//! - `attempts`, `steps`, `replays`, `sources`, `nodes`, `schema`.
//!
//! `events`, `deliveries`, `attempts` and `steps` are partitioned by event id, one
//! partition per UTC day of receipt (`_dYYYYMMDD`), created a few days ahead (and on
//! demand for an event of a day without one). There is no default partition: attaching
//! and detaching a partition then take no lock that ordinary reads and writes wait for
//! (`DETACH ... CONCURRENTLY`). Retention drops a whole day once everything in it is
//! done, instead of deleting row by row.
//!
//! States are stored as small integers: 0 pending, 1 retrying, 2 done, 3 dead.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// The schema version this build creates and understands.
pub(super) const SCHEMA_VERSION: i32 = 5;

/// Migrations, applied in order; entry `i` brings the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE hookbox_nodes (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    slot integer NOT NULL UNIQUE CHECK (slot >= 0 AND slot < 64),
    lease_ms bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE hookbox_sources (
    name text PRIMARY KEY
);
CREATE TABLE hookbox_events (
    id bigint PRIMARY KEY,
    source text NOT NULL,
    received_ms bigint NOT NULL,
    delivery_id text,
    event_type text,
    body_len integer NOT NULL,
    record bytea NOT NULL
) PARTITION BY RANGE (id);
CREATE INDEX hookbox_events_by_source ON hookbox_events (source, id);
CREATE TABLE hookbox_dedup (
    source text NOT NULL,
    delivery_id text NOT NULL,
    event_id bigint NOT NULL,
    seen_ms bigint NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE TABLE hookbox_deliveries (
    event_id bigint NOT NULL,
    target text NOT NULL DEFAULT '',
    replay bigint NOT NULL DEFAULT 0,
    source text NOT NULL,
    state smallint NOT NULL DEFAULT 0,
    due_ms bigint NOT NULL,
    attempt integer NOT NULL DEFAULT 1,
    attempts integer NOT NULL DEFAULT 0,
    order_key text NOT NULL DEFAULT '',
    last_error text,
    redrives integer NOT NULL DEFAULT 0,
    dead_ms bigint,
    owner bigint,
    token bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, target, replay)
) PARTITION BY RANGE (event_id);
CREATE INDEX hookbox_deliveries_due ON hookbox_deliveries (source, due_ms, event_id)
    WHERE state < 2 AND owner IS NULL;
CREATE INDEX hookbox_deliveries_owned ON hookbox_deliveries (owner) WHERE owner IS NOT NULL;
CREATE INDEX hookbox_deliveries_order ON hookbox_deliveries (source, order_key, event_id)
    WHERE order_key <> '' AND replay = 0 AND state <> 2;
CREATE INDEX hookbox_deliveries_dead ON hookbox_deliveries (source, event_id)
    WHERE state = 3 AND replay = 0;
CREATE INDEX hookbox_deliveries_backlog ON hookbox_deliveries (source)
    WHERE state < 2 AND replay = 0;
CREATE INDEX hookbox_deliveries_waiting ON hookbox_deliveries (event_id)
    WHERE state < 2 AND replay <> 0;
CREATE TABLE hookbox_attempts (
    event_id bigint NOT NULL,
    seq bigserial,
    attempt bytea NOT NULL,
    PRIMARY KEY (event_id, seq)
) PARTITION BY RANGE (event_id);
CREATE TABLE hookbox_steps (
    event_id bigint NOT NULL,
    name text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (event_id, name)
) PARTITION BY RANGE (event_id);
CREATE INDEX hookbox_dedup_event ON hookbox_dedup (event_id);
CREATE TABLE hookbox_replays (
    id bigserial PRIMARY KEY,
    matched bigint NOT NULL DEFAULT 0,
    done bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    destination text,
    created_ms bigint NOT NULL
);
"#,
    // 2: a claim changes only columns no index covers (owner, token), so PostgreSQL
    // updates the row in place (HOT) without new index entries; claimed rows stay in the
    // due index and claims skip them. Owned rows are found through that index too.
    r#"
DROP INDEX hookbox_deliveries_owned;
DROP INDEX hookbox_deliveries_due;
CREATE INDEX hookbox_deliveries_due ON hookbox_deliveries (source, due_ms, event_id)
    WHERE state < 2;
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                WHERE inhparent = 'hookbox_deliveries'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 70)', part);
    END LOOP;
END $$;
"#,
    // 3: deliveries are one per event and destination (`target`), and per-key order
    // holds per destination: the order index leads with the target, the shape of the
    // head check. Builds before this one (one delivery per event) refuse a database at
    // this version: they would claim a named destination's delivery and never settle it.
    r#"
DROP INDEX hookbox_deliveries_order;
CREATE INDEX hookbox_deliveries_order ON hookbox_deliveries (source, target, order_key, event_id)
    WHERE order_key <> '' AND replay = 0 AND state <> 2;
"#,
    // 4: a delivery that waits behind an earlier one of its key is `parked`: out of the
    // due index, so claims never look at it, until the delivery before it is done (the
    // settle un-parks the next one) or a sweep finds it at the head of its key. Without
    // this, every claim looked at every waiting delivery of a key blocked by a dead or
    // retrying head. The deliveries waiting now are parked here, once.
    r#"
ALTER TABLE hookbox_deliveries ADD COLUMN IF NOT EXISTS parked boolean NOT NULL DEFAULT false;
DROP INDEX hookbox_deliveries_due;
CREATE INDEX hookbox_deliveries_due ON hookbox_deliveries (source, due_ms, event_id)
    WHERE state < 2 AND NOT parked;
CREATE INDEX IF NOT EXISTS hookbox_deliveries_parked
    ON hookbox_deliveries (source, target, order_key, event_id) WHERE parked;
UPDATE hookbox_deliveries d SET parked = true
WHERE d.order_key <> '' AND d.replay = 0 AND d.state < 2 AND d.owner IS NULL AND NOT d.parked
  AND EXISTS (
    SELECT 1 FROM hookbox_deliveries h
    WHERE h.source = d.source AND h.target = d.target AND h.order_key = d.order_key
      AND h.order_key <> '' AND h.replay = 0 AND h.state <> 2 AND h.event_id < d.event_id);
"#,
    // 5: the dead list across sources (oldest event first, then target bytewise) reads
    // an index in its own order and stops at its limit. Before this, it walked the
    // primary key through every delivery, done ones included, until it had found
    // enough dead ones: the whole retained journal when few are dead.
    r#"
CREATE INDEX IF NOT EXISTS hookbox_deliveries_dead_order ON hookbox_deliveries (event_id, target COLLATE "C")
    WHERE state = 3 AND replay = 0;
"#,
];

/// How full inserts fill the pages of a deliveries partition (percent): the rest is
/// room for a claim's in-place update beside the row. Migration 2 set the same on the
/// partitions that existed then; migrations stay as they were written.
const DELIVERIES_FILLFACTOR: u32 = 70;

/// The advisory lock key migrations run under (`hookbox` in ASCII).
const MIGRATION_LOCK: i64 = 0x0068_6f6f_6b62_6f78;

/// The channel commits are announced on.
pub(super) const CHANNEL: &str = "hookbox_journal";

/// Runs `sql` (prepared once per connection and cached) with `params`.
pub(super) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let stmt = c.prepare_cached(sql).await?;
    c.query(&stmt, params).await
}

/// Runs `sql` (prepared once per connection and cached) in a transaction of its own
/// that does not wait for its WAL flush (`synchronous_commit` off), in one round trip:
/// BEGIN, the statement and COMMIT are sent together. Only for writes a crash of the
/// database may forget (claims and outcomes): the delivery then happens again.
pub(super) async fn unsynced<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    unsynced_with(c, "BEGIN; SET LOCAL synchronous_commit = off", sql, params).await
}

/// [`unsynced`] with `begin` as the transaction's first commands (which must begin
/// it and turn `synchronous_commit` off), for statements that need planner settings
/// of their own.
async fn unsynced_with<C: GenericClient>(
    c: &C,
    begin: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let stmt = c.prepare_cached(sql).await?;
    // Each request is sent when first polled, and `join!` polls in order.
    let (begun, rows, committed) = tokio::join!(
        c.batch_execute(begin),
        c.query(&stmt, params),
        c.batch_execute("COMMIT"),
    );
    begun?;
    let rows = rows?;
    committed?;
    Ok(rows)
}

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Error> {
    let stmt = c.prepare_cached(sql).await?;
    c.execute(&stmt, params).await
}

/// Applies the migrations this database lacks, under an advisory lock so that nodes
/// starting together migrate once. Returns the version found before, or `Err(found)`
/// when the database is newer than this build.
pub(super) async fn migrate(c: &tokio_postgres::Client) -> Result<Result<i32, i32>, Error> {
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        c.batch_execute("CREATE TABLE IF NOT EXISTS hookbox_schema (version integer NOT NULL)")
            .await?;
        let found: i32 = c
            .query_opt("SELECT version FROM hookbox_schema", &[])
            .await?
            .map_or(0, |r| r.get(0));
        if found > SCHEMA_VERSION {
            return Ok(Err(found));
        }
        for (v, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let next = v as i32 + 1;
            c.batch_execute("BEGIN").await?;
            let step = async {
                c.batch_execute(m).await?;
                c.execute("DELETE FROM hookbox_schema", &[]).await?;
                c.execute("INSERT INTO hookbox_schema (version) VALUES ($1)", &[&next])
                    .await?;
                c.batch_execute("COMMIT").await
            }
            .await;
            if let Err(e) = step {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(e);
            }
            tracing::info!(version = next, "journal schema migrated");
        }
        Ok(Ok(found))
    }
    .await;
    let _ = c
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

/// The schema version of the database (0: none).
pub(super) async fn schema_version(c: &tokio_postgres::Client) -> Result<i32, Error> {
    let exists = c
        .query("SELECT to_regclass('hookbox_schema') IS NOT NULL", &[])
        .await?;
    if !exists[0].get::<_, bool>(0) {
        return Ok(0);
    }
    let rows = c.query("SELECT version FROM hookbox_schema", &[]).await?;
    Ok(rows.first().map_or(0, |r| r.get(0)))
}

// ---- nodes ----------------------------------------------------------------------

/// Registers a node under the lowest free id slot (0..64); `None` when all are taken.
/// Nodes of the same name that registered before are taken to be dead (a restart of
/// the same node) and reaped first.
pub(super) async fn register<C: GenericClient>(
    c: &C,
    name: &str,
    lease_ms: i64,
) -> Result<Option<(i64, i32)>, Error> {
    execute(
        c,
        "SELECT pg_advisory_xact_lock($1)",
        &[&(MIGRATION_LOCK + 1)],
    )
    .await?;
    let old: Vec<i64> = query(c, "SELECT id FROM hookbox_nodes WHERE name = $1", &[&name])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    release_nodes(c, &old).await?;
    reap(c).await?;
    let rows = query(
        c,
        "INSERT INTO hookbox_nodes (name, slot, lease_ms)
         SELECT $1, s, $2 FROM generate_series(0, 63) s
         WHERE s NOT IN (SELECT slot FROM hookbox_nodes) ORDER BY s LIMIT 1
         RETURNING id, slot",
        &[&name, &lease_ms],
    )
    .await?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1))))
}

/// Renews a node's lease; false when the node was reaped meanwhile.
pub(super) async fn heartbeat<C: GenericClient>(c: &C, node: i64) -> Result<bool, Error> {
    Ok(execute(
        c,
        "UPDATE hookbox_nodes SET heartbeat = clock_timestamp() WHERE id = $1",
        &[&node],
    )
    .await?
        == 1)
}

/// Removes nodes and gives their claims back.
async fn release_nodes<C: GenericClient>(c: &C, nodes: &[i64]) -> Result<u64, Error> {
    if nodes.is_empty() {
        return Ok(0);
    }
    let n = execute(
        c,
        "UPDATE hookbox_deliveries SET owner = NULL WHERE state < 2 AND owner = ANY($1)",
        &[&nodes],
    )
    .await?;
    execute(c, "DELETE FROM hookbox_nodes WHERE id = ANY($1)", &[&nodes]).await?;
    Ok(n)
}

/// A node leaving on purpose: its claims are due again at once.
pub(super) async fn deregister<C: GenericClient>(c: &C, node: i64) -> Result<u64, Error> {
    release_nodes(c, &[node]).await
}

/// Reaps every node silent for longer than its lease (by the database's clock, so node
/// clocks do not matter); returns how many claims were given back.
pub(super) async fn reap<C: GenericClient>(c: &C) -> Result<u64, Error> {
    let dead: Vec<i64> = query(
        c,
        "SELECT id FROM hookbox_nodes
         WHERE heartbeat < clock_timestamp() - lease_ms * interval '1 millisecond'",
        &[],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    if !dead.is_empty() {
        tracing::warn!(nodes = ?dead, "reaping nodes whose lease ran out");
    }
    release_nodes(c, &dead).await
}

// ---- appends --------------------------------------------------------------------

/// Provider delivery ids of one batch, as bound to [`append`]: each (source, id) pair
/// once.
#[derive(Default)]
pub(super) struct NewKeys {
    pub(super) sources: Vec<String>,
    pub(super) delivery_ids: Vec<String>,
    /// The event each key would make.
    pub(super) event_ids: Vec<i64>,
    /// An entry seen at or before this time (ms) is expired and taken over.
    pub(super) live_after_ms: Vec<i64>,
}

/// The columns of the events of one batch, as bound to [`append`].
#[derive(Default)]
pub(super) struct NewEvents {
    pub(super) ids: Vec<i64>,
    pub(super) sources: Vec<String>,
    pub(super) received: Vec<i64>,
    pub(super) delivery_ids: Vec<Option<String>>,
    pub(super) types: Vec<Option<String>>,
    pub(super) body_lens: Vec<i32>,
    pub(super) records: Vec<Vec<u8>>,
    pub(super) order_keys: Vec<String>,
    /// Written only if its key's dedup entry names it after this batch.
    pub(super) deduped: Vec<bool>,
    /// The named destinations of the events, flattened: event id and target, one entry
    /// per delivery. An event without entries has one delivery, to the unnamed
    /// destination `''`, so the common case binds nothing here.
    pub(super) target_ids: Vec<i64>,
    pub(super) targets: Vec<String>,
}

/// Writes a batch in one statement (its own transaction): the dedup entries of `keys`,
/// then each event of `events` that is not deduplicated or whose key's entry names it,
/// with its original deliveries (one per destination), due at once; an ordered
/// delivery behind an unfinished one of its key (journaled before, or earlier in the
/// batch) is parked. Returns the event each key's entry names:
/// the proposed one when it was free or expired, else the event already journaled.
///
/// The unique key makes concurrent posts of one delivery, on any nodes, wait for each
/// other: exactly one writes. Keys are taken in one order on every node, so that two
/// batches waiting on each other's keys cannot deadlock.
pub(super) async fn append<C: GenericClient>(
    c: &C,
    keys: &NewKeys,
    events: &NewEvents,
    now_ms: i64,
) -> Result<HashMap<(String, String), i64>, Error> {
    let rows = query(
        c,
        "WITH x AS (
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
             AS x(source, delivery_id, event_id, live_after)),
         k AS (
           INSERT INTO hookbox_dedup AS d (source, delivery_id, event_id, seen_ms)
           SELECT source, delivery_id, event_id, $5 FROM x ORDER BY source, delivery_id
           ON CONFLICT (source, delivery_id) DO UPDATE
             SET event_id = CASE WHEN d.seen_ms < (
                     SELECT x.live_after FROM x
                     WHERE x.source = EXCLUDED.source AND x.delivery_id = EXCLUDED.delivery_id)
                   THEN EXCLUDED.event_id ELSE d.event_id END,
                 seen_ms = CASE WHEN d.seen_ms < (
                     SELECT x.live_after FROM x
                     WHERE x.source = EXCLUDED.source AND x.delivery_id = EXCLUDED.delivery_id)
                   THEN EXCLUDED.seen_ms ELSE d.seen_ms END
           RETURNING d.source, d.delivery_id, d.event_id),
         ev AS (
           INSERT INTO hookbox_events
             (id, source, received_ms, delivery_id, event_type, body_len, record)
           SELECT id, source, received_ms, delivery_id, event_type, body_len, record
           FROM unnest($6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::text[],
                       $11::int[], $12::bytea[], $14::bool[])
             AS y(id, source, received_ms, delivery_id, event_type, body_len, record, deduped)
           WHERE NOT deduped OR id IN (SELECT event_id FROM k)),
         n AS (
           SELECT y.id, COALESCE(t.target, '') AS target, y.source, y.received_ms, y.order_key,
             row_number() OVER (PARTITION BY y.source, COALESCE(t.target, ''), y.order_key
                                ORDER BY y.id) AS nth
           FROM unnest($6::bigint[], $7::text[], $8::bigint[], $13::text[], $14::bool[])
             AS y(id, source, received_ms, order_key, deduped)
           LEFT JOIN unnest($15::bigint[], $16::text[]) AS t(event_id, target)
             ON t.event_id = y.id
           WHERE NOT y.deduped OR y.id IN (SELECT event_id FROM k)),
         dl AS (
           INSERT INTO hookbox_deliveries (event_id, target, source, due_ms, order_key, parked)
           SELECT n.id, n.target, n.source, n.received_ms, n.order_key,
             n.order_key <> '' AND (n.nth > 1 OR EXISTS (
               SELECT 1 FROM hookbox_deliveries h
               WHERE h.source = n.source AND h.target = n.target
                 AND h.order_key = n.order_key AND h.order_key <> '' AND h.replay = 0
                 AND h.state <> 2 AND h.event_id < n.id))
           FROM n)
         SELECT source, delivery_id, event_id FROM k",
        &[
            &keys.sources,
            &keys.delivery_ids,
            &keys.event_ids,
            &keys.live_after_ms,
            &now_ms,
            &events.ids,
            &events.sources,
            &events.received,
            &events.delivery_ids,
            &events.types,
            &events.body_lens,
            &events.records,
            &events.order_keys,
            &events.deduped,
            &events.target_ids,
            &events.targets,
        ],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

/// Makes sources known (for `sources()` and the delivery runtime).
pub(super) async fn add_sources<C: GenericClient>(c: &C, names: &[String]) -> Result<(), Error> {
    execute(
        c,
        "INSERT INTO hookbox_sources (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        &[&names],
    )
    .await
    .map(drop)
}

/// Announces a commit to every node (delivered when the transaction commits).
pub(super) async fn notify<C: GenericClient>(c: &C, max_id: i64) -> Result<(), Error> {
    let payload = max_id.to_string();
    execute(c, "SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map(drop)
}

// ---- claims and outcomes --------------------------------------------------------

/// Claims up to `limit` due deliveries of `source` for `node`: rows locked by another
/// claimer are skipped, and of a key only its oldest unfinished event is eligible (per
/// destination: one head per source, target and key). Each
/// row carries the event's record too (NULL if it is gone), so that a delivery needs no
/// read of its own.
///
/// Parked deliveries (waiting behind an unfinished one of their key) are not in the
/// due index, so a claim never looks at them; the head check is for the few a race
/// left unparked. It spells out `order_key <> ''` so that it is one probe of the
/// partial order index (without it, `h.order_key = d.order_key` does not prove the
/// index's predicate and the check scans every earlier delivery). Measured, one claim
/// of a source with 20,000 deliveries waiting behind a dead head: 104 s before both,
/// 0.4 s with the probe, 0.6 ms with parking. The claim's plan is pinned by
/// [`CLAIM_BEGIN`].
///
/// The claim commits without waiting for its WAL flush ([`unsynced`]), so a crash of the
/// database may forget it; `token` is therefore fresh from the node (never reused by
/// it), not the row's previous token plus one, which a forgotten claim would hand out
/// twice.
pub(super) async fn claim<C: GenericClient>(
    c: &C,
    source: &str,
    now_ms: i64,
    limit: i64,
    node: i64,
    token: i64,
) -> Result<Vec<Row>, Error> {
    unsynced_with(
        c,
        CLAIM_BEGIN,
        "WITH c AS (
           SELECT d.event_id, d.target, d.replay FROM hookbox_deliveries d
           WHERE d.source = $1 AND d.state < 2 AND NOT d.parked AND d.owner IS NULL
             AND d.due_ms <= $2
             AND (d.order_key = '' OR d.replay <> 0 OR NOT EXISTS (
               SELECT 1 FROM hookbox_deliveries h
               WHERE h.source = d.source AND h.target = d.target
                 AND h.order_key = d.order_key AND h.order_key <> '' AND h.replay = 0
                 AND h.state <> 2 AND h.event_id < d.event_id))
           ORDER BY d.due_ms, d.event_id
           LIMIT $3
           FOR UPDATE OF d SKIP LOCKED)
         UPDATE hookbox_deliveries d SET owner = $4, token = $5
         FROM c WHERE d.event_id = c.event_id AND d.target = c.target AND d.replay = c.replay
         RETURNING d.event_id, d.replay, d.attempt, d.due_ms, d.order_key, d.token,
           (SELECT e.record FROM hookbox_events e WHERE e.id = d.event_id), d.target",
        &[&source, &now_ms, &limit, &node, &token],
    )
    .await
}

/// The transaction settings of a claim (and of [`unpark`], which has the same shape:
/// walk an index in order, update by primary key). The one good plan for a claim walks
/// the due index in order and stops after `limit` rows, then updates them through the
/// primary key.
/// Left to itself, the planner's generic plan (for any `limit`) was measured to hash
/// the whole partition for the update (95 ms instead of 1 ms at 290,000 rows), and
/// other forms to bitmap-scan and sort every due row; no index makes a sort, hash or
/// merge join or bitmap scan necessary here, so they are off, and so is JIT (compiling
/// a claim costs more than running it).
const CLAIM_BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit = off; \
    SET LOCAL enable_sort = off; SET LOCAL enable_hashjoin = off; \
    SET LOCAL enable_mergejoin = off; SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off";

/// Un-parks each key's first parked delivery when nothing before it is unfinished:
/// what a settle did not un-park because it raced with the append that parked it (the
/// append saw the earlier delivery unfinished, the settle did not yet see the parked
/// one). Returns how many. A key of `n` parked deliveries costs one look at its first;
/// finding the first of each key reads the parked index once.
pub(super) async fn unpark<C: GenericClient>(c: &C) -> Result<u64, Error> {
    let rows = unsynced_with(
        c,
        CLAIM_BEGIN,
        "WITH f AS (
           SELECT DISTINCT ON (source, target, order_key)
             event_id, target, replay, source, order_key
           FROM hookbox_deliveries WHERE parked AND state < 2
           ORDER BY source, target, order_key, event_id),
         un AS (
           UPDATE hookbox_deliveries p SET parked = false
           FROM f
           WHERE p.event_id = f.event_id AND p.target = f.target AND p.replay = f.replay
             AND p.parked AND NOT EXISTS (
               SELECT 1 FROM hookbox_deliveries h
               WHERE h.source = f.source AND h.target = f.target
                 AND h.order_key = f.order_key AND h.order_key <> '' AND h.replay = 0
                 AND h.state <> 2 AND h.event_id < f.event_id)
           RETURNING 1)
         SELECT count(*) FROM un",
        &[],
    )
    .await?;
    Ok(rows[0].get::<_, i64>(0) as u64)
}

/// When the next delivery of `source` not yet due is due.
pub(super) async fn next_due<C: GenericClient>(
    c: &C,
    source: &str,
    after_ms: i64,
) -> Result<Option<i64>, Error> {
    let rows = query(
        c,
        "SELECT min(due_ms) FROM hookbox_deliveries
         WHERE source = $1 AND state < 2 AND NOT parked AND owner IS NULL AND due_ms > $2",
        &[&source, &after_ms],
    )
    .await?;
    Ok(rows[0].get(0))
}

/// The settled attempts of one batch, as bound to [`settle`]: one entry per claim, in
/// columns.
#[derive(Default)]
pub(super) struct Settles {
    pub(super) event_ids: Vec<i64>,
    pub(super) targets: Vec<String>,
    pub(super) replays: Vec<i64>,
    pub(super) tokens: Vec<i64>,
    pub(super) states: Vec<i16>,
    pub(super) due_ms: Vec<i64>,
    pub(super) next_attempts: Vec<i32>,
    pub(super) errors: Vec<Option<String>>,
    pub(super) dead_ms: Vec<Option<i64>>,
    pub(super) attempts: Vec<Vec<u8>>,
    /// For replays: (done, failed) to add to its counters.
    pub(super) replay_done: Vec<i64>,
    pub(super) replay_failed: Vec<i64>,
}

/// Records a batch of attempts in one statement, each only if `node` still holds its
/// claim with its token, without waiting for the WAL flush ([`unsynced`]), and un-parks
/// the next delivery of each key whose delivery is now done. Returns the (event,
/// target, replay) triples that were held.
pub(super) async fn settle<C: GenericClient>(
    c: &C,
    node: i64,
    s: &Settles,
) -> Result<Vec<(i64, String, i64)>, Error> {
    let rows = unsynced(
        c,
        "WITH x AS (
           SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::smallint[],
                                $5::bigint[], $6::int[], $7::text[], $8::bigint[], $9::bytea[],
                                $10::bigint[], $11::bigint[], $13::text[])
             AS x(event_id, replay, token, state, due_ms, attempt, error, dead_ms, record,
                  done, failed, target)),
         u AS (
           UPDATE hookbox_deliveries d SET owner = NULL, state = x.state, due_ms = x.due_ms,
             attempt = x.attempt, attempts = d.attempts + 1, parked = false,
             last_error = COALESCE(x.error, d.last_error), dead_ms = x.dead_ms
           FROM x
           WHERE d.event_id = x.event_id AND d.target = x.target AND d.replay = x.replay
             AND d.owner = $12 AND d.token = x.token
           RETURNING d.event_id, d.target, d.replay, d.source, d.order_key, d.state),
         nx AS (
           SELECT DISTINCT source, target, order_key FROM u
           WHERE state = 2 AND order_key <> '' AND replay = 0),
         un AS (
           UPDATE hookbox_deliveries p SET parked = false
           FROM nx CROSS JOIN LATERAL (
             SELECT q.event_id, q.target, q.replay FROM hookbox_deliveries q
             WHERE q.parked AND q.source = nx.source AND q.target = nx.target
               AND q.order_key = nx.order_key AND q.state < 2
             ORDER BY q.event_id LIMIT 1) f
           WHERE p.event_id = f.event_id AND p.target = f.target AND p.replay = f.replay
             AND p.parked),
         held AS (
           SELECT x.* FROM x JOIN u
             ON u.event_id = x.event_id AND u.target = x.target AND u.replay = x.replay),
         a AS (INSERT INTO hookbox_attempts (event_id, attempt)
               SELECT event_id, record FROM held),
         r AS (UPDATE hookbox_replays p SET done = p.done + t.done, failed = p.failed + t.failed
               FROM (SELECT replay, sum(done)::bigint AS done, sum(failed)::bigint AS failed
                     FROM held WHERE replay <> 0 GROUP BY replay) t
               WHERE p.id = t.replay AND (t.done + t.failed) > 0)
         SELECT event_id, target, replay FROM u",
        &[
            &s.event_ids,
            &s.replays,
            &s.tokens,
            &s.states,
            &s.due_ms,
            &s.next_attempts,
            &s.errors,
            &s.dead_ms,
            &s.attempts,
            &s.replay_done,
            &s.replay_failed,
            &node,
            &s.targets,
        ],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Gives claims back: (event, target, replay, token) entries still held by `node`.
pub(super) async fn abandon<C: GenericClient>(
    c: &C,
    node: i64,
    ids: &[i64],
    targets: &[String],
    replays: &[i64],
    tokens: &[i64],
) -> Result<u64, Error> {
    execute(
        c,
        "UPDATE hookbox_deliveries d SET owner = NULL
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $5::text[])
           AS x(event_id, replay, token, target)
         WHERE d.event_id = x.event_id AND d.target = x.target AND d.replay = x.replay
           AND d.owner = $4 AND d.token = x.token",
        &[&ids, &replays, &tokens, &node, &targets],
    )
    .await
}

/// Gives back every claim of `node` but those listed as (event, target, replay);
/// returns how many.
pub(super) async fn release_unheld<C: GenericClient>(
    c: &C,
    node: i64,
    ids: &[i64],
    targets: &[String],
    replays: &[i64],
) -> Result<u64, Error> {
    execute(
        c,
        "UPDATE hookbox_deliveries d SET owner = NULL
         WHERE d.state < 2 AND d.owner = $1 AND NOT EXISTS (
           SELECT 1 FROM unnest($2::bigint[], $3::bigint[], $4::text[])
             AS h(event_id, replay, target)
           WHERE h.event_id = d.event_id AND h.target = d.target AND h.replay = d.replay)",
        &[&node, &ids, &replays, &targets],
    )
    .await
}

/// Stores a step's result if the claim is still held (the first writer wins); false
/// when the claim is not held. `FOR SHARE` waits for a concurrent reaper or claimer and
/// re-checks, so a step is never stored under a claim already taken back.
#[allow(clippy::too_many_arguments)]
pub(super) async fn save_step<C: GenericClient>(
    c: &C,
    node: i64,
    (event_id, target, replay): (i64, &str, i64),
    token: i64,
    name: &str,
    value: &[u8],
) -> Result<bool, Error> {
    let rows = query(
        c,
        "WITH held AS (
           SELECT 1 FROM hookbox_deliveries
           WHERE event_id = $1 AND target = $7 AND replay = $2 AND owner = $3 AND token = $4
           FOR SHARE),
         ins AS (
           INSERT INTO hookbox_steps (event_id, name, value)
           SELECT $1, $5, $6 WHERE EXISTS (SELECT 1 FROM held)
           ON CONFLICT (event_id, name) DO NOTHING)
         SELECT count(*) FROM held",
        &[&event_id, &replay, &node, &token, &name, &value, &target],
    )
    .await?;
    Ok(rows[0].get::<_, i64>(0) == 1)
}

// ---- partitions -----------------------------------------------------------------

/// The tables partitioned by event id, each with one partition per day.
const PARTITIONED: [&str; 4] = [
    "hookbox_events",
    "hookbox_deliveries",
    "hookbox_attempts",
    "hookbox_steps",
];

const MS_PER_DAY: i64 = 86_400_000;

/// The event-id range of UTC day `day` (days since the Unix epoch).
pub(super) fn day_range(day: i64) -> (i64, i64) {
    ((day * MS_PER_DAY) << 16, ((day + 1) * MS_PER_DAY) << 16)
}

/// `YYYYMMDD` of UTC day `day`.
fn day_name(day: i64) -> String {
    let date = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(day);
    format!(
        "{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The day (since the epoch) event id `id` was received on.
pub(super) fn day_of(id: i64) -> i64 {
    (id >> 16).div_euclid(MS_PER_DAY)
}

/// Creates the daily partitions of `days` that do not exist yet. Each is created on its
/// own and attached (which does not block inserts into the other partitions), under a
/// lock so that nodes do not race, and with a lock timeout so that a long statement
/// elsewhere delays this maintenance, never ingest.
pub(super) async fn ensure_partitions(
    c: &mut deadpool_postgres::Object,
    days: std::ops::RangeInclusive<i64>,
) -> Result<u32, Error> {
    let mut created = 0;
    for day in days {
        let suffix = day_name(day);
        let exists = query(
            c,
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("hookbox_steps_d{suffix}")],
        )
        .await?;
        if exists[0].get::<_, bool>(0) {
            continue;
        }
        let (lo, hi) = day_range(day);
        let txn = c.transaction().await?;
        txn.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
        execute(
            &txn,
            "SELECT pg_advisory_xact_lock($1)",
            &[&(MIGRATION_LOCK + 2)],
        )
        .await?;
        let step = async {
            for table in PARTITIONED {
                let part = format!("{table}_d{suffix}");
                let there = query(&txn, "SELECT to_regclass($1) IS NOT NULL", &[&part]).await?;
                if there[0].get::<_, bool>(0) {
                    continue;
                }
                let with = if table == "hookbox_deliveries" {
                    format!(" WITH (fillfactor = {DELIVERIES_FILLFACTOR})")
                } else {
                    String::new()
                };
                txn.batch_execute(&format!(
                    "CREATE TABLE {part} (LIKE {table} INCLUDING DEFAULTS){with};
                     ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi});"
                ))
                .await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        match step {
            Ok(()) => {
                txn.commit().await?;
                created += 1;
            }
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(e);
            }
        }
    }
    Ok(created)
}

/// Drops the daily partitions wholly received before `cutoff` (an id bound) in which
/// every delivery is done: no pending, retrying or dead event and no replay waiting.
/// Returns how many events went with them.
///
/// Nothing here takes a lock that ingest, claims or reads wait for: the day's deliveries
/// are detached first (`CONCURRENTLY`), which also stops any redrive or replay from
/// adding to them; the check is made again on the detached table, and a day that
/// changed meanwhile is attached back and kept. Then the day's events, attempts and
/// steps are detached and all four dropped.
pub(super) async fn drop_done_days(c: &tokio_postgres::Client, cutoff: i64) -> Result<u64, Error> {
    let rows = c
        .query(
            "SELECT c.relname, i.inhdetachpending FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = ANY($1) AND starts_with(c.relname::text, p.relname::text || '_d')",
            &[&&PARTITIONED[..]],
        )
        .await?;
    // A detach interrupted by a crash is finished first.
    for row in &rows {
        if row.get::<_, bool>(1) {
            let part: String = row.get(0);
            let table = PARTITIONED
                .iter()
                .find(|t| part.starts_with(&format!("{t}_d")))
                .expect("listed by parent");
            c.batch_execute(&format!(
                "ALTER TABLE {table} DETACH PARTITION {part} FINALIZE"
            ))
            .await?;
        }
    }
    let mut days: Vec<(i64, String)> = rows
        .iter()
        .filter_map(|r| {
            let part: String = r.get(0);
            let suffix = part.strip_prefix("hookbox_events_d")?.to_owned();
            Some((parse_day(&suffix)?, suffix))
        })
        .collect();
    days.sort();
    let mut dropped = 0u64;
    for (day, suffix) in days {
        let (lo, hi) = day_range(day);
        if hi > cutoff {
            break;
        }
        let busy = format!("SELECT 1 FROM hookbox_deliveries_d{suffix} WHERE state <> 2 LIMIT 1");
        if !c.query(&busy, &[]).await?.is_empty() {
            continue;
        }
        c.batch_execute(&format!(
            "ALTER TABLE hookbox_deliveries DETACH PARTITION hookbox_deliveries_d{suffix} CONCURRENTLY"
        ))
        .await?;
        if !c.query(&busy, &[]).await?.is_empty() {
            c.batch_execute(&format!(
                "ALTER TABLE hookbox_deliveries ATTACH PARTITION hookbox_deliveries_d{suffix}
                 FOR VALUES FROM ({lo}) TO ({hi})"
            ))
            .await?;
            continue;
        }
        let n: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM hookbox_events_d{suffix}"),
                &[],
            )
            .await?
            .get(0);
        for table in &PARTITIONED[..] {
            if *table != "hookbox_deliveries" {
                c.batch_execute(&format!(
                    "ALTER TABLE {table} DETACH PARTITION {table}_d{suffix} CONCURRENTLY"
                ))
                .await?;
            }
        }
        c.execute(
            "DELETE FROM hookbox_dedup WHERE event_id >= $1 AND event_id < $2",
            &[&lo, &hi],
        )
        .await?;
        for table in PARTITIONED {
            c.batch_execute(&format!("DROP TABLE {table}_d{suffix}"))
                .await?;
        }
        tracing::info!(
            day = suffix,
            events = n,
            "retention dropped a day of done events"
        );
        dropped += n as u64;
    }
    Ok(dropped)
}

fn parse_day(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]");
    let date = time::Date::parse(s, fmt).ok()?;
    Some((date - time::Date::from_calendar_date(1970, time::Month::January, 1).ok()?).whole_days())
}

// ---- reads ----------------------------------------------------------------------

/// The columns of a listing, in the order the journal's `query` reads them into an
/// [`EventSummary`](crate::EventSummary); the state and
/// attempts are those of [`EVENT_STATE`] (alias `a`).
const SUMMARY: &str = "e.id, e.source, e.delivery_id, e.event_type, e.received_ms, e.body_len,
                       a.state, a.attempts";

/// An event's state over its original deliveries, as `EventState::aggregate` makes it:
/// the worst (dead, then retrying, then pending, then done), attempts summed. A lateral
/// subquery of `e`; no row for an event without deliveries.
const EVENT_STATE: &str = "LATERAL (
    SELECT ('{2,0,1,3}'::smallint[])[max(CASE d.state WHEN 2 THEN 1 WHEN 0 THEN 2
                                                     WHEN 1 THEN 3 ELSE 4 END)] AS state,
           sum(d.attempts)::int AS attempts
    FROM hookbox_deliveries d WHERE d.event_id = e.id AND d.replay = 0
    HAVING count(*) > 0) a";

/// Events of a window, newest first; `limit + 1` rows to tell whether a next page exists.
/// With `with_record`, each row ends with the event's record (for a filter on bodies).
#[allow(clippy::too_many_arguments)]
pub(super) async fn list<C: GenericClient>(
    c: &C,
    (lo, hi): (i64, i64),
    (since_ms, until_ms): (i64, i64),
    source: Option<&str>,
    exact_type: Option<&str>,
    type_prefix: Option<&str>,
    state: Option<i16>,
    limit: i64,
    with_record: bool,
) -> Result<Vec<Row>, Error> {
    let record = if with_record { ", e.record" } else { "" };
    let sql = format!(
        "SELECT {SUMMARY}{record} FROM hookbox_events e
         CROSS JOIN {EVENT_STATE}
         WHERE e.id >= $1 AND e.id < $2
           AND ($3::text IS NULL OR e.source = $3)
           AND ($4::text IS NULL OR e.event_type = $4)
           AND ($5::text IS NULL OR starts_with(e.event_type, $5))
           AND ($6::smallint IS NULL OR a.state = $6)
           AND e.received_ms >= $8 AND e.received_ms < $9
         ORDER BY e.id DESC LIMIT $7"
    );
    query(
        c,
        &sql,
        &[
            &lo,
            &hi,
            &source,
            &exact_type,
            &type_prefix,
            &state,
            &limit,
            &since_ms,
            &until_ms,
        ],
    )
    .await
}

/// One event's record.
pub(super) async fn record<C: GenericClient>(c: &C, id: i64) -> Result<Option<Vec<u8>>, Error> {
    let rows = query(c, "SELECT record FROM hookbox_events WHERE id = $1", &[&id]).await?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// How many events there are.
pub(super) async fn count<C: GenericClient>(c: &C) -> Result<i64, Error> {
    Ok(query(c, "SELECT count(*) FROM hookbox_events", &[]).await?[0].get(0))
}

/// The event of a provider delivery id.
pub(super) async fn lookup<C: GenericClient>(
    c: &C,
    source: &str,
    delivery_id: &str,
) -> Result<Option<i64>, Error> {
    let rows = query(
        c,
        "SELECT event_id FROM hookbox_dedup WHERE source = $1 AND delivery_id = $2",
        &[&source, &delivery_id],
    )
    .await?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// An event's original deliveries, by target (bytewise, as redb orders them): state,
/// attempts, due, last error, redrives, dead ms, order key, target, and for a pending
/// one of an ordering key the key's head when it is an earlier event (through the
/// order index).
pub(super) async fn deliveries<C: GenericClient>(c: &C, id: i64) -> Result<Vec<Row>, Error> {
    query(
        c,
        "SELECT state, attempts, due_ms, last_error, redrives, dead_ms, order_key, target,
                CASE WHEN d.state = 0 AND d.order_key <> '' THEN
                    (SELECT min(h.event_id) FROM hookbox_deliveries h
                     WHERE h.source = d.source AND h.target = d.target
                       AND h.order_key = d.order_key AND h.order_key <> ''
                       AND h.replay = 0 AND h.state <> 2 AND h.event_id < d.event_id)
                END
         FROM hookbox_deliveries d WHERE event_id = $1 AND replay = 0
         ORDER BY target COLLATE \"C\"",
        &[&id],
    )
    .await
}

/// An event's attempts, oldest first.
pub(super) async fn attempts<C: GenericClient>(c: &C, id: i64) -> Result<Vec<Vec<u8>>, Error> {
    let rows = query(
        c,
        "SELECT attempt FROM hookbox_attempts WHERE event_id = $1 ORDER BY seq",
        &[&id],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A step's stored result.
pub(super) async fn step<C: GenericClient>(
    c: &C,
    id: i64,
    name: &str,
) -> Result<Option<Vec<u8>>, Error> {
    let rows = query(
        c,
        "SELECT value FROM hookbox_steps WHERE event_id = $1 AND name = $2",
        &[&id, &name],
    )
    .await?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// Dead original deliveries as (event, source, target): oldest event first across
/// sources, then by target (bytewise), as redb lists them.
pub(super) async fn dead<C: GenericClient>(
    c: &C,
    source: Option<&str>,
    limit: i64,
) -> Result<Vec<(i64, String, String)>, Error> {
    let rows = query(c, DEAD, &[&source, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The dead list's query: `$1` a source or `NULL`, `$2` the limit.
const DEAD: &str = "SELECT event_id, source, target FROM hookbox_deliveries
     WHERE state = 3 AND replay = 0 AND ($1::text IS NULL OR source = $1)
     ORDER BY event_id, target COLLATE \"C\" LIMIT $2";

/// How many original deliveries are dead.
pub(super) async fn dead_count<C: GenericClient>(c: &C) -> Result<i64, Error> {
    Ok(query(
        c,
        "SELECT count(*) FROM hookbox_deliveries WHERE state = 3 AND replay = 0",
        &[],
    )
    .await?[0]
        .get(0))
}

/// A replay's row: matched, done, failed, destination, created ms.
pub(super) async fn replay_status<C: GenericClient>(c: &C, id: i64) -> Result<Option<Row>, Error> {
    let rows = query(
        c,
        "SELECT id, matched, done, failed, destination, created_ms FROM hookbox_replays WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(rows.into_iter().next())
}

/// Every known source with its backlog (original deliveries pending or retrying).
pub(super) async fn backlogs<C: GenericClient>(c: &C) -> Result<Vec<(String, i64)>, Error> {
    let rows = query(
        c,
        "SELECT s.name, (SELECT count(*) FROM hookbox_deliveries d
                         WHERE d.source = s.name AND d.state < 2 AND d.replay = 0)
         FROM hookbox_sources s",
        &[],
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

// ---- operator writes ------------------------------------------------------------

/// Moves matching dead original deliveries (of `target` only, when given) back to
/// pending, due `now_ms`, with a fresh round of attempts; returns how many.
#[allow(clippy::too_many_arguments)]
pub(super) async fn redrive<C: GenericClient>(
    c: &C,
    ids: Option<&[i64]>,
    source: Option<&str>,
    target: Option<&str>,
    exact_type: Option<&str>,
    type_prefix: Option<&str>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    max_redrives: Option<i32>,
    now_ms: i64,
) -> Result<u64, Error> {
    execute(
        c,
        "UPDATE hookbox_deliveries d
         SET state = 0, redrives = d.redrives + 1, dead_ms = NULL, due_ms = $8, attempt = 1,
             owner = NULL
         FROM hookbox_events e
         WHERE e.id = d.event_id AND d.state = 3 AND d.replay = 0
           AND ($9::text IS NULL OR d.target = $9)
           AND ($1::bigint[] IS NULL OR d.event_id = ANY($1))
           AND ($2::text IS NULL OR d.source = $2)
           AND ($3::text IS NULL OR e.event_type = $3)
           AND ($4::text IS NULL OR starts_with(e.event_type, $4))
           AND ($5::bigint IS NULL OR d.dead_ms >= $5)
           AND ($6::bigint IS NULL OR d.dead_ms < $6)
           AND ($7::int IS NULL OR d.redrives < $7)",
        &[
            &ids,
            &source,
            &exact_type,
            &type_prefix,
            &since_ms,
            &until_ms,
            &max_redrives,
            &now_ms,
            &target,
        ],
    )
    .await
}

/// The filter of a replay, bound to [`replay_count`] and [`replay_insert`].
pub(super) struct ReplaySelect<'a> {
    /// The ids to scan.
    pub(super) lo: i64,
    pub(super) hi: i64,
    /// The receive times that match.
    pub(super) since_ms: i64,
    pub(super) until_ms: i64,
    pub(super) source: Option<&'a str>,
    pub(super) sources: Option<&'a [String]>,
    pub(super) exact_type: Option<&'a str>,
    pub(super) type_prefix: Option<&'a str>,
    /// Only these events (those a filter applied in Rust took), when set.
    pub(super) ids: Option<&'a [i64]>,
    /// One delivery to this destination per matched event; without, one per original
    /// delivery (destination) of each.
    pub(super) destination: Option<&'a str>,
}

impl ReplaySelect<'_> {
    /// The parameters `$1` to `$8` of [`REPLAY_WHERE`], then `rest` from `$9` on.
    fn params<'p>(&'p self, rest: &[&'p (dyn ToSql + Sync)]) -> Vec<&'p (dyn ToSql + Sync)> {
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![
            &self.lo,
            &self.hi,
            &self.source,
            &self.sources,
            &self.exact_type,
            &self.type_prefix,
            &self.since_ms,
            &self.until_ms,
        ];
        p.extend_from_slice(rest);
        p
    }

    /// The join a replay's deliveries come from: one per event with a destination,
    /// one per original delivery without.
    fn originals(&self) -> &'static str {
        if self.destination.is_some() {
            ""
        } else {
            REPLAY_ORIGINALS
        }
    }
}

const REPLAY_WHERE: &str = "e.id >= $1 AND e.id < $2
    AND e.received_ms >= $7 AND e.received_ms < $8
    AND ($3::text IS NULL OR e.source = $3)
    AND ($4::text[] IS NULL OR e.source = ANY($4))
    AND ($5::text IS NULL OR e.event_type = $5)
    AND ($6::text IS NULL OR starts_with(e.event_type, $6))";

/// Up to `limit` events a replay's window selects with ids after `after`, oldest
/// first: (id, event type), and the record when `with_record`, for a filter applied
/// in Rust. Pages follow by the last id.
pub(super) async fn replay_candidates<C: GenericClient>(
    c: &C,
    f: &ReplaySelect<'_>,
    after: i64,
    limit: i64,
    with_record: bool,
) -> Result<Vec<Row>, Error> {
    let record = if with_record { ", e.record" } else { "" };
    let sql = format!(
        "SELECT e.id, e.event_type{record} FROM hookbox_events e
         WHERE {REPLAY_WHERE} AND e.id > $9 ORDER BY e.id LIMIT $10"
    );
    query(c, &sql, &f.params(&[&after, &limit])).await
}

/// The original deliveries of the matched events, for a replay to every destination
/// (the id bounds repeated so that only the window's partitions are looked at).
const REPLAY_ORIGINALS: &str = "JOIN hookbox_deliveries d
    ON d.event_id = e.id AND d.replay = 0 AND d.event_id >= $1 AND d.event_id < $2";

/// How many deliveries a replay queues.
pub(super) async fn replay_count<C: GenericClient>(
    c: &C,
    f: &ReplaySelect<'_>,
) -> Result<i64, Error> {
    let sql = format!(
        "SELECT count(*) FROM hookbox_events e {} WHERE {REPLAY_WHERE}
           AND ($9::bigint[] IS NULL OR e.id = ANY($9))",
        f.originals()
    );
    Ok(query(c, &sql, &f.params(&[&f.ids])).await?[0].get(0))
}

/// Creates a replay and its deliveries, due `now_ms`; returns (id, matched: the
/// deliveries queued).
pub(super) async fn replay_insert<C: GenericClient>(
    c: &C,
    f: &ReplaySelect<'_>,
    now_ms: i64,
) -> Result<(i64, i64), Error> {
    let id: i64 = query(
        c,
        "INSERT INTO hookbox_replays (destination, created_ms) VALUES ($1, $2) RETURNING id",
        &[&f.destination, &now_ms],
    )
    .await?[0]
        .get(0);
    // Replays are not ordered by key: they re-deliver history as it was. The replay id
    // is new, so no row of it exists yet.
    // With a destination, `$12` names it; without, each original's target is kept.
    let target = if f.destination.is_some() {
        "$12::text"
    } else {
        "d.target"
    };
    let sql = format!(
        "INSERT INTO hookbox_deliveries (event_id, target, replay, source, due_ms)
         SELECT e.id, {target}, $9, e.source, $10 FROM hookbox_events e {}
         WHERE {REPLAY_WHERE} AND ($11::bigint[] IS NULL OR e.id = ANY($11))",
        f.originals()
    );
    let mut rest: Vec<&(dyn ToSql + Sync)> = vec![&id, &now_ms, &f.ids];
    if let Some(destination) = &f.destination {
        rest.push(destination);
    }
    let matched = execute(c, &sql, &f.params(&rest)).await? as i64;
    execute(
        c,
        "UPDATE hookbox_replays SET matched = $2 WHERE id = $1",
        &[&id, &matched],
    )
    .await?;
    Ok((id, matched))
}

/// Retention: removes up to `limit` done events (every original delivery, one per
/// destination, done) received before `cutoff` (an id bound) with everything about
/// them; keeps any with a delivery still waiting (a replay's). Rows another
/// purge holds are skipped, so purges on several nodes never wait for each other.
pub(super) async fn purge<C: GenericClient>(c: &C, cutoff: i64, limit: i64) -> Result<u64, Error> {
    let rows = query(
        c,
        "WITH picked AS (
           SELECT e.id, e.source, e.delivery_id FROM hookbox_events e
           WHERE e.id < $1
             AND EXISTS (SELECT 1 FROM hookbox_deliveries d
                         WHERE d.event_id = e.id AND d.replay = 0)
             AND NOT EXISTS (SELECT 1 FROM hookbox_deliveries w
                             WHERE w.event_id = e.id AND w.state <> 2
                               AND (w.replay = 0 OR w.state < 2))
           ORDER BY e.id LIMIT $2
           FOR UPDATE OF e SKIP LOCKED),
         d1 AS (DELETE FROM hookbox_deliveries WHERE event_id IN (SELECT id FROM picked)),
         d2 AS (DELETE FROM hookbox_attempts WHERE event_id IN (SELECT id FROM picked)),
         d3 AS (DELETE FROM hookbox_steps WHERE event_id IN (SELECT id FROM picked)),
         d4 AS (DELETE FROM hookbox_dedup x USING picked p
                WHERE x.source = p.source AND x.delivery_id = p.delivery_id AND x.event_id = p.id),
         d5 AS (DELETE FROM hookbox_events WHERE id IN (SELECT id FROM picked) RETURNING 1)
         SELECT count(*) FROM d5",
        &[&cutoff, &limit],
    )
    .await?;
    Ok(rows[0].get::<_, i64>(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of this test's own on the server `HOOKBOX_TEST_DATABASE_URL` names
    /// (default: the local one): a connection to it, the admin connection and its name,
    /// to drop it; `None` when no server answers and none is required.
    async fn own_database(
        test: &str,
    ) -> Option<(deadpool_postgres::Object, tokio_postgres::Client, String)> {
        let admin_url = std::env::var("HOOKBOX_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let connect = |url: String| async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, Error>(client)
        };
        let admin = match connect(admin_url.clone()).await {
            Ok(c) => c,
            Err(e) if std::env::var_os("HOOKBOX_REQUIRE_POSTGRES").is_some() => {
                panic!("{test}: PostgreSQL is required (HOOKBOX_REQUIRE_POSTGRES) but {admin_url} is unreachable: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: no PostgreSQL at {admin_url} ({e})");
                return None;
            }
        };
        let name = format!("hookbox_unit_{test}_{}", std::process::id());
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create the test database");
        }
        let base = admin_url.split('?').next().unwrap_or(&admin_url);
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let config: tokio_postgres::Config = format!("{base}/{name}").parse().unwrap();
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(1)
            .build()
            .unwrap();
        Some((pool.get().await.unwrap(), admin, name))
    }

    /// The dead list's first page reads an index in the list's order and stops at its
    /// limit, among 200,000 deliveries of which 1 in 1,000 is dead: no sort, and not
    /// the primary key through every delivery. With a source given, it reads that
    /// source's dead deliveries alone.
    #[tokio::test]
    async fn the_dead_list_reads_its_own_index() {
        let Some((c, admin, name)) = own_database("dead_list").await else {
            return;
        };
        assert_eq!(migrate(&c).await.unwrap(), Ok(0));
        c.batch_execute(
            "CREATE TABLE hookbox_deliveries_t1 PARTITION OF hookbox_deliveries
                 FOR VALUES FROM (0) TO (100000);
             CREATE TABLE hookbox_deliveries_t2 PARTITION OF hookbox_deliveries
                 FOR VALUES FROM (100000) TO (200001);
             INSERT INTO hookbox_deliveries (event_id, target, source, state, due_ms)
                 SELECT i, 'd' || (i % 3), 's' || (i % 7),
                        CASE WHEN i % 1000 = 0 THEN 3 ELSE 2 END, 0
                 FROM generate_series(1, 200000) AS i;
             ANALYZE hookbox_deliveries;",
        )
        .await
        .unwrap();
        let page = dead(&c, None, 50).await.unwrap();
        let ids: Vec<i64> = page.iter().map(|d| d.0).collect();
        assert_eq!(ids, (1..=50).map(|i| i * 1000).collect::<Vec<_>>());
        c.batch_execute(&format!("PREPARE dead_page(text, bigint) AS {DEAD}"))
            .await
            .unwrap();
        // Across sources, the new index in order; for one source, that source's dead
        // rows from the index on them (sorting those few is the planner's choice).
        for (arg, index) in [("NULL", "event_id_target"), ("'s3'", "source_event_id")] {
            let plan: Vec<String> = c
                .query(&format!("EXPLAIN EXECUTE dead_page({arg}, 50)"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let plan = plan.join("\n");
            assert!(!plan.contains("_pkey"), "source {arg}:\n{plan}");
            assert!(plan.contains(index), "source {arg}:\n{plan}");
            if arg == "NULL" {
                assert!(!plan.contains("Sort"), "{plan}");
            }
        }
        drop(c);
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}
