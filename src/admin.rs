//! The admin API: events, the dead-letter queue, replays, health and metrics, for
//! operators and the `hookbox` CLI. It listens apart from the webhook listener
//! (`[admin]` in the configuration), so it can stay on a private interface.
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` while the process serves |
//! | `GET /readyz` | 200 while the journal is healthy, else 503 |
//! | `GET /v1/events` | events newest first: `source`, `type` (exact or `prefix*`), `state` (`pending`, `retrying`, `done`, `dead`), `since`, `until` (RFC 3339), `limit` (1..=1000, default 100), `cursor` (the previous page's `next_cursor`), `where` (a filter on type and body, as JSON: [`crate::filter`]; a page then looks at no more than [`MAX_FILTER_SCAN`](crate::MAX_FILTER_SCAN) events, and may be short with a `next_cursor`) |
//! | `GET /v1/events/{id}` | one event: headers, body (`body_encoding` `utf8` or `base64`), delivery state, every attempt |
//! | `POST /v1/replay` | `{"since","until","source"?,"type"?,"destination"?,"dry_run"?,"where"?}` -> `{"replay_id","matched"}`; `where` is a filter on type and body (a JSON object, [`crate::filter`]) |
//! | `GET /v1/replays/{id}` | a replay's progress, with `complete` once `done + failed >= matched` |
//! | `GET /v1/dlq` | dead events, oldest first: `source`, `limit` |
//! | `POST /v1/dlq/redrive` | `{"ids"?,"source"?,"type"?,"since"?,"until"?}` -> `{"redriven": n}`; `since`/`until` bound when the event died; **`{}` redrives every dead event** |
//! | `GET /metrics` | Prometheus text, with `hookbox_dlq_size` and `hookbox_backlog{source}` fresh |
//! | `GET /v1/openapi.json` | this API's OpenAPI 3.1 document, generated from the handlers and their types ([`openapi()`]); the repository keeps a copy in `docs/openapi.json` |
//!
//! Every route but the two health checks wants `Authorization: Bearer <token>`, the
//! document too: it hides nothing (the repository publishes it), but one rule is easier
//! to keep than a list of exceptions. The token is compared in constant time.
//! Rejections are `application/problem+json` (401 with `WWW-Authenticate: Bearer`, 400
//! naming the parameter, 404, 405 with `Allow`) and count in
//! `hookbox_admin_rejected_total{kind}`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State as Shared};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, HeaderValue, Method, StatusCode, Uri};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::ServeError;
use crate::{Config, Journal, Secret};

mod openapi;
pub(crate) mod ops;

use crate::EventId;
use openapi::{JournalFailure, Unauthorized};
use ops::{
    Admin, DlqQuery, EventsQuery, Problem, ProblemBody, ProblemKind, RedriveRequest, ReplayRequest,
};

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
        Admin::new(journal, &token, metrics, None),
        crate::ui::Options::default(),
    )
}

/// The largest request body the admin API reads (axum's default, stated).
const MAX_BODY: usize = 2 << 20;

fn routes(admin: Admin, ui: crate::ui::Options) -> Router {
    let admin = Arc::new(admin);
    let guarded: Router = Router::new()
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(show_event))
        .route("/v1/replay", post(create_replay))
        .route("/v1/replays/{id}", get(replay_status))
        .route("/v1/dlq", get(list_dlq))
        .route("/v1/dlq/redrive", post(redrive))
        .route("/metrics", get(render_metrics))
        .route("/v1/openapi.json", get(openapi_document))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .fallback(|uri: Uri| async move {
            Problem::NotFound(format!("no admin route at {}", uri.path()))
        })
        .with_state(admin.clone());
    // Around the whole router, before routing, so that unknown paths want the token too
    // and a refusal carries nothing a route adds (such as `Allow`): without the token,
    // nothing about the API is revealed.
    let guarded = tower::Layer::layer(
        &middleware::from_fn_with_state(admin.clone(), authorize),
        guarded,
    );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(admin.clone())
        // The dashboard signs in with its own form and cookie, so it sits outside the
        // token guard; its pages want a session or the token themselves.
        .merge(crate::ui::router(admin, ui))
        .fallback_service(guarded)
}

/// A 405 problem; axum adds the `Allow` header.
async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::MethodNotAllowed(method.to_string(), uri.path().to_owned())
}

/// The admin API's OpenAPI 3.1 document as JSON, as `GET /v1/openapi.json` serves it
/// and `docs/openapi.json` keeps it (pretty, with a trailing newline).
pub fn openapi() -> &'static str {
    openapi::document()
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
                .entry(d.name().to_owned())
                .or_default()
                .push(src.name.clone());
        }
    }
    let ui = crate::ui::Options::of(config, resolve)?;
    let app = routes(
        Admin::new(journal, &token, metrics_handle(), Some(destinations)),
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
            kind: ProblemKind::MissingToken,
            detail: "send `Authorization: Bearer <token>` (the [admin] token)",
        }
        .into_response(),
        Some(t) if !admin.accepts(t) => Problem::Unauthorized {
            kind: ProblemKind::InvalidToken,
            detail: "the bearer token is not the [admin] token",
        }
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

/// The `{id}` of a path, or a problem naming it (a percent-encoding that does not
/// decode to UTF-8).
fn path_id(raw: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    raw.map(|Path(id)| id)
        .map_err(|e| Problem::param("id", e.body_text()))
}

/// The body, or a problem: 413 over [`MAX_BODY`], 400 when it could not be read.
fn read(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::TooLarge(format!(
                "the body is over {MAX_BODY} bytes, the admin API's limit"
            ))
        } else {
            Problem::Body(e.body_text())
        }
    })
}

/// A response struct as the JSON it answers. Going through [`Value`] keeps the keys in
/// the order `json!` objects have them (sorted).
fn json(body: impl Serialize) -> Json<Value> {
    Json(serde_json::to_value(body).expect("admin responses serialize to JSON"))
}

/// Liveness: answers while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves", body = ops::Health)))]
async fn healthz() -> Json<Value> {
    json(ops::health())
}

/// Readiness: 200 while the journal is healthy. A load balancer checks this.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The journal is healthy", body = ops::Readiness),
        (status = 503, description = "The journal is recovering from a storage failure", body = ProblemBody,
            content_type = "application/problem+json"),
    ))]
async fn readyz(Shared(admin): Shared<Arc<Admin>>) -> Result<Json<Value>, Problem> {
    Ok(json(ops::ready(&admin)?))
}

/// Lists events, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page; follow `next_cursor` for the next", body = ops::EventPage,
            links(("show" = (operation_id = "show_event", description = "The page's first event",
                parameters(("id" = "$response.body#/events/0/id")))))),
        (status = 400, description = "A query parameter is invalid, unknown or repeated, or `where` is not a valid filter; `detail` names it (and, for a filter, the key in it)", body = ProblemBody,
            content_type = "application/problem+json"),
        Unauthorized,
        JournalFailure,
    ))]
async fn list_events(Shared(admin): Shared<Arc<Admin>>, uri: Uri) -> Result<Json<Value>, Problem> {
    let q = EventsQuery::parse(uri.query())?;
    Ok(json(ops::list_events(&admin, q).await?))
}

/// Shows one event: headers, body, delivery state and every attempt.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    params(("id" = EventId, Path, description = "The event's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event", body = ops::EventDetail),
        (status = 400, description = "The id is malformed", body = ProblemBody,
            content_type = "application/problem+json"),
        Unauthorized,
        (status = 404, description = "No such event", body = ProblemBody,
            content_type = "application/problem+json"),
        JournalFailure,
    ))]
async fn show_event(
    Shared(admin): Shared<Arc<Admin>>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, Problem> {
    let id = ops::event_id(&path_id(raw)?)?;
    Ok(json(ops::show_event(&admin, id).await?))
}

/// Replays a window: new deliveries of its events, their history left alone. 202 with
/// the new replay's id, or 200 with the count of a dry run.
#[utoipa::path(post, path = "/v1/replay", tag = "replay",
    request_body(content = ReplayRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A dry run: how many events match (`replay_id` is null)", body = ops::ReplayCreated),
        (status = 202, description = "The replay is queued; follow it at `/v1/replays/{replay_id}`", body = ops::ReplayCreated,
            links(("progress" = (operation_id = "replay_status", description = "The replay's progress",
                parameters(("id" = "$response.body#/replay_id")))))),
        (status = 400, description = "The body is not a JSON object of the members this route takes, or one is invalid (`where` not a valid filter, say); `detail` names it (and, for a filter, the key in it)", body = ProblemBody,
            content_type = "application/problem+json"),
        (status = 413, description = "The body is over 2 MiB", body = ProblemBody,
            content_type = "application/problem+json"),
        Unauthorized,
        JournalFailure,
    ))]
async fn create_replay(
    Shared(admin): Shared<Arc<Admin>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let created = ops::create_replay(&admin, ReplayRequest::parse(&read(body)?)?).await?;
    let code = if created.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, json(created)).into_response())
}

/// A replay's progress.
#[utoipa::path(get, path = "/v1/replays/{id}", tag = "replay",
    params(("id" = u64, Path, description = "The replay's id (`replay_id`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Its progress", body = ops::ReplayProgress),
        (status = 400, description = "The id is malformed", body = ProblemBody,
            content_type = "application/problem+json"),
        Unauthorized,
        (status = 404, description = "No such replay", body = ProblemBody,
            content_type = "application/problem+json"),
        JournalFailure,
    ))]
async fn replay_status(
    Shared(admin): Shared<Arc<Admin>>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, Problem> {
    let id = ops::replay_id(&path_id(raw)?)?;
    Ok(json(ops::replay_status(&admin, id).await?))
}

/// Lists dead events, oldest first, with why they died.
#[utoipa::path(get, path = "/v1/dlq", tag = "dlq", params(DlqQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dead events", body = ops::DeadList,
            links(("show" = (operation_id = "show_event", description = "The oldest dead event",
                parameters(("id" = "$response.body#/events/0/id")))))),
        (status = 400, description = "A query parameter is invalid, unknown or repeated; `detail` names it", body = ProblemBody,
            content_type = "application/problem+json"),
        Unauthorized,
        JournalFailure,
    ))]
async fn list_dlq(Shared(admin): Shared<Arc<Admin>>, uri: Uri) -> Result<Json<Value>, Problem> {
    let q = DlqQuery::parse(uri.query())?;
    Ok(json(ops::list_dlq(&admin, q).await?))
}

/// Redrives dead events back to pending. Every member narrows; none (`{}`) redrives
/// every dead event.
#[utoipa::path(post, path = "/v1/dlq/redrive", tag = "dlq",
    request_body(content = RedriveRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many went back to pending", body = ops::Redriven),
        (status = 400, description = "The body is not a JSON object of the members this route takes, or one is invalid; `detail` names it", body = ProblemBody,
            content_type = "application/problem+json"),
        (status = 413, description = "The body is over 2 MiB", body = ProblemBody,
            content_type = "application/problem+json"),
        Unauthorized,
        JournalFailure,
    ))]
async fn redrive(
    Shared(admin): Shared<Arc<Admin>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let r = RedriveRequest::parse(&read(body)?)?;
    Ok(json(ops::redrive(&admin, r).await?))
}

/// The process's metrics in the Prometheus text format, with `hookbox_dlq_size` and
/// `hookbox_backlog{source}` refreshed.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        Unauthorized,
        JournalFailure,
    ))]
async fn render_metrics(Shared(admin): Shared<Arc<Admin>>) -> Result<Response, Problem> {
    let mut res = Response::new(Body::from(ops::metrics(&admin).await?));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The admin API's OpenAPI 3.1 document", body = Object),
        Unauthorized,
    ))]
async fn openapi_document() -> Response {
    let mut res = Response::new(Body::from(openapi::document()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
