//! `hookbox serve` end to end: providers post signed webhooks, hookbox forwards them to
//! a real downstream application, re-signed with Standard Webhooks; crashes lose nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hookbox::{sign, SchemeConfig, SignInput};
use rand::Rng;

use crate::support::server::Server;
use crate::support::{downstream, Downstream, Recorded, Reply};

/// What the application verifies forwarded events with.
pub(crate) const APP_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const GITHUB_SECRET: &str = "gh-webhook-secret";
pub(crate) const STRIPE_SECRET: &str = "whsec_stripe_test_4eC39HqLyjWDarjtT1zdp7dc";
pub(crate) const SHOPIFY_SECRET: &str = "shpss_0123456789abcdef";
pub(crate) const SW_SECRET: &str = "whsec_cHJvdmlkZXItc2VjcmV0LWZvci10ZXN0cw==";

/// Writes a config with four sources (github, stripe, shopify, standard-webhooks), all
/// forwarding to `app` at `app_url`; `extra` is appended (an `[admin]` table, say).
pub(crate) fn write_config(dir: &Path, app_url: &str, retry: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("hookbox.toml");
    let journal = dir.join("journal.redb");
    let source = |name: &str, scheme: &str, secret: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nscheme = \"{scheme}\"\n\
             secrets = [\"{secret}\"]\ndestinations = [\"app\"]\n\n"
        )
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\njournal = \"{}\"\nshutdown_grace = \"2s\"\n\n{}{}{}{}\
         [[destination]]\nname = \"app\"\nurl = \"{app_url}\"\nsigning_secret = \"{APP_SECRET}\"\n\
         timeout = \"2s\"\nretry = {retry}\n\n{extra}",
        journal.display(),
        source("github", "github", GITHUB_SECRET),
        source("stripe", "stripe", STRIPE_SECRET),
        source("shopify", "shopify", SHOPIFY_SECRET),
        source("sw", "standard-webhooks", SW_SECRET),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// A request as `scheme`'s provider would send it.
pub(crate) fn signed(
    client: &reqwest::Client,
    url: &str,
    scheme: &str,
    secret: &str,
    id: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let cfg = SchemeConfig {
        secrets: vec![secret.into()],
        ..Default::default()
    };
    let s = sign(
        scheme,
        &cfg,
        &SignInput {
            body,
            id,
            now: SystemTime::now(),
        },
    )
    .unwrap();
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(s.body.unwrap_or_else(|| body.to_vec()));
    for (k, v) in s.headers {
        req = req.header(k, v);
    }
    req
}

/// Posts and returns hookbox's id from the 202.
pub(crate) async fn post_ok(req: reqwest::RequestBuilder) -> String {
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Checks a forwarded request the way the application would.
pub(crate) fn verify_forwarded(r: &Recorded) -> serde_json::Value {
    let wh = standardwebhooks::Webhook::new(APP_SECRET).unwrap();
    wh.verify(&r.body, &r.headers)
        .unwrap_or_else(|e| panic!("bad signature on {:?}: {e:?}", r.headers));
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_providers_are_forwarded_with_valid_standard_webhooks_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let app = downstream().await;
    let cfg = write_config(dir.path(), &app.url("/webhooks"), "{}", "");
    let server = Server::start(&cfg);
    let client = crate::support::client();
    let mut sent = Vec::new();
    for (n, (scheme, secret)) in [
        ("github", GITHUB_SECRET),
        ("stripe", STRIPE_SECRET),
        ("shopify", SHOPIFY_SECRET),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"id":"evt_{n}","type":"order.created","n":{n}}}"#);
        let url = server.url(&format!("/hooks/{scheme}"));
        let id = post_ok(signed(
            &client,
            &url,
            scheme,
            secret,
            &format!("d{n}"),
            body.as_bytes(),
        ))
        .await;
        sent.push((scheme, id, body));
    }
    let got = app.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "each event once");
    for (scheme, id, body) in &sent {
        let r = got
            .iter()
            .find(|r| r.header("webhook-id") == id)
            .unwrap_or_else(|| panic!("{scheme} event {id} not forwarded"));
        verify_forwarded(r);
        assert_eq!(r.uri.path(), "/webhooks");
        assert_eq!(r.body, body.as_bytes(), "the original bytes");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("hookbox-source"), *scheme);
        assert_eq!(r.header("hookbox-attempt"), "1");
        assert!(r.headers.get("hookbox-replay").is_none());
        // The application's secret is not the provider's: a provider-signed copy
        // would not verify against it.
        let wrong = standardwebhooks::Webhook::new(SW_SECRET).unwrap();
        assert!(wrong.verify(&r.body, &r.headers).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_is_retried_with_the_same_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    // 500, then 503 with Retry-After, then 200.
    let app = Downstream::start(|n, _| match n {
        0 => Reply::status(500).body("database is down"),
        1 => Reply::status(503).header("retry-after", "1"),
        _ => Reply::ok(),
    })
    .await;
    let retry = r#"{ schedule = ["200ms", "200ms", "200ms"] }"#;
    let cfg = write_config(dir.path(), &app.url("/in"), retry, "");
    let server = Server::start(&cfg);
    let client = crate::support::client();
    let url = server.url("/hooks/sw");
    let id = post_ok(signed(
        &client,
        &url,
        "standard-webhooks",
        SW_SECRET,
        "m1",
        br#"{"type":"a"}"#,
    ))
    .await;
    let got = app.wait_for(3, Duration::from_secs(20)).await;
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids, [id.clone(), id.clone(), id]);
    let attempts: Vec<_> = got
        .iter()
        .map(|r| r.header("hookbox-attempt").to_owned())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    for r in &got {
        verify_forwarded(r);
    }
    // Retry-After: 1 was honoured over the 200 ms schedule.
    let ts = |r: &Recorded| r.header("webhook-timestamp").parse::<u64>().unwrap();
    assert!(ts(&got[2]) > ts(&got[1]), "Retry-After: 1 honoured");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.requests().len(), 3, "nothing more after the 200");
}

/// Posts distinct events to the `sw` source until the server dies; returns the ids of
/// those acknowledged.
async fn stream(url: String, prefix: String, acked: Arc<Mutex<Vec<String>>>) {
    let client = reqwest::Client::new();
    for n in 0.. {
        let body = format!(r#"{{"type":"order.created","n":"{prefix}-{n}"}}"#);
        let req = signed(
            &client,
            &url,
            "standard-webhooks",
            SW_SECRET,
            &format!("{prefix}-{n}"),
            body.as_bytes(),
        )
        .timeout(Duration::from_secs(5));
        match req.send().await {
            Ok(res) if res.status() == 202 => {
                let v: serde_json::Value = res.json().await.unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_owned());
            }
            Ok(res) => panic!("unexpected status {} before the kill", res.status()),
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_event_and_delivers_each() {
    let dir = tempfile::tempdir().unwrap();
    let app = downstream().await;
    let cfg = write_config(dir.path(), &app.url("/in"), "{}", "");
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..3 {
        let mut server = Server::start(&cfg);
        let streams: Vec<_> = (0..4)
            .map(|c| {
                tokio::spawn(stream(
                    server.url("/hooks/sw"),
                    format!("r{round}c{c}"),
                    acked.clone(),
                ))
            })
            .collect();
        let wait = rand::thread_rng().gen_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill();
        for s in streams {
            s.await.unwrap();
        }
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() > 20,
        "too few events acknowledged: {}",
        acked.len()
    );
    // A last start delivers whatever was pending when the server died.
    let mut server = Server::start(&cfg);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen: HashSet<String> = app
            .requests()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let missing = acked.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} acknowledged events never reached the application",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in app.requests() {
        verify_forwarded(&r);
    }
    assert_eq!(
        server.terminate(Duration::from_secs(10)),
        Some(0),
        "SIGTERM exits 0"
    );
}

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"e2e-admin-token\"\n";

/// A bearer-authenticated admin API client.
struct Admin {
    base: String,
    client: reqwest::Client,
}

impl Admin {
    fn of(server: &Server) -> Admin {
        Admin {
            base: server.admin.clone().expect("the admin listener"),
            client: crate::support::client(),
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth("e2e-admin-token")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth("e2e-admin-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "POST {path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// Polls `path` until `done` holds (20 s at most).
    async fn until(
        &self,
        path: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get(path).await;
            if done(&v) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "{path} stayed {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_downstream_fills_the_dlq_and_redrive_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let app = Downstream::start(move |_, _| {
        if h.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::status(500).body("database is down")
        }
    })
    .await;
    let retry = r#"{ schedule = ["100ms", "100ms"] }"#;
    let cfg = write_config(dir.path(), &app.url("/in"), retry, ADMIN);
    let server = Server::start(&cfg);
    let admin = Admin::of(&server);
    let client = crate::support::client();
    let gh = post_ok(signed(
        &client,
        &server.url("/hooks/github"),
        "github",
        GITHUB_SECRET,
        "g1",
        br#"{"action":"opened"}"#,
    ))
    .await;
    let st = post_ok(signed(
        &client,
        &server.url("/hooks/stripe"),
        "stripe",
        STRIPE_SECRET,
        "s1",
        br#"{"id":"evt_1","type":"charge.failed"}"#,
    ))
    .await;

    let dlq = admin
        .until("/v1/dlq", |v| v["events"].as_array().unwrap().len() == 2)
        .await;
    for e in dlq["events"].as_array().unwrap() {
        assert_eq!(e["attempts"], 3, "{e}");
        assert!(
            e["last_error"]
                .as_str()
                .unwrap()
                .contains("HTTP 500: database is down"),
            "{e}"
        );
    }
    assert_eq!(app.requests().len(), 6, "three attempts each, then nothing");

    // The application is back: redrive GitHub's event through the API...
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = admin
        .post("/v1/dlq/redrive", serde_json::json!({"source": "github"}))
        .await;
    assert_eq!(r["redriven"], 1);
    let ev = admin
        .until(&format!("/v1/events/{gh}"), |v| v["state"] == "done")
        .await;
    let outcomes: Vec<_> = ev["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        ["retry", "retry", "retry", "done"],
        "history kept across the redrive"
    );
    let dlq = admin.get("/v1/dlq").await;
    assert_eq!(dlq["events"][0]["id"], st.as_str());

    // ...and Stripe's with the CLI.
    let out = crate::support::hookbox_bin()
        .args([
            "dlq",
            "redrive",
            "--source",
            "stripe",
            "--admin",
            &server.admin.clone().unwrap(),
            "--token",
            "e2e-admin-token",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    admin
        .until(&format!("/v1/events/{st}"), |v| v["state"] == "done")
        .await;
    let delivered: Vec<_> = app
        .requests()
        .into_iter()
        .filter(|r| r.header("webhook-id") == st)
        .collect();
    assert_eq!(delivered.len(), 4);
    verify_forwarded(&delivered[3]);
    assert_eq!(
        admin.get("/v1/dlq").await["events"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_window_redelivers_exactly_the_events_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = downstream().await;
    let cfg = write_config(dir.path(), &app.url("/in"), "{}", ADMIN);
    let server = Server::start(&cfg);
    let admin = Admin::of(&server);
    let client = crate::support::client();
    let url = server.url("/hooks/sw");
    let mut ids = Vec::new();
    let mut marks = Vec::new();
    for n in 0..6 {
        if n == 2 || n == 4 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            marks.push(SystemTime::now());
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let body = format!(r#"{{"type":"order.created","n":{n}}}"#);
        ids.push(
            post_ok(signed(
                &client,
                &url,
                "standard-webhooks",
                SW_SECRET,
                &format!("m{n}"),
                body.as_bytes(),
            ))
            .await,
        );
    }
    app.wait_for(6, Duration::from_secs(20)).await;
    let window = serde_json::json!({"since": rfc3339(marks[0]), "until": rfc3339(marks[1])});

    let mut dry = window.clone();
    dry["dry_run"] = true.into();
    assert_eq!(admin.post("/v1/replay", dry).await["matched"], 2);
    let r = admin.post("/v1/replay", window).await;
    assert_eq!(r["matched"], 2);
    let replay = r["replay_id"].as_u64().unwrap();
    admin
        .until(&format!("/v1/replays/{replay}"), |v| v["complete"] == true)
        .await;
    let got = app.wait_for(8, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = app.requests();
    assert_eq!(
        got_all.len(),
        8,
        "the two events of the window, once more each"
    );
    let replayed: Vec<_> = got[6..]
        .iter()
        .map(|r| {
            verify_forwarded(r);
            assert_eq!(r.header("hookbox-replay"), replay.to_string());
            r.header("webhook-id").to_owned()
        })
        .collect();
    let mut want = vec![ids[2].clone(), ids[3].clone()];
    let mut replayed = replayed;
    replayed.sort();
    want.sort();
    assert_eq!(replayed, want);
    // The originals' own history is untouched: one attempt, done.
    let ev = admin.get(&format!("/v1/events/{}", ids[2])).await;
    assert_eq!(ev["state"], "done");
    assert_eq!(ev["delivery"]["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_destinations_each_get_an_event_once_and_replays_can_target_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = downstream().await;
    // The audit service fails its first request: only it gets the retry.
    let audit = Downstream::start(|n, _| {
        if n == 0 {
            Reply::status(502)
        } else {
            Reply::ok()
        }
    })
    .await;
    let cfg = dir.path().join("hookbox.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
journal = "{journal}"

{ADMIN}
[[source]]
name = "sw"
path = "/hooks/sw"
scheme = "standard-webhooks"
secrets = ["{SW_SECRET}"]
destinations = ["app", "audit"]
retry = {{ schedule = ["100ms"] }}

[[source]]
name = "github"
path = "/hooks/github"
scheme = "github"
secrets = ["{GITHUB_SECRET}"]
destinations = ["app"]

[[destination]]
name = "app"
url = "{app_url}"
signing_secret = "{APP_SECRET}"

[[destination]]
name = "audit"
url = "{audit_url}"
signing_secret = "{APP_SECRET}"
"#,
            journal = dir.path().join("journal.redb").display(),
            app_url = app.url("/in"),
            audit_url = audit.url("/audit"),
        ),
    )
    .unwrap();
    let server = Server::start(&cfg);
    let admin = Admin::of(&server);
    let client = crate::support::client();
    let since = SystemTime::now();
    let sw = post_ok(signed(
        &client,
        &server.url("/hooks/sw"),
        "standard-webhooks",
        SW_SECRET,
        "m1",
        br#"{"type":"a"}"#,
    ))
    .await;
    let gh = post_ok(signed(
        &client,
        &server.url("/hooks/github"),
        "github",
        GITHUB_SECRET,
        "g1",
        br#"{"action":"opened"}"#,
    ))
    .await;
    admin
        .until(&format!("/v1/events/{sw}"), |v| v["state"] == "done")
        .await;
    admin
        .until(&format!("/v1/events/{gh}"), |v| v["state"] == "done")
        .await;
    let ids = |d: &Downstream| {
        d.requests()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect::<Vec<_>>()
    };
    let mut got = ids(&app);
    got.sort();
    let mut want = vec![sw.clone(), gh.clone()];
    want.sort();
    assert_eq!(
        got, want,
        "the app got each event once, though audit needed a retry"
    );
    assert_eq!(
        ids(&audit),
        [sw.clone(), sw.clone()],
        "audit: a 502, then the retry"
    );

    // Replays to one destination: only the sources that forward to it.
    let window = |extra: serde_json::Value| {
        let mut w =
            serde_json::json!({"since": rfc3339(since), "until": rfc3339(SystemTime::now())});
        w.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        w
    };
    let bad = admin
        .client
        .post(format!("{}/v1/replay", admin.base))
        .bearer_auth("e2e-admin-token")
        .json(&window(serde_json::json!({"destination": "nope"})))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let r = admin
        .post(
            "/v1/replay",
            window(serde_json::json!({"destination": "audit"})),
        )
        .await;
    assert_eq!(r["matched"], 1, "github does not forward to audit");
    let replay = r["replay_id"].as_u64().unwrap();
    admin
        .until(&format!("/v1/replays/{replay}"), |v| {
            v["complete"] == true && v["done"] == 1
        })
        .await;
    let last = audit.requests().pop().unwrap();
    assert_eq!(last.header("webhook-id"), sw);
    assert_eq!(last.header("hookbox-replay"), replay.to_string());
    verify_forwarded(&last);
    assert_eq!(
        app.requests().len(),
        2,
        "the app got nothing from a replay to audit"
    );
}
