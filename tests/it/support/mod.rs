//! Shared helpers: servers on 127.0.0.1:0, scheme fixtures, the CLI binary.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::net::TcpListener;

pub(crate) mod chromium;
pub(crate) mod dashboard;
pub(crate) mod downstream;
pub(crate) mod events;
pub(crate) mod faults;
pub(crate) mod pg;
pub(crate) mod pgproxy;
pub(crate) mod schemes;
pub(crate) mod server;

pub(crate) use downstream::{downstream, Downstream, Recorded, Reply};

/// Serves `app` on an ephemeral loopback port until the test's runtime ends.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server runs");
    });
    addr
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `hookbox` binary built for these tests.
pub(crate) fn hookbox_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_hookbox"))
}

/// A plain HTTP client (no connection reuse surprises between tests).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// How many times each provider delivery id of `source` is in the journal (all pages).
pub(crate) async fn delivery_counts(
    journal: &dyn hookbox::Journal,
    source: &str,
) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    let mut q = hookbox::Query {
        source: Some(source.into()),
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = journal.query(&q).await.expect("query");
        for e in &page.events {
            *counts
                .entry(e.delivery_id.clone().unwrap_or_default())
                .or_default() += 1;
        }
        match page.next_cursor {
            Some(c) => q.before = Some(c),
            None => return counts,
        }
    }
}

/// The secret of the `github` events [`append_event`] journals.
pub(crate) const GITHUB_SECRET: &str = "It's a Secret to Everybody";

/// Journals a GitHub event received at `at` straight into `journal`, signed and verified
/// as the webhook path would; returns its id. Ids follow append order, so append older
/// events first when their times matter.
pub(crate) async fn append_event(
    journal: &dyn hookbox::Journal,
    source: &str,
    delivery_id: &str,
    event_type: &str,
    at: SystemTime,
    body: &[u8],
) -> hookbox::EventId {
    let cfg = hookbox::SchemeConfig {
        secrets: vec![GITHUB_SECRET.into()],
        ..Default::default()
    };
    let signed = hookbox::sign(
        "github",
        &cfg,
        &hookbox::SignInput {
            body,
            id: delivery_id,
            now: at,
        },
    )
    .unwrap();
    let mut headers = http::HeaderMap::new();
    for (k, v) in signed.headers {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    headers.insert("x-github-event", event_type.parse().unwrap());
    headers.insert("x-github-delivery", delivery_id.parse().unwrap());
    let verified = hookbox::Verifier::new("github", &cfg)
        .unwrap()
        .verified_event(source, headers, bytes::Bytes::copy_from_slice(body), at)
        .unwrap();
    let appended = journal
        .append(
            &verified,
            &hookbox::AppendOptions {
                dedup_window: Some(std::time::Duration::from_secs(3600)),
                order_key: None,
                destinations: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(!appended.duplicate, "{delivery_id} was journaled already");
    appended.id
}

/// Claims the waiting delivery of `id` (the original one, or `replay`'s), as the
/// delivery runtime would; every other delivery claimed on the way is given back.
pub(crate) async fn claim_of(
    journal: &dyn hookbox::Journal,
    source: &str,
    id: hookbox::EventId,
    replay: Option<u64>,
) -> Option<hookbox::Claim> {
    let far = SystemTime::now() + std::time::Duration::from_secs(86400 * 365);
    let (mine, others): (Vec<_>, Vec<_>) = journal
        .claim(source, far, 100_000)
        .await
        .unwrap()
        .into_iter()
        .partition(|r| r.id == id && r.replay == replay);
    journal.abandon(others).await.unwrap();
    mine.into_iter().next()
}

/// Every delivery of `source` waiting now or later (claimed and given straight back).
pub(crate) async fn waiting(journal: &dyn hookbox::Journal, source: &str) -> Vec<hookbox::Claim> {
    let far = SystemTime::now() + std::time::Duration::from_secs(86400 * 365);
    let all = journal.claim(source, far, 100_000).await.unwrap();
    journal.abandon(all.clone()).await.unwrap();
    all
}

/// The waiting delivery of `id` (original or `replay`'s), if any, left unclaimed.
pub(crate) async fn peek_ready(
    journal: &dyn hookbox::Journal,
    source: &str,
    id: hookbox::EventId,
    replay: Option<u64>,
) -> Option<hookbox::Claim> {
    waiting(journal, source)
        .await
        .into_iter()
        .find(|r| r.id == id && r.replay == replay)
}

/// Ends the waiting delivery of `id` (original or `replay`'s) with one attempt and
/// `next`, as the delivery runtime would.
pub(crate) async fn settle(
    journal: &dyn hookbox::Journal,
    source: &str,
    id: hookbox::EventId,
    replay: Option<u64>,
    next: hookbox::Next,
) {
    let ready = claim_of(journal, source, id, replay)
        .await
        .unwrap_or_else(|| panic!("{id} has no waiting delivery (replay {replay:?})"));
    let (outcome, error) = match &next {
        hookbox::Next::Done => (hookbox::AttemptOutcome::Done, None),
        hookbox::Next::RetryAt(_) => (
            hookbox::AttemptOutcome::Retry,
            Some("503 from the handler".to_owned()),
        ),
        hookbox::Next::Dead(reason) => (hookbox::AttemptOutcome::Fail, Some(reason.clone())),
    };
    let attempt = hookbox::Attempt {
        n: ready.attempt,
        started_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        duration_ms: 12,
        outcome,
        error,
        replay: ready.replay,
        destination: ready.destination.to_string(),
    };
    journal.settle(ready, attempt, next).await.expect("settle");
}

/// A `hookbox serve` child and where it listens; killed when dropped.
pub(crate) struct ServeChild {
    pub(crate) child: std::process::Child,
    /// The webhook listener, `http://ADDR`.
    pub(crate) url: String,
    /// The admin API, `http://ADDR`, when `[admin]` is configured.
    pub(crate) admin: Option<String>,
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hookbox serve --config config` with `envs` and reads the addresses it prints
/// (the admin one too when `admin`).
pub(crate) fn spawn_serve(
    config: &std::path::Path,
    envs: &[(&str, &str)],
    admin: bool,
) -> ServeChild {
    use std::io::BufRead;
    let mut child = hookbox_bin()
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKBOX_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("hookbox serve starts");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = |prefix: &str| {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .to_owned()
    };
    let url = banner("hookbox listening on ");
    let admin = admin.then(|| banner("hookbox admin on "));
    ServeChild { child, url, admin }
}
