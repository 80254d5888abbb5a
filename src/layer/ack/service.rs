use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::journal::{EventId, Journal, JournalError};
use crate::layer::problem::{problem, retry_after};
use crate::{Event, Filter, FilterInput, Verified};

/// The default dedup window: 7 days.
pub(crate) const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Put on the request by [`Ack`] once the event is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The event's journal id (the original's, for a duplicate).
    pub id: EventId,
    /// True when this delivery was a duplicate and nothing was written.
    pub duplicate: bool,
}

/// Applies [`Ack`]. Must come after a [`VerifyLayer`](crate::VerifyLayer).
///
/// ## Defaults
/// - `dedup_window`: 7 days.
/// - `order_by`: none (deliveries are not ordered).
/// - `destinations`: none (each event has one delivery).
#[derive(Debug, Clone)]
pub struct AckLayer {
    journal: Arc<dyn Journal>,
    dedup_window: Option<Duration>,
    order_by: Option<Arc<str>>,
    destinations: Arc<[(String, Filter)]>,
}

impl AckLayer {
    /// Appends to `journal`.
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        AckLayer {
            journal,
            dedup_window: Some(DEFAULT_DEDUP_WINDOW),
            order_by: None,
            destinations: Arc::new([]),
        }
    }

    /// Sets the dedup window (`None`: never deduplicate).
    pub fn dedup_window(mut self, window: Option<Duration>) -> Self {
        self.dedup_window = window;
        self
    }

    /// Orders deliveries by the value at this JSON pointer (`/customer/id`): events
    /// with the same value are delivered one at a time, in order. Events whose body has
    /// no string or number there are not ordered.
    pub fn order_by(mut self, pointer: Option<Arc<str>>) -> Self {
        self.order_by = pointer;
        self
    }

    /// Delivers each event to those of `destinations` whose filter takes it, each a
    /// delivery of its own (its own attempts, retries and dead state). An event no
    /// filter takes gets the one unnamed delivery, which the runtime settles as
    /// filtered out. Without destinations (the default) every event has that one
    /// delivery.
    pub fn destinations(mut self, destinations: Vec<(String, Filter)>) -> Self {
        self.destinations = destinations.into();
        self
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = Ack<S>;

    fn layer(&self, inner: S) -> Ack<S> {
        Ack {
            inner,
            journal: self.journal.clone(),
            dedup_window: self.dedup_window,
            order_by: self.order_by.clone(),
            destinations: self.destinations.clone(),
        }
    }
}

/// Journals the request's [`Verified<Event>`], then calls the inner service with an
/// [`Acked`] extension.
#[derive(Debug, Clone)]
pub struct Ack<S> {
    inner: S,
    journal: Arc<dyn Journal>,
    dedup_window: Option<Duration>,
    order_by: Option<Arc<str>>,
    destinations: Arc<[(String, Filter)]>,
}

/// The names of the destinations whose filters take `event`.
fn destinations_of(destinations: &[(String, Filter)], event: &Event) -> Vec<String> {
    if destinations.is_empty() {
        return Vec::new();
    }
    let input = FilterInput {
        event_type: event.event_type.as_deref(),
        body: &event.body,
    };
    destinations
        .iter()
        .filter(|(_, f)| f.accepts(&input))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The refusal for a journal error: 503 + Retry-After, the append did not happen.
fn journal_unavailable(source: &str, e: &JournalError) -> Response<Body> {
    let (kind, secs) = match e {
        JournalError::Overloaded(_) => ("journal_overloaded", 1),
        JournalError::Storage(_) => ("journal_storage_failed", 5),
        _ => ("journal_unavailable", 5),
    };
    metrics::counter!("hookbox_shed_total", "source" => source.to_owned(), "reason" => kind)
        .increment(1);
    tracing::warn!(source, error = %e, "append refused; answering 503");
    let mut res = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        kind,
        "The event could not be stored; retry later",
        &e.to_string(),
    );
    retry_after(&mut res, secs);
    res
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for Ack<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> BoxFut {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Borrowed, not cloned: `append` encodes the record before it returns, so the
        // event's headers and body are never copied on the ingest path.
        let Some(event) = req.extensions().get::<Verified<Event>>() else {
            return Box::pin(async {
                Ok(problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "not_verified",
                    "AckLayer received a request that no VerifyLayer verified",
                    "put a VerifyLayer before the AckLayer",
                ))
            });
        };
        let append = self.journal.append(
            event,
            &crate::journal::AppendOptions {
                dedup_window: self.dedup_window,
                order_key: self
                    .order_by
                    .as_deref()
                    .and_then(|p| crate::verify::common::json_pointer_str(&event.body, p)),
                destinations: destinations_of(&self.destinations, event),
            },
        );
        let source = event.source.clone();
        Box::pin(async move {
            let started = Instant::now();
            let source = &*source;
            match append.await {
                Ok(a) => {
                    let took = started.elapsed().as_secs_f64();
                    metrics::histogram!("hookbox_ingest_seconds", "source" => source.to_owned())
                        .record(took);
                    let what = if a.duplicate {
                        "hookbox_duplicates_total"
                    } else {
                        "hookbox_acked_total"
                    };
                    metrics::counter!(what, "source" => source.to_owned()).increment(1);
                    tracing::debug!(source, id = %a.id, duplicate = a.duplicate, "event journaled");
                    req.extensions_mut().insert(Acked {
                        id: a.id,
                        duplicate: a.duplicate,
                    });
                    inner.call(req).await
                }
                Err(e) => Ok(journal_unavailable(source, &e)),
            }
        })
    }
}

/// The terminal service of an endpoint: `202 {"id"}`, or `200 {"id", "duplicate": true}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accepted;

impl Service<Request<Body>> for Accepted {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let res = match req.extensions().get::<Acked>() {
            Some(a) => {
                let (status, body) = if a.duplicate {
                    (
                        StatusCode::OK,
                        format!(r#"{{"id":"{}","duplicate":true}}"#, a.id),
                    )
                } else {
                    (StatusCode::ACCEPTED, format!(r#"{{"id":"{}"}}"#, a.id))
                };
                let mut res = Response::new(Body::from(body));
                *res.status_mut() = status;
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
            None => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "not_journaled",
                "Accepted received a request that no AckLayer journaled",
                "put an AckLayer before Accepted",
            ),
        };
        std::future::ready(Ok(res))
    }
}
