//! The admin API: events, the dead-letter queue, replays, health and metrics, for
//! operators and the `hookbox` CLI. It listens apart from the webhook listener
//! (`[admin]` in the configuration), so it can stay on a private interface.
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` while the process serves |
//! | `GET /readyz` | 200 while the journal is healthy, else 503 |
//! | `GET /v1/events` | events newest first: `source`, `type` (exact or `prefix*`), `state` (`pending`, `retrying`, `done`, `dead`), `since`, `until` (RFC 3339), `limit` (1..=1000, default 100), `cursor` (the previous page's `next_cursor`) |
//! | `GET /v1/events/{id}` | one event: headers, body (`body_encoding` `utf8` or `base64`), delivery state, every attempt |
//! | `POST /v1/replay` | `{"since","until","source"?,"type"?,"destination"?,"dry_run"?}` -> `{"replay_id","matched"}` |
//! | `GET /v1/replays/{id}` | a replay's progress, with `complete` once `done + failed >= matched` |
//! | `GET /v1/dlq` | dead events, oldest first: `source`, `limit` |
//! | `POST /v1/dlq/redrive` | `{"ids"?,"source"?,"type"?,"since"?,"until"?}` -> `{"redriven": n}`; `since`/`until` bound when the event died; **`{}` redrives every dead event** |
//! | `GET /metrics` | Prometheus text, with `hookbox_dlq_size` and `hookbox_backlog{source}` fresh |
//!
//! Every route but the two health checks wants `Authorization: Bearer <token>`; the
//! token is compared in constant time. Rejections are `application/problem+json`
//! (401 with `WWW-Authenticate: Bearer`, 400 naming the parameter, 404) and count in
//! `hookbox_admin_rejected_total{kind}`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as Shared};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use http::{header, HeaderValue, StatusCode, Uri};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::journal::bound_ms;
use crate::layer::problem::problem;
use crate::server::ServeError;
use crate::{
    Config, EventId, EventSummary, Journal, JournalError, Query, RedriveFilter, ReplayFilter,
    Secret, State,
};

/// The most events one list request returns.
const MAX_LIMIT: usize = 1000;

/// What every handler shares (the dashboard under `/ui` too).
pub(crate) struct Admin {
    /// The journal the API reads and writes; shared with the webhook side.
    pub(crate) journal: Arc<dyn Journal>,
    /// SHA-256 of the token. Comparing digests in constant time hides both the token's
    /// bytes and its length, and the token itself is not kept here.
    token_digest: [u8; 32],
    /// Renders the process's metrics for `/metrics`.
    pub(crate) metrics: PrometheusHandle,
    /// Destination name -> the sources that forward to it, when the API serves a
    /// configured server: replays to a destination are checked against it.
    pub(crate) destinations: Option<HashMap<String, Vec<String>>>,
}

impl Admin {
    /// True when `presented` is the admin token (compared in constant time).
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }
}

/// The admin router over `journal`, guarded by `token`, rendering `metrics` at
/// `/metrics`.
///
/// The gauges `/metrics` refreshes go to the global `metrics` recorder, so `metrics`
/// should be that recorder's handle: [`metrics_handle`] installs one and returns it.
///
/// The operator dashboard is served under `/ui/` beside the API; its session cookie
/// goes without `Secure` here (the listener is plain HTTP).
pub fn router(journal: Arc<dyn Journal>, token: Secret, metrics: PrometheusHandle) -> Router {
    routes(
        Admin {
            journal,
            token_digest: Sha256::digest(token.expose().as_bytes()).into(),
            metrics,
            destinations: None,
        },
        crate::ui::Options::default(),
    )
}

fn routes(admin: Admin, ui: crate::ui::Options) -> Router {
    let admin = Arc::new(admin);
    let guarded = Router::new()
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(show_event))
        .route("/v1/replay", post(create_replay))
        .route("/v1/replays/{id}", get(replay_status))
        .route("/v1/dlq", get(list_dlq))
        .route("/v1/dlq/redrive", post(redrive))
        .route("/metrics", get(render_metrics))
        .fallback(|uri: Uri| async move {
            Problem::NotFound(format!("no admin route at {}", uri.path()))
        })
        // Unknown paths too: without the token, nothing about the API is revealed.
        .layer(middleware::from_fn_with_state(admin.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(admin.clone())
        .merge(crate::ui::router(admin, ui))
}

/// The process's Prometheus handle. The first call installs a Prometheus recorder as the
/// global `metrics` recorder (and a thread that runs its upkeep every 5 s, which keeps
/// histogram memory bounded); when another recorder was installed first, the handle is
/// of a local recorder that stays empty.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                let upkeep = handle.clone();
                let _ = std::thread::Builder::new()
                    .name("hookbox-metrics".into())
                    .spawn(move || loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    });
                handle
            }
            Err(e) => {
                tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        })
        .clone()
}

/// The admin listener of a running server: serving until the server's stop signal.
#[derive(Debug)]
pub(crate) struct Running(JoinHandle<std::io::Result<()>>);

impl Running {
    /// Waits up to `grace` for the admin requests in flight, then drops them.
    pub(crate) async fn finish(mut self, grace: Duration) {
        match tokio::time::timeout(grace, &mut self.0).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "the admin listener failed"),
            Ok(_) => {}
            Err(_) => self.0.abort(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the admin API when `[admin]` is configured: on `listener` when given, else on
/// `admin.listen`. It stops accepting when `stop` turns true.
pub(crate) async fn start(
    listener: Option<TcpListener>,
    config: &Config,
    journal: Arc<dyn Journal>,
    resolve: &dyn Fn(&str) -> Result<String, String>,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<Running>, ServeError> {
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    let token = admin.token(resolve)?;
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(admin.listen).await?,
    };
    tracing::info!(addr = %listener.local_addr()?, "admin API listening");
    let mut destinations: HashMap<String, Vec<String>> = config
        .destinations
        .iter()
        .map(|d| (d.name.clone(), Vec::new()))
        .collect();
    for src in &config.sources {
        for d in &src.destinations {
            destinations
                .entry(d.clone())
                .or_default()
                .push(src.name.clone());
        }
    }
    let ui = crate::ui::Options::of(config, resolve)?;
    let app = routes(
        Admin {
            journal,
            token_digest: Sha256::digest(token.expose().as_bytes()).into(),
            metrics: metrics_handle(),
            destinations: Some(destinations),
        },
        ui,
    );
    Ok(Some(Running(tokio::spawn(serve(
        listener,
        app,
        async move {
            let _ = stop.wait_for(|v| *v).await;
        },
    )))))
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish.
async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Refuses requests without the right bearer token.
async fn authorize(Shared(admin): Shared<Arc<Admin>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match presented {
        None => Problem::Unauthorized {
            kind: "missing_token",
            detail: "send `Authorization: Bearer <token>` (the [admin] token)",
        }
        .into_response(),
        Some(t) if !admin.accepts(t) => Problem::Unauthorized {
            kind: "invalid_token",
            detail: "the bearer token is not the [admin] token",
        }
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

/// Why a request was refused; each becomes a problem response and a count in
/// `hookbox_admin_rejected_total{kind}`.
#[derive(Debug)]
pub(crate) enum Problem {
    Unauthorized {
        kind: &'static str,
        detail: &'static str,
    },
    Param {
        name: String,
        detail: String,
    },
    Body(String),
    NotFound(String),
    NotReady,
    Journal(JournalError),
}

impl Problem {
    fn param(name: &str, detail: impl Into<String>) -> Self {
        Problem::Param {
            name: name.to_owned(),
            detail: detail.into(),
        }
    }
}

impl From<JournalError> for Problem {
    fn from(e: JournalError) -> Self {
        Problem::Journal(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, kind, title, detail) = match self {
            Problem::Unauthorized { kind, detail } => (
                StatusCode::UNAUTHORIZED,
                kind,
                "A valid admin token is required",
                detail.to_owned(),
            ),
            Problem::Param { name, detail } => (
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "A query parameter is invalid",
                format!("{name}: {detail}"),
            ),
            Problem::Body(detail) => (
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "The request body is invalid",
                detail,
            ),
            Problem::NotFound(detail) => (StatusCode::NOT_FOUND, "not_found", "Not found", detail),
            Problem::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "The journal is not ready",
                "the journal is recovering from a storage failure".to_owned(),
            ),
            Problem::Journal(e) if e.is_retryable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_unavailable",
                "The journal cannot answer now",
                e.to_string(),
            ),
            Problem::Journal(e) => {
                tracing::error!(error = %e, "admin request failed on a journal record");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "journal_error",
                    "The journal could not answer",
                    e.to_string(),
                )
            }
        };
        metrics::counter!("hookbox_admin_rejected_total", "kind" => kind).increment(1);
        let mut res = problem(status, kind, title, &detail);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if kind == "invalid_token" {
                r#"Bearer realm="hookbox-admin", error="invalid_token""#
            } else {
                r#"Bearer realm="hookbox-admin""#
            };
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        res
    }
}

/// A request's query parameters, each known to the route and given at most once. An
/// empty value counts as absent.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(uri: &Uri, known: &[&str]) -> Result<Self, Problem> {
        let mut out: Vec<(String, String)> = Vec::new();
        let pairs = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes());
        for (k, v) in pairs {
            if !known.contains(&k.as_ref()) {
                return Err(Problem::param(
                    &k,
                    format!("unknown parameter; this route takes {}", known.join(", ")),
                ));
            }
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(Problem::param(&k, "given more than once"));
            }
            if !v.is_empty() {
                out.push((k.into_owned(), v.into_owned()));
            }
        }
        Ok(Params(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn time(&self, name: &str) -> Result<Option<SystemTime>, Problem> {
        self.get(name)
            .map(|v| parse_time(v).map_err(|e| Problem::param(name, e)))
            .transpose()
    }

    fn limit(&self) -> Result<usize, Problem> {
        match self.get("limit") {
            None => Ok(100),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Problem::param(
                        "limit",
                        format!("`{v}` is not a number from 1 to {MAX_LIMIT}"),
                    )
                }),
        }
    }
}

/// Parses an RFC 3339 time. A `+` offset that a query string turned into a space is
/// read as the `+` it was.
fn parse_time(v: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(v, &Rfc3339)
        .or_else(|e| OffsetDateTime::parse(&v.replace(' ', "+"), &Rfc3339).map_err(|_| e))
        .map(SystemTime::from)
        .map_err(|e| format!("`{v}` is not an RFC 3339 time like 2024-05-01T12:00:00Z ({e})"))
}

/// Refuses an empty or reversed window.
fn check_window(since: Option<SystemTime>, until: Option<SystemTime>) -> Result<(), String> {
    match (since, until) {
        (Some(s), Some(u)) if s >= u => Err("must be before `until`".to_owned()),
        _ => Ok(()),
    }
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "invalid time".to_owned())
}

fn rfc3339_ms(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

fn summary_json(e: &EventSummary) -> Value {
    json!({
        "id": e.id,
        "source": e.source,
        "type": e.event_type,
        "delivery_id": e.delivery_id,
        "received_at": rfc3339(e.received_at),
        "body_len": e.body_len,
        "state": e.state.as_str(),
        "attempts": e.attempts,
    })
}

/// A JSON object body, read field by field so that every problem names its field.
struct JsonObject(serde_json::Map<String, Value>);

impl JsonObject {
    fn parse(body: &Bytes, known: &[&str]) -> Result<Self, Problem> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Problem::Body(format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Problem::Body(format!(
                "expected a JSON object with {}",
                known.join(", ")
            )));
        };
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Problem::Body(format!(
                "{k}: unknown field; this route takes {}",
                known.join(", ")
            )));
        }
        Ok(JsonObject(map))
    }

    /// The field as a `T`; absent and `null` are `None`.
    fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Problem> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|e| Problem::Body(format!("{name}: {e}"))),
        }
    }

    fn time(&self, name: &str) -> Result<Option<SystemTime>, Problem> {
        self.get::<String>(name)?
            .map(|v| parse_time(&v).map_err(|e| Problem::Body(format!("{name}: {e}"))))
            .transpose()
    }
}

pub(crate) async fn readyz(Shared(admin): Shared<Arc<Admin>>) -> Result<Json<Value>, Problem> {
    let load = admin.journal.load();
    if !load.healthy {
        return Err(Problem::NotReady);
    }
    Ok(Json(json!({
        "status": "ready",
        "queued": load.queued,
        "capacity": load.capacity,
    })))
}

pub(crate) async fn list_events(
    Shared(admin): Shared<Arc<Admin>>,
    uri: Uri,
) -> Result<Json<Value>, Problem> {
    let p = Params::parse(
        &uri,
        &[
            "source", "type", "state", "since", "until", "limit", "cursor",
        ],
    )?;
    let state = p
        .get("state")
        .map(|s| {
            State::parse(s).ok_or_else(|| {
                Problem::param(
                    "state",
                    format!("`{s}` is not one of pending, retrying, done, dead"),
                )
            })
        })
        .transpose()?;
    let before = p
        .get("cursor")
        .map(|c| {
            c.parse::<EventId>()
                .map_err(|e| Problem::param("cursor", format!("`{c}`: {e}")))
        })
        .transpose()?;
    let q = Query {
        since: p.time("since")?,
        until: p.time("until")?,
        source: p.get("source").map(str::to_owned),
        event_type: p.get("type").map(str::to_owned),
        state,
        before,
        limit: p.limit()?,
    };
    check_window(q.since, q.until).map_err(|e| Problem::param("since", e))?;
    let page = admin.journal.query(&q).await?;
    Ok(Json(json!({
        "events": page.events.iter().map(summary_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

fn event_id(raw: &str) -> Result<EventId, Problem> {
    raw.parse()
        .map_err(|e| Problem::param("id", format!("`{raw}`: {e}")))
}

pub(crate) async fn show_event(
    Shared(admin): Shared<Arc<Admin>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = event_id(&raw)?;
    let journal = &admin.journal;
    let Some(event) = journal.get(id).await? else {
        return Err(Problem::NotFound(format!("no event {id}")));
    };
    let (state, attempts) = tokio::try_join!(journal.state(id), journal.attempts(id))?;
    let headers: Vec<[String; 2]> = event
        .headers
        .iter()
        .map(|(k, v)| {
            [
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let (body, encoding) = match std::str::from_utf8(&event.body) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&event.body),
            "base64",
        ),
    };
    let state_name = state.as_ref().map(|st| st.state.as_str());
    let delivery = state.map(|st| {
        json!({
            "attempts": st.attempts,
            "next_at": st.next_at_ms.map(rfc3339_ms),
            "last_error": st.last_error,
            "redrives": st.redrives,
            "dead_at": st.dead_at_ms.map(rfc3339_ms),
            "order_key": (!st.order_key.is_empty()).then_some(st.order_key),
        })
    });
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "n": a.n,
                "started_at": rfc3339_ms(a.started_ms),
                "duration_ms": a.duration_ms,
                "outcome": a.outcome,
                "error": a.error,
                "replay": a.replay,
            })
        })
        .collect();
    Ok(Json(json!({
        "id": event.id,
        "source": event.source,
        "scheme": event.scheme,
        "type": event.event_type,
        "delivery_id": event.delivery_id,
        "received_at": rfc3339(event.received_at),
        "state": state_name,
        "delivery": delivery,
        "headers": headers,
        "body_len": event.body.len(),
        "body_encoding": encoding,
        "body": body,
        "attempts": attempts,
    })))
}

/// `POST /v1/replay`: 202 with the new replay's id, or 200 with the count of a dry run.
pub(crate) async fn create_replay(
    Shared(admin): Shared<Arc<Admin>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let r = JsonObject::parse(
        &body,
        &["since", "until", "source", "type", "destination", "dry_run"],
    )?;
    let since = r.time("since")?;
    let until = r.time("until")?;
    let (Some(since), Some(until)) = (since, until) else {
        let missing = if since.is_none() { "since" } else { "until" };
        return Err(Problem::Body(format!("{missing}: required (RFC 3339)")));
    };
    check_window(Some(since), Some(until)).map_err(|e| Problem::Body(format!("since: {e}")))?;
    let dry_run = r.get::<bool>("dry_run")?.unwrap_or(false);
    let source: Option<String> = r.get("source")?;
    let destination: Option<String> = r.get("destination")?;
    // A replay to one destination covers only the sources that forward to it.
    let mut sources = None;
    if let (Some(dest), Some(known)) = (&destination, &admin.destinations) {
        let Some(forwarding) = known.get(dest) else {
            return Err(Problem::Body(format!(
                "destination: no [[destination]] is named `{dest}`"
            )));
        };
        if let Some(src) = source
            .as_deref()
            .filter(|s| !forwarding.iter().any(|f| f == s))
        {
            return Err(Problem::Body(format!(
                "destination: source `{src}` does not forward to `{dest}`"
            )));
        }
        sources = Some(forwarding.clone());
    }
    let status = admin
        .journal
        .replay(ReplayFilter {
            since_ms: bound_ms(since),
            until_ms: bound_ms(until),
            source,
            sources,
            event_type: r.get("type")?,
            destination,
            dry_run,
        })
        .await?;
    let code = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = json!({
        "replay_id": (!dry_run).then_some(status.id),
        "matched": status.matched,
        "dry_run": dry_run,
    });
    Ok((code, Json(body)).into_response())
}

pub(crate) async fn replay_status(
    Shared(admin): Shared<Arc<Admin>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id: u64 = raw
        .parse()
        .map_err(|_| Problem::param("id", format!("`{raw}` is not a replay id (a number)")))?;
    let status = admin
        .journal
        .replay_status(id)
        .await?
        .ok_or_else(|| Problem::NotFound(format!("no replay {id}")))?;
    Ok(Json(json!({
        "id": status.id,
        "matched": status.matched,
        "done": status.done,
        "failed": status.failed,
        "destination": status.destination,
        "created_at": rfc3339_ms(status.created_ms),
        "complete": status.done + status.failed >= status.matched,
    })))
}

pub(crate) async fn list_dlq(
    Shared(admin): Shared<Arc<Admin>>,
    uri: Uri,
) -> Result<Json<Value>, Problem> {
    let p = Params::parse(&uri, &["source", "limit"])?;
    let limit = p.limit()?;
    let source = p.get("source").map(str::to_owned);
    let journal = &admin.journal;
    let mut events = Vec::new();
    for (id, source) in journal.dead(source.as_deref(), limit).await? {
        let (event, st) = tokio::try_join!(journal.get(id), journal.state(id))?;
        events.push(json!({
            "id": id,
            "source": source,
            "type": event.and_then(|e| e.event_type),
            "dead_at": st.as_ref().and_then(|s| s.dead_at_ms).map(rfc3339_ms),
            "last_error": st.as_ref().and_then(|s| s.last_error.clone()),
            "attempts": st.as_ref().map_or(0, |s| s.attempts),
        }));
    }
    Ok(Json(json!({ "events": events })))
}

/// `POST /v1/dlq/redrive`: every field narrows; none (`{}`) means every dead event.
pub(crate) async fn redrive(
    Shared(admin): Shared<Arc<Admin>>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let r = JsonObject::parse(&body, &["ids", "source", "type", "since", "until"])?;
    let ids = r
        .get::<Vec<String>>("ids")?
        .map(|ids| {
            ids.iter()
                .map(|raw| {
                    raw.parse::<EventId>()
                        .map_err(|e| Problem::Body(format!("ids: `{raw}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let since = r.time("since")?;
    let until = r.time("until")?;
    check_window(since, until).map_err(|e| Problem::Body(format!("since: {e}")))?;
    let n = admin
        .journal
        .redrive(RedriveFilter {
            ids,
            source: r.get("source")?,
            event_type: r.get("type")?,
            since_ms: since.map(bound_ms),
            until_ms: until.map(bound_ms),
            max_redrives: None,
        })
        .await?;
    Ok(Json(json!({ "redriven": n })))
}

async fn render_metrics(Shared(admin): Shared<Arc<Admin>>) -> Result<Response, Problem> {
    let dead = admin.journal.dead_count().await?;
    metrics::gauge!("hookbox_dlq_size").set(dead as f64);
    for (source, backlog) in admin.journal.sources() {
        metrics::gauge!("hookbox_backlog", "source" => source).set(backlog as f64);
    }
    let mut res = Response::new(Body::from(admin.metrics.render()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}
