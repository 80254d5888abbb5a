//! The operator dashboard, served by the admin listener under `/ui/`.
//!
//! Server-rendered HTML (maud templates in `templates/`, every value escaped), one
//! stylesheet and one small script in `assets/`, compiled into the binary: nothing is
//! fetched from anywhere else, and every page and action works with scripts off (the
//! script only adds the live tail, local and relative times, and "select all").
//!
//! The pages call the admin API's own operations (`admin::ops`) and render their typed
//! answers, so a listing, a redrive or a replay does in the dashboard exactly what it
//! does over the API.
//!
//! | Route | Page |
//! |---|---|
//! | `GET /ui/login`, `POST /ui/login` (`token`) | sign in: sets the session cookie |
//! | `POST /ui/logout` | ends the session |
//! | `GET /ui/` | overview: sources, destinations, the journal |
//! | `GET /ui/events` | events, filtered by the query string; `/ui/events/rows` is the live tail |
//! | `GET /ui/events/{id}` | one event and each destination's delivery; `POST .../redrive` (`destination`: that one only), `POST .../replay`, `GET .../raw` |
//! | `GET /ui/dlq`, `POST /ui/dlq/redrive` | dead deliveries, one per (event, destination), grouped; a row's redrive at once, a selection's or a filter's after a bound preview |
//! | `GET /ui/replays`, `POST /ui/replays`, `GET /ui/replays/{id}` | replays: count, confirm, progress |
//! | `GET /ui/rejected` | the recent refusals of the webhook listener |
//! | `GET /ui/sources` | sources and destinations as configured |
//!
//! Security: the session cookie is `HttpOnly; SameSite=Strict; Path=/ui` (and `Secure`
//! with `admin.secure_cookies`); every state-changing request must be same-origin
//! (`Sec-Fetch-Site`, else `Origin`) unless it carries the bearer token; every response
//! carries a strict Content-Security-Policy (`script-src 'self'`, no inline script).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::admin::ops::Admin;
use crate::{Config, ConfigError};

mod guard;
mod pages;
mod session;
mod templates;

/// A configured source, as the dashboard shows it.
#[derive(Debug, Clone)]
pub(crate) struct SourceInfo {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) scheme: String,
    /// The tolerance, or the provider's default, in words.
    pub(crate) tolerance: String,
    /// `sha256:` and 8 hex digits per secret.
    pub(crate) fingerprints: Vec<String>,
    pub(crate) destinations: Vec<String>,
    pub(crate) max_backlog: Option<u64>,
}

/// A configured destination, as the dashboard shows it.
#[derive(Debug, Clone)]
pub(crate) struct DestinationInfo {
    pub(crate) name: String,
    /// The URL without user info (which may be a credential).
    pub(crate) url: String,
    pub(crate) timeout: String,
    pub(crate) retry: String,
    pub(crate) permanent: Vec<u16>,
    pub(crate) fingerprint: String,
}

/// What the dashboard knows besides the admin API.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Mark the session cookie `Secure`.
    pub(crate) secure_cookies: bool,
    /// The configured sources (empty when the API serves a bare journal).
    pub(crate) sources: Vec<SourceInfo>,
    /// The configured destinations.
    pub(crate) destinations: Vec<DestinationInfo>,
}

fn fingerprint(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    format!("sha256:{}", hex::encode(&d[..4]))
}

fn words(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn retry_words(r: Option<&crate::RetryConfig>) -> String {
    let Some(r) = r else {
        return format!(
            "default: {}",
            crate::DEFAULT_SCHEDULE
                .iter()
                .map(|d| words(*d))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut parts = Vec::new();
    if let Some(s) = &r.schedule {
        parts.push(s.iter().map(|d| words(d.0)).collect::<Vec<_>>().join(", "));
    }
    if let Some(b) = &r.backoff {
        parts.push(format!("{b:?}").to_lowercase());
    }
    if let Some(b) = &r.base {
        parts.push(format!("base {}", words(b.0)));
    }
    if let Some(c) = &r.cap {
        parts.push(format!("cap {}", words(c.0)));
    }
    if let Some(m) = r.max_attempts {
        parts.push(format!("{m} attempts"));
    }
    parts.join("; ")
}

impl Options {
    /// The options of a configured server; `resolve` reads each secret, which only its
    /// fingerprint leaves.
    pub(crate) fn of(
        config: &Config,
        resolve: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut sources = Vec::new();
        for (i, s) in config.sources.iter().enumerate() {
            let scheme = s.scheme_config(i, resolve)?;
            sources.push(SourceInfo {
                name: s.name.clone(),
                path: s.path.clone(),
                scheme: s.scheme.clone(),
                tolerance: s
                    .tolerance
                    .map_or_else(|| "provider's default".to_owned(), |t| words(t.0)),
                fingerprints: scheme
                    .secrets
                    .iter()
                    .map(|k| fingerprint(k.expose()))
                    .collect(),
                destinations: s
                    .destinations
                    .iter()
                    .map(|d| {
                        if d.filter == Default::default() {
                            d.name.clone()
                        } else {
                            format!("{} (filtered)", d.name)
                        }
                    })
                    .collect(),
                max_backlog: s.max_backlog,
            });
        }
        let mut destinations = Vec::new();
        for (i, d) in config.destinations.iter().enumerate() {
            let secret = resolve(&d.signing_secret)
                .map_err(|p| ConfigError::new(format!("destination[{i}].signing_secret"), p))?;
            let url = match reqwest::Url::parse(&d.url) {
                Ok(mut u) => {
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                    u.to_string()
                }
                Err(_) => d.url.clone(),
            };
            destinations.push(DestinationInfo {
                name: d.name.clone(),
                url,
                timeout: d.timeout.map_or_else(|| "30s".to_owned(), |t| words(t.0)),
                retry: retry_words(d.retry.as_ref()),
                permanent: d.permanent_statuses.clone(),
                fingerprint: fingerprint(&secret),
            });
        }
        Ok(Options {
            secure_cookies: config.admin.as_ref().is_some_and(|a| a.secure_cookies),
            sources,
            destinations,
        })
    }
}

/// What every dashboard handler shares.
pub(crate) struct Ui {
    /// The admin API's state: its journal, its token, its functions' inputs.
    pub(crate) admin: Arc<Admin>,
    /// The configuration's view, fixed at start.
    pub(crate) opts: Options,
    /// Live sessions; dropped with the router.
    pub(crate) sessions: session::Sessions,
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return templates::error_page(StatusCode::NOT_FOUND, "Not found", "no such asset"),
    };
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    res
}

/// The dashboard's routes over the admin API's state.
pub(crate) fn router(admin: Arc<Admin>, opts: Options) -> Router {
    let ui = Arc::new(Ui {
        admin,
        opts,
        sessions: session::Sessions::default(),
    });
    let signed_in = Router::new()
        .route("/ui/", get(pages::overview))
        .route("/ui/events", get(pages::events))
        .route("/ui/events/rows", get(pages::event_rows))
        .route("/ui/events/{id}", get(pages::event))
        .route("/ui/events/{id}/raw", get(pages::raw))
        .route("/ui/events/{id}/redrive", post(pages::redrive_event))
        .route("/ui/events/{id}/replay", post(pages::replay_event))
        .route("/ui/dlq", get(pages::dlq))
        .route("/ui/dlq/redrive", post(pages::dlq_redrive))
        .route("/ui/replays", get(pages::replays).post(pages::replay_post))
        .route("/ui/replays/{id}", get(pages::replay))
        .route("/ui/rejected", get(pages::rejected))
        .route("/ui/sources", get(pages::sources))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/{*rest}", get(pages::not_found))
        .layer(middleware::from_fn_with_state(
            ui.clone(),
            guard::require_session,
        ));
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/assets/{name}", get(asset))
        .merge(signed_in)
        .layer(middleware::from_fn_with_state(ui.clone(), guard::csrf))
        .layer(middleware::from_fn(guard::headers))
        .with_state(ui)
}
