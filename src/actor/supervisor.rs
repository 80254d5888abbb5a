//! The supervisor: one source actor per source, handler actors on their arbiters.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;

use super::messages::{Drain, Inspect, Wake};
use super::source::SourceActor;
use super::{Factory, RedrivePolicy, Route, RouteSpec, RuntimeBuilder, SourceOptions, SourceStats};
use crate::journal::{duration_ms, millis, RedriveFilter};
use crate::{Delivery, Journal};

/// A route's handler actor, restarted from its factory when it crashes or hangs.
pub(super) struct HandlerSlot {
    pub(super) route: Route,
    factory: Factory,
    arbiter: RefCell<Arbiter>,
    recipient: RefCell<Recipient<Delivery>>,
    /// Bumped at each restart, so that several failures of one incarnation restart it
    /// once.
    generation: Cell<u64>,
}

impl HandlerSlot {
    fn new(spec: &RouteSpec) -> Self {
        let arbiter = Arbiter::new();
        let recipient = (spec.factory)(&arbiter.handle());
        HandlerSlot {
            route: spec.route.clone(),
            factory: spec.factory.clone(),
            arbiter: RefCell::new(arbiter),
            recipient: RefCell::new(recipient),
            generation: Cell::new(0),
        }
    }

    /// Where to send a delivery now, and the incarnation it reaches.
    pub(super) fn current(&self) -> (Recipient<Delivery>, u64) {
        (self.recipient.borrow().clone(), self.generation.get())
    }

    /// Replaces incarnation `generation` (if it is still the current one) by a fresh
    /// actor: on the same arbiter after a panic, on a new one after a hang.
    pub(super) fn restart(&self, generation: u64, new_arbiter: bool) {
        if self.generation.get() != generation {
            return;
        }
        if new_arbiter {
            let old = self.arbiter.replace(Arbiter::new());
            old.stop();
        }
        let fresh = (self.factory)(&self.arbiter.borrow().handle());
        *self.recipient.borrow_mut() = fresh;
        self.generation.set(generation + 1);
        metrics::counter!("hookbox_handler_restarts_total").increment(1);
    }
}

impl Drop for HandlerSlot {
    fn drop(&mut self) {
        self.arbiter.borrow().stop();
    }
}

/// Starts a source actor per source, feeds them wake-ups, redrives by policy.
pub(super) struct Supervisor {
    journal: Arc<dyn Journal>,
    specs: Vec<RouteSpec>,
    slots: Vec<Rc<HandlerSlot>>,
    defaults: SourceOptions,
    configured: HashMap<String, SourceOptions>,
    redrive: Option<RedrivePolicy>,
    tick: Duration,
    actors: HashMap<Arc<str>, Addr<SourceActor>>,
    draining: bool,
}

impl Supervisor {
    pub(super) fn new(b: RuntimeBuilder) -> Self {
        Supervisor {
            journal: b.journal,
            specs: b.routes,
            slots: Vec::new(),
            defaults: b.defaults,
            configured: b.sources,
            redrive: b.redrive,
            tick: b.tick,
            actors: HashMap::new(),
            draining: false,
        }
    }

    /// Starts the actor of `source` unless it runs already or no route names it.
    fn ensure(&mut self, source: &str) {
        if self.draining || self.actors.contains_key(source) {
            return;
        }
        let routes: Vec<Rc<HandlerSlot>> = self
            .slots
            .iter()
            .filter(|s| s.route.matches_source(source))
            .cloned()
            .collect();
        if routes.is_empty() {
            return;
        }
        let name: Arc<str> = Arc::from(source);
        let opts = self
            .configured
            .get(source)
            .unwrap_or(&self.defaults)
            .clone();
        let journal = self.journal.clone();
        let n = name.clone();
        let addr = actix::Supervisor::start(move |_| SourceActor::new(n, journal, routes, opts));
        tracing::debug!(source, "source actor started");
        self.actors.insert(name, addr);
    }

    /// Looks for new sources and wakes every source actor.
    fn scan(&mut self) {
        for (source, _) in self.journal.sources() {
            self.ensure(&source);
        }
        for addr in self.actors.values() {
            // A full mailbox already holds a wake-up.
            let _ = addr.try_send(Wake);
        }
    }

    fn redrive(&mut self, ctx: &mut Context<Self>) {
        let Some(p) = self.redrive else { return };
        if self.draining {
            return;
        }
        let until = millis(SystemTime::now()).saturating_sub(duration_ms(p.after));
        let filter = RedriveFilter {
            until_ms: Some(until),
            max_redrives: Some(p.max_redrives),
            ..RedriveFilter::default()
        };
        let fut = self.journal.redrive(filter);
        ctx.spawn(
            async move {
                match fut.await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        redriven = n,
                        "redrive policy moved dead events back to pending"
                    ),
                    Err(e) => tracing::warn!(error = %e, "redrive policy: journal error"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.slots = self
            .specs
            .iter()
            .map(|s| Rc::new(HandlerSlot::new(s)))
            .collect();
        let configured: Vec<String> = self.configured.keys().cloned().collect();
        for s in configured {
            self.ensure(&s);
        }
        // Told of every commit that queued deliveries; try_send, never blocking the
        // journal: a lost wake-up is covered by the next one or the tick.
        let mut committed = self.journal.subscribe();
        let me = ctx.address().downgrade();
        actix::spawn(async move {
            while committed.changed().await.is_ok() {
                match me.upgrade() {
                    Some(addr) => {
                        let _ = addr.try_send(Wake);
                    }
                    None => break,
                }
            }
        });
        ctx.run_interval(self.tick, |act, _| act.scan());
        if let Some(p) = self.redrive {
            let every = (p.after / 4).clamp(self.tick, Duration::from_secs(60));
            ctx.run_interval(every, |act, ctx| act.redrive(ctx));
        }
        self.scan();
    }
}

impl Handler<Wake> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Wake, _: &mut Context<Self>) {
        self.scan();
    }
}

impl Handler<Drain> for Supervisor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: Drain, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let asks: Vec<_> = self.actors.values().map(|a| a.send(msg)).collect();
        Box::pin(async move {
            let all = futures_util::future::join_all(asks);
            // The source actors answer by the deadline themselves; the margin covers a
            // stuck one.
            match tokio::time::timeout(msg.deadline.saturating_add(Duration::from_secs(1)), all)
                .await
            {
                Ok(answers) => answers.into_iter().map(|a| a.unwrap_or(0)).sum(),
                Err(_) => 0,
            }
        })
    }
}

impl Handler<Inspect> for Supervisor {
    type Result = ResponseFuture<Vec<SourceStats>>;

    fn handle(&mut self, _: Inspect, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.actors.values().map(|a| a.send(Inspect)).collect();
        Box::pin(async move {
            let mut all: Vec<SourceStats> = futures_util::future::join_all(asks)
                .await
                .into_iter()
                .flat_map(|r| r.unwrap_or_default())
                .collect();
            all.sort_by(|a, b| a.source.cmp(&b.source));
            all
        })
    }
}
