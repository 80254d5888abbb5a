//! The group-commit writer: one thread, one write transaction per batch.
//!
//! Every journal write goes through here, so redb's single writer is never contended
//! and each batch costs one commit. A batch is durable (`Durability::Immediate`, one
//! fsync) when it holds anything that is acknowledged to the outside (appends, step
//! results, redrives, replays) or when the last durable commit is over a second old;
//! batches of delivery outcomes alone commit without fsync, because losing them in a
//! crash only means redelivering (at-least-once), never losing an event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use super::record::{decode_summary, millis};
use super::redb_journal::Shared;
use super::state::{Attempt, EventState, Next, RedriveFilter, ReplayFilter, ReplayStatus, State};
use super::tables::{
    ReadyKey, ReadyValue, ATTEMPTS, BY_SOURCE, DEAD, DEDUP, EVENTS, ORDER, READY, REPLAYS, SOURCES,
    STATE, STEPS,
};
use super::{type_matches, Appended, EventId, JournalError, Window};

type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

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
    Redrive {
        filter: RedriveFilter,
        reply: Reply<u64>,
    },
    Replay {
        filter: ReplayFilter,
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

/// The writer loop. Ends when every sender is gone or on [`Op::Shutdown`].
pub(super) fn run(
    shared: Arc<Shared>,
    rx: Receiver<Op>,
    opener: Opener,
    max_batch: usize,
    mut last_id: u64,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(max_batch);
    let mut stop = false;
    let mut last_durable = Instant::now();
    let mut prev_batch = 0usize;
    while !stop {
        // While the storage is failed, wake up regularly to reopen it: the shed layer
        // refuses appends meanwhile, so no batch would arrive to trigger the recovery.
        let first = if shared.healthy.load(Ordering::Acquire) {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(100))
        };
        match first {
            Ok(Op::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(op) => batch.push(op),
            Err(RecvTimeoutError::Timeout) => {
                recover(&shared, &opener);
                continue;
            }
        }
        // Whatever queued up during the previous commit forms this batch. Under load
        // (the previous batch was large) the writer lingers up to 150 us for stragglers:
        // a commit's fixed cost then buys more events; at low load there is no wait.
        let linger = if prev_batch >= 16 {
            Some(Instant::now() + Duration::from_micros(150))
        } else {
            None
        };
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Op::Shutdown) => {
                    stop = true;
                    break;
                }
                Ok(op) => batch.push(op),
                Err(_) if linger.is_some_and(|t| Instant::now() < t) => std::thread::yield_now(),
                Err(_) => break,
            }
        }
        prev_batch = batch.len();
        let appends = batch.iter().filter(|o| matches!(o, Op::Append(_))).count();
        shared.queued.fetch_sub(appends, Ordering::AcqRel);
        let db = match current_db(&shared, &opener) {
            Ok(db) => db,
            Err(e) => {
                batch.drain(..).for_each(|op| op.fail(&e));
                continue;
            }
        };
        let durable =
            batch.iter().any(Op::durable) || last_durable.elapsed() > Duration::from_secs(1);
        let started = Instant::now();
        match write_batch(&shared, &db, &mut batch, &mut last_id, durable) {
            Ok(done) => {
                if durable {
                    last_durable = Instant::now();
                }
                metrics::histogram!("hookbox_journal_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("hookbox_journal_batch_size").record(done.replies.len() as f64);
                shared.apply_pending(&done.pending);
                if done.max_id > 0 || done.changed {
                    shared.committed.send_if_modified(|v| {
                        let newer = done.max_id > *v;
                        *v = (*v).max(done.max_id);
                        newer || done.changed
                    });
                }
                for reply in done.replies {
                    reply(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = prev_batch, "journal commit failed; nothing in this batch was acknowledged");
                metrics::counter!("hookbox_journal_commit_failures_total").increment(1);
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
/// redb's repair. On failure the journal stays closed; the writer tries again shortly.
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

/// What a committed batch leaves to do: answer its ops and update the counters.
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
type Answer = Box<dyn FnOnce(Result<(), &str>)>;

fn answer<T: 'static>(reply: Reply<T>, value: T) -> Answer {
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
    ready: redb::Table<'t, ReadyKey, ReadyValue>,
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
fn write_batch(
    shared: &Shared,
    db: &Database,
    batch: &mut Vec<Op>,
    last_id: &mut u64,
    durable: bool,
) -> Result<Done, JournalError> {
    let mut done = Done {
        replies: Vec::with_capacity(batch.len()),
        appended: HashMap::new(),
        pending: HashMap::new(),
        max_id: 0,
        changed: false,
    };
    let mut ops = std::mem::take(batch).into_iter();
    match write_ops(shared, db, &mut ops, &mut done, last_id, durable) {
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
    durable: bool,
) -> Result<(), JournalError> {
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
                    }
                    done.replies.push(answer(reply, ()));
                }
                Op::Redrive { filter, reply } => {
                    let n = redrive(&mut t, &filter, now_ms, done)?;
                    done.replies.push(answer(reply, n));
                }
                Op::Replay { filter, reply } => {
                    let status = replay(&mut t, &filter, now_ms)?;
                    done.changed |= status.matched > 0 && !filter.dry_run;
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
    }
    if let Some(hook) = &shared.hook {
        hook(done.replies.len());
    }
    txn.commit()?;
    *last_id = next;
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
            if now_ms.saturating_sub(at) <= super::record::duration_ms(window) {
                return Ok(Appended {
                    id: EventId(id),
                    duplicate: true,
                });
            }
        }
    }
    *next = (op.received_ms << 16).max(*next + 1);
    let id = *next;
    t.events.insert(id, op.record.as_slice())?;
    t.by_source.insert((&*op.source, id), ())?;
    let unnamed = [String::new()];
    let destinations = if op.destinations.is_empty() {
        &unnamed[..]
    } else {
        &op.destinations[..]
    };
    for dest in destinations {
        let dest = dest.as_str();
        t.ready.insert(
            (&*op.source, op.received_ms, id, 0, dest),
            (1, op.order_key.as_str()),
        )?;
        if !op.order_key.is_empty() {
            t.order
                .insert((&*op.source, dest, op.order_key.as_str(), id), ())?;
        }
        // A named destination's row lists it among the event's deliveries; an ordered
        // delivery's row keeps its key.
        if !op.order_key.is_empty() || !dest.is_empty() {
            t.put_state(id, dest, &EventState::fresh(&op.order_key))?;
        }
    }
    if let Some(did) = &op.delivery_id {
        t.dedup.insert((&*op.source, did.as_str()), (id, now_ms))?;
    }
    *done.appended.entry(op.source.clone()).or_default() += 1;
    *done.pending.entry(op.source.clone()).or_default() += destinations.len() as i64;
    done.max_id = done.max_id.max(id);
    Ok(Appended {
        id: EventId(id),
        duplicate: false,
    })
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

fn redrive(
    t: &mut Tables<'_>,
    f: &RedriveFilter,
    now_ms: u64,
    done: &mut Done,
) -> Result<u64, JournalError> {
    // Collect first: the dead table is changed while going through it.
    let mut picked: Vec<(String, u64, String)> = Vec::new();
    for entry in t.dead.iter()? {
        let (k, v) = entry?;
        let (source, id, dest) = k.value();
        let died = v.value();
        if f.source.as_deref().is_some_and(|s| s != source)
            || f.destination.as_deref().is_some_and(|d| d != dest)
            || f.ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(&EventId(id)))
            || f.since_ms.is_some_and(|s| died < s)
            || f.until_ms.is_some_and(|u| died >= u)
        {
            continue;
        }
        if let Some(pattern) = &f.event_type {
            let Some(rec) = t.events.get(id)? else {
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
    let mut moved = 0u64;
    for (source, id, dest) in &picked {
        let dest = dest.as_str();
        let mut st = t
            .get_state(*id, dest)?
            .unwrap_or_else(|| EventState::fresh(""));
        if f.max_redrives.is_some_and(|max| st.redrives >= max) {
            continue;
        }
        t.dead.remove((source.as_str(), *id, dest))?;
        moved += 1;
        st.state = State::Pending;
        st.redrives += 1;
        st.dead_at_ms = None;
        // A redriven event starts a fresh round of attempts; its history is kept.
        t.ready.insert(
            (source.as_str(), now_ms, *id, 0, dest),
            (1, st.order_key.as_str()),
        )?;
        t.put_state(*id, dest, &st)?;
        *done.pending.entry(Arc::from(source.as_str())).or_default() += 1;
    }
    done.changed |= moved > 0;
    Ok(moved)
}

fn replay(t: &mut Tables<'_>, f: &ReplayFilter, now_ms: u64) -> Result<ReplayStatus, JournalError> {
    let window = Window {
        since_ms: f.since_ms,
        until_ms: f.until_ms,
    };
    let (lo, hi) = window.ids();
    // (source, id, destination) of every delivery to queue.
    let mut matched: Vec<(String, u64, String)> = Vec::new();
    if lo < hi {
        for entry in t.events.range(lo..hi)? {
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
            match &f.destination {
                Some(dest) => matched.push((s.source, id, dest.clone())),
                None => {
                    let rows = super::redb_journal::delivery_rows(&t.state, id)?;
                    if rows.is_empty() {
                        matched.push((s.source.clone(), id, String::new()));
                    }
                    for row in rows {
                        matched.push((s.source.clone(), id, row.destination));
                    }
                }
            }
        }
    }
    let replay_id = t.replays.last()?.map_or(1, |(k, _)| k.value() + 1);
    let status = ReplayStatus {
        id: if f.dry_run { 0 } else { replay_id },
        matched: matched.len() as u64,
        done: 0,
        failed: 0,
        destination: f.destination.clone(),
        created_ms: now_ms,
    };
    if !f.dry_run {
        for (source, id, dest) in &matched {
            // Replays are not ordered by key: they re-deliver history as it was.
            t.ready.insert(
                (source.as_str(), now_ms, *id, replay_id, dest.as_str()),
                (1, ""),
            )?;
        }
        let bytes = serde_json::to_vec(&status).expect("status serializes");
        t.replays.insert(replay_id, bytes.as_slice())?;
    }
    Ok(status)
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
            picked.push((id, s.source, s.delivery_id));
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
