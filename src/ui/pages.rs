//! The dashboard's handlers: each reads its query or form, calls the admin API's
//! function for it, and renders a template.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State as Shared};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use maud::{html, Markup};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::templates::{self, respond};
use super::{session, Ui};
use crate::admin::ops::{self, Problem};
use crate::EventId;

fn o(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// A query string or form body as pairs, in order.
type Pairs = Vec<(String, String)>;

fn pairs(raw: &[u8]) -> Pairs {
    form_urlencoded::parse(raw).into_owned().collect()
}

/// The first non-empty value of `name`, trimmed.
fn get(p: &Pairs, name: &str) -> Option<String> {
    p.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

fn all(p: &Pairs, name: &str) -> Vec<String> {
    p.iter()
        .filter(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

fn query(uri: &Uri) -> Pairs {
    pairs(uri.query().unwrap_or("").as_bytes())
}

fn encode(p: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in p {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// `http://HOST` of the request, for the `curl` lines.
fn admin_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:8081");
    format!("http://{host}")
}

/// A value quoted for a POSIX shell when it needs it.
fn sh(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/-+@=,".contains(c))
    {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

/// A problem's status and detail.
async fn problem_detail(p: Problem) -> (StatusCode, String) {
    let res = p.into_response();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let detail = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, detail)
}

/// A problem as an error page.
async fn fail(p: Problem) -> Response {
    let (status, detail) = problem_detail(p).await;
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "That request is not valid",
        StatusCode::SERVICE_UNAVAILABLE => "The journal cannot answer now",
        _ => "Something went wrong",
    };
    templates::error_page(status, title, &detail)
}

/// A redrive of the dead deliveries of `ids` to `destination` (`None`: to every
/// destination; for an event of a source without named destinations, its only one).
fn by_ids(ids: Vec<EventId>, destination: Option<String>) -> ops::RedriveRequest {
    ops::RedriveRequest {
        ids: Some(ids),
        source: None,
        event_type: None,
        since: None,
        until: None,
        destination,
    }
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

/// A browser's `datetime-local` value (read as UTC) or an RFC 3339 time, as RFC 3339.
fn to_rfc3339(v: &str) -> Result<String, String> {
    if OffsetDateTime::parse(v, &Rfc3339).is_ok() {
        return Ok(v.to_owned());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let fmt_s = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(v, &fmt_s)
        .or_else(|_| PrimitiveDateTime::parse(v, &fmt))
        .map(|t| rfc3339(t.assume_utc().into()))
        .map_err(|_| format!("`{v}` is not a time like 2026-05-01T12:00"))
}

/// A time as a `datetime-local` value, in UTC.
fn local_input(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn range(v: &str) -> Option<Duration> {
    Some(Duration::from_secs(match v {
        "15m" => 15 * 60,
        "1h" => 3600,
        "24h" => 24 * 3600,
        "7d" => 7 * 24 * 3600,
        _ => return None,
    }))
}

fn source_names(ui: &Ui) -> Vec<String> {
    let mut names: Vec<String> = ui.opts.sources.iter().map(|s| s.name.clone()).collect();
    for (s, _) in ui.admin.journal.sources() {
        if !names.contains(&s) {
            names.push(s);
        }
    }
    names
}

// ---- sign in -------------------------------------------------------------------------

/// Where to go after signing in: a dashboard path, nothing else.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

pub(crate) async fn login_form(uri: Uri) -> Response {
    let q = query(&uri);
    let next = get(&q, "next");
    respond(
        StatusCode::OK,
        templates::login(safe_next(next.as_deref()), false),
    )
}

pub(crate) async fn login(Shared(ui): Shared<Arc<Ui>>, body: Bytes) -> Response {
    let form = pairs(&body);
    let next = get(&form, "next");
    let next = safe_next(next.as_deref());
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim())
        .unwrap_or("");
    if token.is_empty() || !ui.admin.accepts(token) {
        metrics::counter!("hookbox_admin_rejected_total", "kind" => "ui_login").increment(1);
        return respond(StatusCode::UNAUTHORIZED, templates::login(next, true));
    }
    let Some(id) = ui.sessions.create() else {
        return templates::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot start a session",
            "the system's random source failed",
        );
    };
    let mut res = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, ui.opts.secure_cookies)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

pub(crate) async fn logout(Shared(ui): Shared<Arc<Ui>>, headers: HeaderMap) -> Response {
    if let Some(id) = session::from_headers(&headers) {
        ui.sessions.remove(&id);
    }
    let mut res = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(ui.opts.secure_cookies)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

pub(crate) async fn not_found(uri: Uri) -> Response {
    templates::error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("there is no dashboard page at {}", uri.path()),
    )
}

// ---- events --------------------------------------------------------------------------

/// The events page's filters, as in its URL.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventFilter {
    pub(crate) source: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) range: Option<String>,
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    /// A payload filter, in the admin API's `where` form (a JSON object).
    pub(crate) where_: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) cursor: Option<String>,
}

impl EventFilter {
    fn of(p: &Pairs) -> Self {
        EventFilter {
            source: get(p, "source"),
            event_type: get(p, "type"),
            state: get(p, "state"),
            range: get(p, "range"),
            since: get(p, "since"),
            until: get(p, "until"),
            where_: get(p, "where"),
            q: get(p, "q"),
            cursor: get(p, "cursor"),
        }
    }

    /// True when nothing narrows the list.
    pub(crate) fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.event_type.is_none()
            && self.state.is_none()
            && self.range.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.where_.is_none()
    }

    fn fields(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("source", o(&self.source)),
            ("type", o(&self.event_type)),
            ("state", o(&self.state)),
            ("range", o(&self.range)),
            ("since", o(&self.since)),
            ("until", o(&self.until)),
            ("where", o(&self.where_)),
        ]
    }

    /// The filters (no cursor) and `extra`, as a query string.
    pub(crate) fn query_string(&self, extra: &[(&str, &str)]) -> String {
        let mut f = self.fields();
        f.extend_from_slice(extra);
        encode(&f)
    }

    /// The filters with the time range `r` instead of the current one.
    pub(crate) fn with_range(&self, r: &str) -> String {
        let mut f = self.clone();
        f.range = Some(r.to_owned());
        f.since = None;
        f.until = None;
        f.query_string(&[])
    }

    /// The admin API's query for these filters.
    fn api_query(&self, cursor: Option<&str>, limit: usize) -> Result<String, String> {
        let (since, until) = match self.range.as_deref().and_then(range) {
            Some(d) => (Some(rfc3339(SystemTime::now() - d)), None),
            None => (
                self.since.as_deref().map(to_rfc3339).transpose()?,
                self.until.as_deref().map(to_rfc3339).transpose()?,
            ),
        };
        let limit = limit.to_string();
        Ok(encode(&[
            ("source", self.source.as_deref().unwrap_or("")),
            ("type", self.event_type.as_deref().unwrap_or("")),
            ("state", self.state.as_deref().unwrap_or("")),
            ("since", since.as_deref().unwrap_or("")),
            ("until", until.as_deref().unwrap_or("")),
            ("where", self.where_.as_deref().unwrap_or("")),
            ("cursor", cursor.unwrap_or("")),
            ("limit", &limit),
        ]))
    }
}

async fn list(
    ui: &Arc<Ui>,
    f: &EventFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<ops::EventPage, Response> {
    let q = f.api_query(cursor, limit).map_err(|e| {
        templates::error_page(StatusCode::BAD_REQUEST, "That time is not valid", &e)
    })?;
    let q = match ops::EventsQuery::parse(Some(&q)) {
        Ok(q) => q,
        Err(p) => return Err(fail(p).await),
    };
    match ops::list_events(&ui.admin, q).await {
        Ok(page) => Ok(page),
        Err(p) => Err(fail(p).await),
    }
}

pub(crate) async fn events(Shared(ui): Shared<Arc<Ui>>, uri: Uri) -> Response {
    let f = EventFilter::of(&query(&uri));
    let sources = source_names(&ui);
    if let Some(q) = &f.q {
        if q.parse::<EventId>().is_ok() {
            return Redirect::to(&format!("/ui/events/{q}")).into_response();
        }
        let candidates: Vec<String> = match &f.source {
            Some(s) => vec![s.clone()],
            None => sources.clone(),
        };
        for s in &candidates {
            if let Ok(Some(id)) = ui.admin.journal.lookup(s, q).await {
                return Redirect::to(&format!("/ui/events/{id}")).into_response();
            }
        }
        let notice = format!("No event has the id or provider delivery id “{q}”.");
        return respond(
            StatusCode::NOT_FOUND,
            templates::events::page(&f, &sources, &[], None, Some(&notice)),
        );
    }
    let page = match list(&ui, &f, f.cursor.as_deref(), 50).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let next = page.next_cursor.map(|c| c.to_string());
    respond(
        StatusCode::OK,
        templates::events::page(&f, &sources, &page.events, next.as_deref(), None),
    )
}

/// The live tail: rows newer than `after`, as an HTML fragment.
pub(crate) async fn event_rows(Shared(ui): Shared<Arc<Ui>>, uri: Uri) -> Response {
    let p = query(&uri);
    let f = EventFilter::of(&p);
    let after = get(&p, "after").and_then(|a| a.parse::<EventId>().ok());
    let page = match list(&ui, &f, None, 100).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let newer: Vec<ops::EventRow> = page
        .events
        .into_iter()
        .filter(|e| after.is_none_or(|a| e.id > a))
        .collect();
    respond(StatusCode::OK, templates::events::rows(&newer))
}

async fn load_event(ui: &Arc<Ui>, id: &str) -> Result<(ops::EventDetail, Vec<u8>), Response> {
    let id = match ops::event_id(id) {
        Ok(id) => id,
        Err(p) => return Err(fail(p).await),
    };
    let v = match ops::show_event(&ui.admin, id).await {
        Ok(v) => v,
        Err(p) => return Err(fail(p).await),
    };
    let body = match v.body_encoding {
        ops::BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(&v.body)
            .unwrap_or_default(),
        ops::BodyEncoding::Utf8 => v.body.as_bytes().to_vec(),
    };
    Ok((v, body))
}

pub(crate) async fn event(
    Shared(ui): Shared<Arc<Ui>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (v, body) = match load_event(&ui, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let q = query(&uri);
    let view = match get(&q, "view").as_deref() {
        Some("raw") => templates::event::View::Raw,
        Some("hex") => templates::event::View::Hex,
        _ => templates::event::View::Pretty,
    };
    let diff = match (
        get(&q, "a").and_then(|a| a.parse().ok()),
        get(&q, "b").and_then(|b| b.parse().ok()),
    ) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let notice = match get(&q, "done").as_deref() {
        Some("redrive") => {
            Some("Redriven: its dead deliveries went back to pending for a new round of attempts.")
        }
        _ => None,
    };
    let url = admin_url(&headers);
    respond(
        StatusCode::OK,
        templates::event::page(&templates::event::EventPage {
            event: &v,
            body: &body,
            view,
            diff,
            notice,
            admin_url: &url,
        }),
    )
}

pub(crate) async fn raw(Shared(ui): Shared<Arc<Ui>>, Path(id): Path<String>) -> Response {
    let (v, body) = match load_event(&ui, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = v.id;
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.body\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// Redrives an event's dead deliveries: all of them, or with a `destination` field only
/// the one to that destination.
pub(crate) async fn redrive_event(
    Shared(ui): Shared<Arc<Ui>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(event) = id.parse::<EventId>() else {
        return templates::error_page(StatusCode::BAD_REQUEST, "Not an event id", &id);
    };
    let destination = get(&pairs(&body), "destination");
    let what = match &destination {
        Some(d) => {
            format!("the delivery to {d} is not dead (any more): it may have been redriven already")
        }
        None => "the event is not dead (any more): it may have been redriven already".to_owned(),
    };
    match ops::redrive(&ui.admin, by_ids(vec![event], destination)).await {
        Ok(r) if r.redriven == 0 => {
            templates::error_page(StatusCode::CONFLICT, "Nothing to redrive", &what)
        }
        Ok(_) => Redirect::to(&format!("/ui/events/{id}?done=redrive")).into_response(),
        Err(p) => fail(p).await,
    }
}

pub(crate) async fn replay_event(
    Shared(ui): Shared<Arc<Ui>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (v, _) = match load_event(&ui, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ms = v
        .received_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let since = UNIX_EPOCH + Duration::from_millis(ms);
    let form = ReplayForm {
        since: rfc3339(since),
        until: rfc3339(since + Duration::from_millis(1)),
        source: Some(v.source),
        event_type: v.event_type,
        destination: None,
    };
    replay_preview(&ui, &form, &headers).await
}

// ---- dead letters --------------------------------------------------------------------

/// The dead-letter page's filters.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeadFilter {
    pub(crate) source: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) group: Option<String>,
}

impl DeadFilter {
    fn of(p: &Pairs) -> Self {
        DeadFilter {
            source: get(p, "source"),
            event_type: get(p, "type"),
            error: get(p, "error"),
            group: get(p, "group"),
        }
    }

    fn fields(&self) -> [(&'static str, &str); 4] {
        [
            ("source", o(&self.source)),
            ("type", o(&self.event_type)),
            ("error", o(&self.error)),
            ("group", o(&self.group)),
        ]
    }

    /// True when nothing narrows the list.
    pub(crate) fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_empty())
    }

    /// The filters as a query string.
    pub(crate) fn query_string(&self) -> String {
        encode(&self.fields())
    }

    /// The filters narrowed to one failure group.
    pub(crate) fn with_group(&self, g: &str) -> String {
        let mut f = self.clone();
        f.group = Some(g.to_owned());
        f.query_string()
    }

    /// The filters as hidden form fields.
    pub(crate) fn hidden(&self) -> Markup {
        html! {
            @for (k, v) in self.fields() {
                @if !v.is_empty() { input type="hidden" name=(k) value=(v); }
            }
        }
    }
}

/// One dead delivery: an event and the destination that gave up on it.
#[derive(Debug, Clone)]
pub(crate) struct DeadRow {
    pub(crate) id: String,
    pub(crate) source: String,
    /// `None`: the source's only, unnamed delivery.
    pub(crate) destination: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) dead_at: Option<SystemTime>,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
}

impl DeadRow {
    /// The delivery's form value: the event id, then `/` and the destination for a
    /// named one (names never hold a `/`, ids neither).
    pub(crate) fn key(&self) -> String {
        match &self.destination {
            Some(d) => format!("{}/{d}", self.id),
            None => self.id.clone(),
        }
    }
}

/// A delivery's form value (see [`DeadRow::key`]) read back: the event and the
/// destination (`None`: the unnamed delivery).
fn parse_key(key: &str) -> Option<(EventId, Option<String>)> {
    let (id, dest) = match key.split_once('/') {
        Some((id, d)) if !d.is_empty() => (id, Some(d.to_owned())),
        Some(_) => return None,
        None => (key, None),
    };
    Some((id.parse().ok()?, dest))
}

/// The dead deliveries `rows` as redrive requests, one per destination, each of
/// exactly the events listed with that destination: together they redrive exactly
/// those (event, destination) pairs and no other delivery of the same events.
fn redrives_of(rows: &[DeadRow]) -> Vec<ops::RedriveRequest> {
    let mut by_dest: BTreeMap<Option<String>, Vec<EventId>> = BTreeMap::new();
    for r in rows {
        if let Ok(id) = r.id.parse() {
            by_dest.entry(r.destination.clone()).or_default().push(id);
        }
    }
    by_dest
        .into_iter()
        .map(|(dest, ids)| by_ids(ids, dest))
        .collect()
}

/// The most dead deliveries one page or one bulk redrive covers.
const DEAD_BOUND: usize = 1000;

/// A failure's group: the destination, the HTTP status or the error's head.
fn group_of(err: &str, destinations: &[String]) -> String {
    let first = err.split("; ").next().unwrap_or(err);
    let (dest, rest) = destinations
        .iter()
        .find_map(|d| {
            first
                .strip_prefix(&format!("{d}: "))
                .map(|r| (Some(d.as_str()), r))
        })
        .unwrap_or((None, first));
    let head = if let Some(status) = rest.strip_prefix("HTTP ") {
        format!(
            "HTTP {}",
            status
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        )
    } else {
        let h: String = rest
            .split(": ")
            .next()
            .unwrap_or(rest)
            .chars()
            .take(60)
            .collect();
        h
    };
    match dest {
        Some(d) => format!("{d} · {head}"),
        None => head,
    }
}

/// A dead delivery's failure group: by its destination first, when it has one.
fn group_of_row(r: &DeadRow, destinations: &[String]) -> String {
    let err = r.last_error.as_deref().unwrap_or("no error recorded");
    match &r.destination {
        Some(d) => {
            let own = [d.clone()];
            let g = group_of(err, &own);
            if g.starts_with(&format!("{d} · ")) {
                g
            } else {
                format!("{d} · {}", group_of(err, destinations))
            }
        }
        None => group_of(err, destinations),
    }
}

/// Dead deliveries matching `f` (and their groups before the group filter); `true`
/// when the journal held more than [`DEAD_BOUND`].
async fn dead_rows(
    ui: &Arc<Ui>,
    f: &DeadFilter,
) -> Result<(Vec<DeadRow>, Vec<(String, usize)>, bool), Response> {
    let q = ops::DlqQuery {
        source: f.source.clone(),
        limit: DEAD_BOUND,
    };
    let list = match ops::list_dlq(&ui.admin, q).await {
        Ok(l) => l.events,
        Err(p) => return Err(fail(p).await),
    };
    let truncated = list.len() >= DEAD_BOUND;
    let dests: Vec<String> = ui
        .opts
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let rows: Vec<DeadRow> = list
        .into_iter()
        .map(|e| DeadRow {
            id: e.id.to_string(),
            source: e.source,
            destination: e.destination,
            event_type: e.event_type,
            dead_at: e.dead_at,
            attempts: e.attempts,
            last_error: e.last_error,
        })
        .filter(|r| {
            f.event_type
                .as_deref()
                .is_none_or(|t| crate::journal::type_matches(t, r.event_type.as_deref()))
        })
        .filter(|r| {
            f.error.as_deref().is_none_or(|e| {
                r.last_error
                    .as_deref()
                    .is_some_and(|le| le.to_lowercase().contains(&e.to_lowercase()))
            })
        })
        .collect();
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *groups.entry(group_of_row(r, &dests)).or_default() += 1;
    }
    let mut groups: Vec<(String, usize)> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let rows = match &f.group {
        Some(g) => rows
            .into_iter()
            .filter(|r| group_of_row(r, &dests) == *g)
            .collect(),
        None => rows,
    };
    Ok((rows, groups, truncated))
}

pub(crate) async fn dlq(Shared(ui): Shared<Arc<Ui>>, uri: Uri) -> Response {
    let q = query(&uri);
    let f = DeadFilter::of(&q);
    let (rows, groups, truncated) = match dead_rows(&ui, &f).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let notice = get(&q, "redriven").map(|n| {
        let (what, they) = if n == "1" {
            ("delivery", "it is")
        } else {
            ("deliveries", "they are")
        };
        format!("Redriven {n} dead {what}: {they} pending again and being delivered.")
    });
    respond(
        StatusCode::OK,
        templates::dlq::page(
            &f,
            &source_names(&ui),
            &groups,
            &rows,
            truncated,
            notice.as_deref(),
        ),
    )
}

/// What a bulk redrive's preview binds: the sorted (event, destination) pairs, hashed.
fn digest(rows: &[DeadRow]) -> String {
    let mut keys: Vec<String> = rows.iter().map(DeadRow::key).collect();
    keys.sort_unstable();
    hex::encode(&Sha256::digest(keys.join("\n").as_bytes())[..16])
}

/// Redrives one dead delivery (a row's own button): exactly that (event, destination)
/// pair, at once; back to the list with its filters.
async fn dlq_redrive_one(ui: &Arc<Ui>, form: &Pairs, f: &DeadFilter) -> Response {
    let key = get(form, "id").unwrap_or_default();
    let Some((id, destination)) = parse_key(&key) else {
        return templates::error_page(StatusCode::BAD_REQUEST, "Not a dead delivery", &key);
    };
    let what = match &destination {
        Some(d) => format!("{id} to {d}"),
        None => id.to_string(),
    };
    match ops::redrive(&ui.admin, by_ids(vec![id], destination)).await {
        Ok(r) if r.redriven == 0 => templates::error_page(
            StatusCode::CONFLICT,
            "Nothing to redrive",
            &format!(
                "the delivery of {what} is not dead (any more): it may have been redriven already"
            ),
        ),
        Ok(r) => {
            let n = r.redriven.to_string();
            let mut q = f.fields().to_vec();
            q.push(("redriven", &n));
            Redirect::to(&format!("/ui/dlq?{}", encode(&q))).into_response()
        }
        Err(p) => fail(p).await,
    }
}

pub(crate) async fn dlq_redrive(
    Shared(ui): Shared<Arc<Ui>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = pairs(&body);
    let f = DeadFilter::of(&form);
    if get(&form, "action").as_deref() == Some("one") {
        return dlq_redrive_one(&ui, &form, &f).await;
    }
    let by_filter = get(&form, "scope").as_deref() == Some("filter");
    let (rows, truncated) = if by_filter {
        match dead_rows(&ui, &f).await {
            Ok((rows, _, t)) => (rows, t),
            Err(r) => return r,
        }
    } else {
        let wanted = all(&form, "id");
        match dead_rows(&ui, &DeadFilter::default()).await {
            Ok((rows, _, t)) => (
                rows.into_iter()
                    .filter(|r| wanted.contains(&r.key()))
                    .collect(),
                t,
            ),
            Err(r) => return r,
        }
    };
    if by_filter && truncated {
        return templates::error_page(
            StatusCode::CONFLICT,
            "Too many dead deliveries match",
            &format!("more than {DEAD_BOUND} dead deliveries match these filters; narrow them and preview again"),
        );
    }
    let d = digest(&rows);
    if get(&form, "action").as_deref() == Some("confirm") {
        let expect = get(&form, "expect").unwrap_or_default();
        if get(&form, "digest").as_deref() != Some(d.as_str()) || expect != rows.len().to_string() {
            return templates::error_page(
                StatusCode::CONFLICT,
                "The set changed since the preview",
                &format!(
                    "the preview counted {expect} dead delivery(ies); {} match now, or not the same ones. Nothing was redriven: preview again.",
                    rows.len()
                ),
            );
        }
        // One redrive per destination, each of exactly the events previewed with it.
        let mut redriven = 0;
        for r in redrives_of(&rows) {
            match ops::redrive(&ui.admin, r).await {
                Ok(r) => redriven += r.redriven,
                Err(p) => return fail(p).await,
            }
        }
        let n = redriven.to_string();
        return Redirect::to(&format!("/ui/dlq?{}", encode(&[("redriven", &n)]))).into_response();
    }
    let (cli, curl) = templates::dlq::commands(&redrives_of(&rows), &admin_url(&headers));
    respond(
        StatusCode::OK,
        templates::dlq::preview(&rows, &f, by_filter, &d, &cli, &curl),
    )
}

// ---- replays -------------------------------------------------------------------------

/// The replay form's fields.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplayForm {
    pub(crate) since: String,
    pub(crate) until: String,
    pub(crate) source: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) destination: Option<String>,
}

impl ReplayForm {
    fn of(p: &Pairs) -> Self {
        ReplayForm {
            since: get(p, "since").unwrap_or_default(),
            until: get(p, "until").unwrap_or_default(),
            source: get(p, "source"),
            event_type: get(p, "type"),
            destination: get(p, "destination"),
        }
    }

    fn body(&self, dry_run: bool) -> Result<Value, String> {
        Ok(json!({
            "since": to_rfc3339(&self.since)?,
            "until": to_rfc3339(&self.until)?,
            "source": self.source,
            "type": self.event_type,
            "destination": self.destination,
            "dry_run": dry_run,
        }))
    }

    fn commands(&self, admin_url: &str) -> (String, String) {
        let since = to_rfc3339(&self.since).unwrap_or_default();
        let until = to_rfc3339(&self.until).unwrap_or_default();
        let mut cli = format!(
            "hookbox replay --since {} --until {}",
            sh(&since),
            sh(&until)
        );
        for (flag, v) in [
            ("--source", &self.source),
            ("--type", &self.event_type),
            ("--destination", &self.destination),
        ] {
            if let Some(v) = v {
                cli.push_str(&format!(" {flag} {}", sh(v)));
            }
        }
        let mut body = self.body(false).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut body {
            m.retain(|_, v| !v.is_null());
            m.remove("dry_run");
        }
        let curl = format!(
            "curl -X POST -H \"Authorization: Bearer $HOOKBOX_ADMIN_TOKEN\" -H 'content-type: application/json' -d {} {admin_url}/v1/replay",
            sh(&body.to_string())
        );
        (cli, curl)
    }
}

/// The highest replay id, found by probing (ids count up from 1).
async fn last_replay(ui: &Ui) -> u64 {
    let exists = |id: u64| {
        let j = ui.admin.journal.clone();
        async move { matches!(j.replay_status(id).await, Ok(Some(_))) }
    };
    if !exists(1).await {
        return 0;
    }
    let mut hi = 2;
    while hi < u64::MAX / 2 && exists(hi).await {
        hi *= 2;
    }
    let mut lo = hi / 2;
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if exists(mid).await {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

async fn history(ui: &Arc<Ui>) -> Vec<ops::ReplayProgress> {
    let last = last_replay(ui).await;
    let mut out = Vec::new();
    for id in (1..=last).rev().take(25) {
        if let Ok(r) = ops::replay_status(&ui.admin, id).await {
            out.push(r);
        }
    }
    out
}

fn destination_names(ui: &Ui) -> Vec<String> {
    ui.opts
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .collect()
}

pub(crate) async fn replays(Shared(ui): Shared<Arc<Ui>>, uri: Uri) -> Response {
    let q = query(&uri);
    let mut f = ReplayForm::of(&q);
    let now = SystemTime::now();
    let back = get(&q, "range")
        .as_deref()
        .and_then(range)
        .unwrap_or(Duration::from_secs(3600));
    if f.since.is_empty() {
        f.since = local_input(now - back);
    }
    if f.until.is_empty() {
        f.until = local_input(now + Duration::from_secs(60));
    }
    let h = history(&ui).await;
    respond(
        StatusCode::OK,
        templates::replays::page(&f, &source_names(&ui), &destination_names(&ui), &h, None),
    )
}

async fn replay_preview(ui: &Arc<Ui>, f: &ReplayForm, headers: &HeaderMap) -> Response {
    let invalid = |e: String| async move {
        let h = history(ui).await;
        respond(
            StatusCode::BAD_REQUEST,
            templates::replays::page(f, &source_names(ui), &destination_names(ui), &h, Some(&e)),
        )
    };
    let body = match f.body(true) {
        Ok(b) => b,
        Err(e) => return invalid(e).await,
    };
    let created = match ops::ReplayRequest::parse(body.to_string().as_bytes()) {
        Ok(r) => ops::create_replay(&ui.admin, r).await,
        Err(p) => Err(p),
    };
    match created {
        Ok(r) => {
            let (cli, curl) = f.commands(&admin_url(headers));
            respond(
                StatusCode::OK,
                templates::replays::preview(f, r.matched, &cli, &curl),
            )
        }
        Err(p) => invalid(problem_detail(p).await.1).await,
    }
}

pub(crate) async fn replay_post(
    Shared(ui): Shared<Arc<Ui>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = pairs(&body);
    let f = ReplayForm::of(&form);
    if get(&form, "action").as_deref() != Some("confirm") {
        return replay_preview(&ui, &f, &headers).await;
    }
    let body = match f.body(false) {
        Ok(b) => b,
        Err(e) => {
            return templates::error_page(StatusCode::BAD_REQUEST, "That time is not valid", &e)
        }
    };
    let created = match ops::ReplayRequest::parse(body.to_string().as_bytes()) {
        Ok(r) => ops::create_replay(&ui.admin, r).await,
        Err(p) => Err(p),
    };
    match created {
        Ok(r) => match r.replay_id {
            Some(id) => Redirect::to(&format!("/ui/replays/{id}")).into_response(),
            None => templates::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "No replay was created",
                "",
            ),
        },
        Err(p) => fail(p).await,
    }
}

pub(crate) async fn replay(Shared(ui): Shared<Arc<Ui>>, Path(id): Path<String>) -> Response {
    let progress = match ops::replay_id(&id) {
        Ok(id) => ops::replay_status(&ui.admin, id).await,
        Err(p) => Err(p),
    };
    let v = match progress {
        Ok(v) => v,
        Err(p) => return fail(p).await,
    };
    let elapsed = SystemTime::now()
        .duration_since(v.created_at)
        .unwrap_or_default()
        .as_secs_f64()
        .max(0.001);
    let (matched, finished) = (v.matched, v.done + v.failed);
    let rate = finished as f64 / elapsed;
    let left = (rate > 0.0).then(|| (matched.saturating_sub(finished) as f64 / rate).ceil() as u64);
    respond(StatusCode::OK, templates::replays::progress(&v, rate, left))
}

// ---- overview, rejected, sources -----------------------------------------------------

/// One sample of the Prometheus text: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let rest = rest.trim_end_matches('}');
                let labels = rest
                    .split("\",")
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once("=\"")?;
                        Some((k.trim().to_owned(), v.trim_end_matches('"').to_owned()))
                    })
                    .collect();
                (n.to_owned(), labels)
            }
            None => (head.to_owned(), Vec::new()),
        };
        out.push((name, labels, value));
    }
    out
}

fn sum(samples: &[Sample], name: &str, label: (&str, &str), also: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && l.iter().any(|(k, v)| k == label.0 && v == label.1)
                && also.is_none_or(|(ak, av)| l.iter().any(|(k, v)| k == ak && v == av))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn mean_ms(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let pick = |suffix: &str| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| {
                *n == format!("{name}{suffix}")
                    && label.is_none_or(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    let (s, c) = (pick("_sum"), pick("_count"));
    (c > 0.0).then(|| s * 1000.0 / c)
}

pub(crate) async fn overview(Shared(ui): Shared<Arc<Ui>>) -> Response {
    let journal = &ui.admin.journal;
    let text = ui.admin.metrics.render();
    let m = samples(&text);
    let now = SystemTime::now();
    let hour_ago = now - Duration::from_secs(3600);
    let backlogs: BTreeMap<String, u64> = journal.sources().into_iter().collect();
    let (dead_all, total) = tokio::join!(journal.dead_count(), journal.count());
    // One entry per dead (event, destination) delivery: these count deliveries.
    let mut dead_by_source: BTreeMap<String, u64> = BTreeMap::new();
    if let Ok(list) = journal.dead(None, 10_000).await {
        for d in list {
            *dead_by_source.entry(d.source).or_default() += 1;
        }
    }
    let mut sources = Vec::new();
    for name in source_names(&ui) {
        let f = EventFilter {
            source: Some(name.clone()),
            since: Some(rfc3339(hour_ago)),
            ..EventFilter::default()
        };
        let mut per_minute = vec![0u64; 60];
        let (mut received, mut at_least) = (0, false);
        if let Ok(page) = list(&ui, &f, None, 1000).await {
            at_least = page.next_cursor.is_some();
            received = page.events.len() as u64;
            for e in &page.events {
                let ago = now
                    .duration_since(e.received_at)
                    .unwrap_or_default()
                    .as_secs()
                    / 60;
                if ago < 60 {
                    per_minute[59 - ago as usize] += 1;
                }
            }
        }
        let pending = EventFilter {
            source: Some(name.clone()),
            state: Some("pending".to_owned()),
            ..EventFilter::default()
        };
        // Newest first: with more than a page pending, the oldest is at least as old
        // as the last one listed.
        let (oldest, oldest_at_least) = match list(&ui, &pending, None, 1000).await {
            Ok(page) => (
                page.events.last().map(|e| {
                    now.duration_since(e.received_at)
                        .unwrap_or_default()
                        .as_secs()
                }),
                page.next_cursor.is_some(),
            ),
            Err(_) => (None, false),
        };
        let (refused, shed) = crate::layer::rejections::last_hour(&name);
        sources.push(templates::overview::SourceRow {
            received_hour: received,
            at_least,
            per_minute,
            rejected: refused.iter().sum(),
            rejected_per_minute: refused.to_vec(),
            shed: shed.iter().sum(),
            shed_per_minute: shed.to_vec(),
            backlog: backlogs.get(&name).copied().unwrap_or(0),
            oldest_pending_secs: oldest,
            oldest_at_least,
            dead: dead_by_source.get(&name).copied().unwrap_or(0),
            name,
        });
    }
    let dests = ui
        .opts
        .destinations
        .iter()
        .map(|d| templates::overview::DestinationRow {
            name: d.name.clone(),
            delivered: sum(
                &m,
                "hookbox_forward_total",
                ("destination", &d.name),
                Some(("outcome", "delivered")),
            ) as u64,
            failed: (sum(
                &m,
                "hookbox_forward_total",
                ("destination", &d.name),
                Some(("outcome", "retry")),
            ) + sum(
                &m,
                "hookbox_forward_total",
                ("destination", &d.name),
                Some(("outcome", "permanent")),
            )) as u64,
            mean_ms: mean_ms(
                &m,
                "hookbox_forward_seconds",
                Some(("destination", &d.name)),
            ),
        })
        .collect::<Vec<_>>();
    let load = journal.load();
    let health = templates::overview::Health {
        ready: load.healthy,
        reason: if load.healthy {
            "accepting and delivering".to_owned()
        } else {
            "recovering from a storage failure".to_owned()
        },
        queued: load.queued as u64,
        capacity: load.capacity as u64,
        commit_mean_ms: mean_ms(&m, "hookbox_journal_commit_seconds", None),
        dead: dead_all.unwrap_or(0),
        total: total.unwrap_or(0),
    };
    respond(
        StatusCode::OK,
        templates::overview::page(&sources, &dests, &health),
    )
}

pub(crate) async fn rejected(Shared(ui): Shared<Arc<Ui>>, uri: Uri) -> Response {
    let q = query(&uri);
    let source = get(&q, "source");
    let rows: Vec<_> = crate::layer::rejections::recent()
        .into_iter()
        .filter(|r| source.as_deref().is_none_or(|s| r.source == s))
        .collect();
    respond(
        StatusCode::OK,
        templates::rejected::page(&rows, &source_names(&ui), source.as_deref()),
    )
}

pub(crate) async fn sources(Shared(ui): Shared<Arc<Ui>>) -> Response {
    let backlog: Vec<u64> = ui
        .opts
        .sources
        .iter()
        .map(|s| ui.admin.journal.backlog(&s.name))
        .collect();
    respond(
        StatusCode::OK,
        templates::sources::page(&ui.opts.sources, &backlog, &ui.opts.destinations),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_group_by_destination_and_status() {
        let d = vec!["api".to_owned()];
        assert_eq!(group_of("api: HTTP 500: boom", &d), "api · HTTP 500");
        assert_eq!(group_of("api: connect: refused", &d), "api · connect");
        assert_eq!(group_of("no handler", &d), "no handler");
    }

    fn row(id: &str, destination: Option<&str>) -> DeadRow {
        DeadRow {
            id: id.to_owned(),
            source: "shop".to_owned(),
            destination: destination.map(str::to_owned),
            event_type: None,
            dead_at: None,
            attempts: 1,
            last_error: None,
        }
    }

    #[test]
    fn a_dead_delivery_is_named_by_its_event_and_destination() {
        let id = "evt_00000000000000ff";
        for dest in [None, Some("audit"), Some("billing.v2")] {
            let key = row(id, dest).key();
            let (got, d) = parse_key(&key).unwrap();
            assert_eq!(got.to_string(), id);
            assert_eq!(d.as_deref(), dest);
        }
        assert!(parse_key(&format!("{id}/")).is_none());
        assert!(parse_key("nope/audit").is_none());
    }

    #[test]
    fn a_selection_is_redriven_one_destination_at_a_time() {
        let (a, b) = ("evt_0000000000000001", "evt_0000000000000002");
        let rows = [
            row(a, Some("app")),
            row(b, Some("audit")),
            row(b, Some("app")),
        ];
        let got: Vec<(Option<String>, Vec<String>)> = redrives_of(&rows)
            .into_iter()
            .map(|r| {
                let ids = r.ids.unwrap().iter().map(ToString::to_string).collect();
                (r.destination, ids)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("app".to_owned()), vec![a.to_owned(), b.to_owned()]),
                (Some("audit".to_owned()), vec![b.to_owned()]),
            ]
        );
        let got = redrives_of(&[row(a, None)]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].destination, None);
    }

    #[test]
    fn only_dashboard_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/ui/events?x=1")), "/ui/events?x=1");
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("https://evil.example")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn datetime_local_values_read_as_utc() {
        assert_eq!(
            to_rfc3339("2026-05-01T12:00").unwrap(),
            "2026-05-01T12:00:00Z"
        );
        assert_eq!(
            to_rfc3339("2026-05-01T12:00:09").unwrap(),
            "2026-05-01T12:00:09Z"
        );
        assert!(to_rfc3339("yesterday").is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh("invoice.paid"), "invoice.paid");
        assert_eq!(sh("invoice.*"), "'invoice.*'");
        assert_eq!(sh("it's"), r"'it'\''s'");
    }
}
