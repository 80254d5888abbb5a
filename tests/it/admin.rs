//! The admin API over real HTTP, and the CLI commands that call it, as subprocesses,
//! against an in-process API or a live `hookbox serve`.

use std::collections::BTreeSet;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hookbox::{EventId, Journal, Next, RedbJournal, Secret, State};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::{
    append_event, client, hookbox_bin, peek_ready, serve, settle, spawn_serve, GITHUB_SECRET,
};

const TOKEN: &str = "adm-7f3e9c2a41";

/// An admin API served on 127.0.0.1:0 over a fresh journal.
struct Api {
    url: String,
    journal: Arc<RedbJournal>,
    _dir: tempfile::TempDir,
}

/// One answer: status, content type, `WWW-Authenticate`, and the body as JSON (or as a
/// JSON string when it is not JSON).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: String,
    challenge: Option<String>,
    body: Value,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let app = hookbox::admin::router(
        journal.clone(),
        Secret::from(TOKEN),
        hookbox::admin::metrics_handle(),
    );
    let addr = serve(app).await;
    Api {
        url: format!("http://{addr}"),
        journal,
        _dir: dir,
    }
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let res = req.send().await.expect("the admin API answers");
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let challenge = header("www-authenticate");
    let status = res.status();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        content_type,
        challenge,
        body,
    }
}

impl Api {
    async fn get(&self, path: &str) -> Reply {
        send(
            client()
                .get(format!("{}{path}", self.url))
                .bearer_auth(TOKEN),
        )
        .await
    }

    async fn post(&self, path: &str, body: &str) -> Reply {
        send(
            client()
                .post(format!("{}{path}", self.url))
                .bearer_auth(TOKEN)
                .body(body.to_owned()),
        )
        .await
    }

    /// Every event id a listing returns, following `next_cursor` through all pages;
    /// checks each page on the way.
    async fn all_pages(&self, query: &str, limit: usize) -> Vec<EventId> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/v1/events?limit={limit}{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
            let events = r.body["events"].as_array().unwrap();
            assert!(events.len() <= limit, "{path}: page over its limit");
            assert!(!events.is_empty(), "{path}: an empty page after a cursor");
            pages += 1;
            ids.extend(events.iter().map(|e| id_of(&e["id"])));
            match r.body["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(events.len(), limit, "only a full page has a next one");
                    cursor = Some(c.to_owned());
                }
                None => break,
            }
        }
        assert_eq!(pages, ids.len().div_ceil(limit).max(1));
        ids
    }
}

fn id_of(v: &Value) -> EventId {
    v.as_str()
        .expect("an id string")
        .parse()
        .expect("an event id")
}

fn ids_of(body: &Value) -> Vec<EventId> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| id_of(&e["id"]))
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap()
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `t` ready for a query string (`+` would read as a space).
fn q(t: SystemTime) -> String {
    rfc3339(t).replace('+', "%2B")
}

fn assert_problem(r: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.content_type, "application/problem+json", "{r:?}");
    assert_eq!(r.body["kind"], kind, "{r:?}");
    assert_eq!(r.body["status"], status.as_u16(), "{r:?}");
}

#[tokio::test]
async fn every_route_but_the_health_checks_wants_the_token() {
    let api = api().await;
    let dead = append_event(&*api.journal, "gh", "d-1", "push", SystemTime::now(), b"{}").await;
    settle(&*api.journal, "gh", dead, None, Next::Dead("410".into())).await;
    let routes: [(&str, &str, &str); 8] = [
        ("GET", "/v1/events", ""),
        ("GET", "/v1/events/evt_0000000000000001", ""),
        (
            "POST",
            "/v1/replay",
            r#"{"since":"2020-01-01T00:00:00Z","until":"2030-01-01T00:00:00Z"}"#,
        ),
        ("GET", "/v1/replays/1", ""),
        ("GET", "/v1/dlq", ""),
        ("POST", "/v1/dlq/redrive", "{}"),
        ("GET", "/metrics", ""),
        ("GET", "/v1/nonesuch", ""),
    ];
    let wrong = [
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        "Bearer ".to_owned(),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
    ];
    for (method, path, body) in routes {
        let req = || {
            client()
                .request(method.parse().unwrap(), format!("{}{path}", api.url))
                .body(body.to_owned())
        };
        let r = send(req()).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "missing_token");
        assert!(
            r.challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{method} {path}: {r:?}"
        );
        for auth in &wrong {
            let r = send(req().header("authorization", auth)).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            assert_eq!(r.content_type, "application/problem+json");
            assert!(r.challenge.is_some(), "{method} {path} {auth:?}");
            assert!(
                !r.body.to_string().contains(TOKEN),
                "the token is not echoed"
            );
        }
        let r = send(req().header("authorization", "Bearer wrong-token")).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "invalid_token");
        assert!(r.challenge.unwrap().contains(r#"error="invalid_token""#));
    }
    // Nothing was redriven or replayed by the refused requests.
    assert_eq!(
        api.journal.state(dead).await.unwrap().unwrap().state,
        State::Dead
    );
    assert_eq!(api.journal.replay_status(1).await.unwrap(), None);
    // (With the token, the replay below is number 1, which the route after it reads.)

    // With the token, each answers (the scheme name is case-insensitive).
    for (method, path, body) in routes {
        let r = send(
            client()
                .request(method.parse().unwrap(), format!("{}{path}", api.url))
                .header("authorization", format!("bearer {TOKEN}"))
                .body(body.to_owned()),
        )
        .await;
        let expected = match path {
            "/v1/events/evt_0000000000000001" | "/v1/nonesuch" => StatusCode::NOT_FOUND,
            "/v1/replay" => StatusCode::ACCEPTED,
            _ => StatusCode::OK,
        };
        assert_eq!(r.status, expected, "{method} {path}: {r:?}");
    }

    for path in ["/healthz", "/readyz"] {
        let r = send(client().get(format!("{}{path}", api.url))).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.content_type, "application/json");
    }
    let r = send(client().get(format!("{}/healthz", api.url))).await;
    assert_eq!(r.body, json!({"status": "ok"}));
    let r = send(client().get(format!("{}/readyz", api.url))).await;
    assert_eq!(r.body["status"], "ready");

    let metrics = api.get("/metrics").await.body;
    let text = metrics.as_str().unwrap();
    for kind in ["missing_token", "invalid_token", "not_found"] {
        assert!(
            text.contains(&format!("hookbox_admin_rejected_total{{kind=\"{kind}\"}}")),
            "{kind} rejections are counted:\n{text}"
        );
    }
}

/// Eight events one second apart, an hour ago, in the states the filters cover.
async fn mixed(api: &Api) -> (SystemTime, Vec<EventId>) {
    let j = &*api.journal;
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    let at = |n: u64| t0 + Duration::from_secs(n);
    let spec = [
        ("github", "push"),
        ("github", "issues"),
        ("stripe", "invoice.paid"),
        ("stripe", "invoice.created"),
        ("stripe", "customer.created"),
        ("github", "push"),
        ("stripe", "invoice.paid"),
        ("github", "issues"),
    ];
    let mut ids = Vec::new();
    for (n, (source, ty)) in spec.iter().enumerate() {
        ids.push(append_event(j, source, &format!("d-{n}"), ty, at(n as u64), b"{}").await);
    }
    settle(j, "github", ids[0], None, Next::Done).await;
    settle(j, "stripe", ids[2], None, Next::Dead("400 bad".into())).await;
    settle(j, "stripe", ids[3], None, Next::RetryAt(ms(at(3600)))).await;
    settle(j, "stripe", ids[4], None, Next::Done).await;
    settle(j, "github", ids[7], None, Next::Dead("404".into())).await;
    (t0, ids)
}

#[tokio::test]
async fn events_list_filters_by_source_type_state_and_window() {
    let api = api().await;
    let (t0, ids) = mixed(&api).await;
    let at = |n: u64| q(t0 + Duration::from_secs(n));
    let pick = |ns: &[usize]| -> Vec<EventId> { ns.iter().rev().map(|&n| ids[n]).collect() };
    let cases: Vec<(String, Vec<EventId>)> = vec![
        (String::new(), pick(&[0, 1, 2, 3, 4, 5, 6, 7])),
        ("source=stripe".into(), pick(&[2, 3, 4, 6])),
        ("type=invoice.*".into(), pick(&[2, 3, 6])),
        ("type=invoice.paid".into(), pick(&[2, 6])),
        ("type=invoice".into(), vec![]),
        ("state=pending".into(), pick(&[1, 5, 6])),
        ("state=retrying".into(), pick(&[3])),
        ("state=done".into(), pick(&[0, 4])),
        ("state=dead".into(), pick(&[2, 7])),
        (format!("since={}&until={}", at(2), at(5)), pick(&[2, 3, 4])),
        (format!("since={}", at(6)), pick(&[6, 7])),
        (format!("until={}", at(1)), pick(&[0])),
        (
            "source=stripe&type=invoice.*&state=pending".into(),
            pick(&[6]),
        ),
        (
            format!("source=github&state=dead&since={}", at(1)),
            pick(&[7]),
        ),
        ("source=nonesuch".into(), vec![]),
    ];
    for (query, expected) in cases {
        let r = api.get(&format!("/v1/events?{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {r:?}");
        assert_eq!(ids_of(&r.body), expected, "{query}");
        assert_eq!(r.body["next_cursor"], Value::Null, "{query}");
    }

    let r = api.get("/v1/events?source=stripe").await;
    let by_id = |id: EventId| {
        r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.to_string())
            .cloned()
            .unwrap()
    };
    let retrying = by_id(ids[3]);
    assert_eq!(retrying["state"], "retrying");
    assert_eq!(retrying["attempts"], 1);
    assert_eq!(retrying["type"], "invoice.created");
    assert_eq!(retrying["delivery_id"], "d-3");
    assert_eq!(retrying["source"], "stripe");
    assert_eq!(retrying["body_len"], 2);
    assert_eq!(
        retrying["received_at"],
        rfc3339(UNIX_EPOCH + Duration::from_millis(ms(t0 + Duration::from_secs(3))))
    );
    assert_eq!(by_id(ids[6])["state"], "pending");
    assert_eq!(by_id(ids[6])["attempts"], 0);
}

#[tokio::test]
async fn cursor_paging_returns_every_event_exactly_once() {
    let api = api().await;
    let j = &*api.journal;
    let t0 = SystemTime::now() - Duration::from_secs(600);
    let mut all = Vec::new();
    for n in 0..57u64 {
        let (source, ty) = if n % 3 == 0 {
            ("b", "order.paid")
        } else {
            ("a", "order.created")
        };
        let id = append_event(
            j,
            source,
            &format!("p-{n}"),
            ty,
            t0 + Duration::from_millis(n * 10),
            b"{}",
        )
        .await;
        all.push((n, source, id));
    }
    for &(n, source, id) in &all {
        if n % 4 == 0 {
            settle(j, source, id, None, Next::Done).await;
        }
    }
    let expect = |keep: &dyn Fn(u64, &str) -> bool| -> Vec<EventId> {
        all.iter()
            .rev()
            .filter(|(n, s, _)| keep(*n, s))
            .map(|(_, _, id)| *id)
            .collect()
    };
    let since = q(t0 + Duration::from_millis(100));
    let cases: Vec<(String, Vec<EventId>)> = vec![
        (String::new(), expect(&|_, _| true)),
        ("&source=a".into(), expect(&|_, s| s == "a")),
        ("&type=order.p*".into(), expect(&|_, s| s == "b")),
        (
            "&state=pending&source=b".into(),
            expect(&|n, s| s == "b" && n % 4 != 0),
        ),
        ("&state=done".into(), expect(&|n, _| n % 4 == 0)),
        (format!("&since={since}"), expect(&|n, _| n >= 10)),
    ];
    for (query, expected) in cases {
        for limit in [1, 7, 10, 1000] {
            if limit == 1 && expected.len() > 20 {
                continue;
            }
            let got = api.all_pages(&query, limit).await;
            assert_eq!(
                got, expected,
                "{query} limit {limit}: each once, newest first"
            );
        }
    }
    let distinct: BTreeSet<_> = api.all_pages("", 10).await.into_iter().collect();
    assert_eq!(distinct.len(), 57);
}

#[tokio::test]
async fn show_returns_headers_body_state_and_every_attempt() {
    let api = api().await;
    let j = &*api.journal;
    let now = SystemTime::now();
    let body = br#"{"action":"opened","number":7}"#;
    let id = append_event(j, "github", "show-1", "issues", now, body).await;
    settle(j, "github", id, None, Next::RetryAt(ms(now))).await;
    settle(j, "github", id, None, Next::Dead("410 Gone".into())).await;
    let binary: &[u8] = &[0xff, 0x00, 0xfe, b'a'];
    let bin_id = append_event(j, "github", "show-2", "push", now, binary).await;

    let r = api.get(&format!("/v1/events/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let e = &r.body;
    assert_eq!(e["id"], id.to_string());
    assert_eq!(e["source"], "github");
    assert_eq!(e["scheme"], "github");
    assert_eq!(e["type"], "issues");
    assert_eq!(e["delivery_id"], "show-1");
    assert_eq!(e["body_encoding"], "utf8");
    assert_eq!(e["body"], std::str::from_utf8(body).unwrap());
    assert_eq!(e["body_len"], body.len());
    let headers = e["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!(["x-github-event", "issues"])),
        "{headers:?}"
    );
    assert!(headers.contains(&json!(["x-github-delivery", "show-1"])));
    assert!(
        headers.iter().any(|h| h[0] == "x-hub-signature-256"),
        "{headers:?}"
    );
    assert_eq!(e["state"], "dead");
    assert_eq!(e["delivery"]["attempts"], 2);
    assert_eq!(e["delivery"]["last_error"], "410 Gone");
    assert!(OffsetDateTime::parse(e["delivery"]["dead_at"].as_str().unwrap(), &Rfc3339).is_ok());
    let attempts = e["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["n"], 1);
    assert_eq!(attempts[0]["outcome"], "retry");
    assert_eq!(attempts[0]["error"], "503 from the handler");
    assert_eq!(attempts[1]["n"], 2);
    assert_eq!(attempts[1]["outcome"], "fail");
    assert_eq!(attempts[1]["error"], "410 Gone");
    assert_eq!(attempts[1]["duration_ms"], 12);

    let r = api.get(&format!("/v1/events/{bin_id}")).await;
    assert_eq!(r.body["body_encoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(r.body["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, binary);
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["attempts"], json!([]));

    let r = api.get("/v1/events/evt_00000000000000ff").await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    let r = api.get("/v1/events/123").await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_parameter");
    assert!(
        r.body["detail"].as_str().unwrap().starts_with("id:"),
        "{r:?}"
    );
}

#[tokio::test]
async fn bad_parameters_and_bodies_are_400_problems_naming_them() {
    let api = api().await;
    let window = r#""since":"2024-01-01T00:00:00Z","until":"2024-01-02T00:00:00Z""#;
    let cases: Vec<(&str, &str, String, &str, &str)> = vec![
        (
            "GET",
            "/v1/events?limit=0",
            String::new(),
            "invalid_parameter",
            "limit",
        ),
        (
            "GET",
            "/v1/events?limit=1001",
            String::new(),
            "invalid_parameter",
            "limit",
        ),
        (
            "GET",
            "/v1/events?limit=ten",
            String::new(),
            "invalid_parameter",
            "limit",
        ),
        (
            "GET",
            "/v1/events?state=stuck",
            String::new(),
            "invalid_parameter",
            "state",
        ),
        (
            "GET",
            "/v1/events?since=yesterday",
            String::new(),
            "invalid_parameter",
            "since",
        ),
        (
            "GET",
            "/v1/events?until=2024-13-01T00:00:00Z",
            String::new(),
            "invalid_parameter",
            "until",
        ),
        (
            "GET",
            "/v1/events?cursor=evt_12",
            String::new(),
            "invalid_parameter",
            "cursor",
        ),
        (
            "GET",
            "/v1/events?sourc=github",
            String::new(),
            "invalid_parameter",
            "sourc",
        ),
        (
            "GET",
            "/v1/events?source=a&source=b",
            String::new(),
            "invalid_parameter",
            "source",
        ),
        (
            "GET",
            "/v1/events?since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
            String::new(),
            "invalid_parameter",
            "since",
        ),
        (
            "GET",
            "/v1/dlq?limit=-1",
            String::new(),
            "invalid_parameter",
            "limit",
        ),
        (
            "GET",
            "/v1/dlq?type=push",
            String::new(),
            "invalid_parameter",
            "type",
        ),
        (
            "GET",
            "/v1/replays/latest",
            String::new(),
            "invalid_parameter",
            "id",
        ),
        ("POST", "/v1/replay", String::new(), "invalid_body", "EOF"),
        (
            "POST",
            "/v1/replay",
            r#"{"since":"2024-01-01T00:00:00Z"}"#.into(),
            "invalid_body",
            "until",
        ),
        (
            "POST",
            "/v1/replay",
            r#"{"since":"last week","until":"2024-01-02T00:00:00Z"}"#.into(),
            "invalid_body",
            "since",
        ),
        (
            "POST",
            "/v1/replay",
            format!("{{{window},\"sorce\":\"a\"}}"),
            "invalid_body",
            "sorce",
        ),
        (
            "POST",
            "/v1/replay",
            format!("{{{window},\"dry_run\":\"yes\"}}"),
            "invalid_body",
            "dry_run",
        ),
        (
            "POST",
            "/v1/dlq/redrive",
            r#"{"ids":["nope"]}"#.into(),
            "invalid_body",
            "ids",
        ),
        (
            "POST",
            "/v1/dlq/redrive",
            r#"{"until":"soon"}"#.into(),
            "invalid_body",
            "until",
        ),
        (
            "POST",
            "/v1/dlq/redrive",
            r#"{"all":true}"#.into(),
            "invalid_body",
            "all",
        ),
        (
            "POST",
            "/v1/dlq/redrive",
            "[]".into(),
            "invalid_body",
            "object",
        ),
    ];
    for (method, path, body, kind, named) in cases {
        let r = send(
            client()
                .request(method.parse().unwrap(), format!("{}{path}", api.url))
                .bearer_auth(TOKEN)
                .body(body.clone()),
        )
        .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, kind);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            detail.contains(named),
            "{method} {path} {body}: {detail:?} should name {named}"
        );
    }
    // A `+` offset sent unencoded (read as a space) still parses.
    let r = api.get("/v1/events?since=2024-01-01T00:00:00+02:00").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

#[tokio::test]
async fn replay_dry_run_counts_the_window_and_a_replay_queues_deliveries() {
    let api = api().await;
    let j = &*api.journal;
    let t0 = SystemTime::now() - Duration::from_secs(120);
    let at = |n: u64| t0 + Duration::from_secs(n);
    let mut ids = Vec::new();
    for n in 0..10u64 {
        let source = if n % 2 == 0 { "a" } else { "b" };
        let ty = if n < 5 { "order.paid" } else { "order.created" };
        ids.push((
            source,
            append_event(j, source, &format!("r-{n}"), ty, at(n), b"{}").await,
        ));
    }
    settle(j, "a", ids[2].1, None, Next::Done).await;
    let window = |since: u64, until: u64| {
        format!(
            r#""since":"{}","until":"{}""#,
            rfc3339(at(since)),
            rfc3339(at(until))
        )
    };
    for (extra, matched) in [
        ("", 4),
        (r#","source":"a""#, 2),
        (r#","type":"order.c*""#, 1),
        (r#","source":"b","type":"order.paid""#, 1),
    ] {
        let r = api
            .post(
                "/v1/replay",
                &format!("{{{},\"dry_run\":true{extra}}}", window(2, 6)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{extra}: {r:?}");
        assert_eq!(r.body["matched"], matched, "{extra}");
        assert_eq!(r.body["replay_id"], Value::Null);
    }
    let replayed = |source: &'static str| async move {
        crate::support::waiting(j, source)
            .await
            .into_iter()
            .filter(|r| r.replay.is_some())
            .map(|r| r.id)
            .collect::<Vec<EventId>>()
    };
    assert!(
        replayed("a").await.is_empty() && replayed("b").await.is_empty(),
        "a dry run queues nothing"
    );

    let r = api
        .post("/v1/replay", &format!("{{{}}}", window(2, 6)))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.body["matched"], 4);
    let replay = r.body["replay_id"].as_u64().expect("a replay id");
    let in_window: Vec<_> = ids[2..6].to_vec();
    for (source, id) in &in_window {
        let ready = peek_ready(j, source, *id, Some(replay))
            .await
            .unwrap_or_else(|| panic!("{id} has a replay delivery"));
        assert_eq!(ready.attempt, 1);
    }
    assert_eq!(
        replayed("a").await.len() + replayed("b").await.len(),
        4,
        "only the window"
    );
    // The originals' history is untouched.
    assert_eq!(j.state(ids[2].1).await.unwrap().unwrap().state, State::Done);
    assert_eq!(
        j.state(ids[3].1).await.unwrap().unwrap().state,
        State::Pending
    );

    let status = |body: &Value| {
        (
            body["matched"].as_u64().unwrap(),
            body["done"].as_u64().unwrap(),
            body["failed"].as_u64().unwrap(),
            body["complete"].as_bool().unwrap(),
        )
    };
    let r = api.get(&format!("/v1/replays/{replay}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(status(&r.body), (4, 0, 0, false));
    assert_eq!(r.body["id"], replay);
    let (s, id) = in_window[0];
    settle(j, s, id, Some(replay), Next::Done).await;
    let (s, id) = in_window[1];
    settle(j, s, id, Some(replay), Next::Dead("500".into())).await;
    let (s, id) = in_window[2];
    settle(j, s, id, Some(replay), Next::Done).await;
    let r = api.get(&format!("/v1/replays/{replay}")).await;
    assert_eq!(status(&r.body), (4, 2, 1, false));
    let (s, id) = in_window[3];
    settle(j, s, id, Some(replay), Next::Done).await;
    let r = api.get(&format!("/v1/replays/{replay}")).await;
    assert_eq!(status(&r.body), (4, 3, 1, true));

    let r = api.get("/v1/replays/999").await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn dlq_lists_dead_events_and_redrive_moves_them_back() {
    let api = api().await;
    let j = &*api.journal;
    let now = SystemTime::now();
    let gh1 = append_event(j, "gh", "q-1", "push", now, b"{}").await;
    let st = append_event(j, "st", "q-2", "invoice.paid", now, b"{}").await;
    let gh2 = append_event(j, "gh", "q-3", "issues", now, b"{}").await;
    let alive = append_event(j, "gh", "q-4", "push", now, b"{}").await;
    settle(j, "gh", gh1, None, Next::RetryAt(ms(now))).await;
    settle(j, "gh", gh1, None, Next::Dead("endpoint said 500".into())).await;
    settle(j, "st", st, None, Next::Dead("422".into())).await;
    settle(j, "gh", gh2, None, Next::Dead("timeout".into())).await;

    let r = api.get("/v1/dlq").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(ids_of(&r.body).len(), 3);
    let listed = r.body["events"].as_array().unwrap();
    let first = listed.iter().find(|e| e["id"] == gh1.to_string()).unwrap();
    assert_eq!(first["source"], "gh");
    assert_eq!(first["type"], "push");
    assert_eq!(first["last_error"], "endpoint said 500");
    assert_eq!(first["attempts"], 2);
    assert!(OffsetDateTime::parse(first["dead_at"].as_str().unwrap(), &Rfc3339).is_ok());
    assert_eq!(ids_of(&api.get("/v1/dlq?source=st").await.body), vec![st]);
    assert_eq!(ids_of(&api.get("/v1/dlq?limit=2").await.body).len(), 2);
    assert!(!ids_of(&api.get("/v1/dlq").await.body).contains(&alive));

    let r = api.post("/v1/dlq/redrive", r#"{"type":"nomatch"}"#).await;
    assert_eq!(r.body, json!({"redriven": 0}));
    let r = api
        .post("/v1/dlq/redrive", &format!(r#"{{"ids":["{gh1}"]}}"#))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body, json!({"redriven": 1}));
    assert_eq!(j.state(gh1).await.unwrap().unwrap().state, State::Pending);
    assert_eq!(
        peek_ready(j, "gh", gh1, None).await.unwrap().attempt,
        1,
        "delivered again, in a fresh round of attempts"
    );
    assert_eq!(ids_of(&api.get("/v1/dlq").await.body).len(), 2);

    let r = api.post("/v1/dlq/redrive", r#"{"source":"st"}"#).await;
    assert_eq!(r.body, json!({"redriven": 1}));
    assert_eq!(ids_of(&api.get("/v1/dlq").await.body), vec![gh2]);
    // `{}` is every dead event.
    let r = api.post("/v1/dlq/redrive", "{}").await;
    assert_eq!(r.body, json!({"redriven": 1}));
    assert_eq!(j.dead_count().await.unwrap(), 0);
    assert_eq!(api.get("/v1/dlq").await.body, json!({"events": []}));
}

#[tokio::test]
async fn metrics_report_the_dlq_size_and_backlog_per_source() {
    let api = api().await;
    let j = &*api.journal;
    let now = SystemTime::now();
    for n in 0..3 {
        append_event(j, "metrics-src", &format!("m-{n}"), "push", now, b"{}").await;
    }
    let dead = append_event(j, "metrics-dead", "m-dead", "push", now, b"{}").await;
    settle(j, "metrics-dead", dead, None, Next::Dead("x".into())).await;
    let r = api.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    let text = r.body.as_str().unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    // The DLQ gauge is process-wide and other tests' journals set it too: it is a number.
    assert!(value("hookbox_dlq_size") >= 0.0);
    assert_eq!(value("hookbox_backlog{source=\"metrics-src\"}"), 3.0);
    assert_eq!(value("hookbox_backlog{source=\"metrics-dead\"}"), 0.0);
    assert!(text.contains("# TYPE hookbox_dlq_size gauge"), "{text}");
}

// --- the CLI against an in-process admin API -----------------------------------------

/// Runs the CLI against `admin_url` with the right token.
fn cli(admin_url: &str, args: &[&str]) -> Output {
    hookbox_bin()
        .args(args)
        .env("HOOKBOX_ADMIN_URL", admin_url)
        .env("HOOKBOX_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("hookbox runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_replay_follows_progress_until_every_delivery_settled() {
    let api = api().await;
    let j = api.journal.clone();
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let mut ids = Vec::new();
    for n in 0..3u64 {
        ids.push(
            append_event(
                &*j,
                "gh",
                &format!("w-{n}"),
                "push",
                t0 + Duration::from_secs(n),
                b"{}",
            )
            .await,
        );
    }
    let mut cmd = tokio::process::Command::from(hookbox_bin());
    cmd.args(["replay", "--since", "5m", "--source", "gh"])
        .env("HOOKBOX_ADMIN_URL", &api.url)
        .env("HOOKBOX_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Wait for the replay to exist, then deliver it as the runtime would.
    let replay = loop {
        if let Some(s) = j.replay_status(1).await.unwrap() {
            break s.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    settle(&*j, "gh", ids[0], Some(replay), Next::Done).await;
    settle(&*j, "gh", ids[1], Some(replay), Next::Dead("500".into())).await;
    settle(&*j, "gh", ids[2], Some(replay), Next::Done).await;
    let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the CLI returns once the replay completes")
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim_end(),
        "replayed 3 events: 2 delivered, 1 failed",
        "no progress bar when stdout is not a terminal"
    );
}

// --- the CLI against a live `hookbox serve` ------------------------------------------

/// A config with one GitHub source and `[admin]` on port 0, its token from the
/// environment.
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("hookbox.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
journal = "{}"

[[source]]
name = "gh"
path = "/hooks/gh"
scheme = "github"
secrets = ["{GITHUB_SECRET}"]

[admin]
listen = "127.0.0.1:0"
token = "env:HOOKBOX_TEST_ADMIN_TOKEN"
"#,
            dir.join("journal.redb").display()
        ),
    )
    .unwrap();
    cfg
}

fn live(dir: &std::path::Path) -> crate::support::ServeChild {
    let server = spawn_serve(
        &write_config(dir),
        &[("HOOKBOX_TEST_ADMIN_TOKEN", TOKEN)],
        true,
    );
    assert!(server
        .admin
        .as_deref()
        .is_some_and(|a| a.starts_with("http://127.0.0.1:")));
    server
}

fn json_of(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test]
async fn cli_lists_shows_redrives_replays_and_exports_from_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    // Journal three events first (one of them dead) while no server holds the file.
    let now = SystemTime::now();
    let (push1, dead, push2) = {
        let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
        let a = append_event(
            &j,
            "gh",
            "c-1",
            "push",
            now - Duration::from_secs(1800),
            b"{\"n\":1}",
        )
        .await;
        let b = append_event(
            &j,
            "gh",
            "c-2",
            "issues",
            now - Duration::from_secs(1200),
            b"{\"n\":2}",
        )
        .await;
        let c = append_event(
            &j,
            "gh",
            "c-3",
            "push",
            now - Duration::from_secs(600),
            b"{\"n\":3}",
        )
        .await;
        settle(
            &j,
            "gh",
            b,
            None,
            Next::Dead("endpoint answered 500".into()),
        )
        .await;
        (a, b, c)
    };
    let server = live(dir.path());
    let admin = server.admin.clone().unwrap();

    let listed = json_of(&cli(&admin, &["events", "list", "--json"]));
    assert_eq!(ids_of(&listed), vec![push2, dead, push1]);
    let states: Vec<_> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].clone())
        .collect();
    assert_eq!(
        states,
        vec![json!("pending"), json!("dead"), json!("pending")]
    );
    assert_eq!(
        ids_of(&json_of(&cli(
            &admin,
            &["events", "list", "--state", "dead", "--json"]
        ))),
        vec![dead]
    );
    assert_eq!(
        ids_of(&json_of(&cli(
            &admin,
            &["events", "list", "--since", "15m", "--json"]
        ))),
        vec![push2]
    );
    let o = cli(&admin, &["events", "list", "--type", "push"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    for col in [
        "ID", "RECEIVED", "SOURCE", "TYPE", "STATE", "ATTEMPTS", "BYTES",
    ] {
        assert!(head.contains(col), "{head}");
    }
    let rows: Vec<_> = lines.collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].starts_with(&push2.to_string()) && rows[1].starts_with(&push1.to_string()));
    let state_col = head.find("STATE").unwrap();
    assert!(
        rows.iter().all(|r| r[state_col..].starts_with("pending")),
        "aligned:\n{text}"
    );

    let shown = json_of(&cli(
        &admin,
        &["events", "show", &dead.to_string(), "--json"],
    ));
    assert_eq!(shown["body"], "{\"n\":2}");
    assert_eq!(shown["state"], "dead");
    let o = cli(&admin, &["events", "show", &dead.to_string()]);
    let text = stdout(&o);
    for expected in [
        "x-github-event: issues",
        "endpoint answered 500",
        "{\"n\":2}",
        "c-2",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }

    let dlq = json_of(&cli(&admin, &["dlq", "list", "--json"]));
    assert_eq!(ids_of(&dlq), vec![dead]);
    assert_eq!(dlq["events"][0]["last_error"], "endpoint answered 500");
    let text = stdout(&cli(&admin, &["dlq", "list"]));
    assert!(
        text.contains(&dead.to_string()) && text.contains("endpoint answered 500"),
        "{text}"
    );
    let o = cli(&admin, &["dlq", "redrive", "--id", &dead.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "redriven 1 delivery: pending again");
    assert_eq!(
        json_of(&cli(&admin, &["dlq", "list", "--json"]))["events"],
        json!([])
    );
    assert_eq!(
        stdout(&cli(&admin, &["dlq", "list"])).trim(),
        "the dead-letter queue is empty"
    );
    let shown = json_of(&cli(
        &admin,
        &["events", "show", &dead.to_string(), "--json"],
    ));
    assert_eq!(shown["state"], "pending");

    let o = cli(&admin, &["replay", "--since", "1h", "--dry-run"]);
    assert_eq!(
        stdout(&o).trim(),
        "3 events match; dry run, nothing queued",
        "{}",
        stderr(&o)
    );
    let dry = json_of(&cli(
        &admin,
        &["replay", "--since", "25m", "--dry-run", "--json"],
    ));
    assert_eq!(dry["matched"], 2);
    let o = cli(
        &admin,
        &["replay", "--since", "1h", "--until", "now", "--no-wait"],
    );
    assert_eq!(
        stdout(&o).trim(),
        "replay 1 queued 3 events",
        "{}",
        stderr(&o)
    );

    let out = dir.path().join("audit.ndjson");
    let o = cli(
        &admin,
        &[
            "events",
            "export",
            "--since",
            "1h",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("exported 3 events"), "{}", stderr(&o));
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: Vec<EventId> = lines.iter().map(|e| id_of(&e["id"])).collect();
    assert_eq!(exported, vec![push1, dead, push2], "oldest first");
    assert_eq!(lines[1]["attempts"][0]["error"], "endpoint answered 500");
    assert_eq!(lines[2]["body"], "{\"n\":3}");
}

/// The id of the next event a `hookbox events tail --json` child prints (within 10 s).
async fn tailed(out: &mut tokio::io::BufReader<tokio::process::ChildStdout>) -> EventId {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), out.read_line(&mut line))
        .await
        .expect("tail prints new events within seconds")
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    id_of(&v["id"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_send_signs_and_posts_and_tail_prints_what_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let server = live(dir.path());
    let admin = server.admin.clone().unwrap();
    let hook = format!("{}/hooks/gh", server.url);

    // `events tail --json` as a child, with `extra` arguments, and its output.
    let tail_with = |extra: &[&str]| {
        let mut c = tokio::process::Command::from(hookbox_bin());
        c.args(["events", "tail", "--json", "-n", "0"])
            .args(extra)
            .env("HOOKBOX_ADMIN_URL", &admin)
            .env("HOOKBOX_ADMIN_TOKEN", TOKEN)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = c.spawn().unwrap();
        let out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        (child, out)
    };
    let (mut tail, mut tail_out) = tail_with(&[]);
    // A second tail prints only what its filter takes.
    let (mut issues, mut issues_out) = tail_with(&["--where", r#"types = ["issues"]"#]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let o = cli(
        &admin,
        &[
            "send",
            "--scheme",
            "github",
            "--secret",
            GITHUB_SECRET,
            "--url",
            &hook,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().next(), Some("202 Accepted"), "{text}");
    let answer: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    let first = id_of(&answer["id"]);

    let body = dir.path().join("ping.json");
    std::fs::write(&body, br#"{"zen":"Keep it logically awesome."}"#).unwrap();
    let o = cli(
        &admin,
        &[
            "send",
            "--scheme",
            "github",
            "--secret",
            GITHUB_SECRET,
            "--url",
            &hook,
            "-H",
            "X-GitHub-Event: issues",
            "--id",
            "send-2",
            body.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let second =
        id_of(&serde_json::from_str::<Value>(stdout(&o).lines().nth(1).unwrap()).unwrap()["id"]);

    let listed = json_of(&cli(&admin, &["events", "list", "--json"]));
    assert_eq!(ids_of(&listed), vec![second, first]);
    assert_eq!(
        listed["events"][0]["type"], "issues",
        "-H replaces the signed header"
    );
    assert_eq!(listed["events"][1]["type"], "ping");
    assert_eq!(listed["events"][0]["delivery_id"], "send-2");

    // The tail printed both, oldest first, as they arrived.
    let seen = vec![tailed(&mut tail_out).await, tailed(&mut tail_out).await];
    assert_eq!(seen, vec![first, second]);
    tail.kill().await.unwrap();
    assert_eq!(
        tailed(&mut issues_out).await,
        second,
        "only the `issues` event"
    );
    issues.kill().await.unwrap();

    // A wrong secret is refused by the server: the status is printed and send exits 1.
    let o = cli(
        &admin,
        &[
            "send", "--scheme", "github", "--secret", "not-it", "--url", &hook,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("401"), "{}", stdout(&o));
    let o = cli(
        &admin,
        &[
            "send",
            "--scheme",
            "github",
            "--secret",
            "s",
            "--url",
            "http://127.0.0.1:1/hooks/gh",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("http://127.0.0.1:1/hooks/gh"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn cli_failures_exit_1_with_one_line_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let server = live(dir.path());
    let admin = server.admin.clone().unwrap();
    let one_line = |o: &Output| {
        let e = stderr(o);
        assert_eq!(e.trim_end().lines().count(), 1, "{e:?}");
        assert!(e.starts_with("error: "), "{e:?}");
        e
    };

    let o = cli(&admin, &["events", "list", "--token", "wrong"]);
    assert_eq!(o.status.code(), Some(1));
    let e = one_line(&o);
    assert!(e.contains("401") && e.contains("token"), "{e}");
    assert!(
        !e.contains("wrong") && !e.contains(TOKEN),
        "no token in messages: {e}"
    );
    let o = hookbox_bin()
        .args(["dlq", "list", "--admin", &admin])
        .env_remove("HOOKBOX_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(one_line(&o).contains("401"));

    let o = cli("http://127.0.0.1:1", &["events", "list"]);
    assert_eq!(o.status.code(), Some(1));
    let e = one_line(&o);
    assert!(e.contains("http://127.0.0.1:1"), "{e}");

    let o = cli(&admin, &["events", "show", "evt_00000000000000ff"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(one_line(&o).contains("404"));

    for args in [
        vec!["events", "list", "--since", "yesterday"],
        vec!["events", "list", "--state", "stuck"],
        vec!["events", "show", "not-an-id"],
        vec!["events", "export"],
        vec!["replay", "--until", "now"],
        vec!["dlq", "redrive", "--id", "evt_1"],
        vec!["events", "list", "--admin", "127.0.0.1:8081"],
    ] {
        let o = cli(&admin, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!o.stderr.is_empty());
    }

    let help = stdout(&hookbox_bin().arg("--help").output().unwrap());
    for cmd in ["serve", "verify", "sign", "send", "events", "dlq", "replay"] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "{cmd} missing from\n{help}"
        );
    }
    let help = stdout(&hookbox_bin().args(["replay", "--help"]).output().unwrap());
    assert!(
        help.contains("--dry-run") && help.contains("Examples:"),
        "{help}"
    );
}

#[tokio::test]
async fn readyz_answers_503_while_the_journal_recovers_from_a_failed_disk() {
    let dir = tempfile::tempdir().unwrap();
    // Reads fail too, so the journal cannot reopen until the disk is back: the
    // unhealthy window lasts as long as the fault, not just one reopen.
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let journal =
        crate::support::faults::journal_on_dead_disk(&dir.path().join("j.redb"), full.clone());
    let app = hookbox::admin::router(
        journal.clone(),
        Secret::from(TOKEN),
        hookbox::admin::metrics_handle(),
    );
    let url = format!("http://{}/readyz", serve(app).await);
    let client = crate::support::client();
    assert_eq!(send(client.get(&url)).await.status, StatusCode::OK);

    full.store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = crate::support::events::append_result(&*journal, "s", json!({"type": "t"})).await;
    assert!(failed.is_err(), "the append failed on the failed disk");
    // The writer marks the journal unhealthy just after answering the failed append.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = send(client.get(&url)).await;
        if r.status != StatusCode::OK || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "not_ready");

    full.store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while send(client.get(&url)).await.status != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A method a route does not take is a 405 problem with `Allow`, for the health checks
/// too; without the token it is the same 401 as anywhere, with no `Allow` to tell that
/// the path exists.
#[tokio::test]
async fn a_wrong_method_is_a_405_problem_and_without_the_token_a_plain_401() {
    let api = api().await;
    for (method, path, allow) in [
        ("DELETE", "/v1/events", "GET,HEAD"),
        ("TRACE", "/v1/replays/1", "GET,HEAD"),
        ("GET", "/v1/replay", "POST"),
        ("PUT", "/v1/dlq/redrive", "POST"),
        ("POST", "/metrics", "GET,HEAD"),
        ("POST", "/healthz", "GET,HEAD"),
        ("DELETE", "/readyz", "GET,HEAD"),
    ] {
        let req = || client().request(method.parse().unwrap(), format!("{}{path}", api.url));
        let res = req().bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(
            res.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
        let r = send(req().bearer_auth(TOKEN)).await;
        assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(path) && detail.contains(method), "{detail}");

        if !path.ends_with("z") {
            let res = req().send().await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(res.headers().get("allow").is_none(), "{method} {path}");
        }
    }
}

/// What axum's extractors refuse is a problem too: a path id that does not decode to
/// UTF-8 (400 naming `id`), a body over the limit (413).
#[tokio::test]
async fn undecodable_ids_and_oversized_bodies_are_problems() {
    let api = api().await;
    for path in ["/v1/events/%FF", "/v1/replays/%C3%28"] {
        let r = api.get(path).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_parameter");
        assert!(
            r.body["detail"].as_str().unwrap().starts_with("id: "),
            "{r:?}"
        );
    }
    let window = r#"{"since":"2024-01-01T00:00:00Z","until":"2024-01-02T00:00:00Z","source":"#;
    let big = format!("{window}\"{}\"}}", "a".repeat(2 << 20));
    for path in ["/v1/replay", "/v1/dlq/redrive"] {
        let r = api.post(path, &big).await;
        assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    }
    // At the limit, the body is read.
    let at = format!("{window}\"{}\"}}", "a".repeat((2 << 20) - window.len() - 3));
    assert_eq!(at.len(), 2 << 20);
    let r = api.post("/v1/dlq/redrive", &at).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body, json!({"redriven": 0}));
}

// --- filters on payload: `where` ------------------------------------------------------

/// Four `st` events a minute ago, `{"data":{"amount":N}}`: invoice.paid 150 and 50,
/// charge.succeeded 900, invoice.failed 300. A filter on invoices over 100 takes the
/// first and the last.
async fn amounts(j: &dyn Journal) -> Vec<EventId> {
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let mut ids = Vec::new();
    for (n, (ty, amount)) in [
        ("invoice.paid", 150),
        ("invoice.paid", 50),
        ("charge.succeeded", 900),
        ("invoice.failed", 300),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"data": {"amount": amount}}).to_string();
        let at = t0 + Duration::from_secs(n as u64);
        ids.push(append_event(j, "st", &format!("p-{n}"), ty, at, body.as_bytes()).await);
    }
    ids
}

const INVOICES_OVER_100: &str =
    r#"{"types":["invoice.*"],"when":{"pointer":"/data/amount","gt":100}}"#;

fn url_encoded(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_replays_select_by_payload_with_where() {
    let api = api().await;
    let j = &*api.journal;
    let ids = amounts(j).await;
    let w = url_encoded(INVOICES_OVER_100);
    let r = api.get(&format!("/v1/events?where={w}")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(ids_of(&r.body), vec![ids[3], ids[0]]);
    assert_eq!(r.body["next_cursor"], Value::Null);
    assert_eq!(
        api.all_pages(&format!("&where={w}"), 1).await,
        vec![ids[3], ids[0]],
        "paged one at a time"
    );
    let r = api
        .get(&format!("/v1/events?type=invoice.failed&where={w}"))
        .await;
    assert_eq!(ids_of(&r.body), vec![ids[3]], "with the other parameters");
    let types_only = url_encoded(r#"{"types":["!invoice.*"]}"#);
    let r = api.get(&format!("/v1/events?where={types_only}")).await;
    assert_eq!(ids_of(&r.body), vec![ids[2]]);

    let window = format!(
        r#""since":"{}","until":"{}""#,
        rfc3339(SystemTime::now() - Duration::from_secs(600)),
        rfc3339(SystemTime::now() + Duration::from_secs(1))
    );
    let r = api
        .post(
            "/v1/replay",
            &format!(r#"{{{window},"dry_run":true,"where":{INVOICES_OVER_100}}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["matched"], 2);
    let r = api
        .post(
            "/v1/replay",
            &format!(r#"{{{window},"where":{{"when":{{"pointer":"/data/amount","lt":100}}}}}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.body["matched"], 1);
    let replay = r.body["replay_id"].as_u64().unwrap();
    let queued: Vec<EventId> = crate::support::waiting(j, "st")
        .await
        .into_iter()
        .filter(|d| d.replay == Some(replay))
        .map(|d| d.id)
        .collect();
    assert_eq!(queued, vec![ids[1]], "only the event under 100 is replayed");
}

#[tokio::test]
async fn a_bad_where_is_a_400_problem_naming_the_key() {
    let api = api().await;
    for (raw, detail) in [
        (
            r#"{"when":{"pointer":"data/amount","gt":1}}"#,
            "where: when.pointer: `data/amount` is not a JSON pointer",
        ),
        (
            r#"{"types":["in*voice"]}"#,
            "where: types[0]: `in*voice`: `*` may only end a pattern",
        ),
        (
            r#"{"when":{"pointer":"/a"}}"#,
            "where: when: a `pointer` needs one test",
        ),
        (
            r#"{"typo":[]}"#,
            "where: not a JSON filter object: unknown field `typo`",
        ),
        ("invoice.*", "where: not a JSON filter object"),
    ] {
        let r = api
            .get(&format!("/v1/events?where={}", url_encoded(raw)))
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_parameter");
        let got = r.body["detail"].as_str().unwrap();
        assert!(got.starts_with(detail), "{raw}: {got}");
    }
    let window = r#""since":"2024-05-01T00:00:00Z","until":"2024-05-02T00:00:00Z""#;
    for (filter, detail) in [
        (
            r#"{"when":{"all":[{"pointer":"/a","gt":1,"lt":5}]}}"#,
            "where: when.all[0]: one test per condition, found gt, lt",
        ),
        (
            r#"{"when":{"pointer":"/a","matches":"("}}"#,
            "where: when.matches: ",
        ),
        (r#"{"types":"invoice.*"}"#, "where: invalid type"),
        ("5", "where: invalid type"),
    ] {
        let r = api
            .post(
                "/v1/replay",
                &format!(r#"{{{window},"dry_run":true,"where":{filter}}}"#),
            )
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_body");
        let got = r.body["detail"].as_str().unwrap();
        assert!(got.starts_with(detail), "{filter}: {got}");
    }
    let r = api.get("/metrics").await;
    let text = r.body.as_str().unwrap();
    assert!(
        text.contains(r#"hookbox_admin_rejected_total{kind="invalid_parameter"}"#)
            && text.contains(r#"hookbox_admin_rejected_total{kind="invalid_body"}"#),
        "counted as rejections:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_where_filters_listings_and_replays() {
    let api = api().await;
    let ids = amounts(&*api.journal).await;
    let toml = r#"types = ["invoice.*"], when = { pointer = "/data/amount", gt = 100 }"#;
    for w in [toml, INVOICES_OVER_100] {
        let o = cli(
            &api.url,
            &["replay", "--since", "1h", "--where", w, "--dry-run"],
        );
        assert_eq!(
            stdout(&o).trim(),
            "2 events match; dry run, nothing queued",
            "{w}: {}",
            stderr(&o)
        );
        let listed = json_of(&cli(&api.url, &["events", "list", "--where", w, "--json"]));
        assert_eq!(ids_of(&listed), vec![ids[3], ids[0]], "{w}");
    }
    let o = cli(
        &api.url,
        &[
            "replay",
            "--since",
            "1h",
            "--where",
            r#"when = { any = [{ pointer = "/data/amount", lt = 100 }, { types = ["charge.*"] }] }"#,
            "--no-wait",
        ],
    );
    assert_eq!(
        stdout(&o).trim(),
        "replay 1 queued 2 events",
        "{}",
        stderr(&o)
    );
    for (w, problem) in [
        (
            r#"when = { pointer = "/data/amount" }"#,
            "when: a `pointer` needs one test",
        ),
        (r#"types = ["in*voice"]"#, "types[0]: `in*voice`"),
        (r#"type = ["invoice.*"]"#, "unknown field `type`"),
        ("types = invoice", "not a filter"),
        (r#"{"when": 1}"#, "not a JSON filter"),
    ] {
        for cmd in [
            vec!["replay", "--since", "1h", "--dry-run", "--where", w],
            vec!["events", "list", "--where", w],
        ] {
            let o = cli(&api.url, &cmd);
            assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", stderr(&o));
            let e = stderr(&o);
            assert!(e.contains("--where") && e.contains(problem), "{w}: {e}");
        }
    }
}
