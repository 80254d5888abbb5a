//! [`PostgresJournal`]: several hookbox nodes on one PostgreSQL database.
//!
//! Every node ingests and delivers; the database is the only shared state.
//!
//! - **Appends** queue for a few writer tasks per node; each writer takes whatever is
//!   queued as one batch and writes it, dedup entries, events and deliveries, in one
//!   statement that is its own transaction (one round trip), and answers every append
//!   in it only once that commit has returned (`synchronous_commit` on). Writers run
//!   concurrently, so one batch commits while the next forms. A commit whose outcome
//!   is unknown (the connection broke) answers an error, never success: the provider
//!   retries and deduplication absorbs the retry if the commit did land.
//! - **Deliveries** are one row per event and destination (`target`, `''` for the
//!   unnamed one), each with its own attempts, retries, dead state and per-key order;
//!   the append statement writes them all, from the destination lists flattened into
//!   two arrays (none bound for events with only the unnamed destination).
//! - **Per-key order**: a claim takes only the oldest unfinished delivery of a key (per
//!   destination). A delivery appended behind an unfinished one of its key is *parked*,
//!   out of the due index, so claims never look at it; the settle that finishes its
//!   predecessor un-parks it, and a sweep each second un-parks what a race between the
//!   two left parked. A key stuck behind a dead delivery therefore costs claims nothing.
//! - **Event ids** stay `received ms << 16 | n`; on PostgreSQL the low 16 bits are the
//!   node's slot (6 bits, unique among live nodes) and a per-millisecond counter
//!   (10 bits), so nodes never allocate the same id.
//! - **Claims**: `FOR UPDATE SKIP LOCKED` picks due deliveries and marks them with the
//!   node and a fresh fencing token in one statement, which also returns each event's
//!   record, so a delivery needs no read of its own; no transaction stays open while a
//!   delivery runs. Settles, steps and abandons present the token and match nothing once
//!   the claim was taken back. Claims and outcomes are batched into one statement each
//!   and commit without waiting for their WAL flush: a crash of the database may forget
//!   one, and that delivery then happens again.
//! - **Leases**: each node heartbeats every third of `lease`; any node reaps the claims
//!   of a node silent for longer than its lease (by the database's clock). A node that
//!   finds itself reaped registers again; its old claims are void.
//! - **Wake-ups**: each append batch and each redrive or replay `NOTIFY`s the other
//!   nodes; the delivery runtime also polls, for proxies that do not pass `NOTIFY`.
//! - **Counters** for the shed layer (backlogs, health): health is probed once a second;
//!   backlogs are counted once a second too, less often when large (up to every 10 s
//!   at 200,000 pending), and kept current between counts by the node's own appends
//!   and outcomes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::record::{self, duration_ms, millis};
use super::state::{
    Attempt, Claim, DeadDelivery, DestinationState, EventState, Next, Prefetched, RedriveFilter,
    ReplayFilter, ReplayStatus,
};
use super::{
    AppendFuture, AppendOptions, Appended, EventId, EventSummary, Journal, JournalError,
    JournalFuture, Load, OpenError, Page, Query, State, StoredEvent, Window, MAX_FILTER_SCAN,
};
use crate::{Event, Verified};

mod sql;
mod tls;

/// How the connection to PostgreSQL is encrypted (`sslmode` in the URL, as in libpq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate (the default).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is checked only against `sslrootcert`.
    Require,
    /// TLS, with the certificate chain checked against `sslrootcert` or the system roots.
    VerifyCa,
    /// TLS, with the chain and the host name checked.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                "sslmode `{other}`: expected disable, prefer, require, verify-ca or verify-full"
            ))
            }
        })
    }
}

/// How many days of partitions exist ahead of today.
const PARTITIONS_AHEAD: i64 = 3;

/// True when `target` names a PostgreSQL database rather than a file.
pub(crate) fn is_url(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// Builds a [`PostgresJournal`].
///
/// ## Defaults
/// - `node`: the host name and process id (`web-1-4242`); names must be unique among
///   live nodes.
/// - `lease`: 30 s. A node silent for longer is reaped and its deliveries are due again
///   within `lease` plus a third of the reaper's own lease.
/// - `writers`: 2 append transactions in flight per node (on a database that flushes
///   its WAL on the same disk, more writers mean smaller batches whose commits wait on
///   each other's flushes: measured, 4 writers gave 25 % less throughput than 2 and
///   twice the p99); `max_batch`: 1024 appends
///   per transaction; `queue_capacity`: 8192 appends waiting (beyond: `Overloaded`).
/// - `pool_size`: 16 connections.
pub struct PostgresJournalBuilder {
    url: String,
    node: Option<String>,
    lease: Duration,
    writers: usize,
    max_batch: usize,
    queue_capacity: usize,
    pool_size: usize,
    migrate: bool,
}

impl std::fmt::Debug for PostgresJournalBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresJournalBuilder")
            .field("url", &redact(&self.url))
            .field("node", &self.node)
            .field("lease", &self.lease)
            .field("writers", &self.writers)
            .finish_non_exhaustive()
    }
}

/// The URL with its password replaced, for logs and errors: the one in the user info
/// and a `password` parameter of the query string alike. A URL without a password is
/// shown as it is.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparsed]".to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut shown = format!("{scheme}://");
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((user, _)) => shown.push_str(&format!("{user}:[redacted]@{host}")),
            None => shown.push_str(authority),
        },
        None => shown.push_str(authority),
    }
    shown.push_str(path);
    if let Some(query) = query {
        let params: Vec<&str> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("password", _)) => "password=[redacted]",
                _ => kv,
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

impl PostgresJournalBuilder {
    /// Sets the node's name.
    pub fn node(mut self, name: impl Into<String>) -> Self {
        self.node = Some(name.into());
        self
    }

    /// Sets how long the node may be silent before others take its deliveries over.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// Sets how many append transactions may be in flight at once.
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = n.clamp(1, 64);
        self
    }

    /// Sets the most appends written in one transaction.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Sets how many appends may wait for a writer.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Sets the connection pool's size.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(4);
        self
    }

    /// Refuses to start unless the schema is current, instead of migrating it (for
    /// deployments that run `hookbox migrate` as a separate step).
    pub fn no_migrate(mut self) -> Self {
        self.migrate = false;
        self
    }

    /// Connects, migrates the schema (or checks it), registers the node and starts its
    /// writers, heartbeat, reaper and listener.
    pub async fn open(self) -> Result<PostgresJournal, OpenError> {
        let conn = Connection::parse(&self.url)?;
        let found = conn.migrate(self.migrate).await?;
        if !self.migrate && found < sql::SCHEMA_VERSION {
            return Err(OpenError::Config(format!(
                "the database schema is at version {found}, this hookbox needs {}: run `hookbox migrate`",
                sql::SCHEMA_VERSION
            )));
        }
        let name = self.node.unwrap_or_else(default_node_name);
        let mut conn = conn;
        // `pg_stat_activity` shows which node holds which connection.
        conn.config.application_name(format!("hookbox {name}"));
        let pool = conn.pool(self.pool_size.max(self.writers + 4))?;
        let lease_ms = duration_ms(self.lease) as i64;
        let mut client = pool.get().await.map_err(|e| conn.error(chain(&e)))?;
        let (node, slot) = register(&mut client, &name, lease_ms)
            .await
            .map_err(|e| conn.error(describe(&e)))?
            .ok_or_else(|| OpenError::Config("64 nodes are registered already".to_owned()))?;
        let today = sql::day_of(EventId::lower_bound(SystemTime::now()).0 as i64);
        // Today's and tomorrow's partitions now; the refresh task makes the days after,
        // and a writer makes the partition of an event's day when it finds none.
        sql::ensure_partitions(&mut client, today..=today + 1)
            .await
            .map_err(|e| conn.error(describe(&e)))?;
        let backlog = sql::backlogs(&client)
            .await
            .map_err(|e| conn.error(describe(&e)))?
            .into_iter()
            .map(|(s, n)| (s, n.max(0) as u64))
            .collect::<HashMap<_, _>>();
        drop(client);
        let (committed, _) = watch::channel(0);
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let (settle_tx, settle_rx) = mpsc::channel(16_384);
        let inner = Arc::new(Inner {
            known_sources: Mutex::new(backlog.keys().cloned().collect()),
            backlog: RwLock::new(backlog),
            pool,
            name,
            node: AtomicI64::new(node),
            slot: AtomicI64::new(slot.into()),
            lease: self.lease,
            alive_until: AtomicU64::new(millis(SystemTime::now()) + duration_ms(self.lease)),
            tokens: AtomicI64::new((millis(SystemTime::now()) << 20) as i64),
            last_id: Mutex::new(0),
            queued: AtomicUsize::new(0),
            capacity: self.queue_capacity,
            max_batch: self.max_batch,
            healthy: AtomicBool::new(true),
            committed,
            announce: watch::channel(0).0,
            closing: AtomicBool::new(false),
            held: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            strays: AtomicBool::new(false),
            claiming: tokio::sync::RwLock::new(()),
        });
        tracing::info!(node = %inner.name, id = node, slot, "joined the PostgreSQL journal");
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut writers = Vec::new();
        for _ in 0..self.writers {
            writers.push(tokio::spawn(append_writer(inner.clone(), rx.clone())));
        }
        writers.push(tokio::spawn(settle_writer(inner.clone(), settle_rx)));
        let (listening, ready) = oneshot::channel();
        let background = vec![
            tokio::spawn(notifier(inner.clone())),
            tokio::spawn(heartbeat(inner.clone())),
            tokio::spawn(refresh(inner.clone())),
            tokio::spawn(listen(inner.clone(), conn, listening)),
        ];
        // Open means listening: commits of other nodes from now on wake this one. If
        // LISTEN cannot be had (a transaction-pooling proxy), polling covers it.
        if tokio::time::timeout(Duration::from_secs(5), ready)
            .await
            .is_err()
        {
            tracing::warn!("LISTEN is not available; other nodes' commits are found by polling");
        }
        Ok(PostgresJournal {
            inner,
            appends: Mutex::new(Some(tx)),
            settles: Mutex::new(Some(settle_tx)),
            writers: tokio::sync::Mutex::new(writers),
            background: Mutex::new(background),
        })
    }
}

/// Registers the node in a transaction of its own: the slot is picked under a lock
/// held until the commit, so nodes starting together never pick the same one.
async fn register(
    client: &mut deadpool_postgres::Object,
    name: &str,
    lease_ms: i64,
) -> Result<Option<(i64, i32)>, tokio_postgres::Error> {
    let txn = client.transaction().await?;
    let got = sql::register(&txn, name, lease_ms).await?;
    txn.commit().await?;
    Ok(got)
}

fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The parsed connection settings: what tokio-postgres takes, and TLS.
#[derive(Clone)]
struct Connection {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    /// The URL without its password.
    shown: String,
}

impl Connection {
    /// Parses a `postgres://` URL. `sslmode` and `sslrootcert` are taken out and applied
    /// with rustls; the rest is tokio-postgres's.
    fn parse(url: &str) -> Result<Self, OpenError> {
        let shown = redact(url);
        let bad = |e: String| OpenError::Config(format!("{shown}: {e}"));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = SslMode::default();
        let mut root: Option<PathBuf> = None;
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "sslmode" => mode = v.parse().map_err(bad)?,
                "sslrootcert" => root = Some(PathBuf::from(&*v)),
                _ => {
                    kept.append_pair(&k, &v);
                }
            }
        }
        let kept = kept.finish();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{kept}")
        };
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| bad(e.to_string()))?;
        config
            .ssl_mode(match mode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            })
            .application_name("hookbox")
            .connect_timeout(Duration::from_secs(5))
            .keepalives_idle(Duration::from_secs(10));
        let tls = tls::client_config(mode, root.as_deref())
            .map_err(bad)?
            .map(MakeRustlsConnect::new);
        Ok(Connection { config, tls, shown })
    }

    fn error(&self, e: impl std::fmt::Display) -> OpenError {
        OpenError::Database {
            path: self.shown.clone(),
            source: e.to_string().into(),
        }
    }

    /// One connection outside the pool, and the channel its notifications arrive on;
    /// the connection's driver task ends when the client is dropped or the link breaks.
    async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>), tokio_postgres::Error>
    {
        let (tx, rx) = mpsc::unbounded_channel();
        macro_rules! drive {
            ($tls:expr) => {{
                let (client, mut conn) = self.config.connect($tls).await?;
                tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    use futures_util::StreamExt as _;
                    while let Some(Ok(m)) = messages.next().await {
                        if let tokio_postgres::AsyncMessage::Notification(n) = m {
                            if tx.send(n.payload().to_owned()).is_err() {
                                break;
                            }
                        }
                    }
                });
                client
            }};
        }
        let client = match &self.tls {
            Some(tls) => drive!(tls.clone()),
            None => drive!(NoTls),
        };
        Ok((client, rx))
    }

    /// Migrates (or only reads the version); returns the version found.
    async fn migrate(&self, apply: bool) -> Result<i32, OpenError> {
        let (client, _) = self.connect().await.map_err(|e| self.error(describe(&e)))?;
        let found = if apply {
            sql::migrate(&client)
                .await
                .map_err(|e| self.error(describe(&e)))?
        } else {
            let v = sql::schema_version(&client)
                .await
                .map_err(|e| self.error(describe(&e)))?;
            if v > sql::SCHEMA_VERSION {
                Err(v)
            } else {
                Ok(v)
            }
        };
        found.map_err(|found| OpenError::Version {
            found: found as u32,
            supported: sql::SCHEMA_VERSION as u32,
        })
    }

    fn pool(&self, size: usize) -> Result<Pool, OpenError> {
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), mc),
            None => Manager::from_config(self.config.clone(), NoTls, mc),
        };
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| self.error(e))
    }
}

/// How long a write transaction or a claim may wait for the database before its
/// connection is given up: a server that hangs, or a link that passes nothing without
/// closing (a partition), would otherwise hold a writer forever. The batch is answered
/// with an error; a `COMMIT` that lands later is absorbed by deduplication when the
/// provider retries, as for any commit whose outcome is unknown.
const ROUND_TRIP: Duration = Duration::from_secs(10);

/// How long the health probe (the once-a-second refresh) may wait for the database
/// before the journal counts as unhealthy.
const PROBE: Duration = Duration::from_secs(5);

/// The error for a round trip that did not answer within `limit`; the connection is
/// taken out of the pool (it would hang its next user too) and the journal marked
/// unhealthy until a refresh succeeds.
fn no_answer(inner: &Inner, client: deadpool_postgres::Object, limit: Duration) -> JournalError {
    drop(deadpool_postgres::Object::take(client));
    inner.healthy.store(false, Ordering::Release);
    JournalError::Storage(format!(
        "no answer from the database within {limit:?}; the connection was given up"
    ))
}

/// What a claim holds: (event, replay or 0, destination).
type HeldKey = (u64, u64, Arc<str>);

/// The key `claim` is held under.
fn held_key(claim: &Claim) -> HeldKey {
    (
        claim.id.0,
        claim.replay.unwrap_or(0),
        claim.destination.clone(),
    )
}

/// State shared by the handle and its tasks.
struct Inner {
    /// Connections for writers, claims and reads; dropped with the last task.
    pool: Pool,
    /// The node's name.
    name: String,
    /// The node's row in `hookbox_nodes`; changes when the node re-registers.
    node: AtomicI64,
    /// The node's id slot (0..64).
    slot: AtomicI64,
    lease: Duration,
    /// Until when (ms, local clock) the last successful heartbeat keeps the node alive:
    /// past it the node appends nothing, since its slot may be another node's by then.
    alive_until: AtomicU64,
    /// The next fencing token this node hands out: one per claim statement, never
    /// reused by the node (it starts from the clock at open, ms << 20).
    tokens: AtomicI64,
    /// The last id allocated, as `ms << 10 | n`.
    last_id: Mutex<u64>,
    /// Appends waiting for a writer.
    queued: AtomicUsize,
    capacity: usize,
    max_batch: usize,
    /// False from a failed database round trip until the next successful refresh.
    healthy: AtomicBool,
    /// Backlog per source, refreshed once a second and bumped by local appends.
    backlog: RwLock<HashMap<String, u64>>,
    /// Sources this node knows are in `hookbox_sources`.
    known_sources: Mutex<HashSet<String>>,
    /// The highest committed event id seen (this node's or another's).
    committed: watch::Sender<u64>,
    /// The highest event id this node committed, for the notifier to announce.
    announce: watch::Sender<u64>,
    closing: AtomicBool,
    /// The runtime the journal was opened on: claims and give-backs run there to their
    /// end, even when their caller (a source actor on an arbiter of its own) stops.
    runtime: tokio::runtime::Handle,
    /// The claims this node handed out and has not seen end: (event, replay,
    /// destination) -> token.
    held: Mutex<HashMap<HeldKey, u64>>,
    /// Set when a claim, settle or abandon failed, so that the database may hold claims
    /// of this node that nobody holds any more (a settle that did not commit, a claim
    /// whose answer was lost with the connection). A live node's claims are never
    /// reaped, so those deliveries would wait forever: [`release_strays`] gives them
    /// back once the database answers again.
    strays: AtomicBool,
    /// Claims run under the read side; [`release_strays`] takes the write side, so that
    /// no claim is between its `UPDATE` and `held` while strays are looked for.
    claiming: tokio::sync::RwLock<()>,
}

impl Inner {
    fn node(&self) -> i64 {
        self.node.load(Ordering::Acquire)
    }

    /// A fresh id: time-ordered, unique across nodes by the slot bits.
    fn next_id(&self, received_ms: u64) -> u64 {
        let slot = self.slot.load(Ordering::Acquire) as u64 & 63;
        let mut last = self.last_id.lock().expect("id lock");
        let l = (received_ms << 10).max(*last + 1);
        *last = l;
        ((l >> 10) << 16) | (slot << 10) | (l & 1023)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, JournalError> {
        self.pool.get().await.map_err(|e| {
            self.healthy.store(false, Ordering::Release);
            JournalError::Unavailable(match e {
                deadpool_postgres::PoolError::Timeout(_) => "no database connection within 5 s",
                _ => "the database is unreachable",
            })
            .log(&chain(&e))
        })
    }

    /// A database error as a journal error; a broken connection marks the journal
    /// unhealthy until the next refresh succeeds.
    fn db_error(&self, e: tokio_postgres::Error) -> JournalError {
        if e.code().is_none() {
            self.healthy.store(false, Ordering::Release);
        }
        JournalError::Storage(describe(&e))
    }

    /// Marks a claim as ended (settled, given back, or failed to be).
    fn release_held(&self, claim: &Claim) {
        let key = held_key(claim);
        let mut held = self.held.lock().expect("held lock");
        if held.get(&key) == Some(&claim.token) {
            held.remove(&key);
        }
    }

    fn wake(&self, max_id: u64) {
        self.committed.send_if_modified(|v| {
            let newer = max_id > *v;
            *v = (*v).max(max_id);
            newer || max_id == 0
        });
    }
}

/// A database error with the server's own message (tokio-postgres shows only "db
/// error"), or with its causes (it shows only "error performing TLS handshake", not
/// which certificate check failed; "error connecting to server", not why).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL {}: {}", db.code().code(), db.message()),
        None => chain(e),
    }
}

/// An error and each of its causes, `: `-separated; a cause whose text the message
/// already ends with is not repeated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.ends_with(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

impl JournalError {
    /// The same error again, for each of the appends or settles one failure answers:
    /// of the same kind (a lease that ran out stays `Unavailable`, not a storage error).
    fn again(&self) -> Self {
        match self {
            JournalError::Unavailable(why) => JournalError::Unavailable(why),
            JournalError::Overloaded(n) => JournalError::Overloaded(*n),
            JournalError::Storage(e) => JournalError::Storage(e.clone()),
            other => JournalError::Storage(other.to_string()),
        }
    }

    fn log(self, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{self}");
        self
    }
}

/// The PostgreSQL journal: one node of any number sharing one database.
pub struct PostgresJournal {
    inner: Arc<Inner>,
    /// The append queue; taken on close, which lets the writers finish and stop.
    appends: Mutex<Option<mpsc::Sender<AppendOp>>>,
    /// The settle queue, likewise.
    settles: Mutex<Option<mpsc::Sender<SettleOp>>>,
    /// The writer tasks, awaited on close.
    writers: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Heartbeat, refresh and listener tasks, aborted on close or drop.
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for PostgresJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresJournal")
            .field("node", &self.inner.name)
            .field("load", &self.load())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresJournal {
    fn drop(&mut self) {
        for t in self.background.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
    }
}

impl PostgresJournal {
    /// A builder for the database at `url` (`postgres://user:pass@host:5432/db`, with
    /// `sslmode` and `sslrootcert` as in libpq).
    pub fn builder(url: impl Into<String>) -> PostgresJournalBuilder {
        PostgresJournalBuilder {
            url: url.into(),
            node: None,
            lease: Duration::from_secs(30),
            writers: 2,
            max_batch: 1024,
            queue_capacity: 8192,
            pool_size: 16,
            migrate: true,
        }
    }

    /// Opens the journal at `url` with the defaults.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        Self::builder(url).open().await
    }

    /// Applies the schema migrations the database at `url` lacks, under a lock, and
    /// returns (the version found, the version now): what `hookbox migrate` runs.
    pub async fn migrate(url: &str) -> Result<(u32, u32), OpenError> {
        let conn = Connection::parse(url)?;
        let found = conn.migrate(true).await?;
        Ok((found as u32, sql::SCHEMA_VERSION as u32))
    }

    /// Creates the daily partitions for the days from `from` to `to` (the journal makes
    /// today's and the next few days' itself). For tests and for importing history.
    #[doc(hidden)]
    pub async fn prepare_days(&self, from: SystemTime, to: SystemTime) -> Result<(), JournalError> {
        let day = |t: SystemTime| sql::day_of(EventId::lower_bound(t).0 as i64);
        let mut c = self.inner.client().await?;
        sql::ensure_partitions(&mut c, day(from)..=day(to))
            .await
            .map(drop)
            .map_err(|e| self.inner.db_error(e))
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.name
    }

    /// Runs `f` with a pooled connection.
    fn read<T, F, Fut>(&self, f: F) -> JournalFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let inner = self.inner.clone();
        Box::pin(async move {
            let client = inner.client().await?;
            f(client).await.map_err(|e| inner.db_error(e))
        })
    }
}

/// How many candidate rows one statement of a filtered listing or replay fetches.
const FILTER_CHUNK: usize = 1000;

/// The ids of the events of a replay's window that `filter` takes, oldest first; the
/// window is read in chunks, with the records only when the filter reads bodies.
async fn replay_ids(
    inner: &Inner,
    c: &deadpool_postgres::Object,
    select: &sql::ReplaySelect<'_>,
    filter: &crate::Filter,
) -> Result<Vec<i64>, JournalError> {
    let needs_body = filter.needs_body();
    let mut ids = Vec::new();
    let mut after = i64::MIN;
    loop {
        let rows = sql::replay_candidates(c, select, after, FILTER_CHUNK as i64, needs_body)
            .await
            .map_err(|e| inner.db_error(e))?;
        for r in &rows {
            let id: i64 = r.get(0);
            after = id;
            let event_type: Option<&str> = r.get(1);
            let body = if needs_body {
                record::decode_body(id as u64, r.get(2))?
            } else {
                std::borrow::Cow::Borrowed(&[][..])
            };
            if filter.accepts(&crate::FilterInput {
                event_type,
                body: &body,
            }) {
                ids.push(id);
            }
        }
        if rows.len() < FILTER_CHUNK {
            return Ok(ids);
        }
    }
}

/// A result already at hand, as the contract's future.
fn done<T: Send + 'static>(r: Result<T, JournalError>) -> JournalFuture<T> {
    Box::pin(std::future::ready(r))
}

fn to_state(s: i16) -> State {
    match s {
        0 => State::Pending,
        1 => State::Retrying,
        2 => State::Done,
        _ => State::Dead,
    }
}

fn from_state(s: State) -> i16 {
    match s {
        State::Pending => 0,
        State::Retrying => 1,
        State::Done => 2,
        State::Dead => 3,
    }
}

/// A type filter as (exact, prefix).
fn type_filter(pattern: Option<&str>) -> (Option<String>, Option<String>) {
    match pattern {
        None => (None, None),
        Some(p) => match p.strip_suffix('*') {
            Some(prefix) => (None, Some(prefix.to_owned())),
            None => (Some(p.to_owned()), None),
        },
    }
}

fn corrupt(id: u64, e: impl std::fmt::Display) -> JournalError {
    JournalError::Corrupt {
        id,
        problem: e.to_string(),
    }
}

impl Journal for PostgresJournal {
    fn append(&self, event: &Verified<Event>, opts: &AppendOptions) -> AppendFuture {
        if self.inner.closing.load(Ordering::Acquire) {
            return done(Err(JournalError::Unavailable("shutting down")));
        }
        let queued = self.inner.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= self.inner.capacity {
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            return done(Err(JournalError::Overloaded(queued)));
        }
        let e = event.get();
        let (reply, rx) = oneshot::channel();
        let op = AppendOp {
            record: record::encode(e),
            source: e.source.to_string(),
            delivery_id: e.delivery_id.clone(),
            event_type: e.event_type.clone(),
            body_len: e.body.len().min(i32::MAX as usize) as i32,
            received_ms: millis(e.received_at),
            dedup_window: opts.dedup_window,
            order_key: opts.order_key.clone().unwrap_or_default(),
            destinations: opts.unique_destinations(),
            reply,
        };
        let sent = match &*self.appends.lock().expect("queue lock") {
            Some(tx) => tx.try_send(op).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => JournalError::Overloaded(queued),
                mpsc::error::TrySendError::Closed(_) => JournalError::Unavailable("shutting down"),
            }),
            None => Err(JournalError::Unavailable("shutting down")),
        };
        if let Err(e) = sent {
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            return done(Err(e));
        }
        Box::pin(async move {
            rx.await.unwrap_or(Err(JournalError::Unavailable(
                "the writer stopped before committing",
            )))
        })
    }

    fn load(&self) -> Load {
        Load {
            queued: self.inner.queued.load(Ordering::Acquire),
            capacity: self.inner.capacity,
            disk_free: u64::MAX,
            healthy: self.inner.healthy.load(Ordering::Acquire),
        }
    }

    fn backlog(&self, source: &str) -> u64 {
        let map = self.inner.backlog.read().expect("backlog lock");
        map.get(source).copied().unwrap_or(0)
    }

    fn sources(&self) -> Vec<(String, u64)> {
        let map = self.inner.backlog.read().expect("backlog lock");
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn count(&self) -> JournalFuture<u64> {
        self.read(|c| async move { Ok(sql::count(&c).await? as u64) })
    }

    fn get(&self, id: EventId) -> JournalFuture<Option<StoredEvent>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let c = inner.client().await?;
            let rec = sql::record(&c, id.0 as i64)
                .await
                .map_err(|e| inner.db_error(e))?;
            rec.map(|r| record::decode(id.0, &r)).transpose()
        })
    }

    fn query(&self, q: &Query) -> JournalFuture<Page> {
        let limit = if q.limit == 0 { 100 } else { q.limit };
        let window = Window::of(q.since, q.until);
        let (lo, mut hi) = window.ids();
        if let Some(before) = q.before {
            hi = hi.min(before.0);
        }
        let (exact, prefix) = type_filter(q.event_type.as_deref());
        let source = q.source.clone();
        let state = q.state.map(from_state);
        let filter = q.filter.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut page = Page::default();
            if lo >= hi {
                return Ok(page);
            }
            let c = inner.client().await?;
            let needs_body = filter.as_ref().is_some_and(crate::Filter::needs_body);
            // Without a filter one statement answers; with one, candidates come in
            // chunks, newest first, until the page is full (and one more is taken, to
            // tell that a next page exists), the window ends, or MAX_FILTER_SCAN were
            // looked at.
            let mut hi = hi;
            let mut filtered = 0usize;
            loop {
                let chunk = match &filter {
                    None => limit + 1,
                    Some(_) => (limit + 1)
                        .max(FILTER_CHUNK)
                        .min(MAX_FILTER_SCAN - filtered),
                };
                let rows = sql::list(
                    &c,
                    (
                        lo.min(i64::MAX as u64) as i64,
                        hi.min(i64::MAX as u64) as i64,
                    ),
                    (
                        window.since_ms.min(i64::MAX as u64) as i64,
                        window.until_ms.min(i64::MAX as u64) as i64,
                    ),
                    source.as_deref(),
                    exact.as_deref(),
                    prefix.as_deref(),
                    state,
                    chunk as i64,
                    needs_body,
                )
                .await
                .map_err(|e| inner.db_error(e))?;
                for r in &rows {
                    let summary = EventSummary {
                        id: EventId(r.get::<_, i64>(0) as u64),
                        source: r.get(1),
                        delivery_id: r.get(2),
                        event_type: r.get(3),
                        received_at: UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(4) as u64),
                        body_len: r.get::<_, i32>(5) as u32,
                        state: to_state(r.get(6)),
                        attempts: r.get::<_, i32>(7) as u32,
                    };
                    if let Some(f) = &filter {
                        filtered += 1;
                        let id = summary.id.0;
                        hi = id;
                        let record: Option<&[u8]> = needs_body.then(|| r.get(8));
                        let body = match record {
                            Some(rec) => record::decode_body(id, rec)?,
                            None => std::borrow::Cow::Borrowed(&[][..]),
                        };
                        let input = crate::FilterInput {
                            event_type: summary.event_type.as_deref(),
                            body: &body,
                        };
                        if !f.accepts(&input) {
                            continue;
                        }
                    }
                    if page.events.len() == limit {
                        // One more match exists: the page is full and the next one is not
                        // empty.
                        page.next_cursor = page.events.last().map(|e| e.id);
                        return Ok(page);
                    }
                    page.events.push(summary);
                }
                if filter.is_none() || rows.len() < chunk {
                    // The window is exhausted.
                    return Ok(page);
                }
                if filtered >= MAX_FILTER_SCAN {
                    // Every event newer than the last one filtered was looked at: the
                    // next page goes on from it.
                    page.next_cursor = Some(EventId(hi));
                    return Ok(page);
                }
            }
        })
    }

    fn lookup(&self, source: &str, delivery_id: &str) -> JournalFuture<Option<EventId>> {
        let (source, did) = (source.to_owned(), delivery_id.to_owned());
        self.read(move |c| async move {
            Ok(sql::lookup(&c, &source, &did)
                .await?
                .map(|id| EventId(id as u64)))
        })
    }

    fn claim(&self, source: &str, now: SystemTime, limit: usize) -> JournalFuture<Vec<Claim>> {
        let inner = self.inner.clone();
        let source: Arc<str> = Arc::from(source);
        let now_ms = millis(now) as i64;
        // Runs to its end on the journal's runtime even when the caller goes away
        // meanwhile; claims nobody received are given back.
        let (tx, rx) = oneshot::channel();
        self.inner.runtime.spawn(async move {
            let claimed = claim_now(&inner, source, now_ms, limit).await;
            if let Err(Ok(lost)) = tx.send(claimed) {
                for c in &lost {
                    inner.release_held(c);
                }
                if !lost.is_empty() {
                    inner.strays.store(true, Ordering::Release);
                }
            }
        });
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(JournalError::Unavailable("the claim was interrupted")))
        })
    }

    fn next_due(&self, source: &str, after: SystemTime) -> JournalFuture<Option<u64>> {
        let source = source.to_owned();
        let after = millis(after) as i64;
        self.read(move |c| async move {
            Ok(sql::next_due(&c, &source, after)
                .await?
                .map(|v| v.max(0) as u64))
        })
    }

    fn settle(&self, claim: Claim, attempt: Attempt, next: Next) -> JournalFuture<()> {
        // The claim ends with this call, whatever its result: once committed, or (when
        // the outcome could not be journaled) given back by `release_strays`, so that
        // the delivery happens again, as on redb. The settle writer does the
        // bookkeeping, so a caller that goes away meanwhile changes nothing.
        let (reply, rx) = oneshot::channel();
        let op = SettleOp {
            claim,
            attempt,
            next,
            reply,
        };
        let refused = match &*self.settles.lock().expect("queue lock") {
            Some(tx) => tx.try_send(op).err().map(|e| e.into_inner()),
            None => Some(op),
        };
        if let Some(op) = refused {
            self.inner.release_held(&op.claim);
            self.inner.strays.store(true, Ordering::Release);
            return done(Err(JournalError::Unavailable(
                "shutting down or over the settle bound",
            )));
        }
        Box::pin(async move {
            rx.await.unwrap_or(Err(JournalError::Unavailable(
                "the writer stopped before committing",
            )))
        })
    }

    fn abandon(&self, claims: Vec<Claim>) -> JournalFuture<()> {
        if claims.is_empty() {
            return done(Ok(()));
        }
        let inner = self.inner.clone();
        // No longer held here from now on; if the database cannot be told, the claims
        // are given back by `release_strays` once it answers again. Runs to its end on
        // the journal's runtime even when the caller goes away.
        for c in &claims {
            inner.release_held(c);
        }
        let ids: Vec<i64> = claims.iter().map(|c| c.id.0 as i64).collect();
        let targets: Vec<String> = claims.iter().map(|c| c.destination.to_string()).collect();
        let replays: Vec<i64> = claims
            .iter()
            .map(|c| c.replay.unwrap_or(0) as i64)
            .collect();
        let tokens: Vec<i64> = claims.iter().map(|c| c.token as i64).collect();
        let (tx, rx) = oneshot::channel();
        self.inner.runtime.spawn(async move {
            let released = async {
                let c = inner.client().await?;
                let n = sql::abandon(&c, inner.node(), &ids, &targets, &replays, &tokens)
                    .await
                    .map_err(|e| inner.db_error(e))?;
                if n > 0 {
                    let _ = sql::notify(&c, 0).await;
                }
                Ok(())
            }
            .await;
            if released.is_err() {
                inner.strays.store(true, Ordering::Release);
            }
            let _ = tx.send(released);
        });
        Box::pin(async move {
            rx.await.unwrap_or(Err(JournalError::Unavailable(
                "giving back was interrupted",
            )))
        })
    }

    fn step_result(&self, id: EventId, name: &str) -> JournalFuture<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.read(move |c| async move { sql::step(&c, id.0 as i64, &name).await })
    }

    fn save_step(&self, claim: &Claim, name: &str, value: Vec<u8>) -> JournalFuture<()> {
        let inner = self.inner.clone();
        let (id, replay, token) = (
            claim.id.0 as i64,
            claim.replay.unwrap_or(0) as i64,
            claim.token as i64,
        );
        let target = claim.destination.clone();
        let name = name.to_owned();
        Box::pin(async move {
            let c = inner.client().await?;
            let row = (id, &*target, replay);
            let held = sql::save_step(&c, inner.node(), row, token, &name, &value)
                .await
                .map_err(|e| inner.db_error(e))?;
            if held {
                Ok(())
            } else {
                Err(JournalError::LeaseLost {
                    id: id as u64,
                    token: token as u64,
                })
            }
        })
    }

    fn state(&self, id: EventId) -> JournalFuture<Option<EventState>> {
        let deliveries = self.deliveries(id);
        Box::pin(async move {
            let deliveries = deliveries.await?;
            Ok(EventState::aggregate(deliveries.iter().map(|d| &d.state)))
        })
    }

    fn attempts(&self, id: EventId) -> JournalFuture<Vec<Attempt>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let c = inner.client().await?;
            let rows = sql::attempts(&c, id.0 as i64)
                .await
                .map_err(|e| inner.db_error(e))?;
            rows.iter()
                .map(|b| serde_json::from_slice(b).map_err(|e| corrupt(id.0, e)))
                .collect()
        })
    }

    fn dead(&self, source: Option<&str>, limit: usize) -> JournalFuture<Vec<DeadDelivery>> {
        let source = source.map(str::to_owned);
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(move |c| async move {
            Ok(sql::dead(&c, source.as_deref(), limit)
                .await?
                .into_iter()
                .map(|(id, source, destination)| DeadDelivery {
                    id: EventId(id as u64),
                    source,
                    destination,
                })
                .collect())
        })
    }

    fn deliveries(&self, id: EventId) -> JournalFuture<Vec<DestinationState>> {
        self.read(move |c| async move {
            Ok(sql::deliveries(&c, id.0 as i64)
                .await?
                .iter()
                .map(|r| {
                    let state = to_state(r.get(0));
                    DestinationState {
                        destination: r.get(7),
                        state: EventState {
                            state,
                            attempts: r.get::<_, i32>(1) as u32,
                            next_at_ms: (state == State::Retrying)
                                .then(|| r.get::<_, i64>(2) as u64),
                            last_error: r.get(3),
                            redrives: r.get::<_, i32>(4) as u32,
                            dead_at_ms: r.get::<_, Option<i64>>(5).map(|v| v as u64),
                            order_key: r.get(6),
                        },
                        waiting_for: r.get::<_, Option<i64>>(8).map(|h| EventId(h as u64)),
                    }
                })
                .collect())
        })
    }

    fn dead_count(&self) -> JournalFuture<u64> {
        self.read(|c| async move { Ok(sql::dead_count(&c).await? as u64) })
    }

    fn redrive(&self, f: RedriveFilter) -> JournalFuture<u64> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let ids: Option<Vec<i64>> = f
                .ids
                .as_ref()
                .map(|ids| ids.iter().map(|i| i.0 as i64).collect());
            let (exact, prefix) = type_filter(f.event_type.as_deref());
            let c = inner.client().await?;
            let now = millis(SystemTime::now()) as i64;
            let n = sql::redrive(
                &c,
                ids.as_deref(),
                f.source.as_deref(),
                f.destination.as_deref(),
                exact.as_deref(),
                prefix.as_deref(),
                f.since_ms.map(|v| v.min(i64::MAX as u64) as i64),
                f.until_ms.map(|v| v.min(i64::MAX as u64) as i64),
                f.max_redrives.map(|v| v.min(i32::MAX as u32) as i32),
                now,
            )
            .await
            .map_err(|e| inner.db_error(e))?;
            if n > 0 {
                let _ = sql::notify(&c, 0).await;
                inner.wake(0);
            }
            Ok(n)
        })
    }

    fn replay(&self, f: ReplayFilter) -> JournalFuture<ReplayStatus> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let now = millis(SystemTime::now()) as i64;
            let (exact, prefix) = type_filter(f.event_type.as_deref());
            let window = Window {
                since_ms: f.since_ms,
                until_ms: f.until_ms,
            };
            let (lo, hi) = window.ids();
            let select = sql::ReplaySelect {
                lo: lo.min(i64::MAX as u64) as i64,
                hi: hi.min(i64::MAX as u64) as i64,
                since_ms: window.since_ms.min(i64::MAX as u64) as i64,
                until_ms: window.until_ms.min(i64::MAX as u64) as i64,
                source: f.source.as_deref(),
                sources: f.sources.as_deref(),
                exact_type: exact.as_deref(),
                type_prefix: prefix.as_deref(),
                ids: None,
                destination: f.destination.as_deref(),
            };
            let mut c = inner.client().await?;
            // A filter is applied here, in Rust: the ids it takes bound the statements.
            let ids = match &f.filter {
                Some(filter) => Some(replay_ids(&inner, &c, &select, filter).await?),
                None => None,
            };
            let select = sql::ReplaySelect {
                ids: ids.as_deref(),
                ..select
            };
            let status = |id: i64, matched: i64| ReplayStatus {
                id: id as u64,
                matched: matched as u64,
                done: 0,
                failed: 0,
                destination: f.destination.clone(),
                created_ms: now as u64,
            };
            if f.dry_run {
                let n = sql::replay_count(&c, &select)
                    .await
                    .map_err(|e| inner.db_error(e))?;
                return Ok(status(0, n));
            }
            let result = async {
                let txn = c.transaction().await?;
                let (id, matched) = sql::replay_insert(&txn, &select, now).await?;
                if matched > 0 {
                    sql::notify(&txn, 0).await?;
                }
                txn.commit().await?;
                Ok((id, matched))
            }
            .await;
            let (id, matched) = result.map_err(|e| inner.db_error(e))?;
            if matched > 0 {
                inner.wake(0);
            }
            Ok(status(id, matched))
        })
    }

    fn purge(&self, before: SystemTime, limit: usize) -> JournalFuture<u64> {
        let cutoff = millis(before).saturating_mul(1 << 16).min(i64::MAX as u64) as i64;
        let limit = limit.clamp(1, 100_000) as i64;
        // Whole days first: a day in which everything is done goes at once. What is
        // left (days still holding pending, retrying, dead or replaying events, and the
        // default partition) is deleted in bounded chunks.
        self.read(move |c| async move {
            let dropped = sql::drop_done_days(&c, cutoff).await?;
            Ok(dropped + sql::purge(&c, cutoff, limit).await?)
        })
    }

    fn replay_status(&self, id: u64) -> JournalFuture<Option<ReplayStatus>> {
        let Ok(id) = i64::try_from(id) else {
            return done(Ok(None));
        };
        self.read(move |c| async move {
            Ok(sql::replay_status(&c, id).await?.map(|r| ReplayStatus {
                id: r.get::<_, i64>(0) as u64,
                matched: r.get::<_, i64>(1) as u64,
                done: r.get::<_, i64>(2) as u64,
                failed: r.get::<_, i64>(3) as u64,
                destination: r.get(4),
                created_ms: r.get::<_, i64>(5) as u64,
            }))
        })
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    fn close(&self) -> JournalFuture<()> {
        self.inner.closing.store(true, Ordering::Release);
        // Dropping the senders lets the writers finish what is queued, then stop.
        self.appends.lock().expect("queue lock").take();
        self.settles.lock().expect("queue lock").take();
        let inner = self.inner.clone();
        let background: Vec<_> = self
            .background
            .lock()
            .expect("tasks lock")
            .drain(..)
            .collect();
        // A second close finds the writers taken already and waits for nothing.
        let writers = self
            .writers
            .try_lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        Box::pin(async move {
            for w in writers {
                let _ = w.await;
            }
            for t in background {
                t.abort();
            }
            // Leaving on purpose: claims still held are given back for others at once.
            if let Ok(c) = inner.pool.get().await {
                match sql::deregister(&c, inner.node()).await {
                    Ok(n) if n > 0 => {
                        let _ = sql::notify(&c, 0).await;
                        tracing::info!(claims = n, "gave claims back to the other nodes");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %describe(&e), "leaving the cluster failed; the lease runs out instead")
                    }
                }
            }
            inner.pool.close();
            Ok(())
        })
    }
}

/// One claim statement; the claims it took are in `held` before it returns.
async fn claim_now(
    inner: &Inner,
    source: Arc<str>,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Claim>, JournalError> {
    if inner.closing.load(Ordering::Acquire) {
        return Ok(Vec::new());
    }
    let c = inner.client().await?;
    let _claiming = inner.claiming.read().await;
    let node = inner.node();
    let claimed = tokio::time::timeout(
        ROUND_TRIP,
        sql::claim(
            &c,
            &source,
            now_ms,
            limit.min(10_000) as i64,
            node,
            inner.tokens.fetch_add(1, Ordering::Relaxed),
        ),
    )
    .await;
    let rows = match claimed {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            // The claims may have been taken with the answer lost.
            inner.strays.store(true, Ordering::Release);
            return Err(inner.db_error(e));
        }
        Err(_) => {
            inner.strays.store(true, Ordering::Release);
            return Err(no_answer(inner, c, ROUND_TRIP));
        }
    };
    // Destinations are few: one shared name each, not one allocation per claim.
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut claims: Vec<Claim> = rows
        .iter()
        .map(|r| {
            let target: &str = r.get(7);
            let destination = match names.iter().find(|n| &***n == target) {
                Some(n) => n.clone(),
                None => {
                    let n: Arc<str> = Arc::from(target);
                    names.push(n.clone());
                    n
                }
            };
            let replay: i64 = r.get(1);
            let id = r.get::<_, i64>(0) as u64;
            // A record that does not decode is left for `get`, which reports it.
            let event = r
                .get::<_, Option<&[u8]>>(6)
                .and_then(|rec| record::decode(id, rec).ok())
                .map(Arc::new);
            Claim {
                id: EventId(id),
                replay: (replay != 0).then_some(replay as u64),
                attempt: r.get::<_, i32>(2) as u32,
                due_ms: r.get::<_, i64>(3) as u64,
                order_key: r.get(4),
                destination,
                source: source.clone(),
                token: r.get::<_, i64>(5) as u64,
                event: Prefetched(event),
            }
        })
        .collect();
    // UPDATE .. RETURNING does not keep the CTE's order.
    claims.sort_by(|a, b| (a.due_ms, a.id, &a.destination).cmp(&(b.due_ms, b.id, &b.destination)));
    inner
        .held
        .lock()
        .expect("held lock")
        .extend(claims.iter().map(|c| (held_key(c), c.token)));
    Ok(claims)
}

/// One append waiting for its commit.
struct AppendOp {
    record: Vec<u8>,
    source: String,
    delivery_id: Option<String>,
    event_type: Option<String>,
    body_len: i32,
    received_ms: u64,
    dedup_window: Option<Duration>,
    order_key: String,
    /// The destinations, each once (empty: one delivery, to the unnamed destination).
    destinations: Vec<String>,
    /// Answered after the commit returns, never before.
    reply: oneshot::Sender<Result<Appended, JournalError>>,
}

impl AppendOp {
    /// How many original deliveries the event gets.
    fn deliveries(&self) -> u64 {
        self.destinations.len().max(1) as u64
    }
}

/// The end of one delivery attempt, waiting for its commit.
struct SettleOp {
    claim: Claim,
    attempt: Attempt,
    next: Next,
    reply: oneshot::Sender<Result<(), JournalError>>,
}

/// One append writer: takes whatever is queued as a batch, commits it, answers it.
async fn append_writer(inner: Arc<Inner>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<AppendOp>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(op) => batch.push(op),
                None => return,
            }
            while batch.len() < inner.max_batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
        }
        inner.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let started = std::time::Instant::now();
        match write_appends(&inner, &batch).await {
            Ok(results) => {
                metrics::histogram!("hookbox_journal_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("hookbox_journal_batch_size").record(batch.len() as f64);
                let mut max_id = 0;
                {
                    let mut backlog = inner.backlog.write().expect("backlog lock");
                    for (op, r) in batch.iter().zip(&results) {
                        if !r.duplicate {
                            *backlog.entry(op.source.clone()).or_default() += op.deliveries();
                            max_id = max_id.max(r.id.0);
                        }
                    }
                }
                if max_id > 0 {
                    inner.wake(max_id);
                    inner.announce.send_if_modified(|v| {
                        let newer = max_id > *v;
                        *v = (*v).max(max_id);
                        newer
                    });
                }
                for (op, r) in batch.into_iter().zip(results) {
                    let _ = op.reply.send(Ok(r));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "journal commit failed; nothing in this batch was acknowledged");
                metrics::counter!("hookbox_journal_commit_failures_total").increment(1);
                for op in batch {
                    let _ = op.reply.send(Err(e.again()));
                }
            }
        }
    }
}

/// Writes one batch of appends in one transaction; `Ok` only once `COMMIT` returned.
/// An event of a day with no partition yet (a node whose clock is off, or one started
/// just before midnight) has its day's partition made, and the batch is written again.
async fn write_appends(inner: &Inner, batch: &[AppendOp]) -> Result<Vec<Appended>, JournalError> {
    let missing_partition = |e: &tokio_postgres::Error| {
        e.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
            && e.as_db_error()
                .is_some_and(|d| d.message().contains("no partition"))
    };
    match write_appends_once(inner, batch).await {
        Err(Failed::Db(e)) if missing_partition(&e) => {
            let days: HashSet<i64> = batch
                .iter()
                .map(|op| sql::day_of((op.received_ms.min(i64::MAX as u64 >> 16) << 16) as i64))
                .collect();
            let mut c = inner.client().await?;
            for day in days {
                sql::ensure_partitions(&mut c, day..=day)
                    .await
                    .map_err(|e| inner.db_error(e))?;
            }
            drop(c);
            write_appends_once(inner, batch)
                .await
                .map_err(|f| f.into_journal(inner))
        }
        other => other.map_err(|f| f.into_journal(inner)),
    }
}

/// Why a batch was not written.
enum Failed {
    Journal(JournalError),
    Db(tokio_postgres::Error),
}

impl Failed {
    fn into_journal(self, inner: &Inner) -> JournalError {
        match self {
            Failed::Journal(e) => e,
            Failed::Db(e) => inner.db_error(e),
        }
    }
}

/// [`write_appends`], once: the whole batch in one statement, which is its own
/// transaction (one round trip, one commit).
async fn write_appends_once(inner: &Inner, batch: &[AppendOp]) -> Result<Vec<Appended>, Failed> {
    let now_ms = millis(SystemTime::now());
    if now_ms > inner.alive_until.load(Ordering::Acquire) {
        return Err(Failed::Journal(JournalError::Unavailable(
            "this node's lease ran out: it appends nothing until it has registered again",
        )));
    }
    let client = inner.client().await.map_err(Failed::Journal)?;
    let new_sources: Vec<String> = {
        let known = inner.known_sources.lock().expect("sources lock");
        let mut s: Vec<String> = batch
            .iter()
            .filter(|op| !known.contains(&op.source))
            .map(|op| op.source.clone())
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let ids: Vec<u64> = batch
        .iter()
        .map(|op| inner.next_id(op.received_ms))
        .collect();
    let keys = dedup_keys(batch, &ids, now_ms);
    let mut new = sql::NewEvents::default();
    for (i, op) in batch.iter().enumerate() {
        if keys.repeats[i].is_some() {
            continue;
        }
        new.ids.push(ids[i] as i64);
        new.sources.push(op.source.clone());
        new.received.push(op.received_ms as i64);
        new.delivery_ids.push(op.delivery_id.clone());
        new.types.push(op.event_type.clone());
        new.body_lens.push(op.body_len);
        new.records.push(op.record.clone());
        new.order_keys.push(op.order_key.clone());
        new.deduped
            .push(op.delivery_id.is_some() && op.dedup_window.is_some());
        for d in &op.destinations {
            new.target_ids.push(ids[i] as i64);
            new.targets.push(d.clone());
        }
    }
    let result = async {
        if !new_sources.is_empty() {
            // Committed on its own: a source known before its first event is harmless.
            sql::add_sources(&client, &new_sources).await?;
        }
        // No NOTIFY in here: PostgreSQL serializes the commits of every transaction
        // that notifies, cluster-wide; the notifier announces commits off this path.
        sql::append(&client, &keys.new, &new, now_ms as i64).await
    };
    let Ok(result) = tokio::time::timeout(ROUND_TRIP, result).await else {
        return Err(Failed::Journal(no_answer(inner, client, ROUND_TRIP)));
    };
    let owners = result.map_err(Failed::Db)?;
    if !new_sources.is_empty() {
        inner
            .known_sources
            .lock()
            .expect("sources lock")
            .extend(new_sources);
    }
    let mut results = Vec::with_capacity(batch.len());
    for (i, op) in batch.iter().enumerate() {
        let proposed = ids[i];
        let deduped = op.delivery_id.is_some() && op.dedup_window.is_some();
        if !deduped {
            results.push(Appended {
                id: EventId(proposed),
                duplicate: false,
            });
            continue;
        }
        let key = (
            op.source.clone(),
            op.delivery_id.clone().unwrap_or_default(),
        );
        let Some(&owner) = owners.get(&key) else {
            // Every recorded key comes back; without it, nothing says the event was kept.
            return Err(Failed::Journal(JournalError::Unavailable(
                "the journal did not confirm a delivery id",
            )));
        };
        let owner = owner as u64;
        results.push(Appended {
            id: EventId(owner),
            duplicate: keys.repeats[i].is_some() || owner != proposed,
        });
    }
    Ok(results)
}

/// The provider delivery ids of a batch: what to record, and which posts repeat an
/// earlier post of the batch.
struct DedupKeys {
    new: sql::NewKeys,
    /// For each post: the earlier post of the same key in this batch, when this one is
    /// its duplicate (the source deduplicates).
    repeats: Vec<Option<usize>>,
}

/// Collects the keys of `batch` (events to get `ids`), each once. Of several posts of
/// one key, the first is recorded and the later ones are its duplicates; where the
/// source does not deduplicate, every post is a new event and the newest one is
/// recorded.
fn dedup_keys(batch: &[AppendOp], ids: &[u64], now_ms: u64) -> DedupKeys {
    use std::collections::btree_map::{BTreeMap, Entry};
    let mut recorded: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut repeats = vec![None; batch.len()];
    for (i, op) in batch.iter().enumerate() {
        let Some(delivery_id) = op.delivery_id.as_deref() else {
            continue;
        };
        match recorded.entry((op.source.as_str(), delivery_id)) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(mut o) => {
                let first = *o.get();
                if batch[first].dedup_window.is_some() {
                    repeats[i] = Some(first);
                } else {
                    o.insert(i);
                }
            }
        }
    }
    let mut new = sql::NewKeys::default();
    for ((source, delivery_id), i) in recorded {
        new.sources.push(source.to_owned());
        new.delivery_ids.push(delivery_id.to_owned());
        new.event_ids.push(ids[i] as i64);
        new.live_after_ms.push(match batch[i].dedup_window {
            Some(w) => now_ms.saturating_sub(duration_ms(w)) as i64,
            // No deduplication: the entry is always replaced.
            None => i64::MAX,
        });
    }
    DedupKeys { new, repeats }
}

/// The settle writer: outcomes are batched into one transaction, without waiting for
/// its fsync (`synchronous_commit` off, as redb does for outcomes): a crash of the
/// database may forget one, and that delivery then happens again.
async fn settle_writer(inner: Arc<Inner>, mut rx: mpsc::Receiver<SettleOp>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let written = write_settles(&inner, &batch).await;
        for op in &batch {
            inner.release_held(&op.claim);
        }
        match written {
            Ok(held) => {
                {
                    // Finished originals leave the backlog at once, as appends enter it.
                    let mut backlog = inner.backlog.write().expect("backlog lock");
                    for (op, _) in batch.iter().zip(&held).filter(|(_, h)| **h) {
                        let finished = matches!(op.next, Next::Done | Next::Dead(_));
                        if finished && op.claim.replay.is_none() {
                            if let Some(n) = backlog.get_mut(&*op.claim.source) {
                                *n = n.saturating_sub(1);
                            }
                        }
                    }
                }
                for (op, held) in batch.into_iter().zip(held) {
                    let r = if held {
                        Ok(())
                    } else {
                        Err(JournalError::LeaseLost {
                            id: op.claim.id.0,
                            token: op.claim.token,
                        })
                    };
                    let _ = op.reply.send(r);
                }
            }
            Err(e) => {
                // Not journaled: the claims are given back once the database answers.
                inner.strays.store(true, Ordering::Release);
                for op in batch {
                    let _ = op.reply.send(Err(e.again()));
                }
            }
        }
    }
}

async fn write_settles(inner: &Inner, batch: &[SettleOp]) -> Result<Vec<bool>, JournalError> {
    let now_ms = millis(SystemTime::now()) as i64;
    let mut s = sql::Settles::default();
    for op in batch {
        let c = &op.claim;
        let replay = c.replay.is_some();
        let (state, due_ms, next_attempt, error, dead_ms, d, f) = match &op.next {
            Next::Done => (2, c.due_ms as i64, c.attempt as i32, None, None, 1, 0),
            Next::RetryAt(at) => (
                1,
                (*at).min(i64::MAX as u64) as i64,
                c.attempt.saturating_add(1) as i32,
                op.attempt.error.clone(),
                None,
                0,
                0,
            ),
            Next::Dead(reason) => (
                3,
                c.due_ms as i64,
                c.attempt as i32,
                Some(reason.clone()),
                Some(now_ms),
                0,
                1,
            ),
        };
        s.event_ids.push(c.id.0 as i64);
        s.targets.push(c.destination.to_string());
        s.replays.push(c.replay.unwrap_or(0) as i64);
        s.tokens.push(c.token as i64);
        s.states.push(state);
        s.due_ms.push(due_ms);
        s.next_attempts.push(next_attempt);
        s.errors.push(error);
        s.dead_ms.push(dead_ms);
        // The attempt is recorded under the delivery it belongs to.
        let attempt = if op.attempt.destination == *c.destination {
            serde_json::to_vec(&op.attempt)
        } else {
            let mut recorded = op.attempt.clone();
            recorded.destination = c.destination.to_string();
            serde_json::to_vec(&recorded)
        };
        s.attempts.push(attempt.expect("attempt serializes"));
        s.replay_done.push(if replay { d } else { 0 });
        s.replay_failed.push(if replay { f } else { 0 });
    }
    let client = inner.client().await?;
    let node = inner.node();
    let result = sql::settle(&client, node, &s);
    let held: HashSet<(i64, String, i64)> = match tokio::time::timeout(ROUND_TRIP, result).await {
        Ok(result) => result.map_err(|e| inner.db_error(e))?.into_iter().collect(),
        Err(_) => return Err(no_answer(inner, client, ROUND_TRIP)),
    };
    Ok(batch
        .iter()
        .map(|op| {
            let c = &op.claim;
            let key = (
                c.id.0 as i64,
                c.destination.to_string(),
                c.replay.unwrap_or(0) as i64,
            );
            held.contains(&key)
        })
        .collect())
}

/// Renews the node's lease every third of it and reaps nodes whose lease ran out. A
/// node that finds itself reaped (it was frozen, or cut off) registers again.
async fn heartbeat(inner: Arc<Inner>) {
    let every = inner.lease / 3;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(mut c) = inner.pool.get().await else {
            continue;
        };
        let started = millis(SystemTime::now());
        match sql::heartbeat(&c, inner.node()).await {
            Ok(true) => {
                inner
                    .alive_until
                    .store(started + duration_ms(inner.lease), Ordering::Release);
            }
            Ok(false) => {
                tracing::warn!(node = %inner.name, "this node's lease ran out and its claims were taken over; registering again");
                match register(&mut c, &inner.name, duration_ms(inner.lease) as i64).await {
                    Ok(Some((node, slot))) => {
                        inner.node.store(node, Ordering::Release);
                        inner.slot.store(slot.into(), Ordering::Release);
                        inner
                            .alive_until
                            .store(started + duration_ms(inner.lease), Ordering::Release);
                    }
                    Ok(None) => tracing::error!("64 nodes are registered; cannot register again"),
                    Err(e) => tracing::warn!(error = %describe(&e), "registering again failed"),
                }
            }
            Err(e) => tracing::warn!(error = %describe(&e), "heartbeat failed"),
        }
        match sql::reap(&c).await {
            Ok(n) if n > 0 => {
                metrics::counter!("hookbox_claims_reaped_total").increment(n);
                let _ = sql::notify(&c, 0).await;
                inner.wake(0);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %describe(&e), "reaping dead nodes failed"),
        }
    }
}

/// Refreshes the backlog counters and the health flag once a second, un-parks what a
/// race left parked ([`sql::unpark`]), and creates the coming days' partitions every ten
/// minutes.
async fn refresh(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Counting costs in proportion to the backlog; a large one is counted less often
    // (every second up to 20,000 pending, at most every 10 s), and between counts the
    // node's own appends and outcomes keep its counters current. The probe in between
    // only asks whether the database answers.
    let mut next_count = 1u64;
    for n in 1u64.. {
        tick.tick().await;
        if n % 600 == 1 {
            if let Ok(mut c) = inner.pool.get().await {
                let today = sql::day_of(EventId::lower_bound(SystemTime::now()).0 as i64);
                if let Err(e) =
                    sql::ensure_partitions(&mut c, today..=today + PARTITIONS_AHEAD).await
                {
                    tracing::warn!(error = %describe(&e), "creating the coming days' partitions failed; trying again in ten minutes");
                }
            }
        }
        let count = n >= next_count;
        let got = match inner.pool.get().await {
            Ok(c) => {
                let answer = async {
                    if count {
                        sql::backlogs(&c).await
                    } else {
                        c.simple_query("SELECT 1").await.map(|_| Vec::new())
                    }
                };
                match tokio::time::timeout(PROBE, answer).await {
                    Ok(rows) => rows.map_err(|e| describe(&e)),
                    Err(_) => Err(no_answer(&inner, c, PROBE).to_string()),
                }
            }
            Err(e) => Err(chain(&e)),
        };
        match got {
            Ok(rows) => {
                if count {
                    let total: i64 = rows.iter().map(|(_, b)| b.max(&0)).sum();
                    next_count = n + (total as u64 / 20_000).clamp(1, 10);
                }
                let was = inner.healthy.swap(true, Ordering::AcqRel);
                if !was {
                    tracing::info!("the database is reachable again");
                }
                if inner.strays.swap(false, Ordering::AcqRel) {
                    release_strays(&inner).await;
                }
                unpark(&inner).await;
                let mut backlog = inner.backlog.write().expect("backlog lock");
                let mut known = inner.known_sources.lock().expect("sources lock");
                for (s, n) in rows {
                    known.insert(s.clone());
                    backlog.insert(s, n.max(0) as u64);
                }
            }
            Err(e) => {
                if inner.healthy.swap(false, Ordering::AcqRel) {
                    tracing::error!(error = %e, "the database is unreachable: ingest answers 503 until it is back");
                }
            }
        }
    }
}

/// [`sql::unpark`], waking every node's runtime when it un-parked anything.
async fn unpark(inner: &Inner) {
    let Ok(c) = inner.pool.get().await else {
        return;
    };
    match tokio::time::timeout(PROBE, sql::unpark(&c)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            tracing::debug!(
                deliveries = n,
                "un-parked deliveries at the head of their key"
            );
            let _ = sql::notify(&c, 0).await;
            inner.wake(0);
        }
        Ok(Err(e)) => tracing::warn!(error = %describe(&e), "un-parking deliveries failed"),
        Err(_) => {
            // The connection may still be busy with it: not back into the pool. Health is
            // the probe's to judge, not a slow sweep's.
            drop(deadpool_postgres::Object::take(c));
            tracing::warn!("un-parking deliveries got no answer within {PROBE:?}");
        }
    }
}

/// Gives back every claim the database says this node has but that nothing here holds
/// any more: deliveries whose outcome could not be journaled, claims whose answer was
/// lost with the connection. They are due again at once (at least once, as on redb).
async fn release_strays(inner: &Inner) {
    let released = async {
        let c = inner.client().await?;
        let _no_claims = inner.claiming.write().await;
        let (mut ids, mut targets, mut replays) = (Vec::new(), Vec::new(), Vec::new());
        for (id, replay, target) in inner.held.lock().expect("held lock").keys() {
            ids.push(*id as i64);
            targets.push(target.to_string());
            replays.push(*replay as i64);
        }
        let n = sql::release_unheld(&c, inner.node(), &ids, &targets, &replays)
            .await
            .map_err(|e| inner.db_error(e))?;
        if n > 0 {
            let _ = sql::notify(&c, 0).await;
        }
        Ok::<_, JournalError>(n)
    }
    .await;
    match released {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(
                claims = n,
                "gave back deliveries whose outcome could not be journaled; they happen again"
            );
            inner.wake(0);
        }
        Err(e) => {
            tracing::warn!(error = %e, "giving back unjournaled claims failed; trying again");
            inner.strays.store(true, Ordering::Release);
        }
    }
}

/// How often at most a node announces its commits: every announcement is a `NOTIFY`,
/// and PostgreSQL serializes the commits of notifying transactions.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(10);

/// Announces this node's commits to the other nodes, at most every [`ANNOUNCE_EVERY`],
/// each time with the highest id committed: a burst of commits is one `NOTIFY`.
async fn notifier(inner: Arc<Inner>) {
    let mut committed = inner.announce.subscribe();
    while committed.changed().await.is_ok() {
        let max_id = *committed.borrow_and_update();
        if let Ok(c) = inner.pool.get().await {
            if let Err(e) = sql::notify(&c, max_id as i64).await {
                tracing::debug!(error = %describe(&e), "announcing a commit failed; the others poll");
            }
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}

/// Listens for other nodes' commits, reconnecting while the task lives.
async fn listen(inner: Arc<Inner>, conn: Connection, listening: oneshot::Sender<()>) {
    let listen = format!("LISTEN {}", sql::CHANNEL);
    let mut listening = Some(listening);
    loop {
        match conn.connect().await {
            Ok((client, mut rx)) => {
                if client.batch_execute(&listen).await.is_ok() {
                    if let Some(tx) = listening.take() {
                        let _ = tx.send(());
                    }
                    // Whatever happened while not listening is picked up by this wake.
                    inner.wake(0);
                    while let Some(payload) = rx.recv().await {
                        inner.wake(payload.parse().unwrap_or(0));
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %describe(&e), "LISTEN connection failed; polling meanwhile")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
