//! Shared helpers: servers on 127.0.0.1:0, scheme fixtures, the CLI binary.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::net::TcpListener;

pub(crate) mod downstream;
pub(crate) mod events;
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
pub(crate) fn delivery_counts(
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
        let page = journal.query(&q).expect("query");
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
