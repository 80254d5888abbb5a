//! A `hookbox serve` with its dashboard, a source `shop` (Standard Webhooks) forwarding
//! to a downstream the test can make fail, and a short retry schedule (two attempts),
//! so that a failing event is dead within a second. [`start_fanout`] gives `shop` a
//! second destination, `audit`, with its own downstream and its own failure switch.
//! `shop` delivers events of the same `/customer` in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::Server;
use super::{Downstream, Reply};

/// The admin token of every dashboard test.
pub(crate) const TOKEN: &str = "ui-test-token-6d1f0a";

/// The `shop` source's signing secret.
pub(crate) const SHOP_SECRET: &str = "whsec_cHJvdmlkZXItc2VjcmV0LWZvci10ZXN0cw==";

/// The downstream's answer to events whose body contains `hostile` while failing: a
/// 500 whose body is hostile markup, so that the error text the journal keeps is too.
/// Other events whose body contains `fail` get a 503 with a JSON error.
pub(crate) const HOSTILE_RESPONSE: &str =
    "<script>alert('downstream')</script><img src=x onerror=alert(1)>\"'><b onmouseover=alert(2)>";

/// A running dashboard.
pub(crate) struct Dashboard {
    /// The server; killed when dropped.
    pub(crate) server: Server,
    /// `http://ADDR` of the admin listener.
    pub(crate) admin: String,
    /// Where events are forwarded.
    pub(crate) downstream: Downstream,
    /// While true, events whose body contains `fail` or `hostile` are refused.
    pub(crate) failing: Arc<AtomicBool>,
    /// `audit`'s downstream and its switch (while true, bodies with `both` are refused),
    /// with [`start_fanout`].
    pub(crate) audit: Option<(Downstream, Arc<AtomicBool>)>,
    _dir: tempfile::TempDir,
}

/// Starts a dashboard; `admin_extra` is added to its `[admin]` table.
pub(crate) async fn start(admin_extra: &str) -> Dashboard {
    start_with(admin_extra, false).await
}

/// Starts a dashboard whose `shop` source delivers to `app` and to `audit`, each its
/// own delivery with its own retries and dead state.
pub(crate) async fn start_fanout() -> Dashboard {
    start_with("", true).await
}

async fn start_with(admin_extra: &str, fanout: bool) -> Dashboard {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let downstream = Downstream::start(move |_, r| {
        let attempt = r
            .headers
            .get("hookbox-attempt")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let body = String::from_utf8_lossy(&r.body);
        if f.load(Ordering::SeqCst) && body.contains("hostile") {
            Reply::status(500).body(format!("attempt {attempt} failed {HOSTILE_RESPONSE}"))
        } else if f.load(Ordering::SeqCst) && body.contains("fail") {
            Reply::status(503).body(format!(
                r#"{{"error":"inventory service unavailable","attempt":{attempt}}}"#
            ))
        } else {
            Reply::ok()
        }
    })
    .await;
    let audit = if fanout {
        let failing = Arc::new(AtomicBool::new(true));
        let f = failing.clone();
        let downstream = Downstream::start(move |_, r| {
            if f.load(Ordering::SeqCst) && String::from_utf8_lossy(&r.body).contains("both") {
                Reply::status(502).body("audit store is read-only")
            } else {
                Reply::ok()
            }
        })
        .await;
        Some((downstream, failing))
    } else {
        None
    };
    let (shop_destinations, audit_destination) = match &audit {
        Some((a, _)) => (
            r#"["app", "audit"]"#,
            format!(
                "\n[[destination]]\nname = \"audit\"\nurl = \"{}\"\nsigning_secret = \"{}\"\n\
                 timeout = \"2s\"\nretry = {{ schedule = [\"300ms\"], max_attempts = 2 }}\n",
                a.url("/audit"),
                crate::serve::APP_SECRET,
            ),
        ),
        None => (r#"["app"]"#, String::new()),
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hookbox.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\njournal = \"{}\"\nshutdown_grace = \"1s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{admin_extra}\n\n\
         [[source]]\nname = \"shop\"\npath = \"/hooks/shop\"\nscheme = \"standard-webhooks\"\n\
         secrets = [\"{SHOP_SECRET}\"]\ndestinations = {shop_destinations}\norder_by = \"/customer\"\n\n\
         [[source]]\nname = \"billing\"\npath = \"/hooks/billing\"\nscheme = \"stripe\"\n\
         secrets = [\"whsec_billing_test\"]\nmax_backlog = 1000\ndestinations = [\"app\"]\n\n\
         [[destination]]\nname = \"app\"\nurl = \"{}\"\nsigning_secret = \"{}\"\ntimeout = \"2s\"\n\
         retry = {{ schedule = [\"300ms\"], max_attempts = 2 }}\n{audit_destination}",
        dir.path().join("journal.redb").display(),
        downstream.url("/webhooks"),
        crate::serve::APP_SECRET,
    );
    std::fs::write(&cfg, text).unwrap();
    let server = Server::start(&cfg);
    let admin = server.admin.clone().expect("the admin listener");
    Dashboard {
        server,
        admin,
        downstream,
        failing,
        audit,
        _dir: dir,
    }
}

/// A client that follows no redirect, so tests see every `303` and `Set-Cookie`.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Dashboard {
    /// The URL of `path` on the admin listener.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin)
    }

    /// Posts a signed webhook to `shop` with `body` and extra `headers`; returns its id.
    pub(crate) async fn post(&self, body: &str, headers: &[(&str, &str)]) -> String {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!("msg_{}", N.fetch_add(1, Ordering::Relaxed));
        let mut req = crate::serve::signed(
            &http(),
            &self.server.url("/hooks/shop"),
            "standard-webhooks",
            SHOP_SECRET,
            &id,
            body.as_bytes(),
        );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        crate::serve::post_ok(req).await
    }

    /// The event as the admin API shows it.
    pub(crate) async fn event(&self, id: &str) -> Value {
        http()
            .get(self.url(&format!("/v1/events/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits (up to 15 s) until the event is in `state`.
    pub(crate) async fn wait_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.event(id).await;
            if v["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {state}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs in and returns the `Cookie` header value of the session.
    pub(crate) async fn session(&self) -> String {
        let res = http()
            .post(self.url("/ui/login"))
            .header("sec-fetch-site", "same-origin")
            .form(&[("token", TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{:?}", res.text().await);
        let set = res.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    /// `GET path` with the session cookie: status and body.
    pub(crate) async fn get(&self, cookie: &str, path: &str) -> (u16, String) {
        let res = http()
            .get(self.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// A same-origin form post with the session cookie: the response.
    pub(crate) async fn form(
        &self,
        cookie: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        http()
            .post(self.url(path))
            .header("cookie", cookie)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap()
    }
}
