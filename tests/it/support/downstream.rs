//! A downstream application on 127.0.0.1:0 that records every request it receives and
//! answers as the test tells it to: the other end of forwarding.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

/// One request as the downstream received it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// The method.
    pub(crate) method: Method,
    /// The path and query.
    pub(crate) uri: Uri,
    /// The headers, as received.
    pub(crate) headers: HeaderMap,
    /// The body, as received.
    pub(crate) body: Bytes,
}

impl Recorded {
    /// A header's value as text (panics when absent or not text).
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

/// How the downstream answers one request.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    /// `200 OK`, empty, at once.
    pub(crate) fn ok() -> Self {
        Reply::status(200)
    }

    /// `status`, empty, at once.
    pub(crate) fn status(status: u16) -> Self {
        Reply {
            status: StatusCode::from_u16(status).expect("a status"),
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a response header.
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the response body.
    pub(crate) fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// Waits this long before answering.
    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Respond = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

/// The downstream's shared state: what it saw, and how it answers.
struct Inner {
    /// Every request, in arrival order.
    requests: Mutex<Vec<Recorded>>,
    /// Requests being answered now.
    in_flight: AtomicUsize,
    /// The most requests ever answered at once.
    max_in_flight: AtomicUsize,
    /// Picks the reply to the `n`th request (0-based).
    respond: Box<Respond>,
    /// Woken on every request.
    arrived: tokio::sync::Notify,
}

/// A running downstream application; it stops with the test's runtime.
#[derive(Clone)]
pub(crate) struct Downstream {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    inner: Arc<Inner>,
}

/// A downstream that answers every request `200 OK`.
pub(crate) async fn downstream() -> Downstream {
    Downstream::start(|_, _| Reply::ok()).await
}

impl Downstream {
    /// Starts a downstream that answers the `n`th request (0-based) with `respond(n, req)`.
    pub(crate) async fn start(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Downstream {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            respond: Box::new(respond),
            arrived: tokio::sync::Notify::new(),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let addr = super::serve(app).await;
        Downstream { addr, inner }
    }

    /// The URL of `path` on this downstream.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// The most requests it was ever answering at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived (panics after `timeout`).
    pub(crate) async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.inner.arrived.notified();
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "expected {n} request(s) within {timeout:?}, got {}",
                    self.requests().len()
                );
            }
        }
    }
}

/// Decrements the in-flight count however the request ends (answered, or dropped by a
/// client that gave up).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&inner.in_flight);
    inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let recorded = Recorded {
        method,
        uri,
        headers,
        body,
    };
    let n = {
        let mut requests = inner.requests.lock().unwrap();
        requests.push(recorded.clone());
        requests.len() - 1
    };
    inner.arrived.notify_waiters();
    let reply = (inner.respond)(n, &recorded);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (reply.status, reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}
