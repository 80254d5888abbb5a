//! [`RedbJournal`]: the embedded journal, one redb file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageBackend};
use tokio::sync::{oneshot, watch};

use super::record::{self, millis};
use super::state::{
    Attempt, Claim, DeadDelivery, DestinationState, EventState, Next, RedriveFilter, ReplayFilter,
    ReplayStatus, State,
};
use super::tables::{
    ReadyKey, ATTEMPTS, BY_SOURCE, DEAD, DEDUP, EVENTS, META, ORDER, READY, REPLAYS, SOURCES,
    STATE, STEPS,
};
use super::wal::{DirStore, LogStore};
use super::writer::{self, AppendOp, CommitHook, Op, Opener, OutcomeOp};
use super::{
    type_matches, AppendFuture, AppendOptions, EventId, Journal, JournalError, JournalFuture, Load,
    OpenError, Page, Query, StoredEvent, Window, MAX_FILTER_SCAN,
};
use crate::{Event, Filter, FilterInput, Verified};

/// The most READY entries one `ready` call looks at beyond those it returns.
const MAX_READY_SCAN: usize = 16_384;

/// The journal format version this build writes: 2 keeps one delivery per event and
/// destination (version 1 had one per event; it is migrated at open).
const FORMAT_VERSION: u64 = 2;

/// State shared by the journal handle, its writer thread and its disk watcher.
pub(super) struct Shared {
    /// The database. `None` only while the writer recovers from a storage failure;
    /// readers clone the `Arc` for the length of one read transaction.
    pub(super) db: RwLock<Option<Arc<Database>>>,
    /// Appends handed to the writer and not yet taken into a batch.
    pub(super) queued: AtomicUsize,
    /// Free bytes on the journal's disk, refreshed by the disk watcher.
    pub(super) disk_free: AtomicU64,
    /// False from a failed commit until the database is reopened.
    pub(super) healthy: AtomicBool,
    /// Pending events per source (appended, not yet done or dead).
    pub(super) backlog: RwLock<HashMap<Arc<str>, u64>>,
    /// The highest committed event id; the delivery runtime watches it.
    pub(super) committed: watch::Sender<u64>,
    /// Test hook run before each commit.
    pub(super) hook: Option<CommitHook>,
    /// Appends acknowledged by the log so far (with the log on; see `writer::Unapplied`),
    pub(super) logged: AtomicU64,
    /// and how many of them redb holds: a read finding it behind waits for it.
    pub(super) applied: AtomicU64,
    /// `applied`, for async readers to wait on,
    applied_watch: watch::Sender<u64>,
    /// and for the writer thread (with `applied_lock`).
    applied_cv: Condvar,
    applied_lock: Mutex<()>,
    /// Claims held, by (event, replay, destination) -> fencing token. In memory: one
    /// process is the only node, and a crash ends every claim with it.
    claims: Mutex<HashMap<HeldKey, u64>>,
    /// The last fencing token handed out.
    tokens: AtomicU64,
}

impl Shared {
    /// Appends acknowledged by the log are not all in redb yet.
    pub(super) fn behind(&self) -> bool {
        self.logged.load(Ordering::Acquire) > self.applied.load(Ordering::Acquire)
    }

    /// redb holds the first `n` appends acknowledged by the log (or applying failed:
    /// `n` = 0 wakes the waiters to look at `healthy`).
    pub(super) fn mark_applied(&self, n: u64) {
        let guard = self.applied_lock.lock().expect("applied lock");
        let now = self.applied.fetch_max(n, Ordering::AcqRel).max(n);
        self.applied_cv.notify_all();
        drop(guard);
        self.applied_watch.send_if_modified(|v| {
            let newer = now > *v;
            *v = now;
            newer
        });
    }

    /// Blocks until redb holds the first `n` appends, or the journal is unhealthy.
    pub(super) fn wait_applied(&self, n: u64) {
        let mut guard = self.applied_lock.lock().expect("applied lock");
        while self.applied.load(Ordering::Acquire) < n && self.healthy.load(Ordering::Acquire) {
            guard = self
                .applied_cv
                .wait_timeout(guard, Duration::from_millis(100))
                .expect("applied lock")
                .0;
        }
    }

    fn read_count(&self) -> Result<u64, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }

    pub(super) fn apply_pending(&self, delta: &HashMap<Arc<str>, i64>) {
        if delta.is_empty() {
            return;
        }
        let mut map = self.backlog.write().expect("backlog lock");
        for (source, n) in delta {
            let v = map.entry(source.clone()).or_default();
            *v = (*v as i64 + n).max(0) as u64;
        }
    }
}

/// The embedded journal: one redb file and a group-commit writer thread.
///
/// Cheap to share behind an `Arc`. Dropping the last handle finishes the queued appends
/// and stops the writer.
pub struct RedbJournal {
    /// Shared with the writer thread and the disk watcher.
    shared: Arc<Shared>,
    /// The writer's queue; `None` once shut down.
    sender: SyncSender<Op>,
    /// The queue's bound, mirrored for [`Load`].
    capacity: usize,
    /// Set by [`RedbJournal::shutdown`]: appends are refused from then on.
    closing: AtomicBool,
    /// The writer thread, joined on shutdown.
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedbJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbJournal")
            .field("load", &self.load())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedbJournal`].
///
/// ## Defaults
/// - `queue_capacity`: 8192 appends waiting for the writer (beyond: `Overloaded`).
/// - `max_batch`: 4096 appends per write transaction.
/// - `cache_size`: 64 MiB of redb page cache.
/// - `checkpoint_every`: 1 s.
/// - `log`: off: each batch holding an acknowledged write is a durable redb commit. On
///   (for [`open`](RedbJournalBuilder::open)), acknowledged writes commit to a
///   write-ahead log beside the file (`<file>-wal/`, see [`crate::wal`]) and redb commits
///   durably once per `checkpoint_every`. The guarantees are the same; which is faster
///   depends on the disk (see the README's figures: on the machine measured, the log
///   did not pay, since redb's own transaction is most of a batch's cost). A log left
///   by an earlier run is applied at open either way.
pub struct RedbJournalBuilder {
    queue_capacity: usize,
    max_batch: usize,
    cache_size: usize,
    hook: Option<CommitHook>,
    log: bool,
    store: Option<Arc<dyn LogStore>>,
    checkpoint_every: Duration,
}

impl std::fmt::Debug for RedbJournalBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbJournalBuilder")
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch", &self.max_batch)
            .field("cache_size", &self.cache_size)
            .finish_non_exhaustive()
    }
}

impl Default for RedbJournalBuilder {
    fn default() -> Self {
        RedbJournalBuilder {
            queue_capacity: 8192,
            max_batch: 4096,
            cache_size: 64 << 20,
            hook: None,
            log: false,
            store: None,
            checkpoint_every: Duration::from_secs(1),
        }
    }
}

impl RedbJournalBuilder {
    /// Sets how many appends may wait for the writer.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Sets the most appends written in one transaction.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Sets redb's page cache size in bytes.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Turns the write-ahead log on or off (see the defaults above).
    pub fn log(mut self, on: bool) -> Self {
        self.log = on;
        self
    }

    /// Sets how often redb commits durably (default 1 s). With the log, that is the
    /// checkpoint: the log past it is applied again at open, and delivery outcomes since
    /// may be forgotten by a crash (and the deliveries repeated).
    pub fn checkpoint_every(mut self, every: Duration) -> Self {
        self.checkpoint_every = every;
        self
    }

    /// Keeps the log in `store` (tests simulate a disk with it).
    #[cfg(test)]
    pub(crate) fn log_store(mut self, store: Arc<dyn LogStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Runs `hook(batch_len)` on the writer thread before each commit. For tests that
    /// must hold or slow the commit.
    #[doc(hidden)]
    pub fn before_commit(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Opens (creating if needed) the journal file at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<RedbJournal, OpenError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::Database {
                path: path.display().to_string(),
                source: Box::new(e),
            })?;
        }
        let cache = self.cache_size;
        let p = path.clone();
        let opener: Opener =
            Box::new(move || redb::Builder::new().set_cache_size(cache).create(&p));
        let mut b = self;
        let mut dir = path.clone().into_os_string();
        dir.push("-wal");
        let dir = PathBuf::from(dir);
        // A log left by a run that had it on is applied even when it is off now.
        if (b.log || dir.is_dir()) && b.store.is_none() {
            let store = DirStore::new(&dir).map_err(|e| OpenError::Database {
                path: dir.display().to_string(),
                source: Box::new(e),
            })?;
            b.store = Some(Arc::new(store));
        }
        b.start(opener, path.display().to_string(), Some(path))
    }

    /// Opens the journal on a custom redb storage backend, built afresh by `backend` at
    /// open and after each storage failure (fault-injection tests use this). There is no
    /// log beside a custom backend: every acknowledged write is a durable redb commit.
    pub fn open_backend<B: StorageBackend>(
        self,
        backend: impl Fn() -> B + Send + 'static,
    ) -> Result<RedbJournal, OpenError> {
        let cache = self.cache_size;
        let opener: Opener = Box::new(move || {
            redb::Builder::new()
                .set_cache_size(cache)
                .create_with_backend(backend())
        });
        self.start(opener, "<custom backend>".into(), None)
    }

    fn start(
        self,
        opener: Opener,
        name: String,
        path: Option<PathBuf>,
    ) -> Result<RedbJournal, OpenError> {
        let db = opener().map_err(|e| OpenError::Database {
            path: name.clone(),
            source: Box::new(e),
        })?;
        let wal = match self.store.clone() {
            Some(store) => {
                let fail = |e: JournalError| OpenError::Database {
                    path: name.clone(),
                    source: Box::new(e),
                };
                let mut wal = writer::open_log(&db, store).map_err(fail)?;
                if self.log {
                    Some(wal)
                } else {
                    // Applied (durably): the log is not kept up from here on.
                    wal.discard()
                        .map_err(|e| fail(JournalError::Storage(e.to_string())))?;
                    None
                }
            }
            None => None,
        };
        let (last_id, backlog) = init(&db).map_err(|e| match e {
            InitError::Version(found) => OpenError::Version {
                found: found as u32,
                supported: FORMAT_VERSION as u32,
            },
            InitError::Db(e) => OpenError::Database {
                path: name.clone(),
                source: e.into(),
            },
        })?;
        let (committed, _) = watch::channel(last_id);
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            queued: AtomicUsize::new(0),
            disk_free: AtomicU64::new(u64::MAX),
            healthy: AtomicBool::new(true),
            backlog: RwLock::new(backlog),
            committed,
            hook: self.hook,
            logged: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            applied_watch: watch::channel(0).0,
            applied_cv: Condvar::new(),
            applied_lock: Mutex::new(()),
            claims: Mutex::default(),
            tokens: AtomicU64::new(0),
        });
        if let Some(path) = path {
            watch_disk(Arc::downgrade(&shared), path);
        }
        let (sender, rx) = sync_channel(self.queue_capacity);
        let w = shared.clone();
        let max_batch = self.max_batch;
        let every = self.checkpoint_every;
        let handle = std::thread::Builder::new()
            .name("hookbox-journal".into())
            .spawn(move || writer::run(w, rx, opener, max_batch, last_id, wal, every))
            .expect("spawn the journal writer thread");
        Ok(RedbJournal {
            shared,
            sender,
            capacity: self.queue_capacity,
            closing: AtomicBool::new(false),
            writer: Mutex::new(Some(handle)),
        })
    }
}

enum InitError {
    Version(u64),
    Db(redb::Error),
}

impl<E: Into<redb::Error>> From<E> for InitError {
    fn from(e: E) -> Self {
        InitError::Db(e.into())
    }
}

/// Creates the tables, checks the format version, and reads the last id and backlogs.
fn init(db: &Database) -> Result<(u64, HashMap<Arc<str>, u64>), InitError> {
    let txn = db.begin_write()?;
    let (last, backlog) = {
        let mut meta = txn.open_table(META)?;
        let version = meta.get("format_version")?.map(|g| g.value());
        match version {
            None => {}
            Some(v) if v > FORMAT_VERSION => return Err(InitError::Version(v)),
            Some(1) => migrate_v1(&txn)?,
            Some(_) => {}
        }
        if version != Some(FORMAT_VERSION) {
            meta.insert("format_version", FORMAT_VERSION)?;
        }
        let events = txn.open_table(EVENTS)?;
        let last = events.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        txn.open_table(BY_SOURCE)?;
        txn.open_table(DEDUP)?;
        txn.open_table(STATE)?;
        txn.open_table(READY)?;
        txn.open_table(DEAD)?;
        txn.open_table(ATTEMPTS)?;
        txn.open_table(STEPS)?;
        txn.open_table(ORDER)?;
        txn.open_table(REPLAYS)?;
        let sources = txn.open_table(SOURCES)?;
        let mut backlog = HashMap::new();
        for entry in sources.iter()? {
            let (k, v) = entry?;
            backlog.insert(Arc::from(k.value()), v.value().1);
        }
        (last, backlog)
    };
    txn.commit()?;
    Ok((last, backlog))
}

/// Moves the delivery tables of format version 1 (one delivery per event) to those of
/// version 2, each delivery to the unnamed destination, in the transaction that opens
/// the file: a crash midway leaves version 1 as it was.
fn migrate_v1(txn: &redb::WriteTransaction) -> Result<(), InitError> {
    use super::tables::v1;
    {
        let old = txn.open_table(v1::READY)?;
        let mut new = txn.open_table(READY)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            let (source, due, id, replay) = k.value();
            new.insert((source, due, id, replay, ""), v.value())?;
        }
        let old = txn.open_table(v1::STATE)?;
        let mut new = txn.open_table(STATE)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            new.insert((k.value(), ""), v.value())?;
        }
        let old = txn.open_table(v1::DEAD)?;
        let mut new = txn.open_table(DEAD)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            let (source, id) = k.value();
            new.insert((source, id, ""), v.value())?;
        }
        let old = txn.open_table(v1::ORDER)?;
        let mut new = txn.open_table(ORDER)?;
        for entry in old.iter()? {
            let (k, _) = entry?;
            let (source, key, id) = k.value();
            new.insert((source, "", key, id), ())?;
        }
    }
    txn.delete_table(v1::READY)?;
    txn.delete_table(v1::STATE)?;
    txn.delete_table(v1::DEAD)?;
    txn.delete_table(v1::ORDER)?;
    Ok(())
}

/// Refreshes the free-space reading every 250 ms while the journal lives.
fn watch_disk(shared: Weak<Shared>, path: PathBuf) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let _ = std::thread::Builder::new()
        .name("hookbox-diskwatch".into())
        .spawn(move || {
            while let Some(shared) = shared.upgrade() {
                if let Ok(free) = fs4::available_space(&dir) {
                    shared.disk_free.store(free, Ordering::Relaxed);
                }
                drop(shared);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
}

impl RedbJournal {
    /// A builder with the documented defaults.
    pub fn builder() -> RedbJournalBuilder {
        RedbJournalBuilder::default()
    }

    /// Opens (creating if needed) the journal at `path` with the defaults.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::builder().open(path)
    }

    /// Finishes the appends already queued, then stops the writer. Later appends are
    /// refused. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        // A full queue drains as the writer works, so this send waits at most a batch.
        let _ = self.sender.send(Op::Shutdown);
        if let Some(h) = self.writer.lock().expect("writer lock").take() {
            let _ = h.join();
        }
    }

    /// How many events the journal holds (synchronously; [`Journal::count`] is the
    /// same as a future).
    pub fn events_stored(&self) -> Result<u64, JournalError> {
        self.shared
            .wait_applied(self.shared.logged.load(Ordering::Acquire));
        self.shared.read_count()
    }

    /// Runs `read` in place, once redb holds every append the log acknowledged so far
    /// (at once, unless the applier is behind: then after it caught up).
    fn fresh<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Shared) -> Result<T, JournalError> + Send + 'static,
    ) -> JournalFuture<T> {
        self.once_caught_up(move |s| done(read(s)))
    }

    /// [`Self::fresh`] for a read that may scan far: on the blocking pool.
    fn fresh_offloaded<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Shared) -> Result<T, JournalError> + Send + 'static,
    ) -> JournalFuture<T> {
        self.once_caught_up(move |s| offload(s, read))
    }

    /// Runs `scan` in a read transaction on the blocking pool (after the applier caught
    /// up), then hands the writer the op `make` builds from what it found; `make` may
    /// answer at once instead (`Err`: a dry run). The writer thread never scans.
    fn scan_then_submit<S: Send + 'static, T: Send + 'static>(
        &self,
        scan: impl FnOnce(&Shared) -> Result<S, JournalError> + Send + 'static,
        make: impl FnOnce(S, writer::Reply<T>) -> Result<Op, T> + Send + 'static,
    ) -> JournalFuture<T> {
        if self.closing.load(Ordering::Acquire) {
            return done(Err(JournalError::Unavailable("shutting down")));
        }
        let scanned = self.fresh_offloaded(scan);
        let sender = self.sender.clone();
        Box::pin(async move {
            let found = scanned.await?;
            let (reply, rx) = oneshot::channel();
            let op = match make(found, reply) {
                Ok(op) => op,
                Err(answer) => return Ok(answer),
            };
            match sender.try_send(op) {
                Ok(()) => {}
                Err(TrySendError::Full(op)) => wait_for_room(sender, op).await?,
                Err(TrySendError::Disconnected(_)) => {
                    return Err(JournalError::Unavailable("the writer has stopped"))
                }
            }
            rx.await.unwrap_or(Err(JournalError::Unavailable(
                "the writer stopped before committing",
            )))
        })
    }

    /// Starts `run` now, or once the applier has caught up (see [`Self::caught_up`]).
    fn once_caught_up<T: Send + 'static>(
        &self,
        run: impl FnOnce(&Arc<Shared>) -> JournalFuture<T> + Send + 'static,
    ) -> JournalFuture<T> {
        match self.caught_up() {
            None => run(&self.shared),
            Some(caught_up) => {
                let shared = self.shared.clone();
                Box::pin(async move {
                    caught_up.await?;
                    run(&shared).await
                })
            }
        }
    }

    /// What a read waits for first: the applier catching up with what the log
    /// acknowledged before the read began, if it has not yet. A failed apply ends the
    /// wait once the writer has reopened the journal (which applies the log).
    fn caught_up(&self) -> Option<JournalFuture<()>> {
        let target = self.shared.logged.load(Ordering::Acquire);
        if self.shared.applied.load(Ordering::Acquire) >= target {
            return None;
        }
        let mut applied = self.shared.applied_watch.subscribe();
        Some(Box::pin(async move {
            applied
                .wait_for(|n| *n >= target)
                .await
                .map(drop)
                .map_err(|_| JournalError::Unavailable("the journal writer stopped"))
        }))
    }

    /// Hands a non-append op to the writer; resolves when its batch commits.
    fn submit<T: Send + 'static>(
        &self,
        op: Op,
        rx: oneshot::Receiver<Result<T, JournalError>>,
    ) -> JournalFuture<T> {
        if self.closing.load(Ordering::Acquire) {
            return Box::pin(std::future::ready(Err(JournalError::Unavailable(
                "shutting down",
            ))));
        }
        // Not refused when the queue is full like appends: these come from inside
        // hookbox and are bounded by its own concurrency; wait for room off the runtime.
        let waiting = match self.sender.try_send(op) {
            Ok(()) => None,
            Err(TrySendError::Full(op)) => Some((self.sender.clone(), op)),
            Err(TrySendError::Disconnected(_)) => {
                return Box::pin(std::future::ready(Err(JournalError::Unavailable(
                    "the writer has stopped",
                ))))
            }
        };
        Box::pin(async move {
            if let Some((sender, op)) = waiting {
                wait_for_room(sender, op).await?;
            }
            rx.await.unwrap_or(Err(JournalError::Unavailable(
                "the writer stopped before committing",
            )))
        })
    }
}

impl Drop for RedbJournal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The reads, synchronous: redb reads are served from its page cache in microseconds,
/// so the futures of the contract run them in place.
impl Shared {
    fn read_get(&self, id: EventId) -> Result<Option<StoredEvent>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let rec = events.get(id.0)?;
        rec.map(|r| record::decode(id.0, r.value())).transpose()
    }

    /// Claims due deliveries: scans the READY queue, leaving out those claimed already
    /// and those held back by per-key order, and records a claim for each it returns.
    fn read_claim(
        &self,
        source: &str,
        now: std::time::SystemTime,
        limit: usize,
    ) -> Result<Vec<Claim>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let ready = txn.open_table(READY)?;
        let order = txn.open_table(ORDER)?;
        let now_ms = millis(now);
        let mut out = Vec::new();
        let source_arc: Arc<str> = Arc::from(source);
        // Held for the scan: two claimers of one source never get the same delivery.
        let mut claims = self.claims.lock().expect("claims lock");
        // Entries skipped (claimed, or held back by order) are bounded per call, so a
        // key blocked behind a dead event costs each look a bounded scan.
        let range =
            ready.range((source, 0, 0, 0, "")..(source, now_ms.saturating_add(1), 0, 0, ""))?;
        for (scanned, entry) in range.enumerate() {
            if out.len() >= limit || scanned >= MAX_READY_SCAN.saturating_add(limit) {
                break;
            }
            let (k, v) = entry?;
            let (_, due_ms, id, replay, dest) = k.value();
            let (attempt, key) = v.value();
            let destination: Arc<str> = Arc::from(dest);
            let held = (id, replay, destination);
            if claims.contains_key(&held) {
                continue;
            }
            let replay = (replay != 0).then_some(replay);
            if !key.is_empty() && replay.is_none() {
                // Per-key order: only the oldest unfinished event of a key may go to
                // each destination.
                let first = order
                    .range((source, dest, key, 0)..=(source, dest, key, u64::MAX))?
                    .next()
                    .transpose()?;
                if first.is_some_and(|(k, _)| k.value().3 != id) {
                    continue;
                }
            }
            let token = self.tokens.fetch_add(1, Ordering::Relaxed) + 1;
            let destination = held.2.clone();
            claims.insert(held, token);
            out.push(Claim {
                id: EventId(id),
                attempt,
                replay,
                destination,
                due_ms,
                order_key: key.to_owned(),
                source: source_arc.clone(),
                token,
                event: Default::default(),
            });
        }
        Ok(out)
    }

    fn read_next_due(
        &self,
        source: &str,
        after: std::time::SystemTime,
    ) -> Result<Option<u64>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let ready = txn.open_table(READY)?;
        let from = millis(after).saturating_add(1);
        let first = ready
            .range((source, from, 0, 0, "")..)?
            .next()
            .transpose()?;
        Ok(first.and_then(|(k, _)| {
            let (s, due, ..) = k.value();
            (s == source).then_some(due)
        }))
    }

    fn read_step_result(&self, id: EventId, name: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let steps = txn.open_table(STEPS)?;
        Ok(steps.get((id.0, name))?.map(|g| g.value().to_vec()))
    }

    fn read_state(&self, id: EventId) -> Result<Option<EventState>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let Some(at) = origin(&txn.open_table(EVENTS)?, id.0)? else {
            return Ok(None);
        };
        let (states, ready) = (txn.open_table(STATE)?, txn.open_table(READY)?);
        state_of(&states, &ready, &at, id.0).map(Some)
    }

    fn read_deliveries(&self, id: EventId) -> Result<Vec<DestinationState>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let Some(at) = origin(&txn.open_table(EVENTS)?, id.0)? else {
            return Ok(Vec::new());
        };
        let (states, ready) = (txn.open_table(STATE)?, txn.open_table(READY)?);
        let mut rows = deliveries_of(&states, &ready, &at, id.0)?;
        let order = txn.open_table(ORDER)?;
        for r in &mut rows {
            let key = r.state.order_key.as_str();
            if r.state.state != State::Pending || key.is_empty() {
                continue;
            }
            let (source, dest) = (at.0.as_str(), r.destination.as_str());
            // The key's first delivery not done yet, when it is an earlier one.
            if let Some(head) = order
                .range((source, dest, key, 0)..(source, dest, key, id.0))?
                .next()
            {
                r.waiting_for = Some(EventId(head?.0.value().3));
            }
        }
        Ok(rows)
    }

    fn read_attempts(&self, id: EventId) -> Result<Vec<Attempt>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let attempts = txn.open_table(ATTEMPTS)?;
        let mut out = Vec::new();
        for entry in attempts.range((id.0, 0)..=(id.0, u32::MAX))? {
            let (_, v) = entry?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| JournalError::Corrupt {
                    id: id.0,
                    problem: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    fn read_dead_count(&self) -> Result<u64, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        Ok(txn.open_table(DEAD)?.len()?)
    }

    fn read_redrive_candidates(
        &self,
        filter: &RedriveFilter,
    ) -> Result<Vec<(String, u64, String)>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        writer::redrive_candidates(&txn.open_table(DEAD)?, &txn.open_table(EVENTS)?, filter)
    }

    fn read_replay_matches(
        &self,
        filter: &ReplayFilter,
    ) -> Result<Vec<(String, u64, String)>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        super::writer::replay_matches(
            &txn.open_table(EVENTS)?,
            &txn.open_table(STATE)?,
            &txn.open_table(READY)?,
            filter,
        )
    }

    fn read_replay_status(&self, id: u64) -> Result<Option<ReplayStatus>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let replays = txn.open_table(REPLAYS)?;
        let found = replays.get(id)?;
        found
            .map(|g| {
                serde_json::from_slice(g.value()).map_err(|e| JournalError::Corrupt {
                    id,
                    problem: e.to_string(),
                })
            })
            .transpose()
    }

    fn read_lookup(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<EventId>, JournalError> {
        let db = db_of(self)?;
        let txn = db.begin_read()?;
        let dedup = txn.open_table(DEDUP)?;
        let found = dedup.get((source, delivery_id))?;
        Ok(found.map(|g| EventId(g.value().0)))
    }
}

impl RedbJournal {
    /// Ends `claim` if it is still held; false when it was taken back.
    fn release(&self, claim: &Claim) -> bool {
        let mut claims = self.shared.claims.lock().expect("claims lock");
        let key = held_key(claim);
        if claims.get(&key) == Some(&claim.token) {
            claims.remove(&key);
            true
        } else {
            false
        }
    }

    fn holds(&self, claim: &Claim) -> bool {
        let claims = self.shared.claims.lock().expect("claims lock");
        claims.get(&held_key(claim)) == Some(&claim.token)
    }
}

fn read_query(shared: &Shared, q: &Query) -> Result<Page, JournalError> {
    let limit = if q.limit == 0 { 100 } else { q.limit };
    let window = Window::of(q.since, q.until);
    let (lo, mut hi) = window.ids();
    if let Some(before) = q.before {
        hi = hi.min(before.0);
    }
    let mut page = Page::default();
    if lo >= hi {
        return Ok(page);
    }
    let db = db_of(shared)?;
    let txn = db.begin_read()?;
    let events = txn.open_table(EVENTS)?;
    let states = txn.open_table(STATE)?;
    let ready = txn.open_table(READY)?;
    let needs_body = q.filter.as_ref().is_some_and(Filter::needs_body);
    // Events handed to the filter so far, bounded by MAX_FILTER_SCAN, and the last.
    let mut filtered = 0usize;
    let mut last_filtered = 0u64;
    let mut consider = |id: u64, bytes: &[u8]| -> Result<bool, JournalError> {
        let mut s = record::decode_summary(id, bytes)?;
        if !window.contains(millis(s.received_at)) {
            return Ok(true);
        }
        if !q
            .event_type
            .as_deref()
            .is_none_or(|p| type_matches(p, s.event_type.as_deref()))
        {
            return Ok(true);
        }
        let at = (s.source.clone(), millis(s.received_at));
        let st = state_of(&states, &ready, &at, id)?;
        if q.state.is_some_and(|want| want != st.state) {
            return Ok(true);
        }
        if let Some(filter) = &q.filter {
            if filtered == MAX_FILTER_SCAN {
                // Every event newer than the last one filtered was looked at: the next
                // page goes on from it.
                page.next_cursor = Some(EventId(last_filtered));
                return Ok(false);
            }
            filtered += 1;
            last_filtered = id;
            let body = if needs_body {
                record::decode_body(id, bytes)?
            } else {
                std::borrow::Cow::Borrowed(&[][..])
            };
            let input = FilterInput {
                event_type: s.event_type.as_deref(),
                body: &body,
            };
            if !filter.accepts(&input) {
                return Ok(true);
            }
        }
        if page.events.len() == limit {
            // One more match exists: the page is full and the next one is not empty.
            page.next_cursor = page.events.last().map(|e| e.id);
            return Ok(false);
        }
        s.state = st.state;
        s.attempts = st.attempts;
        page.events.push(s);
        Ok(true)
    };
    match &q.source {
        Some(source) => {
            let by_source = txn.open_table(BY_SOURCE)?;
            for entry in by_source
                .range((source.as_str(), lo)..(source.as_str(), hi))?
                .rev()
            {
                let id = entry?.0.value().1;
                let Some(rec) = events.get(id)? else { continue };
                if !consider(id, rec.value())? {
                    break;
                }
            }
        }
        None => {
            for entry in events.range(lo..hi)?.rev() {
                let (k, v) = entry?;
                if !consider(k.value(), v.value())? {
                    break;
                }
            }
        }
    }
    Ok(page)
}

/// Dead deliveries, by source, then event, then destination.
fn read_dead(
    shared: &Shared,
    source: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadDelivery>, JournalError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let db = db_of(shared)?;
    let txn = db.begin_read()?;
    let dead = txn.open_table(DEAD)?;
    let mut out = Vec::new();
    // The table is keyed by (source, event, destination): the oldest `limit` of one
    // source are the start of its range. Across sources, the oldest `limit` overall are
    // among each source's oldest `limit`, so each source's range is read that far and
    // the whole is merged: (sources x limit) entries, however long the list.
    let mut next: Option<String> = match source {
        Some(s) => Some(s.to_owned()),
        None => dead.first()?.map(|(k, _)| k.value().0.to_owned()),
    };
    while let Some(s) = next.take() {
        for (taken, entry) in dead.range((s.as_str(), 0, "")..)?.enumerate() {
            let (k, _) = entry?;
            let (at, id, destination) = k.value();
            if at != s {
                // The first entry of the next source.
                if source.is_none() {
                    next = Some(at.to_owned());
                }
                break;
            }
            if taken == limit {
                // Skip the rest of this source: the smallest key after all of its.
                if source.is_none() {
                    next = dead
                        .range((format!("{s}\0").as_str(), 0, "")..)?
                        .next()
                        .transpose()?
                        .map(|(k, _)| k.value().0.to_owned());
                }
                break;
            }
            out.push(DeadDelivery {
                id: EventId(id),
                source: s.clone(),
                destination: destination.to_owned(),
            });
        }
    }
    out.sort_by(|a, b| (a.id, &a.destination).cmp(&(b.id, &b.destination)));
    out.truncate(limit);
    Ok(out)
}

/// The live database, or `Unavailable` while the writer recovers it.
fn db_of(shared: &Shared) -> Result<Arc<Database>, JournalError> {
    shared
        .db
        .read()
        .expect("db lock")
        .clone()
        .ok_or(JournalError::Unavailable(
            "recovering from a storage failure",
        ))
}

/// Runs a read that may scan far (queries, the DLQ) on the blocking pool, off the
/// async workers; in place when there is no tokio runtime.
fn offload<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T, JournalError> + Send + 'static,
) -> JournalFuture<T> {
    let shared = shared.clone();
    if tokio::runtime::Handle::try_current().is_err() {
        return done(f(&shared));
    }
    Box::pin(async move {
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .unwrap_or_else(|_| Err(JournalError::Unavailable("a journal read panicked")))
    })
}

/// Queues `op` on a full writer queue, waiting for room on the blocking pool (not on
/// the runtime).
async fn wait_for_room(sender: SyncSender<Op>, op: Op) -> Result<(), JournalError> {
    let sent = tokio::task::spawn_blocking(move || sender.send(op).is_ok()).await;
    if matches!(sent, Ok(true)) {
        Ok(())
    } else {
        Err(JournalError::Unavailable("the writer has stopped"))
    }
}

/// A result already at hand, as the contract's future.
fn done<T: Send + 'static>(r: Result<T, JournalError>) -> JournalFuture<T> {
    Box::pin(std::future::ready(r))
}

impl Journal for RedbJournal {
    fn append(&self, event: &Verified<Event>, opts: &AppendOptions) -> AppendFuture {
        if self.closing.load(Ordering::Acquire) {
            return done(Err(JournalError::Unavailable("shutting down")));
        }
        let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= self.capacity {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return done(Err(JournalError::Overloaded(queued)));
        }
        let (reply, rx) = oneshot::channel();
        let op = AppendOp {
            record: record::encode(event.get()),
            source: event.source.clone(),
            delivery_id: event.delivery_id.clone(),
            received_ms: millis(event.received_at),
            dedup_window: opts.dedup_window,
            order_key: opts.order_key.clone().unwrap_or_default(),
            destinations: opts.unique_destinations(),
            reply,
        };
        if let Err(e) = self.sender.try_send(Op::Append(op)) {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            let err = match e {
                TrySendError::Full(_) => JournalError::Overloaded(queued),
                TrySendError::Disconnected(_) => {
                    JournalError::Unavailable("the writer has stopped")
                }
            };
            return done(Err(err));
        }
        Box::pin(async move {
            rx.await.unwrap_or(Err(JournalError::Unavailable(
                "the writer stopped before committing",
            )))
        })
    }

    fn load(&self) -> Load {
        Load {
            queued: self.shared.queued.load(Ordering::Acquire),
            capacity: self.capacity,
            disk_free: self.shared.disk_free.load(Ordering::Relaxed),
            healthy: self.shared.healthy.load(Ordering::Acquire),
        }
    }

    fn backlog(&self, source: &str) -> u64 {
        self.shared
            .backlog
            .read()
            .expect("backlog lock")
            .get(source)
            .copied()
            .unwrap_or(0)
    }

    fn sources(&self) -> Vec<(String, u64)> {
        let map = self.shared.backlog.read().expect("backlog lock");
        map.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn count(&self) -> JournalFuture<u64> {
        self.fresh(Shared::read_count)
    }

    fn get(&self, id: EventId) -> JournalFuture<Option<StoredEvent>> {
        self.fresh(move |s| s.read_get(id))
    }

    fn query(&self, q: &Query) -> JournalFuture<Page> {
        let q = q.clone();
        self.fresh_offloaded(move |s| read_query(s, &q))
    }

    fn lookup(&self, source: &str, delivery_id: &str) -> JournalFuture<Option<EventId>> {
        let (source, delivery_id) = (source.to_owned(), delivery_id.to_owned());
        self.fresh(move |s| s.read_lookup(&source, &delivery_id))
    }

    fn claim(
        &self,
        source: &str,
        now: std::time::SystemTime,
        limit: usize,
    ) -> JournalFuture<Vec<Claim>> {
        let source = source.to_owned();
        self.fresh(move |s| s.read_claim(&source, now, limit))
    }

    fn next_due(&self, source: &str, after: std::time::SystemTime) -> JournalFuture<Option<u64>> {
        let source = source.to_owned();
        self.fresh(move |s| s.read_next_due(&source, after))
    }

    fn settle(&self, claim: Claim, attempt: Attempt, next: Next) -> JournalFuture<()> {
        if !self.holds(&claim) {
            return done(Err(JournalError::LeaseLost {
                id: claim.id.0,
                token: claim.token,
            }));
        }
        // The claim ends once the outcome is committed (or failed), not before: until
        // then the delivery is still in the ready queue and must not be claimed again.
        let key = held_key(&claim);
        let token = claim.token;
        let shared = self.shared.clone();
        let (reply, rx) = oneshot::channel();
        let op = Op::Outcome(OutcomeOp {
            source: claim.source.clone(),
            ready: claim,
            attempt,
            next,
            reply,
        });
        let written = self.submit(op, rx);
        Box::pin(async move {
            let r = written.await;
            let mut claims = shared.claims.lock().expect("claims lock");
            if claims.get(&key) == Some(&token) {
                claims.remove(&key);
            }
            r
        })
    }

    fn abandon(&self, claims: Vec<Claim>) -> JournalFuture<()> {
        let changed = claims.iter().filter(|c| self.release(c)).count();
        if changed > 0 {
            // Due again now: wake whoever waits for deliveries.
            self.shared.committed.send_modify(|_| {});
        }
        done(Ok(()))
    }

    fn step_result(&self, id: EventId, name: &str) -> JournalFuture<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.fresh(move |s| s.read_step_result(id, &name))
    }

    fn save_step(&self, claim: &Claim, name: &str, value: Vec<u8>) -> JournalFuture<()> {
        if !self.holds(claim) {
            return done(Err(JournalError::LeaseLost {
                id: claim.id.0,
                token: claim.token,
            }));
        }
        let (reply, rx) = oneshot::channel();
        self.submit(
            Op::Step {
                id: claim.id.0,
                name: name.to_owned(),
                value,
                reply,
            },
            rx,
        )
    }

    fn state(&self, id: EventId) -> JournalFuture<Option<EventState>> {
        self.fresh(move |s| s.read_state(id))
    }

    fn attempts(&self, id: EventId) -> JournalFuture<Vec<Attempt>> {
        self.fresh(move |s| s.read_attempts(id))
    }

    fn deliveries(&self, id: EventId) -> JournalFuture<Vec<DestinationState>> {
        self.fresh(move |s| s.read_deliveries(id))
    }

    fn dead(&self, source: Option<&str>, limit: usize) -> JournalFuture<Vec<DeadDelivery>> {
        let source = source.map(str::to_owned);
        self.fresh_offloaded(move |s| read_dead(s, source.as_deref(), limit))
    }

    fn dead_count(&self) -> JournalFuture<u64> {
        self.fresh(Shared::read_dead_count)
    }

    fn redrive(&self, filter: RedriveFilter) -> JournalFuture<u64> {
        // The dead table is read on the blocking pool; the writer moves what is still
        // dead and still matches.
        let f = filter.clone();
        self.scan_then_submit(
            move |s| s.read_redrive_candidates(&f),
            move |picked, reply| {
                Ok(Op::Redrive {
                    filter,
                    picked,
                    reply,
                })
            },
        )
    }

    fn replay(&self, filter: ReplayFilter) -> JournalFuture<ReplayStatus> {
        // The window is read on the blocking pool; the writer only files what was
        // found. A replay queues what the window held when asked.
        let f = filter.clone();
        self.scan_then_submit(
            move |s| s.read_replay_matches(&f),
            move |matched, reply| {
                if filter.dry_run {
                    return Err(ReplayStatus {
                        id: 0,
                        matched: matched.len() as u64,
                        done: 0,
                        failed: 0,
                        destination: filter.destination,
                        created_ms: millis(std::time::SystemTime::now()),
                    });
                }
                Ok(Op::Replay {
                    filter,
                    matched,
                    reply,
                })
            },
        )
    }

    fn purge(&self, before: std::time::SystemTime, limit: usize) -> JournalFuture<u64> {
        let (reply, rx) = oneshot::channel();
        self.submit(
            Op::Purge {
                before_ms: millis(before),
                limit,
                reply,
            },
            rx,
        )
    }

    fn replay_status(&self, id: u64) -> JournalFuture<Option<ReplayStatus>> {
        self.fresh(move |s| s.read_replay_status(id))
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.committed.subscribe()
    }

    fn close(&self) -> JournalFuture<()> {
        self.shutdown();
        done(Ok(()))
    }
}

/// The journaled state of `id`; an event never attempted is pending.
/// (event, replay or 0, destination): what a claim holds.
type HeldKey = (u64, u64, Arc<str>);

/// The key a claim is held under.
fn held_key(claim: &Claim) -> HeldKey {
    (
        claim.id.0,
        claim.replay.unwrap_or(0),
        claim.destination.clone(),
    )
}

/// Every state row of event `id`, by destination.
pub(super) fn delivery_rows(
    states: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    id: u64,
) -> Result<Vec<DestinationState>, JournalError> {
    let mut out = Vec::new();
    for entry in states.range((id, "")..(id.saturating_add(1), ""))? {
        let (k, v) = entry?;
        let state = serde_json::from_slice(v.value()).map_err(|e| JournalError::Corrupt {
            id,
            problem: e.to_string(),
        })?;
        out.push(DestinationState {
            destination: k.value().1.to_owned(),
            state,
            waiting_for: None,
        });
    }
    Ok(out)
}

/// Where an event's fresh deliveries are filed: its source and receive time (ms).
pub(super) type Origin = (String, u64);

/// The origin of event `id`, `None` when there is no such event.
fn origin(
    events: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<Origin>, JournalError> {
    let Some(rec) = events.get(id)? else {
        return Ok(None);
    };
    let s = record::decode_summary(id, rec.value())?;
    Ok(Some((s.source, millis(s.received_at))))
}

/// The destinations of event `id` whose first delivery is still waiting, never
/// attempted: filed in the ready queue at the event's receive time, with no state row
/// (one is written at the first outcome).
pub(super) fn fresh_destinations(
    ready: &impl ReadableTable<ReadyKey<'static>, (u32, &'static str)>,
    (source, received_ms): &Origin,
    id: u64,
) -> Result<Vec<String>, JournalError> {
    let (source, at) = (source.as_str(), *received_ms);
    let mut out = Vec::new();
    for entry in ready.range((source, at, id, 0, "")..(source, at, id, 1, ""))? {
        out.push(entry?.0.value().4.to_owned());
    }
    Ok(out)
}

/// Each destination's delivery of event `id`: the state rows, and a fresh state for
/// each delivery not attempted yet (one to the unnamed destination when there is
/// neither).
pub(super) fn deliveries_of(
    states: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    ready: &impl ReadableTable<ReadyKey<'static>, (u32, &'static str)>,
    at: &Origin,
    id: u64,
) -> Result<Vec<DestinationState>, JournalError> {
    let mut rows = delivery_rows(states, id)?;
    for destination in fresh_destinations(ready, at, id)? {
        if !rows.iter().any(|r| r.destination == destination) {
            rows.push(DestinationState {
                destination,
                state: EventState::fresh(""),
                waiting_for: None,
            });
        }
    }
    if rows.is_empty() {
        rows.push(DestinationState {
            destination: String::new(),
            state: EventState::fresh(""),
            waiting_for: None,
        });
    }
    rows.sort_by(|a, b| a.destination.cmp(&b.destination));
    Ok(rows)
}

/// Event `id`'s state over all its deliveries.
fn state_of(
    states: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    ready: &impl ReadableTable<ReadyKey<'static>, (u32, &'static str)>,
    at: &Origin,
    id: u64,
) -> Result<EventState, JournalError> {
    let rows = deliveries_of(states, ready, at, id)?;
    Ok(EventState::aggregate(rows.iter().map(|d| &d.state))
        .unwrap_or_else(|| EventState::fresh("")))
}
