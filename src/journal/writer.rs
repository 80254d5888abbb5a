//! The group-commit writer: one thread, one write transaction per batch.
//!
//! Every journal write goes through here, so redb's single writer is never contended
//! and each batch costs one commit. With the write-ahead log (`wal.rs`, opt-in for
//! a file), a batch of appends alone is decided (ids, duplicates) and written to the
//! log with one write and one `fdatasync`, then answered, while the next batch queues;
//! an applier thread brings the appends to redb, everything queued meanwhile in one
//! transaction without fsync, and a read that would miss some waits for it
//! (`Unapplied`). Any other batch first waits for the applier, then commits to redb
//! without fsync and logs what it acknowledges (step results, redrives, replays); a
//! syncer thread `fdatasync`s that and answers it while the writer goes on. redb
//! commits durably once a second (a checkpoint, after which the log below it is
//! deleted). Without the log, a batch holding anything acknowledged is a durable redb
//! commit (`Durability::Immediate`).
//! Delivery outcomes alone never wait for an fsync: losing one in a crash only means
//! redelivering (at-least-once), never losing an event.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use super::record::{decode_body, decode_summary, millis};
use super::redb_journal::Shared;
use super::state::{Attempt, EventState, Next, RedriveFilter, ReplayFilter, ReplayStatus, State};
use super::tables::{
    ReadyKey, ATTEMPTS, BY_SOURCE, DEAD, DEDUP, EVENTS, META, ORDER, READY, REPLAYS, SOURCES,
    STATE, STEPS,
};
use super::wal::{LogStore, Record, Wal};
use super::{type_matches, Appended, EventId, JournalError, Window};

pub(super) type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

/// One append waiting for its commit.
pub(super) struct AppendOp {
    /// The encoded record (see `record.rs`).
    pub(super) record: Vec<u8>,
    pub(super) source: Arc<str>,
    pub(super) delivery_id: Option<String>,
    pub(super) received_ms: u64,
    pub(super) dedup_window: Option<Duration>,
    /// The ordering key, or empty.
    pub(super) order_key: String,
    /// The destinations, each a delivery (empty: one, to the unnamed destination).
    pub(super) destinations: Vec<String>,
    /// Answered after the commit returns, never before.
    pub(super) reply: Reply<Appended>,
}

/// The end of one delivery attempt.
pub(super) struct OutcomeOp {
    pub(super) source: Arc<str>,
    pub(super) ready: super::Claim,
    pub(super) attempt: Attempt,
    pub(super) next: Next,
    pub(super) reply: Reply<()>,
}

/// What the writer thread is asked to do.
pub(super) enum Op {
    Append(AppendOp),
    Outcome(OutcomeOp),
    Step {
        id: u64,
        name: String,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    /// A redrive of the dead deliveries [`redrive_candidates`] picked, off this thread.
    Redrive {
        filter: RedriveFilter,
        picked: Vec<(String, u64, String)>,
        reply: Reply<u64>,
    },
    /// A replay whose deliveries were found by [`replay_matches`], off this thread.
    Replay {
        filter: ReplayFilter,
        matched: Vec<(String, u64, String)>,
        reply: Reply<ReplayStatus>,
    },
    /// Retention: remove up to `limit` done events received before `before_ms`.
    Purge {
        before_ms: u64,
        limit: usize,
        reply: Reply<u64>,
    },
    /// Finish what is queued ahead of this, then stop.
    Shutdown,
}

impl Op {
    fn durable(&self) -> bool {
        !matches!(self, Op::Outcome(_))
    }

    fn fail(self, e: &str) {
        let err = || JournalError::Storage(e.to_owned());
        match self {
            Op::Append(op) => drop(op.reply.send(Err(err()))),
            Op::Outcome(op) => drop(op.reply.send(Err(err()))),
            Op::Step { reply, .. } => drop(reply.send(Err(err()))),
            Op::Redrive { reply, .. } => drop(reply.send(Err(err()))),
            Op::Replay { reply, .. } => drop(reply.send(Err(err()))),
            Op::Purge { reply, .. } => drop(reply.send(Err(err()))),
            Op::Shutdown => {}
        }
    }
}

/// Opens (or reopens, after a storage failure) the database.
pub(super) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send>;

/// Called with the batch size just before each commit (tests hold or slow commits).
pub(super) type CommitHook = Arc<dyn Fn(usize) + Send + Sync>;

/// The log's state as the writer holds it: the log, and the batch whose `fdatasync`
/// is running on the syncer thread, if any.
struct Logging {
    wal: Wal,
    /// Answers `Ok` once the outstanding batch is durable (and answered), `Err` when
    /// its sync failed (its ops were answered with the error).
    outstanding: Option<Receiver<Result<(), String>>>,
    jobs: SyncSender<SyncJob>,
    /// The syncer thread, joined when the writer stops (it holds the database).
    syncer: Option<std::thread::JoinHandle<()>>,
    /// Appends the log holds and redb may not yet.
    unapplied: Unapplied,
    /// The applier's queue (see [`applier`]), and the thread.
    apply: Option<Sender<(u64, Vec<Record>)>>,
    applier: Option<std::thread::JoinHandle<()>>,
}

/// The most log records one applier transaction takes.
const MAX_APPLY: usize = 4096;

/// Dedup entry: (source, delivery id).
type DedupKey = (Arc<str>, String);

/// What the writer knows of appends acknowledged by the log alone and handed to the
/// applier: how many were logged (`Shared::logged`; the applier counts how many redb
/// holds in `Shared::applied`, and a read finding it behind waits for it, so every
/// read sees every acknowledged event), and their dedup entries until redb has them.
#[derive(Default)]
struct Unapplied {
    /// (source, delivery id) -> (event id, ms, the append's number).
    dedup: HashMap<DedupKey, (u64, u64, u64)>,
    /// The same keys in the order they were logged, for pruning.
    order: VecDeque<(u64, DedupKey)>,
    /// Appends logged so far, all told.
    logged: u64,
}

impl Unapplied {
    /// Drops the entries of appends redb holds (up to the `applied`-th).
    fn prune(&mut self, applied: u64) {
        while self.order.front().is_some_and(|(n, _)| *n <= applied) {
            let (n, key) = self.order.pop_front().expect("checked");
            if self.dedup.get(&key).is_some_and(|e| e.2 == n) {
                self.dedup.remove(&key);
            }
        }
    }

    /// Every logged append is in redb now (the log was applied again at a reopen).
    fn forget(&mut self, shared: &Shared) {
        self.dedup.clear();
        self.order.clear();
        shared.mark_applied(self.logged);
    }
}

/// The applier thread: applies what the log acknowledged to redb, everything queued
/// meanwhile in one transaction without fsync (the log keeps it durable until the
/// next checkpoint), while the writer goes on logging. After a failure it leaves
/// records alone until the writer has reopened the journal, which applies the log.
fn applier(shared: Arc<Shared>, rx: Receiver<(u64, Vec<Record>)>) {
    while let Ok((mut upto, mut records)) = rx.recv() {
        while records.len() < MAX_APPLY {
            match rx.try_recv() {
                Ok((n, more)) => {
                    upto = n;
                    records.extend(more);
                }
                Err(_) => break,
            }
        }
        if !shared.healthy.load(Ordering::Acquire) {
            continue;
        }
        let Some(db) = shared.db.read().expect("db lock").clone() else {
            continue;
        };
        let started = Instant::now();
        // A panic would leave every waiting read waiting: it is a failed apply instead.
        let apply =
            std::panic::AssertUnwindSafe(|| apply_records(&db, records, Durability::None, None));
        let result = std::panic::catch_unwind(apply)
            .unwrap_or_else(|_| Err(JournalError::Storage("applying the log panicked".into())));
        drop(db);
        metrics::histogram!("hookbox_journal_apply_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => shared.mark_applied(upto),
            Err(e) => {
                tracing::error!(error = %e, "applying the journal log to the database failed; reopening it");
                metrics::counter!("hookbox_journal_commit_failures_total").increment(1);
                shared.healthy.store(false, Ordering::Release);
                shared.mark_applied(0);
            }
        }
    }
}

/// Waits until redb holds every append the log acknowledged; reopens the journal if
/// applying them failed (which applies the log again).
fn catch_up(shared: &Shared, opener: &Opener, logging: &mut Option<Logging>) {
    let Some(l) = logging.as_ref() else {
        return;
    };
    shared.wait_applied(l.unapplied.logged);
    if !shared.healthy.load(Ordering::Acquire) {
        recover(shared, opener, logging);
    }
}

impl Logging {
    /// Waits for the outstanding batch's sync; `Err` when it failed.
    fn settle(&mut self) -> Result<(), String> {
        match self.outstanding.take() {
            None => Ok(()),
            Some(rx) => rx
                .recv()
                .unwrap_or_else(|_| Err("the log syncer stopped".to_owned())),
        }
    }
}

/// A written batch for the syncer: make it durable, then answer it.
struct SyncJob {
    store: Arc<dyn LogStore>,
    segment: u64,
    answers: Vec<Answer>,
    max_id: u64,
    changed: bool,
    started: Instant,
    done: std::sync::mpsc::SyncSender<Result<(), String>>,
}

/// The syncer thread: `fdatasync`s each written batch and answers it, while the writer
/// applies the next batch to redb.
fn syncer(shared: Arc<Shared>, jobs: Receiver<SyncJob>) {
    while let Ok(job) = jobs.recv() {
        let t = Instant::now();
        let synced = job.store.sync(job.segment).map_err(|e| e.to_string());
        metrics::histogram!("hookbox_journal_log_sync_seconds").record(t.elapsed().as_secs_f64());
        match &synced {
            Ok(()) => {
                metrics::histogram!("hookbox_journal_commit_seconds")
                    .record(job.started.elapsed().as_secs_f64());
                notify(&shared, job.max_id, job.changed);
                for a in job.answers {
                    a(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal log sync failed; nothing in this batch was acknowledged");
                metrics::counter!("hookbox_journal_commit_failures_total").increment(1);
                shared.healthy.store(false, Ordering::Release);
                for a in job.answers {
                    a(Err(e));
                }
            }
        }
        let _ = job.done.send(synced);
    }
}

/// Tells the delivery runtime that events (up to `max_id`) or deliveries changed.
fn notify(shared: &Shared, max_id: u64, changed: bool) {
    if max_id > 0 || changed {
        shared.committed.send_if_modified(|v| {
            let newer = max_id > *v;
            *v = (*v).max(max_id);
            newer || changed
        });
    }
}

/// The writer loop. Ends when every sender is gone or on [`Op::Shutdown`].
///
/// With a log, acknowledged writes commit to redb without fsync (visible to every read
/// at once) and then to the log, whose `fdatasync` (on the syncer thread, overlapping
/// the next batch) is their commit point; redb commits durably once a second. Without
/// one, every batch holding an acknowledged write commits durably in redb.
pub(super) fn run(
    shared: Arc<Shared>,
    rx: Receiver<Op>,
    opener: Opener,
    max_batch: usize,
    mut last_id: u64,
    wal: Option<Wal>,
    checkpoint_every: Duration,
) {
    let mut logging = wal.map(|wal| {
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<SyncJob>(1);
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("hookbox-journal-sync".into())
            .spawn(move || syncer(s, job_rx))
            .expect("spawn the journal log syncer thread");
        let (apply, apply_rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        let applier = std::thread::Builder::new()
            .name("hookbox-journal-apply".into())
            .spawn(move || applier(s, apply_rx))
            .expect("spawn the journal applier thread");
        Logging {
            wal,
            outstanding: None,
            jobs,
            syncer: Some(handle),
            unapplied: Unapplied::default(),
            apply: Some(apply),
            applier: Some(applier),
        }
    });
    let mut batch: Vec<Op> = Vec::with_capacity(max_batch);
    let mut stop = false;
    let mut last_durable = Instant::now();
    let mut prev_batch = 0usize;
    while !stop {
        // While the storage is failed, wake up regularly to reopen it: the shed layer
        // refuses appends meanwhile, so no batch would arrive to trigger the recovery.
        // So does the writer while the applier works, in case applying fails.
        let healthy = shared.healthy.load(Ordering::Acquire);
        let first = if healthy && !shared.behind() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(100))
        };
        match first {
            Ok(Op::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(op) => batch.push(op),
            Err(RecvTimeoutError::Timeout) => {
                if !shared.healthy.load(Ordering::Acquire) {
                    recover(&shared, &opener, &mut logging);
                }
                continue;
            }
        }
        // Whatever queued up during the previous commit forms this batch. Under load
        // (the previous batch was large) the writer waits up to 150 us for stragglers,
        // blocked on the queue (never spinning): a commit's fixed cost then buys more
        // events; at low load there is no wait.
        let linger = (prev_batch >= 16).then(|| Instant::now() + Duration::from_micros(150));
        while batch.len() < max_batch {
            let next = match linger {
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        rx.try_recv().map_err(|_| ())
                    } else {
                        rx.recv_timeout(left).map_err(|_| ())
                    }
                }
                None => rx.try_recv().map_err(|_| ()),
            };
            match next {
                Ok(Op::Shutdown) => {
                    stop = true;
                    break;
                }
                Ok(op) => batch.push(op),
                Err(()) => break,
            }
        }
        prev_batch = batch.len();
        let appends = batch.iter().filter(|o| matches!(o, Op::Append(_))).count();
        shared.queued.fetch_sub(appends, Ordering::AcqRel);
        let checkpoint = last_durable.elapsed() > checkpoint_every;
        // With the log, a batch of appends alone is acknowledged by the log's fsync and
        // reaches redb later, from the applier. Anything else first waits for the
        // applier to catch up, so it decides on the whole journal.
        let fast = logging.is_some() && !checkpoint && appends == batch.len();
        if !fast {
            catch_up(&shared, &opener, &mut logging);
        } else if !shared.healthy.load(Ordering::Acquire) {
            recover(&shared, &opener, &mut logging);
        }
        let db = match current_db(&shared, &opener, &mut logging) {
            Ok(db) => db,
            Err(e) => {
                batch.drain(..).for_each(|op| op.fail(&e));
                continue;
            }
        };
        if fast {
            let l = logging.as_mut().expect("the fast path logs");
            let logged = log_appends(&shared, &db, l, &mut batch, &mut last_id);
            drop(db);
            if let Err(e) = logged {
                fail_and_recover(&shared, &opener, &mut logging, &mut batch, &e);
            }
            continue;
        }
        let acknowledged = batch.iter().any(Op::durable);
        let durable = checkpoint || (acknowledged && logging.is_none());
        if durable {
            // A checkpoint may delete log segments: the batch being synced goes first.
            if let Some(l) = logging.as_mut() {
                if let Err(e) = l.settle() {
                    fail_and_recover(&shared, &opener, &mut logging, &mut batch, &e);
                    continue;
                }
            }
        }
        let mut log = Vec::new();
        let plan = Plan {
            durable,
            log: (logging.is_some() && !durable).then_some(&mut log),
            checkpoint: logging
                .as_ref()
                .filter(|_| durable)
                .map(|l| l.wal.last_seq()),
        };
        let started = Instant::now();
        let result = write_batch(&shared, &db, &mut batch, &mut last_id, plan);
        metrics::histogram!("hookbox_journal_apply_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(done) => {
                if durable {
                    last_durable = Instant::now();
                }
                metrics::histogram!("hookbox_journal_batch_size").record(done.replies.len() as f64);
                shared.apply_pending(&done.pending);
                if let (true, Some(l)) = (durable, logging.as_mut()) {
                    let seq = l.wal.last_seq();
                    if let Err(e) = l.wal.checkpointed(seq) {
                        tracing::warn!(error = %e, "deleting checkpointed log segments failed; trying again at the next checkpoint");
                    }
                }
                if log.is_empty() {
                    // A duplicate or a step stored already is answered from what the
                    // batch being synced wrote: not before that is durable.
                    if let (true, false, Some(l)) = (acknowledged, durable, logging.as_mut()) {
                        if let Err(e) = l.settle() {
                            done.replies.into_iter().for_each(|r| r(Err(&e)));
                            fail_and_recover(&shared, &opener, &mut logging, &mut batch, &e);
                            continue;
                        }
                    }
                    metrics::histogram!("hookbox_journal_commit_seconds")
                        .record(started.elapsed().as_secs_f64());
                    notify(&shared, done.max_id, done.changed);
                    for reply in done.replies {
                        reply(Ok(()));
                    }
                    continue;
                }
                let l = logging.as_mut().expect("a log was written");
                // One write unsynced at a time: a crash then tears only the log's end.
                let written = l.settle().and_then(|()| {
                    l.wal
                        .write(&log)
                        .map_err(|e| format!("writing the journal log: {e}"))
                });
                if let Err(e) = written {
                    done.replies.into_iter().for_each(|r| r(Err(&e)));
                    fail_and_recover(&shared, &opener, &mut logging, &mut batch, &e);
                    continue;
                }
                let (tx, outstanding) = std::sync::mpsc::sync_channel(1);
                let job = SyncJob {
                    store: l.wal.store(),
                    segment: l.wal.segment(),
                    answers: done.replies,
                    max_id: done.max_id,
                    changed: done.changed,
                    started,
                    done: tx,
                };
                l.outstanding = Some(outstanding);
                if l.jobs.send(job).is_err() {
                    // Its answers are dropped with it: the callers see the journal stop.
                    tracing::error!("the journal log syncer stopped");
                    l.outstanding = None;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = prev_batch, "journal commit failed; nothing in this batch was acknowledged");
                metrics::counter!("hookbox_journal_commit_failures_total").increment(1);
                drop(db);
                shared.healthy.store(false, Ordering::Release);
                recover(&shared, &opener, &mut logging);
            }
        }
    }
    // A clean stop: the last batch synced, and a checkpoint, so the next open has no
    // log to apply.
    catch_up(&shared, &opener, &mut logging);
    if let Some(l) = logging.as_mut() {
        let _ = l.settle();
        // Only on a healthy database: one reopened here without applying the log must
        // not be told it holds the log.
        let live = shared.db.read().expect("db lock").clone();
        if let (Some(db), true) = (live, shared.healthy.load(Ordering::Acquire)) {
            let seq = l.wal.last_seq();
            let ok = checkpoint_now(&db, seq).is_ok();
            if ok {
                let _ = l.wal.checkpointed(seq);
            }
        }
    }
    // The syncer and the applier end with their queues, and let go of the database.
    if let Some(mut l) = logging {
        let handles = [l.syncer.take(), l.applier.take()];
        drop(l);
        for h in handles.into_iter().flatten() {
            let _ = h.join();
        }
    }
    // Appends still queued behind a shutdown are refused (their senders see an error).
    drop(rx);
}

/// What a batch of appends decided before it is logged.
#[derive(Default)]
struct Logged {
    replies: Vec<Answer>,
    /// Each new event's record, encoded for the log.
    log: Vec<Vec<u8>>,
    records: Vec<Record>,
    /// The batch's own dedup entries (a delivery id twice in one batch): the event id,
    /// the time (ms) and the index of its record.
    dedup: HashMap<DedupKey, (u64, u64, usize)>,
    pending: HashMap<Arc<str>, i64>,
    max_id: u64,
}

/// The log's fast path: decides a batch of appends (ids, duplicates) against redb and
/// the appends not yet applied to it, writes the new ones to the log with one write and
/// one `fdatasync`, hands them to the [`applier`] and answers the batch. On `Err` every
/// op of the batch has been refused.
fn log_appends(
    shared: &Shared,
    db: &Database,
    l: &mut Logging,
    batch: &mut Vec<Op>,
    last_id: &mut u64,
) -> Result<(), String> {
    let started = Instant::now();
    let mut out = Logged::default();
    let mut ops = std::mem::take(batch).into_iter();
    let fail = |out: Logged, ops: std::vec::IntoIter<Op>, e: String| {
        out.replies.into_iter().for_each(|r| r(Err(&e)));
        ops.for_each(|op| op.fail(&e));
        Err(e)
    };
    // Before the read transaction `decide_appends` opens: an entry dropped here is in
    // what that transaction sees.
    l.unapplied.prune(shared.applied.load(Ordering::Acquire));
    if let Err(e) = decide_appends(db, &l.unapplied, &mut ops, &mut out, last_id) {
        return fail(out, ops, e.to_string());
    }
    metrics::histogram!("hookbox_journal_batch_size").record(out.replies.len() as f64);
    if out.log.is_empty() {
        // Only duplicates, answered from what may be the batch being synced: not before
        // that is durable.
        return match l.settle() {
            Ok(()) => {
                out.replies.into_iter().for_each(|r| r(Ok(())));
                Ok(())
            }
            Err(e) => fail(out, ops, e),
        };
    }
    if let Some(hook) = &shared.hook {
        hook(out.replies.len());
    }
    // One write unsynced at a time: a crash then tears only the log's end.
    let written = l.settle().and_then(|()| {
        l.wal
            .write(&out.log)
            .map_err(|e| format!("writing the journal log: {e}"))
    });
    if let Err(e) = written {
        return fail(out, ops, e);
    }
    let u = &mut l.unapplied;
    let base = u.logged;
    u.logged += out.records.len() as u64;
    for (key, (id, at, i)) in out.dedup {
        let n = base + i as u64 + 1;
        u.order.push_back((n, key.clone()));
        u.dedup.insert(key, (id, at, n));
    }
    // Before any answer: a read after its 202 must find redb behind, and wait.
    shared.logged.store(u.logged, Ordering::Release);
    shared.apply_pending(&out.pending);
    let handed = l
        .apply
        .as_ref()
        .is_some_and(|a| a.send((u.logged, out.records)).is_ok());
    if !handed {
        tracing::error!("the journal applier stopped; reopening the journal");
        shared.healthy.store(false, Ordering::Release);
    }
    // Synced here rather than on the syncer: the next batch forms in the queue
    // meanwhile all the same, and no thread hand-off sits between write and answer.
    let t = Instant::now();
    let synced = l.wal.store().sync(l.wal.segment());
    metrics::histogram!("hookbox_journal_log_sync_seconds").record(t.elapsed().as_secs_f64());
    if let Err(e) = synced {
        let e = format!("syncing the journal log: {e}");
        out.replies.into_iter().for_each(|r| r(Err(&e)));
        return Err(e);
    }
    metrics::histogram!("hookbox_journal_commit_seconds").record(started.elapsed().as_secs_f64());
    notify(shared, out.max_id, false);
    out.replies.into_iter().for_each(|r| r(Ok(())));
    Ok(())
}

/// Gives each append of `ops` its id, or finds it a duplicate: of an append in this
/// batch, of one logged but not yet applied, or of one in redb.
fn decide_appends(
    db: &Database,
    unapplied: &Unapplied,
    ops: &mut std::vec::IntoIter<Op>,
    out: &mut Logged,
    last_id: &mut u64,
) -> Result<(), JournalError> {
    let now_ms = millis(SystemTime::now());
    let txn = db.begin_read()?;
    let dedup = txn.open_table(DEDUP)?;
    let mut next = *last_id;
    for op in ops.by_ref() {
        let Op::Append(op) = op else {
            unreachable!("the fast path takes appends only")
        };
        let key = op
            .delivery_id
            .as_ref()
            .map(|d| (op.source.clone(), d.clone()));
        if let (Some(k), Some(window)) = (&key, op.dedup_window) {
            let in_memory = (out.dedup.get(k).map(|e| (e.0, e.1)))
                .or_else(|| unapplied.dedup.get(k).map(|e| (e.0, e.1)));
            let seen = match in_memory {
                None => dedup.get((&*k.0, k.1.as_str()))?.map(|g| g.value()),
                found => found,
            };
            if let Some((id, at)) = seen {
                if within(window, at, now_ms) {
                    let dup = Appended {
                        id: EventId(id),
                        duplicate: true,
                    };
                    out.replies.push(answer(op.reply, dup));
                    continue;
                }
            }
        }
        next = next_id(op.received_ms, next);
        let id = next;
        if let Some(k) = key {
            out.dedup.insert(k, (id, now_ms, out.records.len()));
        }
        let deliveries = op.destinations.len().max(1) as i64;
        *out.pending.entry(op.source.clone()).or_default() += deliveries;
        out.max_id = out.max_id.max(id);
        let record = Record::Append {
            id,
            source: op.source.to_string(),
            received_ms: op.received_ms,
            dedup: op.delivery_id.map(|d| (d, now_ms)),
            order_key: op.order_key,
            destinations: op.destinations,
            record: op.record,
        };
        out.log.push(record.encode());
        out.records.push(record);
        let new = Appended {
            id: EventId(id),
            duplicate: false,
        };
        out.replies.push(answer(op.reply, new));
    }
    *last_id = next;
    Ok(())
}

/// Applies log records to redb in one transaction, recording `checkpoint` with them
/// when given. A record whose effect is there already changes nothing.
fn apply_records(
    db: &Database,
    records: impl IntoIterator<Item = Record>,
    durability: Durability,
    checkpoint: Option<u64>,
) -> Result<(), JournalError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)
        .map_err(|e| JournalError::Storage(e.to_string()))?;
    {
        let mut t = Tables::open(&txn)?;
        let mut done = Done::default();
        for r in records {
            apply_record(&txn, &mut t, r, &mut done)?;
        }
        update_sources(&txn, &done)?;
        if let Some(seq) = checkpoint {
            txn.open_table(META)?.insert(LOG_CHECKPOINT, seq)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// A durable commit recording that redb holds the log up to `seq`.
fn checkpoint_now(db: &Database, seq: u64) -> Result<(), JournalError> {
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(LOG_CHECKPOINT, seq)?;
    txn.commit()?;
    Ok(())
}

/// The `META` key of the last log record redb holds durably.
pub(super) const LOG_CHECKPOINT: &str = "log_checkpoint";

/// The log failed under a batch: its ops are refused, and the journal reopens (redb at
/// its last checkpoint, with the log applied again).
fn fail_and_recover(
    shared: &Shared,
    opener: &Opener,
    logging: &mut Option<Logging>,
    batch: &mut Vec<Op>,
    e: &str,
) {
    tracing::error!(error = %e, "journal log failed; nothing in this batch was acknowledged");
    metrics::counter!("hookbox_journal_commit_failures_total").increment(1);
    batch.drain(..).for_each(|op| op.fail(e));
    shared.healthy.store(false, Ordering::Release);
    recover(shared, opener, logging);
}

/// The live database, reopening it first if a failure closed it.
fn current_db(
    shared: &Shared,
    opener: &Opener,
    logging: &mut Option<Logging>,
) -> Result<Arc<Database>, String> {
    if let Some(db) = shared.db.read().expect("db lock").clone() {
        return Ok(db);
    }
    recover(shared, opener, logging);
    shared
        .db
        .read()
        .expect("db lock")
        .clone()
        .ok_or_else(|| "the journal is recovering from a storage failure".to_owned())
}

/// Closes the failed database (once readers let go) and opens it again, which runs
/// redb's repair and rolls it back to its last durable commit; with a log, the log past
/// that checkpoint is applied again. On failure the journal stays closed; the writer
/// tries again shortly.
fn recover(shared: &Shared, opener: &Opener, logging: &mut Option<Logging>) {
    if let Some(l) = logging.as_mut() {
        // The batch being synced is answered (or refused) before the reopen, which
        // applies everything the log holds.
        let _ = l.settle();
        l.unapplied.forget(shared);
    }
    let old = shared.db.write().expect("db lock").take();
    if let Some(mut old) = old {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(still_shared) if Instant::now() < deadline => {
                    old = still_shared;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => {
                    tracing::error!("journal readers held the failed database for 10 s");
                    return;
                }
            }
        }
    }
    match opener() {
        Ok(db) => {
            if let Some(l) = logging.as_mut() {
                match open_log(&db, l.wal.store()) {
                    Ok(wal) => l.wal = wal,
                    Err(e) => {
                        tracing::error!(error = %e, "journal log replay after a storage failure failed; will retry");
                        std::thread::sleep(Duration::from_millis(50));
                        return;
                    }
                }
            }
            *shared.db.write().expect("db lock") = Some(Arc::new(db));
            shared.healthy.store(true, Ordering::Release);
            tracing::info!("journal reopened after a storage failure");
        }
        Err(e) => {
            tracing::error!(error = %e, "journal reopen failed; will retry");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a committed batch leaves to do: answer its ops and update the counters.
#[derive(Default)]
struct Done {
    replies: Vec<Answer>,
    /// Events appended per source.
    appended: HashMap<Arc<str>, u64>,
    /// Change of pending events per source.
    pending: HashMap<Arc<str>, i64>,
    /// The highest event id appended.
    max_id: u64,
    /// Deliveries were queued other than by appends (redrive, replay).
    changed: bool,
}

/// Answers an op once its batch is settled: the value after a commit, the error after
/// a failure (so no caller is left with a silently dropped reply).
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, value: T) -> Answer {
    Box::new(move |r| {
        let _ = reply.send(
            r.map(|()| value)
                .map_err(|e| JournalError::Storage(e.to_owned())),
        );
    })
}

/// Every table a batch may touch, opened once per batch.
struct Tables<'t> {
    events: redb::Table<'t, u64, &'static [u8]>,
    by_source: redb::Table<'t, (&'static str, u64), ()>,
    dedup: redb::Table<'t, (&'static str, &'static str), (u64, u64)>,
    ready: redb::Table<'t, ReadyKey<'static>, (u32, &'static str)>,
    state: redb::Table<'t, (u64, &'static str), &'static [u8]>,
    dead: redb::Table<'t, (&'static str, u64, &'static str), u64>,
    attempts: redb::Table<'t, (u64, u32), &'static [u8]>,
    order: redb::Table<'t, (&'static str, &'static str, &'static str, u64), ()>,
    replays: redb::Table<'t, u64, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, JournalError> {
        Ok(Tables {
            events: txn.open_table(EVENTS)?,
            by_source: txn.open_table(BY_SOURCE)?,
            dedup: txn.open_table(DEDUP)?,
            ready: txn.open_table(READY)?,
            state: txn.open_table(STATE)?,
            dead: txn.open_table(DEAD)?,
            attempts: txn.open_table(ATTEMPTS)?,
            order: txn.open_table(ORDER)?,
            replays: txn.open_table(REPLAYS)?,
        })
    }

    fn get_state(&self, id: u64, dest: &str) -> Result<Option<EventState>, JournalError> {
        match self.state.get((id, dest))? {
            Some(g) => {
                serde_json::from_slice(g.value())
                    .map(Some)
                    .map_err(|e| JournalError::Corrupt {
                        id,
                        problem: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    fn put_state(&mut self, id: u64, dest: &str, st: &EventState) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(st).expect("state serializes");
        self.state.insert((id, dest), bytes.as_slice())?;
        Ok(())
    }
}

/// Writes and commits `batch`. On failure every op of the batch is answered with the
/// error before this returns.
/// How a batch is committed.
struct Plan<'a> {
    /// Commit durably (fsync) in redb.
    durable: bool,
    /// Collect a log record for each acknowledged write here (when logging and not
    /// committing durably).
    log: Option<&'a mut Vec<Vec<u8>>>,
    /// Record this checkpoint: redb holds the log up to this record once this durable
    /// commit returns.
    checkpoint: Option<u64>,
}

fn write_batch(
    shared: &Shared,
    db: &Database,
    batch: &mut Vec<Op>,
    last_id: &mut u64,
    plan: Plan<'_>,
) -> Result<Done, JournalError> {
    let mut done = Done {
        replies: Vec::with_capacity(batch.len()),
        ..Done::default()
    };
    let mut ops = std::mem::take(batch).into_iter();
    match write_ops(shared, db, &mut ops, &mut done, last_id, plan) {
        Ok(()) => Ok(done),
        Err(e) => {
            let text = e.to_string();
            done.replies.into_iter().for_each(|r| r(Err(&text)));
            ops.for_each(|op| op.fail(&text));
            Err(e)
        }
    }
}

fn write_ops(
    shared: &Shared,
    db: &Database,
    ops: &mut std::vec::IntoIter<Op>,
    done: &mut Done,
    last_id: &mut u64,
    plan: Plan<'_>,
) -> Result<(), JournalError> {
    let Plan {
        durable,
        mut log,
        checkpoint,
    } = plan;
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })
    .map_err(|e| JournalError::Storage(e.to_string()))?;
    let now_ms = millis(SystemTime::now());
    let mut next = *last_id;
    {
        let mut t = Tables::open(&txn)?;
        for op in ops.by_ref() {
            match op {
                Op::Append(op) => {
                    let a = append(&mut t, &op, &mut next, now_ms, done)?;
                    if let (false, Some(log)) = (a.duplicate, log.as_deref_mut()) {
                        log.push(
                            Record::Append {
                                id: a.id.0,
                                source: op.source.to_string(),
                                received_ms: op.received_ms,
                                dedup: op.delivery_id.clone().map(|d| (d, now_ms)),
                                order_key: op.order_key.clone(),
                                destinations: op.destinations.clone(),
                                record: op.record.clone(),
                            }
                            .encode(),
                        );
                    }
                    done.replies.push(answer(op.reply, a));
                }
                Op::Outcome(op) => {
                    outcome(&mut t, &op, now_ms, done)?;
                    done.replies.push(answer(op.reply, ()));
                }
                Op::Step {
                    id,
                    name,
                    value,
                    reply,
                } => {
                    // The first writer wins: a step stored already keeps its value.
                    let mut steps = txn.open_table(STEPS)?;
                    if steps.get((id, name.as_str()))?.is_none() {
                        steps.insert((id, name.as_str()), value.as_slice())?;
                        if let Some(log) = log.as_deref_mut() {
                            log.push(Record::Step { id, name, value }.encode());
                        }
                    }
                    done.replies.push(answer(reply, ()));
                }
                Op::Redrive {
                    filter,
                    picked,
                    reply,
                } => {
                    let moved = redrive(&mut t, &filter, picked, now_ms, done)?;
                    let n = moved.len() as u64;
                    if let (true, Some(log)) = (n > 0, log.as_deref_mut()) {
                        log.push(Record::Redrive { now_ms, moved }.encode());
                    }
                    done.replies.push(answer(reply, n));
                }
                Op::Replay {
                    filter,
                    matched,
                    reply,
                } => {
                    let (status, queued) = replay(&mut t, &filter, matched, now_ms)?;
                    done.changed |= status.matched > 0;
                    if let Some(log) = log.as_deref_mut() {
                        log.push(
                            Record::Replay {
                                replay_id: status.id,
                                now_ms,
                                status: serde_json::to_vec(&status).expect("status serializes"),
                                queued,
                            }
                            .encode(),
                        );
                    }
                    done.replies.push(answer(reply, status));
                }
                Op::Purge {
                    before_ms,
                    limit,
                    reply,
                } => {
                    let mut steps = txn.open_table(STEPS)?;
                    let n = purge(&mut t, &mut steps, before_ms, limit)?;
                    done.replies.push(answer(reply, n));
                }
                Op::Shutdown => {}
            }
        }
        update_sources(&txn, done)?;
        if let Some(seq) = checkpoint {
            txn.open_table(META)?.insert(LOG_CHECKPOINT, seq)?;
        }
    }
    if let Some(hook) = &shared.hook {
        hook(done.replies.len());
    }
    txn.commit()?;
    *last_id = next;
    Ok(())
}

/// Adds a batch's appended and settled counts to the per-source counters.
fn update_sources(txn: &WriteTransaction, done: &Done) -> Result<(), JournalError> {
    let mut sources = txn.open_table(SOURCES)?;
    let touched: std::collections::HashSet<&Arc<str>> =
        done.pending.keys().chain(done.appended.keys()).collect();
    for source in touched {
        let (total, pending) = sources.get(&**source)?.map(|g| g.value()).unwrap_or((0, 0));
        let appended = done.appended.get(source).copied().unwrap_or(0);
        let delta = done.pending.get(source).copied().unwrap_or(0);
        sources.insert(
            &**source,
            (total + appended, (pending as i64 + delta).max(0) as u64),
        )?;
    }
    Ok(())
}

fn append(
    t: &mut Tables<'_>,
    op: &AppendOp,
    next: &mut u64,
    now_ms: u64,
    done: &mut Done,
) -> Result<Appended, JournalError> {
    if let (Some(did), Some(window)) = (&op.delivery_id, op.dedup_window) {
        if let Some(seen) = t.dedup.get((&*op.source, did.as_str()))? {
            let (id, at) = seen.value();
            if within(window, at, now_ms) {
                return Ok(Appended {
                    id: EventId(id),
                    duplicate: true,
                });
            }
        }
    }
    *next = next_id(op.received_ms, *next);
    let id = *next;
    let dedup = op.delivery_id.as_deref().map(|d| (d, now_ms));
    let new = NewEvent {
        id,
        source: &op.source,
        received_ms: op.received_ms,
        dedup,
        order_key: &op.order_key,
        destinations: &op.destinations,
        record: &op.record,
    };
    insert_event(t, &new, done)?;
    Ok(Appended {
        id: EventId(id),
        duplicate: false,
    })
}

/// A dedup entry written at `at_ms` still stands at `now_ms`.
fn within(window: Duration, at_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(at_ms) <= super::record::duration_ms(window)
}

/// The id of an event received at `received_ms`, after `last` (time-ordered, unique).
fn next_id(received_ms: u64, last: u64) -> u64 {
    (received_ms << 16).max(last + 1)
}

/// An event to insert, with everything its append decided.
struct NewEvent<'a> {
    id: u64,
    source: &'a Arc<str>,
    received_ms: u64,
    dedup: Option<(&'a str, u64)>,
    order_key: &'a str,
    destinations: &'a [String],
    record: &'a [u8],
}

/// Inserts an event and its deliveries (one per destination).
fn insert_event(t: &mut Tables<'_>, e: &NewEvent<'_>, done: &mut Done) -> Result<(), JournalError> {
    let id = e.id;
    let source = &**e.source;
    t.events.insert(id, e.record)?;
    t.by_source.insert((source, id), ())?;
    let unnamed = [String::new()];
    let destinations = if e.destinations.is_empty() {
        &unnamed[..]
    } else {
        e.destinations
    };
    for dest in destinations {
        let dest = dest.as_str();
        t.ready
            .insert((source, e.received_ms, id, 0, dest), (1, e.order_key))?;
        // A delivery's state row is written at its first outcome (until then the
        // ready queue lists it, see `fresh_destinations`): one B-tree fewer per
        // append. An ordered delivery's row keeps its key from the start.
        if !e.order_key.is_empty() {
            t.order.insert((source, dest, e.order_key, id), ())?;
            t.put_state(id, dest, &EventState::fresh(e.order_key))?;
        }
    }
    if let Some((did, at)) = e.dedup {
        t.dedup.insert((source, did), (id, at))?;
    }
    *done.appended.entry(e.source.clone()).or_default() += 1;
    *done.pending.entry(e.source.clone()).or_default() += destinations.len() as i64;
    done.max_id = done.max_id.max(id);
    Ok(())
}

fn next_attempt_key(t: &Tables<'_>, id: u64) -> Result<u32, JournalError> {
    let last = t
        .attempts
        .range((id, 0)..=(id, u32::MAX))?
        .next_back()
        .transpose()?;
    Ok(last.map_or(1, |(k, _)| k.value().1 + 1))
}

fn outcome(
    t: &mut Tables<'_>,
    op: &OutcomeOp,
    now_ms: u64,
    done: &mut Done,
) -> Result<(), JournalError> {
    let r = &op.ready;
    let id = r.id.0;
    let source = &*op.source;
    let dest = &*r.destination;
    let replay = r.replay.unwrap_or(0);
    if t.ready
        .remove((source, r.due_ms, id, replay, dest))?
        .is_none()
    {
        // Already settled (a redrive or a second outcome raced this one): nothing to do.
        return Ok(());
    }
    let n = next_attempt_key(t, id)?;
    let mut recorded = op.attempt.clone();
    recorded.destination = dest.to_owned();
    let attempt = serde_json::to_vec(&recorded).expect("attempt serializes");
    t.attempts.insert((id, n), attempt.as_slice())?;
    if replay != 0 {
        let mut status: ReplayStatus = match t.replays.get(replay)? {
            Some(g) => serde_json::from_slice(g.value()).map_err(|e| JournalError::Corrupt {
                id: replay,
                problem: e.to_string(),
            })?,
            None => return Ok(()),
        };
        match &op.next {
            Next::Done => status.done += 1,
            Next::Dead(_) => status.failed += 1,
            Next::RetryAt(at) => {
                t.ready.insert(
                    (source, *at, id, replay, dest),
                    (r.attempt + 1, r.order_key.as_str()),
                )?;
            }
        }
        let bytes = serde_json::to_vec(&status).expect("status serializes");
        t.replays.insert(replay, bytes.as_slice())?;
        return Ok(());
    }
    let mut st = t
        .get_state(id, dest)?
        .unwrap_or_else(|| EventState::fresh(&r.order_key));
    st.attempts += 1;
    match &op.next {
        Next::Done => {
            st.state = State::Done;
            st.next_at_ms = None;
            if !st.order_key.is_empty() {
                t.order.remove((source, dest, st.order_key.as_str(), id))?;
            }
            *done.pending.entry(op.source.clone()).or_default() -= 1;
        }
        Next::RetryAt(at) => {
            st.state = State::Retrying;
            st.next_at_ms = Some(*at);
            st.last_error = op.attempt.error.clone();
            t.ready.insert(
                (source, *at, id, 0, dest),
                (r.attempt + 1, r.order_key.as_str()),
            )?;
        }
        Next::Dead(reason) => {
            st.state = State::Dead;
            st.next_at_ms = None;
            st.last_error = Some(reason.clone());
            st.dead_at_ms = Some(now_ms);
            t.dead.insert((source, id, dest), now_ms)?;
            *done.pending.entry(op.source.clone()).or_default() -= 1;
        }
    }
    t.put_state(id, dest, &st)
}

/// Whether `f` takes the dead delivery (`id`, `dest`) that died at `died` (ms), on
/// what the dead table's entry itself says (the type is the event's, and never changes).
fn takes_dead(
    f: &RedriveFilter,
    ids: Option<&HashSet<u64>>,
    id: u64,
    dest: &str,
    died: u64,
) -> bool {
    f.destination.as_deref().is_none_or(|d| d == dest)
        && ids.is_none_or(|ids| ids.contains(&id))
        && f.since_ms.is_none_or(|s| died >= s)
        && f.until_ms.is_none_or(|u| died < u)
}

/// The (source, event, destination) of each dead delivery `f` picks, read from any
/// transaction: the scan of the dead table (and, with a type, of the events) runs in a
/// read transaction off the writer thread, so a redrive of a long DLQ, or the redrive
/// policy's periodic one, never holds up appends.
pub(super) fn redrive_candidates(
    dead: &impl ReadableTable<(&'static str, u64, &'static str), u64>,
    events: &impl ReadableTable<u64, &'static [u8]>,
    f: &RedriveFilter,
) -> Result<Vec<(String, u64, String)>, JournalError> {
    let ids: Option<HashSet<u64>> = f.ids.as_ref().map(|v| v.iter().map(|i| i.0).collect());
    let entries = match f.source.as_deref() {
        Some(s) => dead.range((s, 0, "")..)?,
        None => dead.iter()?,
    };
    let mut picked = Vec::new();
    for entry in entries {
        let (k, v) = entry?;
        let (source, id, dest) = k.value();
        if f.source.as_deref().is_some_and(|s| s != source) {
            break;
        }
        if !takes_dead(f, ids.as_ref(), id, dest, v.value()) {
            continue;
        }
        if let Some(pattern) = &f.event_type {
            let Some(rec) = events.get(id)? else {
                continue;
            };
            if !type_matches(
                pattern,
                decode_summary(id, rec.value())?.event_type.as_deref(),
            ) {
                continue;
            }
        }
        picked.push((source.to_owned(), id, dest.to_owned()));
    }
    Ok(picked)
}

/// Redrives the dead deliveries [`redrive_candidates`] picked that are still dead and
/// still taken by `f` (another redrive, or a death after one, may have come between).
fn redrive(
    t: &mut Tables<'_>,
    f: &RedriveFilter,
    picked: Vec<(String, u64, String)>,
    now_ms: u64,
    done: &mut Done,
) -> Result<Vec<(String, u64, String)>, JournalError> {
    let ids: Option<HashSet<u64>> = f.ids.as_ref().map(|v| v.iter().map(|i| i.0).collect());
    let mut moved = Vec::new();
    for (source, id, dest) in picked {
        let died = t
            .dead
            .get((source.as_str(), id, dest.as_str()))?
            .map(|g| g.value());
        if !died.is_some_and(|died| takes_dead(f, ids.as_ref(), id, &dest, died)) {
            continue;
        }
        let st = t
            .get_state(id, &dest)?
            .unwrap_or_else(|| EventState::fresh(""));
        if f.max_redrives.is_some_and(|max| st.redrives >= max) {
            continue;
        }
        revive(t, &source, id, &dest, st, now_ms, done)?;
        moved.push((source, id, dest));
    }
    done.changed |= !moved.is_empty();
    Ok(moved)
}

/// Moves one dead delivery back to pending, due `now_ms`, for a fresh round of
/// attempts; its history is kept.
fn revive(
    t: &mut Tables<'_>,
    source: &str,
    id: u64,
    dest: &str,
    mut st: EventState,
    now_ms: u64,
    done: &mut Done,
) -> Result<(), JournalError> {
    t.dead.remove((source, id, dest))?;
    st.state = State::Pending;
    st.redrives += 1;
    st.dead_at_ms = None;
    t.ready
        .insert((source, now_ms, id, 0, dest), (1, st.order_key.as_str()))?;
    t.put_state(id, dest, &st)?;
    *done.pending.entry(Arc::from(source)).or_default() += 1;
    Ok(())
}

/// A replay's status and the (source, event, destination) of each delivery it queued.
type Replayed = (ReplayStatus, Vec<(String, u64, String)>);

/// Files the replay of `f` whose deliveries [`replay_matches`] found, less those whose
/// event retention removed since.
fn replay(
    t: &mut Tables<'_>,
    f: &ReplayFilter,
    found: Vec<(String, u64, String)>,
    now_ms: u64,
) -> Result<Replayed, JournalError> {
    let mut matched = Vec::with_capacity(found.len());
    for m in found {
        if t.events.get(m.1)?.is_some() {
            matched.push(m);
        }
    }
    let replay_id = t.replays.last()?.map_or(1, |(k, _)| k.value() + 1);
    let status = ReplayStatus {
        id: replay_id,
        matched: matched.len() as u64,
        done: 0,
        failed: 0,
        destination: f.destination.clone(),
        created_ms: now_ms,
    };
    let bytes = serde_json::to_vec(&status).expect("status serializes");
    queue_replay(t, replay_id, now_ms, &bytes, &matched)?;
    Ok((status, matched))
}

/// The (source, event, destination) of each delivery a replay of `f` would queue, read
/// from any transaction: the scan of the window runs in a read transaction off the
/// writer thread, so a replay of a long window never holds up appends.
pub(super) fn replay_matches(
    events: &impl ReadableTable<u64, &'static [u8]>,
    state: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    ready: &impl ReadableTable<ReadyKey<'static>, (u32, &'static str)>,
    f: &ReplayFilter,
) -> Result<Vec<(String, u64, String)>, JournalError> {
    let window = Window {
        since_ms: f.since_ms,
        until_ms: f.until_ms,
    };
    let (lo, hi) = window.ids();
    let needs_body = f.filter.as_ref().is_some_and(crate::Filter::needs_body);
    // (source, id, destination) of every delivery to queue.
    let mut matched: Vec<(String, u64, String)> = Vec::new();
    if lo < hi {
        for entry in events.range(lo..hi)? {
            let (k, v) = entry?;
            let id = k.value();
            let s = decode_summary(id, v.value())?;
            if !window.contains(millis(s.received_at))
                || f.source.as_deref().is_some_and(|src| src != s.source)
                || f.sources
                    .as_ref()
                    .is_some_and(|list| !list.contains(&s.source))
                || f.event_type
                    .as_deref()
                    .is_some_and(|p| !type_matches(p, s.event_type.as_deref()))
            {
                continue;
            }
            if let Some(filter) = &f.filter {
                let body = if needs_body {
                    decode_body(id, v.value())?
                } else {
                    std::borrow::Cow::Borrowed(&[][..])
                };
                let input = crate::FilterInput {
                    event_type: s.event_type.as_deref(),
                    body: &body,
                };
                if !filter.accepts(&input) {
                    continue;
                }
            }
            match &f.destination {
                Some(dest) => matched.push((s.source, id, dest.clone())),
                None => {
                    let at = (s.source.clone(), millis(s.received_at));
                    let rows = super::redb_journal::deliveries_of(state, ready, &at, id)?;
                    for row in rows {
                        matched.push((s.source.clone(), id, row.destination));
                    }
                }
            }
        }
    }
    Ok(matched)
}

/// Files a replay's deliveries and its status.
fn queue_replay(
    t: &mut Tables<'_>,
    replay_id: u64,
    now_ms: u64,
    status: &[u8],
    queued: &[(String, u64, String)],
) -> Result<(), JournalError> {
    for (source, id, dest) in queued {
        // Replays are not ordered by key: they re-deliver history as it was.
        t.ready.insert(
            (source.as_str(), now_ms, *id, replay_id, dest.as_str()),
            (1, ""),
        )?;
    }
    t.replays.insert(replay_id, status)?;
    Ok(())
}

/// Opens the log of a journal whose database is `db`: applies the records past redb's
/// checkpoint to it, in one durable commit (again at the next open, if this one is cut
/// short: applying a record twice changes nothing), and returns the log to write to.
pub(super) fn open_log(db: &Database, store: Arc<dyn LogStore>) -> Result<Wal, JournalError> {
    let checkpoint = {
        let txn = db.begin_read()?;
        match txn.open_table(META) {
            Ok(meta) => meta.get(LOG_CHECKPOINT)?.map_or(0, |g| g.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(e.into()),
        }
    };
    let (mut wal, records) =
        Wal::open(store, checkpoint).map_err(|e| JournalError::Storage(e.to_string()))?;
    let Some(&(last, _)) = records.last() else {
        return Ok(wal);
    };
    let applied = records.len();
    let records = records.into_iter().map(|(_, r)| r);
    apply_records(db, records, Durability::Immediate, Some(last))?;
    tracing::info!(records = applied, "journal log applied to the database");
    wal.checkpointed(last)
        .map_err(|e| JournalError::Storage(e.to_string()))?;
    Ok(wal)
}

/// Applies one log record, unless its effect is there already.
fn apply_record(
    txn: &WriteTransaction,
    t: &mut Tables<'_>,
    r: Record,
    done: &mut Done,
) -> Result<(), JournalError> {
    match r {
        Record::Append {
            id,
            source,
            received_ms,
            dedup,
            order_key,
            destinations,
            record,
        } => {
            if t.events.get(id)?.is_some() {
                return Ok(());
            }
            let source: Arc<str> = Arc::from(source);
            let e = NewEvent {
                id,
                source: &source,
                received_ms,
                dedup: dedup.as_ref().map(|(d, at)| (d.as_str(), *at)),
                order_key: &order_key,
                destinations: &destinations,
                record: &record,
            };
            insert_event(t, &e, done)
        }
        Record::Step { id, name, value } => {
            let mut steps = txn.open_table(STEPS)?;
            if steps.get((id, name.as_str()))?.is_none() {
                steps.insert((id, name.as_str()), value.as_slice())?;
            }
            Ok(())
        }
        Record::Redrive { now_ms, moved } => {
            for (source, id, dest) in moved {
                if t.dead.get((source.as_str(), id, dest.as_str()))?.is_none() {
                    continue;
                }
                let st = t
                    .get_state(id, &dest)?
                    .unwrap_or_else(|| EventState::fresh(""));
                revive(t, &source, id, &dest, st, now_ms, done)?;
            }
            Ok(())
        }
        Record::Replay {
            replay_id,
            now_ms,
            status,
            queued,
        } => {
            if t.replays.get(replay_id)?.is_some() {
                return Ok(());
            }
            queue_replay(t, replay_id, now_ms, &status, &queued)
        }
    }
}

/// Retention: removes up to `limit` done events received before `before_ms` with
/// everything kept about them (record, source index, state, attempts, steps, and their
/// dedup entry when it still names them). Pending, retrying and dead events stay, and
/// so does a done event with a delivery still waiting (a replay in progress). A record
/// that does not decode is left alone rather than failing the batch it shares.
fn purge(
    t: &mut Tables<'_>,
    steps: &mut redb::Table<'_, (u64, &'static str), &'static [u8]>,
    before_ms: u64,
    limit: usize,
) -> Result<u64, JournalError> {
    let limit = limit.max(1);
    let cutoff = before_ms.saturating_mul(1 << 16);
    let replaying = replaying(t)?;
    // Done deliveries always have a state row (one never attempted may have none), so
    // the state table, in id (= time) order, lists every candidate: an event whose rows
    // are all done.
    let mut candidates: Vec<u64> = Vec::new();
    let mut current: Option<(u64, bool)> = None;
    let close = |group: Option<(u64, bool)>, out: &mut Vec<u64>| {
        if let Some((id, all_done)) = group {
            if all_done && !replaying.contains(&id) {
                out.push(id);
            }
        }
    };
    for entry in t.state.range((0, "")..(cutoff, ""))? {
        let (k, v) = entry?;
        let id = k.value().0;
        let done =
            serde_json::from_slice::<EventState>(v.value()).is_ok_and(|st| st.state == State::Done);
        match &mut current {
            Some((cur, all)) if *cur == id => *all &= done,
            _ => {
                close(current.take(), &mut candidates);
                if candidates.len() >= limit {
                    break;
                }
                current = Some((id, done));
            }
        }
    }
    if candidates.len() < limit {
        close(current, &mut candidates);
    }
    let mut picked: Vec<(u64, String, Option<String>)> = Vec::new();
    for id in candidates {
        let Some(rec) = t.events.get(id)? else {
            continue;
        };
        if let Ok(s) = decode_summary(id, rec.value()) {
            // A destination never attempted yet has no state row: still pending.
            let at = (s.source.clone(), millis(s.received_at));
            if super::redb_journal::fresh_destinations(&t.ready, &at, id)?.is_empty() {
                picked.push((id, s.source, s.delivery_id));
            }
        }
    }
    for (id, source, delivery_id) in &picked {
        let id = *id;
        t.events.remove(id)?;
        t.state
            .retain_in((id, "")..(id.saturating_add(1), ""), |_, _| false)?;
        t.by_source.remove((source.as_str(), id))?;
        if let Some(did) = delivery_id {
            // A later delivery with the same provider id (past the dedup window) owns
            // the entry now: leave it.
            let ours = t
                .dedup
                .get((source.as_str(), did.as_str()))?
                .is_some_and(|g| g.value().0 == id);
            if ours {
                t.dedup.remove((source.as_str(), did.as_str()))?;
            }
        }
        t.attempts
            .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
        steps.retain_in((id, "")..(id.saturating_add(1), ""), |_, _| false)?;
    }
    Ok(picked.len() as u64)
}

/// The events with a replayed delivery still waiting. Replay entries exist exactly while
/// their replay is incomplete (`done + failed < matched`), so the ready queue, which
/// holds the whole backlog, is read only when some replay is.
fn replaying(t: &Tables<'_>) -> Result<HashSet<u64>, JournalError> {
    let mut open = false;
    for entry in t.replays.iter()? {
        let (_, v) = entry?;
        // An unreadable status counts as incomplete: the safe side.
        open = serde_json::from_slice::<ReplayStatus>(v.value())
            .map_or(true, |s| s.done + s.failed < s.matched);
        if open {
            break;
        }
    }
    let mut ids = HashSet::new();
    if open {
        for entry in t.ready.iter()? {
            let (k, _) = entry?;
            let (_, _, id, replay, _) = k.value();
            if replay != 0 {
                ids.insert(id);
            }
        }
    }
    Ok(ids)
}
