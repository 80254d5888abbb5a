//! The group-commit writer: one thread, one write transaction per batch.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;

use super::record::millis;
use super::redb_journal::Shared;
use super::tables::{BY_SOURCE, DEDUP, EVENTS, SOURCES};
use super::{Appended, EventId, JournalError};

/// One append waiting for its commit.
pub(super) struct AppendOp {
    /// The encoded record (see `record.rs`).
    pub(super) record: Vec<u8>,
    pub(super) source: Arc<str>,
    pub(super) delivery_id: Option<String>,
    pub(super) received_ms: u64,
    pub(super) dedup_window: Option<Duration>,
    /// Answered after the commit returns, never before.
    pub(super) reply: oneshot::Sender<Result<Appended, JournalError>>,
}

/// What the writer thread is asked to do.
pub(super) enum Op {
    Append(AppendOp),
    /// Finish what is queued ahead of this, then stop.
    Shutdown,
}

/// Opens (or reopens, after a storage failure) the database.
pub(super) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send>;

/// Called with the batch size just before each commit (tests hold or slow commits).
pub(super) type CommitHook = Arc<dyn Fn(usize) + Send + Sync>;

/// The writer loop. Ends when every sender is gone or on [`Op::Shutdown`].
pub(super) fn run(
    shared: Arc<Shared>,
    rx: Receiver<Op>,
    opener: Opener,
    max_batch: usize,
    mut last_id: u64,
) {
    let mut batch: Vec<AppendOp> = Vec::with_capacity(max_batch);
    let mut stop = false;
    while !stop {
        // While the storage is failed, wake up regularly to reopen it: the shed layer
        // refuses appends meanwhile, so no batch would arrive to trigger the recovery.
        let first = if shared.healthy.load(Ordering::Acquire) {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(100))
        };
        match first {
            Ok(Op::Append(op)) => batch.push(op),
            Err(RecvTimeoutError::Timeout) => {
                recover(&shared, &opener);
                continue;
            }
            Ok(Op::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
        }
        // Whatever queued up during the previous commit forms this batch.
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Op::Append(op)) => batch.push(op),
                Ok(Op::Shutdown) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let db = match current_db(&shared, &opener) {
            Ok(db) => db,
            Err(e) => {
                for op in batch.drain(..) {
                    let _ = op.reply.send(Err(JournalError::Storage(e.clone())));
                }
                continue;
            }
        };
        let started = Instant::now();
        match write_batch(&shared, &db, &batch, &mut last_id) {
            Ok((results, added)) => {
                metrics::histogram!("hookbox_journal_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("hookbox_journal_batch_size").record(batch.len() as f64);
                shared.add_backlog(&added);
                if let Some(max) = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|a| a.id.0)
                    .max()
                {
                    shared.committed.send_if_modified(|v| {
                        let newer = max > *v;
                        *v = (*v).max(max);
                        newer
                    });
                }
                for (op, r) in batch.drain(..).zip(results) {
                    let _ = op.reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "journal commit failed; nothing in this batch was acknowledged");
                metrics::counter!("hookbox_journal_commit_failures_total").increment(1);
                for op in batch.drain(..) {
                    let _ = op.reply.send(Err(JournalError::Storage(e.to_string())));
                }
                drop(db);
                shared.healthy.store(false, Ordering::Release);
                recover(&shared, &opener);
            }
        }
    }
    // Appends still queued behind a shutdown are refused (their senders see an error).
    drop(rx);
}

/// The live database, reopening it first if a failure closed it.
fn current_db(shared: &Shared, opener: &Opener) -> Result<Arc<Database>, String> {
    if let Some(db) = shared.db.read().expect("db lock").clone() {
        return Ok(db);
    }
    recover(shared, opener);
    shared
        .db
        .read()
        .expect("db lock")
        .clone()
        .ok_or_else(|| "the journal is recovering from a storage failure".to_owned())
}

/// Closes the failed database (once readers let go) and opens it again, which runs
/// redb's repair. On failure the journal stays closed; the next batch tries again.
fn recover(shared: &Shared, opener: &Opener) {
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

type BatchResult = (Vec<Result<Appended, JournalError>>, HashMap<Arc<str>, u64>);

fn write_batch(
    shared: &Shared,
    db: &Database,
    batch: &[AppendOp],
    last_id: &mut u64,
) -> Result<BatchResult, JournalError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| JournalError::Storage(e.to_string()))?;
    let now_ms = millis(SystemTime::now());
    let mut results = Vec::with_capacity(batch.len());
    let mut added: HashMap<Arc<str>, u64> = HashMap::new();
    let mut next = *last_id;
    {
        let mut events = txn.open_table(EVENTS)?;
        let mut by_source = txn.open_table(BY_SOURCE)?;
        let mut dedup = txn.open_table(DEDUP)?;
        for op in batch {
            if let (Some(did), Some(window)) = (&op.delivery_id, op.dedup_window) {
                if let Some(seen) = dedup.get((&*op.source, did.as_str()))? {
                    let (id, at) = seen.value();
                    if now_ms.saturating_sub(at) <= window.as_millis() as u64 {
                        results.push(Ok(Appended {
                            id: EventId(id),
                            duplicate: true,
                        }));
                        continue;
                    }
                }
            }
            next = (op.received_ms << 16).max(next + 1);
            events.insert(next, op.record.as_slice())?;
            by_source.insert((&*op.source, next), ())?;
            if let Some(did) = &op.delivery_id {
                dedup.insert((&*op.source, did.as_str()), (next, now_ms))?;
            }
            *added.entry(op.source.clone()).or_default() += 1;
            results.push(Ok(Appended {
                id: EventId(next),
                duplicate: false,
            }));
        }
        let mut sources = txn.open_table(SOURCES)?;
        for (source, n) in &added {
            let (total, pending) = sources.get(&**source)?.map(|g| g.value()).unwrap_or((0, 0));
            sources.insert(&**source, (total + n, pending + n))?;
        }
    }
    if let Some(hook) = &shared.hook {
        hook(batch.len());
    }
    txn.commit()?;
    *last_id = next;
    Ok((results, added))
}
