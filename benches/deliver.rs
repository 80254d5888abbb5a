//! Run with: cargo bench --bench deliver
//!
//! The delivery runtime's two figures, on a real redb journal in a temporary directory:
//!
//! 1. **Throughput**: `HOOKBOX_BENCH_EVENTS` events (default 200,000, about 300 bytes
//!    each) are journaled first; then a [`Runtime`] with a no-op handler actor drains
//!    them, every outcome journaled (attempt record, state, ready queue). Printed:
//!    deliveries per second, for each concurrency in `HOOKBOX_BENCH_CONCURRENCY`
//!    (default `16,64,256`), and beside it, in the same run, the rate of the same
//!    number of bare journal appends (the baseline the journal itself sets).
//! 2. **Latency under light load**: 400 events posted one at a time over HTTP to an
//!    axum router with a hookbox endpoint (2 ms apart); for each, the time from the
//!    client receiving its `202` to the handler starting, and from sending the
//!    request to the handler starting. Printed: median and p99.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use hookbox::{
    AppendOptions, Delivery, EventId, EventMeta, Hookbox, Inbound, Journal, Outcome, RedbJournal,
    Route, Runtime, Scheme, Source, SourceOptions, Verifier, VerifyError,
};
use http::HeaderMap;

/// Accepts every request (the benchmark measures delivery, not verification).
#[derive(Debug)]
struct Trusting;

impl Scheme for Trusting {
    fn name(&self) -> &str {
        "trusting"
    }

    fn verify(&self, _: &Inbound<'_>, _: SystemTime) -> Result<(), VerifyError> {
        Ok(())
    }

    fn describe(&self, _: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: None,
            event_type: Some("invoice.paid".into()),
        }
    }
}

/// A handler that does nothing and says so.
struct Noop;

impl Actor for Noop {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Noop {
    type Result = Outcome;

    fn handle(&mut self, _: Delivery, _: &mut Context<Self>) -> Outcome {
        Outcome::Done
    }
}

/// Records when each delivery started.
struct Stamp(Arc<Mutex<HashMap<EventId, Instant>>>);

impl Actor for Stamp {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Stamp {
    type Result = Outcome;

    fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Outcome {
        self.0.lock().unwrap().insert(d.id(), Instant::now());
        Outcome::Done
    }
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Appends `n` events with 64 appends in flight; returns the seconds it took.
async fn fill(journal: &Arc<RedbJournal>, source: &str, n: usize) -> f64 {
    let body = Bytes::from(format!(
        r#"{{"type":"invoice.paid","data":{{"object":{{"id":"in_1","amount_due":4200,"currency":"usd","customer":"cus_9","lines":[{{"amount":4200,"description":"{}"}}]}}}}}}"#,
        "x".repeat(120)
    ));
    let verifier = Verifier::custom(Trusting);
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let journal = journal.clone();
            let verifier = verifier.clone();
            let body = body.clone();
            let source = source.to_owned();
            let count = n / 64 + usize::from(t < n % 64);
            tokio::spawn(async move {
                for _ in 0..count {
                    let ev = verifier
                        .verified_event(
                            source.as_str(),
                            HeaderMap::new(),
                            body.clone(),
                            SystemTime::now(),
                        )
                        .unwrap();
                    journal
                        .append(&ev, &AppendOptions::default())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

async fn throughput(dir: &std::path::Path, n: usize, concurrency: usize) {
    let journal = Arc::new(RedbJournal::open(dir.join(format!("tp-{concurrency}.redb"))).unwrap());
    let append_secs = fill(&journal, "bench", n).await;
    let runtime = Runtime::builder(journal.clone())
        .handler(Route::source("bench"), || Noop)
        .source("bench", SourceOptions::default().concurrency(concurrency))
        .start();
    let started = Instant::now();
    while journal.backlog("bench") > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    runtime.shutdown_async(Duration::from_secs(5)).await;
    let newest = journal.query(&Default::default()).await.unwrap().events[0].id;
    let attempts = journal.attempts(newest).await.unwrap();
    assert_eq!(attempts.len(), 1, "every delivery is journaled once");
    println!(
        "concurrency {concurrency:>4}: {n} deliveries in {secs:.2} s = {:>8.0}/s  (appending them: {:>8.0}/s)",
        n as f64 / secs,
        n as f64 / append_secs
    );
    journal.shutdown();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(dir: &std::path::Path) {
    let journal = Arc::new(RedbJournal::open(dir.join("lat.redb")).unwrap());
    let hb = Hookbox::new(journal.clone()).source(Source::new("lat", Verifier::custom(Trusting)));
    let app = axum::Router::new().route_service("/hooks/lat", hb.endpoint("lat"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let stamps = Arc::new(Mutex::new(HashMap::new()));
    let s = stamps.clone();
    let runtime = Runtime::builder(journal.clone())
        .handler(Route::source("lat"), move || Stamp(s.clone()))
        .start();
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/hooks/lat");
    let mut sent = Vec::new();
    for i in 0..400 {
        let t_send = Instant::now();
        let res = client
            .post(&url)
            .body(format!(r#"{{"type":"invoice.paid","n":{i}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let v: serde_json::Value = res.json().await.unwrap();
        let t_ack = Instant::now();
        let id: EventId = v["id"].as_str().unwrap().parse().unwrap();
        sent.push((id, t_send, t_ack));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    runtime.shutdown_async(Duration::from_secs(5)).await;
    let stamps = stamps.lock().unwrap();
    let mut after_ack = Vec::new();
    let mut after_send = Vec::new();
    for (id, t_send, t_ack) in &sent {
        let start = stamps[id];
        let signed = |a: Instant, b: Instant| {
            if a >= b {
                (a - b).as_secs_f64()
            } else {
                -(b - a).as_secs_f64()
            }
        };
        after_ack.push(signed(start, *t_ack) * 1e3);
        after_send.push(signed(start, *t_send) * 1e3);
    }
    after_ack.sort_by(f64::total_cmp);
    after_send.sort_by(f64::total_cmp);
    println!(
        "202 -> handler start:     median {:.3} ms, p99 {:.3} ms (negative: the handler started before the client read its 202)",
        percentile(&after_ack, 0.5),
        percentile(&after_ack, 0.99)
    );
    println!(
        "request -> handler start: median {:.3} ms, p99 {:.3} ms",
        percentile(&after_send, 0.5),
        percentile(&after_send, 0.99)
    );
    journal.shutdown();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks.
    }
    let n = env_list("HOOKBOX_BENCH_EVENTS", "200000")[0];
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("delivery throughput, no-op handler, outcomes journaled:");
        for c in env_list("HOOKBOX_BENCH_CONCURRENCY", "16,64,256") {
            throughput(dir.path(), n, c).await;
        }
        println!("latency under light load (400 events, one at a time):");
        latency(dir.path()).await;
    });
}
