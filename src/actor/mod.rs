//! The delivery runtime: an actix supervisor, one mailbox actor per source, and the
//! handler actors they deliver to.
//!
//! ```text
//! journal commit ──watch──▶ Supervisor ──try_send(Wake)──▶ SourceActor (one per source)
//!                                                            │ pulls due events (journal.ready)
//!                                                            │ ≤ concurrency at once, ≤ rate/s
//!                                                            ▼
//!                                  handler actor (own Arbiter) ── Outcome ──▶ journal.settle
//! ```
//!
//! actix runs its `System` on a dedicated thread beside the tokio runtime that serves
//! HTTP; they talk through `Addr`s. The journal is the buffer: a source actor holds at
//! most `concurrency` deliveries (plus those whose outcome is being written), so memory
//! does not grow with the backlog. This is the only module that imports actix.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};

use crate::{Delivery, Journal, RetryPolicy};

mod forward;
mod messages;
mod source;
mod supervisor;

use messages::{Drain, Inspect};
use supervisor::Supervisor;

/// Which events a handler receives: a source (or any), an event type (exact,
/// `prefix*`, or any) and optionally a [`Filter`](crate::Filter) on type and payload.
///
/// An event whose type no route of its source matches is a configuration gap: it goes
/// to the dead-letter queue. An event of a routed type that no route's filter takes is
/// done without a delivery (attempt outcome `filtered`).
#[derive(Debug, Clone)]
pub struct Route {
    source: Option<String>,
    event_type: Option<String>,
    filter: crate::Filter,
}

impl Route {
    /// Every event of `source`.
    pub fn source(source: impl Into<String>) -> Self {
        Route {
            source: Some(source.into()),
            event_type: None,
            filter: crate::Filter::all(),
        }
    }

    /// Every event of every source.
    pub fn any() -> Self {
        Route {
            source: None,
            event_type: None,
            filter: crate::Filter::all(),
        }
    }

    /// Only events of this type: exact (`invoice.paid`) or a prefix (`invoice.*`).
    pub fn event_type(mut self, pattern: impl Into<String>) -> Self {
        let p = pattern.into();
        self.event_type = (p != "*").then_some(p);
        self
    }

    /// Only events `filter` takes (with the type pattern, if any, as well).
    pub fn filter(mut self, filter: crate::Filter) -> Self {
        self.filter = std::mem::take(&mut self.filter).and(filter);
        self
    }

    /// Only events for which `predicate` holds, given the type and the raw body.
    pub fn when(
        self,
        predicate: impl Fn(&crate::FilterInput<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter(crate::Filter::from_fn(predicate))
    }

    pub(crate) fn accepts(&self, input: &crate::FilterInput<'_>) -> bool {
        self.filter.accepts(input)
    }

    fn matches_source(&self, source: &str) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
    }

    fn matches_type(&self, event_type: Option<&str>) -> bool {
        self.event_type
            .as_deref()
            .is_none_or(|p| crate::journal::type_matches(p, event_type))
    }
}

/// How one source's deliveries run.
///
/// ## Defaults
/// - `mailbox`: 1024 messages; `concurrency`: 16 deliveries at once; `rate`: unlimited;
/// - `attempt_timeout`: 30 s; `retry`: [`RetryPolicy::default`] (8 attempts, about a
///   day).
#[derive(Debug, Clone)]
pub struct SourceOptions {
    mailbox: usize,
    concurrency: usize,
    rate: Option<f64>,
    attempt_timeout: Duration,
    retry: RetryPolicy,
    /// Destinations with a retry policy of their own.
    destination_retry: std::collections::HashMap<String, RetryPolicy>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            mailbox: 1024,
            concurrency: 16,
            rate: None,
            attempt_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            destination_retry: Default::default(),
        }
    }
}

impl SourceOptions {
    /// Sets the source actor's mailbox bound.
    pub fn mailbox(mut self, n: usize) -> Self {
        self.mailbox = n.max(1);
        self
    }

    /// Sets how many deliveries run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets the most deliveries started per second (`None`: unlimited).
    pub fn rate(mut self, per_second: Option<f64>) -> Self {
        self.rate = per_second.filter(|r| *r > 0.0 && r.is_finite());
        self
    }

    /// Sets how long one attempt may take before it counts as failed.
    pub fn attempt_timeout(mut self, t: Duration) -> Self {
        self.attempt_timeout = t;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the retry policy of the deliveries to `destination` (the others keep the
    /// source's): each destination fails, retries and dies on its own schedule.
    pub fn destination_retry(
        mut self,
        destination: impl Into<String>,
        policy: RetryPolicy,
    ) -> Self {
        self.destination_retry.insert(destination.into(), policy);
        self
    }

    /// The retry policy of deliveries to `destination`.
    pub(crate) fn retry_for(&self, destination: &str) -> &RetryPolicy {
        self.destination_retry
            .get(destination)
            .unwrap_or(&self.retry)
    }
}

/// Moves dead events back to pending by themselves: each `after` it has been dead, at
/// most `max_redrives` times per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// How long an event stays dead before it is redriven.
    pub after: Duration,
    /// How many times one event is redriven at most.
    pub max_redrives: u32,
}

/// A source actor's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStats {
    /// The source.
    pub source: String,
    /// Deliveries in their handler now.
    pub running: usize,
    /// Deliveries whose outcome is being journaled.
    pub settling: usize,
    /// Deliveries started since the actor started.
    pub started: u64,
    /// The actor's restarts after a failure.
    pub restarts: u32,
}

/// Builds a handler actor on the given arbiter and returns where to send deliveries.
type Factory =
    Arc<dyn Fn(&actix::ArbiterHandle) -> actix::Recipient<Delivery> + Send + Sync + 'static>;

/// A route and the factory of its handler actor.
#[derive(Clone)]
struct RouteSpec {
    route: Route,
    factory: Factory,
}

/// Configures and starts a [`Runtime`].
///
/// ```no_run
/// use std::sync::Arc;
/// use actix::prelude::*;
/// use hookbox::{Delivery, Outcome, RedbJournal, Route, Runtime};
///
/// struct Log;
/// impl Actor for Log {
///     type Context = Context<Self>;
/// }
/// impl Handler<Delivery> for Log {
///     type Result = Outcome;
///     fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Outcome {
///         println!("{} {:?}", d.id(), d.event_type());
///         Outcome::Done
///     }
/// }
///
/// let journal = Arc::new(RedbJournal::open("data/hookbox.redb")?);
/// let runtime = Runtime::builder(journal)
///     .handler(Route::source("stripe").event_type("invoice.*"), || Log)
///     .start();
/// // ... serve HTTP; on shutdown:
/// runtime.shutdown(std::time::Duration::from_secs(10));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RuntimeBuilder {
    journal: Arc<dyn Journal>,
    routes: Vec<RouteSpec>,
    defaults: SourceOptions,
    sources: HashMap<String, SourceOptions>,
    redrive: Option<RedrivePolicy>,
    tick: Duration,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.route).collect::<Vec<_>>(),
            )
            .field("defaults", &self.defaults)
            .field("sources", &self.sources)
            .field("redrive", &self.redrive)
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Routes matching events to handler actors made by `factory`.
    ///
    /// Routes are tried in the order added; the first whose source and type match gets
    /// the event. An event of a source with routes that none matches is dead at once
    /// ("no handler"), so nothing is dropped silently: add `Route::source(s)` last as
    /// a catch-all, or redrive after adding the missing route. Sources no route names
    /// are not delivered at all: their events wait, pending.
    ///
    /// The actor runs on its own `Arbiter` (thread). `factory` is called again to
    /// restart it after a panic (on the same arbiter) or an attempt timeout (on a new
    /// arbiter, since the old one may still be busy).
    pub fn handler<A, F>(mut self, route: Route, factory: F) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<Delivery>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        let make: Factory = Arc::new(move |arbiter: &actix::ArbiterHandle| {
            let f = factory.clone();
            A::start_in_arbiter(arbiter, move |_| f()).recipient()
        });
        self.routes.push(RouteSpec {
            route,
            factory: make,
        });
        self
    }

    /// Forwards every event of `source` to `destinations` (what `hookbox serve` runs).
    pub(crate) fn forward(
        self,
        source: &str,
        destinations: Vec<(Arc<crate::Destination>, crate::Filter)>,
    ) -> Self {
        let proto = forward::Forwarder::new(destinations, self.journal.clone());
        self.handler(Route::source(source), move || proto.fresh())
    }

    /// Sets the options of every source not configured by [`RuntimeBuilder::source`].
    pub fn defaults(mut self, options: SourceOptions) -> Self {
        self.defaults = options;
        self
    }

    /// Configures `source`; its actor starts with the runtime (others start on their
    /// first event).
    pub fn source(mut self, source: impl Into<String>, options: SourceOptions) -> Self {
        self.sources.insert(source.into(), options);
        self
    }

    /// Redrives dead events automatically.
    pub fn redrive_policy(mut self, policy: RedrivePolicy) -> Self {
        self.redrive = Some(policy);
        self
    }

    /// Sets how often the supervisor looks for new sources and wakes every source
    /// actor regardless of notifications (default 1 s).
    pub fn tick(mut self, every: Duration) -> Self {
        self.tick = every.max(Duration::from_millis(10));
        self
    }

    /// Starts the actix system on its own thread and the supervisor in it.
    pub fn start(self) -> Runtime {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hookbox-actors".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let addr = Supervisor::new(self).start();
                    let _ = tx.send((addr, actix::System::current()));
                });
                if let Err(e) = system.run() {
                    tracing::error!(error = %e, "the actor system stopped with an error");
                }
            })
            .expect("spawn the actor system thread");
        let (supervisor, system) = rx.recv().expect("the actor system starts");
        Runtime {
            supervisor,
            system,
            thread: Some(thread),
        }
    }
}

/// The running delivery runtime. [`Runtime::shutdown`] stops it gracefully; dropping it
/// stops it at once (deliveries in flight are delivered again on the next start).
pub struct Runtime {
    supervisor: Addr<Supervisor>,
    system: actix::System,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder over `journal`, with no handlers yet.
    pub fn builder(journal: Arc<dyn Journal>) -> RuntimeBuilder {
        RuntimeBuilder {
            journal,
            routes: Vec::new(),
            defaults: SourceOptions::default(),
            sources: HashMap::new(),
            redrive: None,
            tick: Duration::from_secs(1),
        }
    }

    /// Counters of every running source actor.
    pub async fn stats(&self) -> Vec<SourceStats> {
        self.supervisor.send(Inspect).await.unwrap_or_default()
    }

    /// Stops taking deliveries, waits up to `deadline` for those in flight to finish
    /// and be journaled, then stops the actors. Deliveries still running then stay
    /// pending and are delivered again on the next start. Returns how many there were.
    ///
    /// Blocks the calling thread; from async code call it in `spawn_blocking`, or use
    /// [`Runtime::shutdown_async`].
    pub fn shutdown(self, deadline: Duration) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime for shutdown");
        let left = rt.block_on(self.drain(deadline));
        drop(self); // stops the actor system and joins its thread
        left
    }

    /// [`Runtime::shutdown`] for async callers.
    pub async fn shutdown_async(self, deadline: Duration) -> usize {
        let left = self.drain(deadline).await;
        // Joining the actor thread blocks: off the async runtime.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
        left
    }

    /// Stops taking deliveries and waits for those in flight; how many were left.
    async fn drain(&self, deadline: Duration) -> usize {
        self.supervisor
            .send(Drain { deadline })
            .await
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}
