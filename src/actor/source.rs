//! The source actor: pulls due deliveries of one source from the journal and runs them
//! through the handlers, within its concurrency and rate.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::messages::{Drain, Inspect, Wake};
use super::supervisor::HandlerSlot;
use super::{SourceOptions, SourceStats};
use crate::journal::{duration_ms, millis, millis_after, Attempt, AttemptOutcome, Claim, Next};
use crate::{Delivery, EventId, Journal, JournalError, Outcome, StoredEvent};

/// Outcomes being journaled at most, beyond which the actor stops taking deliveries
/// until the writer catches up (bounds memory when the journal is slow).
const MAX_SETTLING: usize = 4096;

/// One source's deliveries.
pub(super) struct SourceActor {
    source: Arc<str>,
    journal: Arc<dyn Journal>,
    routes: Vec<Rc<HandlerSlot>>,
    opts: SourceOptions,
    /// Claims held: deliveries started and not yet journaled as settled. Given back
    /// to the journal when the actor restarts or a drain gives up on them.
    in_flight: HashMap<InFlight, Claim>,
    /// A claim is being read from the journal; `fill` calls meanwhile set `again`.
    claiming: bool,
    /// Fill once more when the claim in progress returns.
    again: bool,
    /// Deliveries in their handler now.
    running: usize,
    /// A wake-up scheduled for the next due delivery, and when.
    timer: Option<(SpawnHandle, u64)>,
    /// Rate limit: tokens and when they were last refilled.
    tokens: f64,
    refilled: Instant,
    draining: bool,
    /// Set when a drain's deadline passed: outcomes arriving later are not journaled
    /// (the runtime is stopping; those deliveries happen again on the next start).
    abandoned: bool,
    drained: Vec<oneshot::Sender<()>>,
    started: u64,
    restarts: u32,
    metrics: SourceMetrics,
}

/// What identifies a delivery in flight: (event, replay, destination).
type InFlight = (EventId, Option<u64>, Arc<str>);

fn in_flight_key(c: &Claim) -> InFlight {
    (c.id, c.replay, c.destination.clone())
}

/// Every attempt outcome, in the order of [`SourceMetrics::attempts`].
const OUTCOMES: [AttemptOutcome; 6] = [
    AttemptOutcome::Done,
    AttemptOutcome::Retry,
    AttemptOutcome::Fail,
    AttemptOutcome::Timeout,
    AttemptOutcome::Crashed,
    AttemptOutcome::Filtered,
];

/// The source's metric handles, registered once instead of looked up per delivery.
struct SourceMetrics {
    source: Arc<str>,
    /// `hookbox_attempts_total{source, destination, outcome}` per destination, in the
    /// order of [`OUTCOMES`]; registered on a destination's first attempt.
    attempts: HashMap<Arc<str>, [metrics::Counter; OUTCOMES.len()]>,
    attempt_seconds: metrics::Histogram,
    lag: metrics::Histogram,
}

impl SourceMetrics {
    fn new(source: &Arc<str>) -> Self {
        SourceMetrics {
            source: source.clone(),
            attempts: HashMap::new(),
            attempt_seconds: metrics::histogram!("hookbox_attempt_seconds", "source" => source.to_string()),
            lag: metrics::histogram!("hookbox_delivery_lag_seconds", "source" => source.to_string()),
        }
    }

    /// Counts one attempt to `destination` that ended with `outcome`.
    fn attempt(&mut self, destination: &Arc<str>, outcome: AttemptOutcome) {
        let source = &self.source;
        let counters = self.attempts.entry(destination.clone()).or_insert_with(|| {
            OUTCOMES.map(|o| {
                metrics::counter!(
                    "hookbox_attempts_total",
                    "source" => source.to_string(),
                    "destination" => destination.to_string(),
                    "outcome" => o.as_str()
                )
            })
        });
        let slot = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        counters[slot].increment(1);
    }
}

impl SourceActor {
    pub(super) fn new(
        source: Arc<str>,
        journal: Arc<dyn Journal>,
        routes: Vec<Rc<HandlerSlot>>,
        opts: SourceOptions,
    ) -> Self {
        let tokens = opts.rate.map_or(0.0, |r| r.max(1.0));
        SourceActor {
            metrics: SourceMetrics::new(&source),
            source,
            journal,
            routes,
            opts,
            in_flight: HashMap::new(),
            claiming: false,
            again: false,
            running: 0,
            timer: None,
            tokens,
            refilled: Instant::now(),
            draining: false,
            abandoned: false,
            drained: Vec::new(),
            started: 0,
            restarts: 0,
        }
    }

    fn settling(&self) -> usize {
        self.in_flight.len().saturating_sub(self.running)
    }

    /// How many deliveries the rate allows now (all, without a rate).
    fn allowance(&mut self, want: usize) -> usize {
        let Some(rate) = self.opts.rate else {
            return want;
        };
        let now = Instant::now();
        let burst = rate.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(burst);
        self.refilled = now;
        (self.tokens.floor() as usize).min(want)
    }

    /// Starts as many due deliveries as there is room for, then arranges to look again
    /// when the next one is due.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let room = self.opts.concurrency.saturating_sub(self.running);
        if room == 0 || self.settling() >= MAX_SETTLING {
            return;
        }
        let allowed = self.allowance(room);
        if allowed == 0 {
            // Rate-limited: look again when the next token is there.
            let rate = self.opts.rate.unwrap_or(1.0);
            let wait = Duration::try_from_secs_f64(((1.0 - self.tokens) / rate).max(0.001))
                .unwrap_or(Duration::MAX);
            self.wake_at(ctx, millis_after(wait));
            return;
        }
        if self.claiming {
            self.again = true;
            return;
        }
        self.claiming = true;
        let now = SystemTime::now();
        let claim = self.journal.claim(&self.source, now, allowed);
        ctx.spawn(claim.into_actor(self).map(move |res, act, ctx| {
            act.claiming = false;
            act.claimed(res, now, allowed, ctx);
            if std::mem::take(&mut act.again) {
                act.fill(ctx);
            }
        }));
    }

    /// Starts the deliveries a claim returned; when it returned fewer than asked for,
    /// arranges to look again when the next one is due.
    fn claimed(
        &mut self,
        res: Result<Vec<Claim>, JournalError>,
        now: SystemTime,
        allowed: usize,
        ctx: &mut Context<Self>,
    ) {
        let claims = match res {
            Ok(c) => c,
            Err(e) => {
                // A source actor that cannot read its journal stops; its supervisor
                // restarts it, and the restart waits a moment before looking again.
                tracing::warn!(source = %self.source, error = %e, "claiming due deliveries failed; restarting the source actor");
                ctx.stop();
                return;
            }
        };
        let got = claims.len();
        if self.opts.rate.is_some() {
            self.tokens -= got as f64;
        }
        if self.draining {
            // Claimed while a drain began: give them back untouched.
            self.give_back(claims);
            return;
        }
        for c in claims {
            self.dispatch(c, ctx);
        }
        if got < allowed {
            let next = self.journal.next_due(&self.source, now);
            ctx.spawn(next.into_actor(self).map(|res, act, ctx| match res {
                Ok(Some(at)) => act.wake_at(ctx, at),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(source = %act.source, error = %e, "reading the next due time failed")
                }
            }));
        }
    }

    /// Gives claims back to the journal without an attempt: due again at once, here or
    /// on another node.
    fn give_back(&self, claims: Vec<Claim>) {
        if claims.is_empty() {
            return;
        }
        let fut = self.journal.abandon(claims);
        let source = self.source.clone();
        actix::spawn(async move {
            if let Err(e) = fut.await {
                tracing::warn!(%source, error = %e, "giving claims back failed; they are taken back when the lease runs out");
            }
        });
    }

    /// Wakes up at `at_ms` (ms since the epoch) unless an earlier wake-up is set.
    fn wake_at(&mut self, ctx: &mut Context<Self>, at_ms: u64) {
        if let Some((handle, when)) = self.timer {
            if when <= at_ms {
                return;
            }
            ctx.cancel_future(handle);
        }
        // Capped: a delivery due in a year is looked for again within the hour.
        let wait = Duration::from_millis(at_ms.saturating_sub(millis(SystemTime::now())))
            .min(Duration::from_secs(3600));
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.fill(ctx);
        });
        self.timer = Some((handle, at_ms));
    }

    fn dispatch(&mut self, mut claim: Claim, ctx: &mut Context<Self>) {
        let key = in_flight_key(&claim);
        let prefetched = claim.event.0.take();
        self.in_flight.insert(key, claim.clone());
        self.running += 1;
        self.started += 1;
        let started = SystemTime::now();
        let clock = Instant::now();
        if let Some(event) = prefetched {
            return self.run(claim, Ok(Some(event)), started, clock, ctx);
        }
        let get = self.journal.get(claim.id);
        ctx.spawn(get.into_actor(self).map(move |res, act, ctx| {
            act.run(claim, res.map(|e| e.map(Arc::new)), started, clock, ctx);
        }));
    }

    /// Hands a claimed delivery whose event was read to its handler.
    fn run(
        &mut self,
        ready: Claim,
        res: Result<Option<Arc<StoredEvent>>, JournalError>,
        started: SystemTime,
        clock: Instant,
        ctx: &mut Context<Self>,
    ) {
        let key = in_flight_key(&ready);
        let event = match res {
            Ok(Some(e)) => e,
            Ok(None) => {
                return self.finish(ready, started, clock, Err(Failure::Missing), ctx);
            }
            Err(e) => {
                // Not an attempt: the journal could not be read. The claim is given
                // back and the delivery tried again shortly, its attempt count untouched.
                tracing::warn!(source = %self.source, id = %ready.id, error = %e, "reading an event failed; trying again in a second");
                self.running -= 1;
                if let Some(c) = self.in_flight.remove(&key) {
                    self.give_back(vec![c]);
                }
                self.wake_at(ctx, millis_after(Duration::from_secs(1)));
                return;
            }
        };
        let mut typed = self
            .routes
            .iter()
            .filter(|s| s.route.matches_type(event.event_type.as_deref()))
            .peekable();
        if typed.peek().is_none() {
            let ty = event.event_type.clone();
            return self.finish(ready, started, clock, Err(Failure::NoRoute(ty)), ctx);
        }
        // A route for the type exists; its filter may still not take this event.
        let input = crate::FilterInput {
            event_type: event.event_type.as_deref(),
            body: &event.body,
        };
        let Some(slot) = typed.find(|s| s.route.accepts(&input)).cloned() else {
            let filtered = Outcome::Filtered {
                reason: "filtered out: no route's filter takes it".to_owned(),
            };
            return self.finish(ready, started, clock, Ok(filtered), ctx);
        };
        if ready.attempt == 1 && ready.replay.is_none() {
            let lag = started
                .duration_since(event.received_at)
                .unwrap_or_default()
                .as_secs_f64();
            self.metrics.lag.record(lag);
        }
        let (recipient, generation) = slot.current();
        let delivery = Delivery::new(event, ready.clone(), self.journal.clone());
        let request = recipient.send(delivery).timeout(self.opts.attempt_timeout);
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            let res = res.map_err(|e| match e {
                MailboxError::Timeout => {
                    slot.restart(generation, true);
                    Failure::Timeout
                }
                MailboxError::Closed => {
                    slot.restart(generation, false);
                    Failure::Crashed
                }
            });
            act.finish(ready, started, clock, res, ctx);
        }));
    }

    /// Journals how an attempt ended and what follows.
    fn finish(
        &mut self,
        ready: Claim,
        started: SystemTime,
        clock: Instant,
        res: Result<Outcome, Failure>,
        ctx: &mut Context<Self>,
    ) {
        self.running -= 1;
        if self.abandoned {
            return;
        }
        let elapsed = clock.elapsed();
        let n = ready.attempt;
        let policy = self.opts.retry_for(&ready.destination);
        let retry = |hint: Option<Duration>, reason: String| match policy.delay(n, hint) {
            Some(d) => Next::RetryAt(millis_after(d)),
            None => Next::Dead(reason),
        };
        let (outcome, error, next) = match res {
            Ok(Outcome::Done) => (AttemptOutcome::Done, None, Next::Done),
            Ok(Outcome::Filtered { reason }) => {
                (AttemptOutcome::Filtered, Some(reason), Next::Done)
            }
            Ok(Outcome::Retry { after, reason }) => (
                AttemptOutcome::Retry,
                Some(reason.clone()),
                retry(after, reason),
            ),
            Ok(Outcome::Fail { reason }) => (
                AttemptOutcome::Fail,
                Some(reason.clone()),
                Next::Dead(reason),
            ),
            Err(f) => {
                let reason = f.to_string();
                let (outcome, next) = match f {
                    Failure::Timeout => (AttemptOutcome::Timeout, retry(None, reason.clone())),
                    Failure::Crashed => (AttemptOutcome::Crashed, retry(None, reason.clone())),
                    Failure::Missing | Failure::NoRoute(_) => {
                        (AttemptOutcome::Fail, Next::Dead(reason.clone()))
                    }
                };
                (outcome, Some(reason), next)
            }
        };
        self.metrics.attempt(&ready.destination, outcome);
        self.metrics.attempt_seconds.record(elapsed.as_secs_f64());
        if let Next::Dead(reason) = &next {
            tracing::warn!(source = %self.source, id = %ready.id, attempt = n, reason, "event is dead");
        } else if let Some(e) = &error {
            tracing::debug!(source = %self.source, id = %ready.id, attempt = n, error = e, "attempt failed");
        }
        let attempt = Attempt {
            n,
            started_ms: millis(started),
            duration_ms: duration_ms(elapsed),
            outcome,
            error,
            replay: ready.replay,
            destination: ready.destination.to_string(),
        };
        let key = in_flight_key(&ready);
        let settle = self.journal.settle(ready, attempt, next);
        ctx.spawn(settle.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(()) => {}
                Err(JournalError::LeaseLost { .. }) => {
                    // Another node took the delivery over: its outcome is the one kept.
                    metrics::counter!("hookbox_claims_lost_total", "source" => act.source.to_string()).increment(1);
                    tracing::info!(source = %act.source, id = %key.0, "the claim was taken over; this attempt's outcome is dropped");
                }
                Err(e) => {
                    // Not journaled: the delivery stays due and happens again.
                    tracing::warn!(source = %act.source, id = %key.0, error = %e, "journaling an outcome failed; the delivery will be repeated");
                }
            }
            act.in_flight.remove(&key);
            act.check_drained();
            act.refill(ctx);
        }));
        self.refill(ctx);
    }

    /// Fills again once half the slots are free: each look at the journal then starts
    /// a batch, instead of one delivery per look.
    fn refill(&mut self, ctx: &mut Context<Self>) {
        if self.running <= self.opts.concurrency / 2 {
            self.fill(ctx);
        }
    }

    fn check_drained(&mut self) {
        if self.draining && self.in_flight.is_empty() {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
        }
    }
}

/// Why an attempt ended without an outcome from the handler.
#[derive(Debug)]
enum Failure {
    Timeout,
    Crashed,
    Missing,
    NoRoute(Option<String>),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => {
                f.write_str("the handler did not answer within the attempt timeout")
            }
            Failure::Crashed => f.write_str("the handler panicked or stopped"),
            Failure::Missing => f.write_str("the event record is missing from the journal"),
            Failure::NoRoute(Some(t)) => write!(f, "no handler route matches event type `{t}`"),
            Failure::NoRoute(None) => f.write_str("no handler route matches events without a type"),
        }
    }
}

impl Actor for SourceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.opts.mailbox);
        // After a restart, `restarting` has scheduled the first look a moment later.
        if self.restarts == 0 {
            self.fill(ctx);
        }
    }
}

impl actix::Supervised for SourceActor {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        // Deliveries in flight were cancelled with the old context; their entries are
        // still due in the journal and are picked up again.
        self.restarts += 1;
        let claims = self.in_flight.drain().map(|(_, c)| c).collect();
        self.give_back(claims);
        self.claiming = false;
        self.again = false;
        self.running = 0;
        self.timer = None;
        metrics::counter!("hookbox_source_actor_restarts_total", "source" => self.source.to_string()).increment(1);
        ctx.run_later(Duration::from_secs(1), |act, ctx| act.fill(ctx));
    }
}

impl Handler<Wake> for SourceActor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.fill(ctx);
    }
}

impl Handler<Drain> for SourceActor {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        if let Some((h, _)) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        self.check_drained();
        Box::pin(
            async move {
                let _ = tokio::time::timeout(msg.deadline, rx).await;
            }
            .into_actor(self)
            .map(|_, act, _| {
                // Past the deadline: what is still running is given back, so another
                // node (or the next start) delivers it; its outcome is not journaled.
                act.abandoned = !act.in_flight.is_empty();
                let left = act.in_flight.len();
                let claims = act.in_flight.drain().map(|(_, c)| c).collect();
                act.give_back(claims);
                left
            }),
        )
    }
}

impl Handler<Inspect> for SourceActor {
    type Result = MessageResult<Inspect>;

    fn handle(&mut self, _: Inspect, _: &mut Context<Self>) -> Self::Result {
        MessageResult(vec![SourceStats {
            source: self.source.to_string(),
            running: self.running,
            settling: self.settling(),
            started: self.started,
            restarts: self.restarts,
        }])
    }
}
