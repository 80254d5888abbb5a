//! The admin operations as typed functions: a parsed request in, a response struct or
//! a [`Problem`] out. The JSON routes in `admin.rs` are thin wrappers over them; any
//! other front end holding an [`Admin`] calls the same functions.
//!
//! Each request struct has a `parse` that reads it from what the JSON API receives (a
//! query string or a body) and names the offending parameter or field in its problem.
//! Each response struct serializes to exactly the JSON its route answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{header, HeaderValue, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::openapi::FilterSchema;
use crate::filter::FilterSpec;
use crate::journal::bound_ms;
use crate::layer::problem::PROBLEM_JSON;
use crate::{
    AttemptOutcome, EventId, EventState, EventSummary, Filter, Journal, JournalError, Query,
    RedriveFilter, ReplayFilter, Secret, State,
};

/// The most events one list request returns.
pub(crate) const MAX_LIMIT: usize = 1000;

/// How many events a list request returns when it does not say.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// What every admin operation shares.
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
    /// The context for `journal`, guarded by `token`.
    pub(crate) fn new(
        journal: Arc<dyn Journal>,
        token: &Secret,
        metrics: PrometheusHandle,
        destinations: Option<HashMap<String, Vec<String>>>,
    ) -> Self {
        Admin {
            journal,
            token_digest: Sha256::digest(token.expose().as_bytes()).into(),
            metrics,
            destinations,
        }
    }

    /// True when `presented` is the token.
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }
}

/// Why a request was refused; each becomes a problem response and a count in
/// `hookbox_admin_rejected_total{kind}`.
#[derive(Debug)]
pub(crate) enum Problem {
    Unauthorized {
        kind: ProblemKind,
        detail: &'static str,
    },
    Param {
        name: String,
        detail: String,
    },
    Body(String),
    /// The body is over the limit.
    TooLarge(String),
    NotFound(String),
    /// The path exists, the method does not: (method, path).
    MethodNotAllowed(String, String),
    NotReady,
    Journal(JournalError),
}

/// What kind of problem a rejection is: the last part of its `type`, and its `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProblemKind {
    /// No bearer token was sent (401).
    MissingToken,
    /// The bearer token is not the admin token (401).
    InvalidToken,
    /// A query or path parameter is invalid (400); `detail` starts with its name.
    InvalidParameter,
    /// The request body is invalid (400); `detail` starts with the field's name.
    InvalidBody,
    /// The request body is over the admin API's limit (413).
    BodyTooLarge,
    /// No such event, replay or route (404).
    NotFound,
    /// The route does not take this method (405); `Allow` lists the ones it takes.
    MethodNotAllowed,
    /// The journal is recovering from a storage failure (503).
    NotReady,
    /// The journal cannot answer now; try again (503).
    JournalUnavailable,
    /// The journal failed to read or write a record (500).
    JournalError,
}

impl ProblemKind {
    /// The snake_case name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProblemKind::MissingToken => "missing_token",
            ProblemKind::InvalidToken => "invalid_token",
            ProblemKind::InvalidParameter => "invalid_parameter",
            ProblemKind::InvalidBody => "invalid_body",
            ProblemKind::BodyTooLarge => "body_too_large",
            ProblemKind::NotFound => "not_found",
            ProblemKind::MethodNotAllowed => "method_not_allowed",
            ProblemKind::NotReady => "not_ready",
            ProblemKind::JournalUnavailable => "journal_unavailable",
            ProblemKind::JournalError => "journal_error",
        }
    }
}

/// An `application/problem+json` body (RFC 9457), as every admin rejection answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemBody {
    /// `urn:hookbox:problem:` and the kind.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:hookbox:problem:[a-z_]+$")]
    pub(crate) problem_type: String,
    /// A short summary, the same for every problem of its kind.
    pub(crate) title: &'static str,
    /// The response's HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    pub(crate) status: u16,
    /// What exactly was wrong.
    pub(crate) detail: String,
    /// The kind, as a member of its own.
    pub(crate) kind: ProblemKind,
}

impl Problem {
    /// A 400 naming the query or path parameter `name`.
    pub(crate) fn param(name: &str, detail: impl Into<String>) -> Self {
        Problem::Param {
            name: name.to_owned(),
            detail: detail.into(),
        }
    }

    /// The status and the body this problem answers.
    pub(crate) fn parts(self) -> (StatusCode, ProblemBody) {
        let (status, kind, title, detail) = match self {
            Problem::Unauthorized { kind, detail } => (
                StatusCode::UNAUTHORIZED,
                kind,
                "A valid admin token is required",
                detail.to_owned(),
            ),
            Problem::Param { name, detail } => (
                StatusCode::BAD_REQUEST,
                ProblemKind::InvalidParameter,
                "A query parameter is invalid",
                format!("{name}: {detail}"),
            ),
            Problem::Body(detail) => (
                StatusCode::BAD_REQUEST,
                ProblemKind::InvalidBody,
                "The request body is invalid",
                detail,
            ),
            Problem::TooLarge(detail) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ProblemKind::BodyTooLarge,
                "The request body is too large",
                detail,
            ),
            Problem::NotFound(detail) => (
                StatusCode::NOT_FOUND,
                ProblemKind::NotFound,
                "Not found",
                detail,
            ),
            Problem::MethodNotAllowed(method, path) => (
                StatusCode::METHOD_NOT_ALLOWED,
                ProblemKind::MethodNotAllowed,
                "The method is not allowed here",
                format!("{path} does not take {method}; `Allow` lists the methods it takes"),
            ),
            Problem::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemKind::NotReady,
                "The journal is not ready",
                "the journal is recovering from a storage failure".to_owned(),
            ),
            Problem::Journal(e) if e.is_retryable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemKind::JournalUnavailable,
                "The journal cannot answer now",
                e.to_string(),
            ),
            Problem::Journal(e) => {
                tracing::error!(error = %e, "admin request failed on a journal record");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ProblemKind::JournalError,
                    "The journal could not answer",
                    e.to_string(),
                )
            }
        };
        let body = ProblemBody {
            problem_type: format!("urn:hookbox:problem:{}", kind.as_str()),
            title,
            status: status.as_u16(),
            detail,
            kind,
        };
        (status, body)
    }
}

impl From<JournalError> for Problem {
    fn from(e: JournalError) -> Self {
        Problem::Journal(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        let kind = body.kind;
        metrics::counter!("hookbox_admin_rejected_total", "kind" => kind.as_str()).increment(1);
        // Through a `Value`, so the members come in the order they always have (sorted).
        let json = serde_json::to_value(&body).expect("a problem serializes to JSON");
        let mut res = (status, json.to_string()).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if kind == ProblemKind::InvalidToken {
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

// ---- requests ----

/// `GET /v1/events`: which events, newest first. An empty parameter counts as absent;
/// an unknown or repeated one is refused.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only events that arrived on this source.
    pub(crate) source: Option<String>,
    /// Only events of this type (exact), or of a prefix when it ends in `*`
    /// (`invoice.*`).
    #[param(rename = "type")]
    pub(crate) event_type: Option<String>,
    /// Only events in this delivery state.
    pub(crate) state: Option<State>,
    /// Only events received at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub(crate) since: Option<SystemTime>,
    /// Only events received before this time (RFC 3339); after `since`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub(crate) until: Option<SystemTime>,
    /// At most this many events (1 to 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, default = 100)]
    pub(crate) limit: usize,
    /// Continue after this event: the previous page's `next_cursor`.
    pub(crate) cursor: Option<EventId>,
    /// Only events this filter takes: a JSON object in the configuration's filter
    /// language, URL-encoded (`{"types":["invoice.*"],"when":{"pointer":"/data/amount","gt":100}}`).
    /// A page then looks at no more than 10000 events: it may be short, or empty, and
    /// still have a `next_cursor`; follow it until it is null.
    #[param(rename = "where", value_type = Option<String>)]
    pub(crate) filter: Option<Filter>,
}

impl Default for EventsQuery {
    fn default() -> Self {
        EventsQuery {
            source: None,
            event_type: None,
            state: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
            filter: None,
        }
    }
}

impl EventsQuery {
    /// Reads `source`, `type`, `state`, `since`, `until`, `limit`, `cursor` and `where`
    /// from a query string.
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, Problem> {
        let p = Params::parse(
            query,
            &[
                "source", "type", "state", "since", "until", "limit", "cursor", "where",
            ],
        )?;
        let filter = p
            .get("where")
            .map(|raw| {
                let spec: FilterSpec = serde_json::from_str(raw).map_err(|e| {
                    Problem::param("where", format!("not a JSON filter object: {e}"))
                })?;
                Filter::from_spec(&spec).map_err(|e| Problem::param("where", e.to_string()))
            })
            .transpose()?;
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
        let cursor = p
            .get("cursor")
            .map(|c| {
                c.parse::<EventId>()
                    .map_err(|e| Problem::param("cursor", format!("`{c}`: {e}")))
            })
            .transpose()?;
        Ok(EventsQuery {
            since: p.time("since")?,
            until: p.time("until")?,
            source: p.get("source").map(str::to_owned),
            event_type: p.get("type").map(str::to_owned),
            state,
            cursor,
            limit: p.limit()?,
            filter,
        })
    }
}

/// `GET /v1/dlq`: which dead events, oldest first. An empty parameter counts as
/// absent; an unknown or repeated one is refused.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DlqQuery {
    /// Only events that arrived on this source.
    pub(crate) source: Option<String>,
    /// At most this many events (1 to 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, default = 100)]
    pub(crate) limit: usize,
}

impl Default for DlqQuery {
    fn default() -> Self {
        DlqQuery {
            source: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl DlqQuery {
    /// Reads `source` and `limit` from a query string.
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, Problem> {
        let p = Params::parse(query, &["source", "limit"])?;
        Ok(DlqQuery {
            limit: p.limit()?,
            source: p.get("source").map(str::to_owned),
        })
    }
}

/// `POST /v1/replay`: new deliveries of the events received in a window, leaving their
/// history alone. A `null` member counts as absent.
#[derive(Debug, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Events received at or after this time (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub(crate) since: SystemTime,
    /// Events received before this time (RFC 3339); after `since`.
    #[schema(value_type = String, format = DateTime)]
    pub(crate) until: SystemTime,
    /// Only events that arrived on this source.
    pub(crate) source: Option<String>,
    /// Only events of this type, or of a prefix when it ends in `*`.
    #[serde(rename = "type")]
    pub(crate) event_type: Option<String>,
    /// Deliver to this destination only (a configured `[[destination]]`), and only the
    /// events of the sources that forward to it.
    pub(crate) destination: Option<String>,
    /// Count the matching events without queuing anything.
    #[schema(value_type = Option<bool>, default = false)]
    pub(crate) dry_run: bool,
    /// Only events this filter takes, by type and body: the configuration's filter
    /// language, as a JSON object.
    #[serde(rename = "where")]
    #[schema(value_type = Option<FilterSchema>)]
    pub(crate) filter: Option<Filter>,
}

impl ReplayRequest {
    /// Reads a JSON object with `since` and `until` (required), `source`, `type`,
    /// `destination`, `dry_run` and `where`.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Problem> {
        let r = JsonObject::parse(
            body,
            &[
                "since",
                "until",
                "source",
                "type",
                "destination",
                "dry_run",
                "where",
            ],
        )?;
        let filter = r
            .get::<FilterSpec>("where")?
            .map(|spec| Filter::from_spec(&spec).map_err(|e| Problem::Body(format!("where: {e}"))))
            .transpose()?;
        let since = r.time("since")?;
        let until = r.time("until")?;
        let (Some(since), Some(until)) = (since, until) else {
            let missing = if since.is_none() { "since" } else { "until" };
            return Err(Problem::Body(format!("{missing}: required (RFC 3339)")));
        };
        Ok(ReplayRequest {
            since,
            until,
            dry_run: r.get::<bool>("dry_run")?.unwrap_or(false),
            source: r.get("source")?,
            destination: r.get("destination")?,
            event_type: r.get("type")?,
            filter,
        })
    }
}

/// `POST /v1/dlq/redrive`: which dead events go back to pending. Every member narrows;
/// none (`{}`) means every dead event. A `null` member counts as absent.
#[derive(Debug, Clone, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedriveRequest {
    /// Only these events.
    pub(crate) ids: Option<Vec<EventId>>,
    /// Only events that arrived on this source.
    pub(crate) source: Option<String>,
    /// Only events of this type, or of a prefix when it ends in `*`.
    #[serde(rename = "type")]
    pub(crate) event_type: Option<String>,
    /// Only events that died at or after this time (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) since: Option<SystemTime>,
    /// Only events that died before this time (RFC 3339); after `since`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) until: Option<SystemTime>,
    /// Only the deliveries to this destination (the event's other destinations keep
    /// their state).
    pub(crate) destination: Option<String>,
}

impl RedriveRequest {
    /// Reads a JSON object with `ids`, `source`, `type`, `since`, `until` and
    /// `destination`, all optional.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Problem> {
        let r = JsonObject::parse(
            body,
            &["ids", "source", "type", "since", "until", "destination"],
        )?;
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
        Ok(RedriveRequest {
            ids,
            since: r.time("since")?,
            until: r.time("until")?,
            source: r.get("source")?,
            event_type: r.get("type")?,
            destination: r.get("destination")?,
        })
    }
}

/// Reads an event id from a path segment.
pub(crate) fn event_id(raw: &str) -> Result<EventId, Problem> {
    raw.parse()
        .map_err(|e| Problem::param("id", format!("`{raw}`: {e}")))
}

/// Reads a replay id from a path segment.
pub(crate) fn replay_id(raw: &str) -> Result<u64, Problem> {
    raw.parse()
        .map_err(|_| Problem::param("id", format!("`{raw}` is not a replay id (a number)")))
}

// ---- responses ----

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    pub(crate) status: &'static str,
}

/// `GET /readyz`, while the journal is healthy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Readiness {
    /// Always `ready`.
    #[schema(value_type = String, pattern = "^ready$")]
    pub(crate) status: &'static str,
    /// Appends queued for the journal's writer.
    pub(crate) queued: usize,
    /// The writer queue's bound.
    pub(crate) capacity: usize,
}

/// `GET /v1/events`: one page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EventPage {
    /// The events, newest first.
    pub(crate) events: Vec<EventRow>,
    /// The `cursor` of the next page, when there may be one.
    #[schema(required = true)]
    pub(crate) next_cursor: Option<EventId>,
}

/// One event of a listing: its metadata and delivery state, without headers or body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EventRow {
    /// hookbox's id.
    pub(crate) id: EventId,
    /// The source it arrived on.
    pub(crate) source: String,
    /// The provider's event type, if stated.
    #[serde(rename = "type")]
    #[schema(required = true)]
    pub(crate) event_type: Option<String>,
    /// The provider's delivery id, if stated.
    #[schema(required = true)]
    pub(crate) delivery_id: Option<String>,
    /// When hookbox received it.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub(crate) received_at: SystemTime,
    /// The raw body's length.
    pub(crate) body_len: u32,
    /// Its delivery state.
    pub(crate) state: State,
    /// Attempts of its original delivery so far.
    pub(crate) attempts: u32,
}

impl From<&EventSummary> for EventRow {
    fn from(e: &EventSummary) -> Self {
        EventRow {
            id: e.id,
            source: e.source.clone(),
            event_type: e.event_type.clone(),
            delivery_id: e.delivery_id.clone(),
            received_at: e.received_at,
            body_len: e.body_len,
            state: e.state,
            attempts: e.attempts,
        }
    }
}

/// `GET /v1/events/{id}`: one event in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EventDetail {
    /// hookbox's id.
    pub(crate) id: EventId,
    /// The source it arrived on.
    pub(crate) source: String,
    /// The scheme that verified it.
    pub(crate) scheme: String,
    /// The provider's event type, if stated.
    #[serde(rename = "type")]
    #[schema(required = true)]
    pub(crate) event_type: Option<String>,
    /// The provider's delivery id, if stated.
    #[schema(required = true)]
    pub(crate) delivery_id: Option<String>,
    /// When hookbox received it.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub(crate) received_at: SystemTime,
    /// Its delivery state, when one is journaled.
    #[schema(required = true)]
    pub(crate) state: Option<State>,
    /// The rest of its delivery state, likewise (over all its destinations).
    #[schema(required = true)]
    pub(crate) delivery: Option<DeliveryState>,
    /// Each destination's delivery: its own state, attempts and retries. One entry with
    /// `destination: null` for a source's only delivery.
    pub(crate) destinations: Vec<DestinationDelivery>,
    /// The headers kept, in order, as `[name, value]` (values decoded lossily).
    pub(crate) headers: Vec<[String; 2]>,
    /// The raw body's length in bytes.
    pub(crate) body_len: usize,
    /// How `body` is written.
    pub(crate) body_encoding: BodyEncoding,
    /// The body: as it is when it is UTF-8, else in base64.
    pub(crate) body: String,
    /// Every attempt, oldest first.
    pub(crate) attempts: Vec<AttemptRecord>,
}

/// How [`EventDetail::body`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BodyEncoding {
    /// The body is UTF-8, written as it is.
    Utf8,
    /// The body is not UTF-8: standard base64 with padding.
    Base64,
}

/// An event's delivery state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveryState {
    /// Attempts so far, across redrives.
    pub(crate) attempts: u32,
    /// When the next attempt is due, while retrying.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub(crate) next_at: Option<SystemTime>,
    /// The last failure's reason.
    #[schema(required = true)]
    pub(crate) last_error: Option<String>,
    /// How many times it was redriven out of the dead-letter queue.
    pub(crate) redrives: u32,
    /// When it died, while dead.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub(crate) dead_at: Option<SystemTime>,
    /// The ordering key, when its source orders deliveries.
    #[schema(required = true)]
    pub(crate) order_key: Option<String>,
}

/// One destination's delivery of an event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DestinationDelivery {
    /// The destination (`null`: the source's only delivery).
    #[schema(required = true)]
    pub(crate) destination: Option<String>,
    /// Its state.
    pub(crate) state: State,
    /// The rest of its state.
    #[serde(flatten)]
    pub(crate) delivery: DeliveryState,
    /// While it is pending behind an earlier event of its ordering key to the same
    /// destination that is not done yet: that event. It is not attempted before that
    /// one is done.
    #[schema(required = true)]
    pub(crate) waiting_for: Option<EventId>,
}

impl DeliveryState {
    fn of(st: EventState) -> Self {
        DeliveryState {
            attempts: st.attempts,
            next_at: st.next_at_ms.map(from_ms),
            last_error: st.last_error,
            redrives: st.redrives,
            dead_at: st.dead_at_ms.map(from_ms),
            order_key: (!st.order_key.is_empty()).then_some(st.order_key),
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AttemptRecord {
    /// 1-based attempt number of its delivery (the original's, or a replay's).
    pub(crate) n: u32,
    /// When it started.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub(crate) started_at: SystemTime,
    /// How long it took.
    pub(crate) duration_ms: u64,
    /// How it ended.
    pub(crate) outcome: AttemptOutcome,
    /// The error text, for failures.
    #[schema(required = true)]
    pub(crate) error: Option<String>,
    /// The replay it belongs to, if any.
    #[schema(required = true)]
    pub(crate) replay: Option<u64>,
    /// The destination it delivered to (`null`: the source's only delivery).
    #[schema(required = true)]
    pub(crate) destination: Option<String>,
}

/// `POST /v1/replay`: what was queued, or counted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ReplayCreated {
    /// The new replay's id; none for a dry run.
    #[schema(required = true)]
    pub(crate) replay_id: Option<u64>,
    /// Events matched.
    pub(crate) matched: u64,
    /// True when nothing was queued.
    pub(crate) dry_run: bool,
}

/// `GET /v1/replays/{id}`: a replay's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ReplayProgress {
    /// The replay's id.
    pub(crate) id: u64,
    /// Events matched (and queued).
    pub(crate) matched: u64,
    /// Deliveries that succeeded.
    pub(crate) done: u64,
    /// Deliveries that gave up.
    pub(crate) failed: u64,
    /// Only this destination, if set.
    #[schema(required = true)]
    pub(crate) destination: Option<String>,
    /// When it was created.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: SystemTime,
    /// True once `done + failed >= matched`.
    pub(crate) complete: bool,
}

/// `GET /v1/dlq`: dead events, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeadList {
    /// The events.
    pub(crate) events: Vec<DeadEvent>,
}

/// One dead delivery: an event and the destination that gave up on it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeadEvent {
    /// hookbox's id.
    pub(crate) id: EventId,
    /// The source it arrived on.
    pub(crate) source: String,
    /// The destination whose delivery died (`null`: the source's only delivery).
    #[schema(required = true)]
    pub(crate) destination: Option<String>,
    /// The provider's event type, if stated.
    #[serde(rename = "type")]
    #[schema(required = true)]
    pub(crate) event_type: Option<String>,
    /// When it died.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub(crate) dead_at: Option<SystemTime>,
    /// Why its last attempt failed.
    #[schema(required = true)]
    pub(crate) last_error: Option<String>,
    /// Attempts made to this destination, across redrives.
    pub(crate) attempts: u32,
}

/// `POST /v1/dlq/redrive`: how many dead events went back to pending.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Redriven {
    /// That many.
    pub(crate) redriven: u64,
}

// ---- operations ----

/// Liveness: answers while the process serves.
pub(crate) fn health() -> Health {
    Health { status: "ok" }
}

/// Readiness: the writer queue's load while the journal is healthy.
pub(crate) fn ready(admin: &Admin) -> Result<Readiness, Problem> {
    let load = admin.journal.load();
    if !load.healthy {
        return Err(Problem::NotReady);
    }
    Ok(Readiness {
        status: "ready",
        queued: load.queued,
        capacity: load.capacity,
    })
}

/// One page of events, newest first.
pub(crate) async fn list_events(admin: &Admin, q: EventsQuery) -> Result<EventPage, Problem> {
    check_window(q.since, q.until).map_err(|e| Problem::param("since", e))?;
    let page = admin
        .journal
        .query(&Query {
            since: q.since,
            until: q.until,
            source: q.source,
            event_type: q.event_type,
            state: q.state,
            filter: q.filter,
            before: q.cursor,
            limit: q.limit,
        })
        .await?;
    Ok(EventPage {
        events: page.events.iter().map(EventRow::from).collect(),
        next_cursor: page.next_cursor,
    })
}

/// One event with its headers, body, delivery state and attempts.
pub(crate) async fn show_event(admin: &Admin, id: EventId) -> Result<EventDetail, Problem> {
    let journal = &admin.journal;
    let Some(event) = journal.get(id).await? else {
        return Err(Problem::NotFound(format!("no event {id}")));
    };
    let (state, attempts, deliveries) = tokio::try_join!(
        journal.state(id),
        journal.attempts(id),
        journal.deliveries(id)
    )?;
    let headers = event
        .headers
        .iter()
        .map(|(k, v)| {
            [
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let (body, body_encoding) = match std::str::from_utf8(&event.body) {
        Ok(text) => (text.to_owned(), BodyEncoding::Utf8),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&event.body),
            BodyEncoding::Base64,
        ),
    };
    Ok(EventDetail {
        id: event.id,
        source: event.source,
        scheme: event.scheme,
        event_type: event.event_type,
        delivery_id: event.delivery_id,
        received_at: event.received_at,
        state: state.as_ref().map(|st| st.state),
        delivery: state.map(DeliveryState::of),
        destinations: deliveries
            .into_iter()
            .map(|d| DestinationDelivery {
                destination: (!d.destination.is_empty()).then_some(d.destination),
                state: d.state.state,
                delivery: DeliveryState::of(d.state),
                waiting_for: d.waiting_for,
            })
            .collect(),
        headers,
        body_len: event.body.len(),
        body_encoding,
        body,
        attempts: attempts
            .into_iter()
            .map(|a| AttemptRecord {
                n: a.n,
                started_at: from_ms(a.started_ms),
                duration_ms: a.duration_ms,
                outcome: a.outcome,
                error: a.error,
                replay: a.replay,
                destination: (!a.destination.is_empty()).then_some(a.destination),
            })
            .collect(),
    })
}

/// Starts a replay of a window, or counts it (`dry_run`). A replay to one destination
/// covers only the sources that forward to it.
pub(crate) async fn create_replay(
    admin: &Admin,
    r: ReplayRequest,
) -> Result<ReplayCreated, Problem> {
    check_window(Some(r.since), Some(r.until)).map_err(|e| Problem::Body(format!("since: {e}")))?;
    let mut sources = None;
    if let (Some(dest), Some(known)) = (&r.destination, &admin.destinations) {
        let Some(forwarding) = known.get(dest) else {
            return Err(Problem::Body(format!(
                "destination: no [[destination]] is named `{dest}`"
            )));
        };
        if let Some(src) = r
            .source
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
            since_ms: bound_ms(r.since),
            until_ms: bound_ms(r.until),
            source: r.source,
            sources,
            event_type: r.event_type,
            filter: r.filter,
            destination: r.destination,
            dry_run: r.dry_run,
        })
        .await?;
    Ok(ReplayCreated {
        replay_id: (!r.dry_run).then_some(status.id),
        matched: status.matched,
        dry_run: r.dry_run,
    })
}

/// A replay's progress.
pub(crate) async fn replay_status(admin: &Admin, id: u64) -> Result<ReplayProgress, Problem> {
    let status = admin
        .journal
        .replay_status(id)
        .await?
        .ok_or_else(|| Problem::NotFound(format!("no replay {id}")))?;
    Ok(ReplayProgress {
        id: status.id,
        matched: status.matched,
        done: status.done,
        failed: status.failed,
        complete: status.done + status.failed >= status.matched,
        destination: status.destination,
        created_at: from_ms(status.created_ms),
    })
}

/// Dead deliveries, oldest first, with why they died.
pub(crate) async fn list_dlq(admin: &Admin, q: DlqQuery) -> Result<DeadList, Problem> {
    let journal = &admin.journal;
    let mut events = Vec::new();
    for dead in journal.dead(q.source.as_deref(), q.limit).await? {
        let id = dead.id;
        let (event, rows) = tokio::try_join!(journal.get(id), journal.deliveries(id))?;
        let st = rows
            .into_iter()
            .find(|r| r.destination == dead.destination)
            .map(|r| r.state);
        events.push(DeadEvent {
            id,
            source: dead.source,
            destination: (!dead.destination.is_empty()).then_some(dead.destination),
            event_type: event.and_then(|e| e.event_type),
            dead_at: st.as_ref().and_then(|s| s.dead_at_ms).map(from_ms),
            last_error: st.as_ref().and_then(|s| s.last_error.clone()),
            attempts: st.as_ref().map_or(0, |s| s.attempts),
        });
    }
    Ok(DeadList { events })
}

/// Moves the dead events `r` selects back to pending.
pub(crate) async fn redrive(admin: &Admin, r: RedriveRequest) -> Result<Redriven, Problem> {
    check_window(r.since, r.until).map_err(|e| Problem::Body(format!("since: {e}")))?;
    let redriven = admin
        .journal
        .redrive(RedriveFilter {
            ids: r.ids,
            source: r.source,
            event_type: r.event_type,
            since_ms: r.since.map(bound_ms),
            until_ms: r.until.map(bound_ms),
            max_redrives: None,
            destination: r.destination,
        })
        .await?;
    Ok(Redriven { redriven })
}

/// The process's metrics as Prometheus text, with the dead-letter queue's size and
/// every source's backlog refreshed first.
pub(crate) async fn metrics(admin: &Admin) -> Result<String, Problem> {
    let dead = admin.journal.dead_count().await?;
    metrics::gauge!("hookbox_dlq_size").set(dead as f64);
    for (source, backlog) in admin.journal.sources() {
        metrics::gauge!("hookbox_backlog", "source" => source).set(backlog as f64);
    }
    Ok(admin.metrics.render())
}

// ---- reading requests ----

/// A request's query parameters, each known to the route and given at most once. An
/// empty value counts as absent.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>, known: &[&str]) -> Result<Self, Problem> {
        let mut out: Vec<(String, String)> = Vec::new();
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
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
            None => Ok(DEFAULT_LIMIT),
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

/// A JSON object body, read field by field so that every problem names its field.
struct JsonObject(serde_json::Map<String, Value>);

impl JsonObject {
    fn parse(body: &[u8], known: &[&str]) -> Result<Self, Problem> {
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

// ---- times ----

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

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `t` in RFC 3339, as every admin response writes times.
fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "invalid time".to_owned())
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}
