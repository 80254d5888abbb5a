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
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as Shared};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, HeaderValue, StatusCode, Uri};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::ServeError;
use crate::{Config, Journal, Secret};

pub(crate) mod ops;

use ops::{Admin, DlqQuery, EventsQuery, Problem, RedriveRequest, ReplayRequest};

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
        .route("/healthz", get(healthz))
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

/// A response struct as the JSON it answers. Going through [`Value`] keeps the keys in
/// the order `json!` objects have them (sorted).
fn json(body: impl Serialize) -> Json<Value> {
    Json(serde_json::to_value(body).expect("admin responses serialize to JSON"))
}

async fn healthz() -> Json<Value> {
    json(ops::health())
}

async fn readyz(Shared(admin): Shared<Arc<Admin>>) -> Result<Json<Value>, Problem> {
    Ok(json(ops::ready(&admin)?))
}

async fn list_events(Shared(admin): Shared<Arc<Admin>>, uri: Uri) -> Result<Json<Value>, Problem> {
    let q = EventsQuery::parse(uri.query())?;
    Ok(json(ops::list_events(&admin, q).await?))
}

async fn show_event(
    Shared(admin): Shared<Arc<Admin>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = ops::event_id(&raw)?;
    Ok(json(ops::show_event(&admin, id).await?))
}

/// `POST /v1/replay`: 202 with the new replay's id, or 200 with the count of a dry run.
async fn create_replay(
    Shared(admin): Shared<Arc<Admin>>,
    body: Bytes,
) -> Result<Response, Problem> {
    let created = ops::create_replay(&admin, ReplayRequest::parse(&body)?).await?;
    let code = if created.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, json(created)).into_response())
}

async fn replay_status(
    Shared(admin): Shared<Arc<Admin>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = ops::replay_id(&raw)?;
    Ok(json(ops::replay_status(&admin, id).await?))
}

async fn list_dlq(Shared(admin): Shared<Arc<Admin>>, uri: Uri) -> Result<Json<Value>, Problem> {
    let q = DlqQuery::parse(uri.query())?;
    Ok(json(ops::list_dlq(&admin, q).await?))
}

/// `POST /v1/dlq/redrive`: every field narrows; none (`{}`) means every dead event.
async fn redrive(Shared(admin): Shared<Arc<Admin>>, body: Bytes) -> Result<Json<Value>, Problem> {
    let r = RedriveRequest::parse(&body)?;
    Ok(json(ops::redrive(&admin, r).await?))
}

async fn render_metrics(Shared(admin): Shared<Arc<Admin>>) -> Result<Response, Problem> {
    let mut res = Response::new(Body::from(ops::metrics(&admin).await?));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}
