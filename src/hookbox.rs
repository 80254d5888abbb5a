//! [`Hookbox`]: sources, a journal, and a ready endpoint per source.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::layer::ack::{Accepted, AckLayer};
use crate::layer::shed::ShedLayer;
use crate::layer::verify::VerifyLayer;
use crate::{Filter, Journal, Verifier};

/// One ready webhook endpoint: shed, verify, journal, `202`. Mount it with
/// `Router::route_service`.
pub type Endpoint = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A webhook source: a provider account posting to one path, verified by one scheme.
///
/// ## Defaults
/// - `max_body`: 1 MiB.
/// - `dedup_window`: 7 days.
/// - `max_backlog`: none (no 429).
/// - `order_by`: none (deliveries of a source are not ordered).
/// - `destinations`: none (each event has one delivery).
#[derive(Debug, Clone)]
pub struct Source {
    name: Arc<str>,
    verifier: Verifier,
    max_body: usize,
    dedup_window: Option<Duration>,
    max_backlog: Option<u64>,
    order_by: Option<Arc<str>>,
    destinations: Vec<(String, Filter)>,
}

impl Source {
    /// A source named `name` verified by `verifier`.
    pub fn new(name: impl Into<Arc<str>>, verifier: Verifier) -> Self {
        Source {
            name: name.into(),
            verifier,
            max_body: crate::layer::verify::DEFAULT_MAX_BODY,
            dedup_window: Some(crate::layer::ack::DEFAULT_DEDUP_WINDOW),
            max_backlog: None,
            order_by: None,
            destinations: Vec::new(),
        }
    }

    /// Sets the largest body accepted.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets the dedup window (`None`: no deduplication).
    pub fn dedup_window(mut self, window: Option<Duration>) -> Self {
        self.dedup_window = window;
        self
    }

    /// Answers 429 while this many events of the source are pending.
    pub fn max_backlog(mut self, max: Option<u64>) -> Self {
        self.max_backlog = max;
        self
    }

    /// Delivers events with the same value at this JSON pointer (`/customer/id`) one
    /// at a time, in the order received: a later event of a key waits while an earlier
    /// one is retrying or dead.
    pub fn order_by(mut self, pointer: impl Into<Arc<str>>) -> Self {
        self.order_by = Some(pointer.into());
        self
    }

    /// Delivers each event to those of `destinations` whose filter takes it, each
    /// destination a delivery of its own: its own attempts, retry schedule, dead state
    /// and redrive (see [`AckLayer::destinations`]).
    pub fn destinations(mut self, destinations: Vec<(String, Filter)>) -> Self {
        self.destinations = destinations;
        self
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// hookbox's ingest side: a journal and its sources. Cheap to clone.
///
/// ```no_run
/// use std::sync::Arc;
/// use axum::Router;
/// use hookbox::{Hookbox, RedbJournal, Source, Verifier};
///
/// let journal = Arc::new(RedbJournal::open("data/hookbox.redb")?);
/// let stripe = Verifier::builder("stripe").secret("whsec_...").build()?;
/// let hookbox = Hookbox::new(journal).source(Source::new("stripe", stripe));
/// let app: Router = Router::new().route_service("/hooks/stripe", hookbox.endpoint("stripe"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Hookbox {
    journal: Arc<dyn Journal>,
    sources: HashMap<Arc<str>, Source>,
    /// The shed settings every endpoint shares (one in-flight bound for all).
    shed: ShedLayer,
}

impl Hookbox {
    /// hookbox over `journal`, with no sources yet.
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        let shed = ShedLayer::new(journal.clone());
        Hookbox {
            journal,
            sources: HashMap::new(),
            shed,
        }
    }

    /// Adds (or replaces) a source.
    pub fn source(mut self, source: Source) -> Self {
        self.sources.insert(source.name.clone(), source);
        self
    }

    /// Replaces the shed settings (timeout, in-flight bound, disk floor) of every
    /// endpoint built afterwards. The layer's own source setting is ignored.
    pub fn shed(mut self, shed: ShedLayer) -> Self {
        self.shed = shed;
        self
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// The endpoint of `source`: shed, verify, journal, `202`.
    ///
    /// # Panics
    /// When no source of that name was added (a configuration mistake found while
    /// building the router). See [`Hookbox::try_endpoint`].
    pub fn endpoint(&self, source: &str) -> Endpoint {
        self.try_endpoint(source)
            .unwrap_or_else(|| panic!("hookbox has no source named `{source}`"))
    }

    /// The endpoint of `source`, or `None` when there is no such source.
    pub fn try_endpoint(&self, source: &str) -> Option<Endpoint> {
        let s = self.sources.get(source)?;
        let svc = ServiceBuilder::new()
            .layer(self.shed.clone().source(s.name.clone(), s.max_backlog))
            .layer(VerifyLayer::new(s.name.clone(), s.verifier.clone()).max_body(s.max_body))
            .layer(
                AckLayer::new(self.journal.clone())
                    .dedup_window(s.dedup_window)
                    .order_by(s.order_by.clone())
                    .destinations(s.destinations.clone()),
            )
            .service(Accepted);
        Some(BoxCloneSyncService::new(svc))
    }
}
