use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_service::Service;

use crate::journal::Journal;
use crate::layer::problem::{problem, retry_after};
use crate::layer::{closing, drain};

/// Applies [`Shed`].
///
/// ## Defaults
/// - `max_in_flight`: 1024 requests being read, verified or journaled at once.
/// - `timeout`: 8 s from the first byte of the request to the answer.
/// - `disk_floor`: 64 MiB of free space on the journal's disk.
/// - no source, so no backlog limit (set one with [`ShedLayer::source`]).
#[derive(Debug, Clone)]
pub struct ShedLayer {
    config: Arc<Config>,
    /// Shared by every service this layer builds (and by clones of the layer).
    permits: Arc<Semaphore>,
}

#[derive(Debug, Clone)]
struct Config {
    journal: Arc<dyn Journal>,
    source: Option<Arc<str>>,
    max_backlog: Option<u64>,
    timeout: Duration,
    disk_floor: u64,
    max_in_flight: usize,
}

impl ShedLayer {
    /// Sheds by `journal`'s load.
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        ShedLayer {
            config: Arc::new(Config {
                journal,
                source: None,
                max_backlog: None,
                timeout: Duration::from_secs(8),
                disk_floor: 64 << 20,
                max_in_flight: 1024,
            }),
            permits: Arc::new(Semaphore::new(1024)),
        }
    }

    /// Limits the pending backlog of `source` to `max_backlog` events (429 beyond).
    pub fn source(mut self, source: impl Into<Arc<str>>, max_backlog: Option<u64>) -> Self {
        let c = Arc::make_mut(&mut self.config);
        c.source = Some(source.into());
        c.max_backlog = max_backlog;
        self
    }

    /// Sets the request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).timeout = timeout;
        self
    }

    /// Sets the free-space floor of the journal's disk, in bytes.
    pub fn disk_floor(mut self, bytes: u64) -> Self {
        Arc::make_mut(&mut self.config).disk_floor = bytes;
        self
    }

    /// Sets how many requests may be in flight at once.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        Arc::make_mut(&mut self.config).max_in_flight = n;
        self.permits = Arc::new(Semaphore::new(n));
        self
    }

    /// Shares the in-flight bound with another layer (one bound for a whole app).
    pub fn share_in_flight_with(mut self, other: &ShedLayer) -> Self {
        self.permits = other.permits.clone();
        self
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            config: self.config.clone(),
            permits: self.permits.clone(),
        }
    }
}

/// Sheds load before calling the inner service. See [`ShedLayer`].
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    config: Arc<Config>,
    permits: Arc<Semaphore>,
}

fn shed(
    source: &str,
    status: StatusCode,
    reason: &'static str,
    detail: String,
    secs: u64,
) -> Response<Body> {
    crate::layer::rejections::record(source, reason, status, &detail, None, None);
    metrics::counter!("hookbox_shed_total", "source" => source.to_owned(), "reason" => reason)
        .increment(1);
    tracing::debug!(source, reason, "request shed");
    let title = if status == StatusCode::TOO_MANY_REQUESTS {
        "Too many events are pending for this source; retry later"
    } else {
        "hookbox is over capacity; retry later"
    };
    let mut res = problem(status, reason, title, &detail);
    retry_after(&mut res, secs);
    res
}

impl Config {
    /// The refusal for the current load, if any.
    fn check(&self) -> Option<Response<Body>> {
        let source = self.source.as_deref().unwrap_or("*");
        let load = self.journal.load();
        if !load.healthy {
            return Some(shed(
                source,
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_unavailable",
                "the journal is recovering from a storage failure".into(),
                5,
            ));
        }
        if load.queued >= load.capacity {
            return Some(shed(
                source,
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_overloaded",
                format!(
                    "{} appends are waiting for the journal writer (bound {})",
                    load.queued, load.capacity
                ),
                1,
            ));
        }
        if load.disk_free < self.disk_floor {
            return Some(shed(
                source,
                StatusCode::SERVICE_UNAVAILABLE,
                "disk_full",
                format!(
                    "{} bytes free on the journal's disk, under the {} byte floor",
                    load.disk_free, self.disk_floor
                ),
                30,
            ));
        }
        if let (Some(s), Some(max)) = (&self.source, self.max_backlog) {
            let backlog = self.journal.backlog(s);
            if backlog >= max {
                return Some(shed(
                    s,
                    StatusCode::TOO_MANY_REQUESTS,
                    "backlog_full",
                    format!("{backlog} events of `{s}` are pending (maximum {max})"),
                    10,
                ));
            }
        }
        None
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S, B> Service<Request<B>> for Shed<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> BoxFut {
        // Refused before the body is read: the body is drained (bounded) while the
        // refusal is answered, and the connection closes after it.
        if let Some(res) = self.config.check() {
            drain(req.into_body());
            return Box::pin(std::future::ready(Ok(closing(res))));
        }
        let source = self.config.source.clone();
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let res = shed(
                source.as_deref().unwrap_or("*"),
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_in_flight",
                format!(
                    "{} requests are already in flight",
                    self.config.max_in_flight
                ),
                1,
            );
            drain(req.into_body());
            return Box::pin(std::future::ready(Ok(closing(res))));
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let timeout = self.config.timeout;
        Box::pin(async move {
            let res = tokio::time::timeout(timeout, inner.call(req)).await;
            drop(permit);
            match res {
                Ok(r) => r,
                Err(_) => Ok(shed(
                    source.as_deref().unwrap_or("*"),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request_timeout",
                    format!(
                        "the request was not answered within {} ms",
                        timeout.as_millis()
                    ),
                    5,
                )),
            }
        })
    }
}
