//! Run with: cargo bench --bench deliver
//!
//! The delivery runtime's two figures, for each journal in `HOOKBOX_BENCH_JOURNALS`
//! (`redb`, `postgres` or both, the default): a [`RedbJournal`] in a temporary
//! directory, and a [`PostgresJournal`](hookbox::PostgresJournal) (one node) on the
//! run's own PostgreSQL database.
//!
//! 1. **Throughput**: `HOOKBOX_BENCH_EVENTS` events (default 200,000, about 300 bytes
//!    each) are journaled first, by 64 concurrent appending tasks (their rate, printed
//!    beside, is the baseline the journal itself sets); then a [`Runtime`] with a no-op
//!    handler actor drains them, every outcome journaled (attempt record, state, ready
//!    queue). Timed from the runtime's start until the handler has seen every event and
//!    the runtime's graceful shutdown, which waits for outcomes in flight to be
//!    journaled, has returned. Printed: deliveries per second for each concurrency in
//!    `HOOKBOX_BENCH_CONCURRENCY` (default `16,64,256`), each on a fresh journal, and
//!    the CPU each thread group and the PostgreSQL server used meanwhile (from
//!    `/proc`). Checked: the handler ran exactly once per event, and every event ends
//!    `done` with exactly one attempt (every event's summary read back through
//!    [`Journal::query`], the newest event's attempt records, no dead event).
//! 2. **Latency under light load**: 400 events posted one at a time over HTTP to an
//!    axum router with a hookbox endpoint (2 ms apart); for each, the time from the
//!    client receiving its `202` to the handler starting, and from sending the
//!    request to the handler starting. Printed: median and p99.
//!
//! PostgreSQL: `HOOKBOX_BENCH_PG_WRITERS` and `HOOKBOX_BENCH_PG_POOL` override the
//! journal's writers and pool size (for exploring; the defaults otherwise). The run
//! creates its own database `hookbox_bench_<pid>` (on `HOOKBOX_BENCH_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`), empties it and checkpoints
//! before each measurement, and drops it at the end; without a reachable server the
//! PostgreSQL figures are skipped, with a line saying why. The benchmark runs on a
//! tokio runtime of 2 workers (threads `bench`: appends, HTTP, the PostgreSQL
//! journal's writer tasks); the runtime's actors run on their own threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use hookbox::{
    AppendOptions, Delivery, EventId, EventMeta, Hookbox, Inbound, Journal, Outcome, Query,
    RedbJournal, Route, Runtime, Scheme, Source, SourceOptions, State, Verifier, VerifyError,
};
use http::HeaderMap;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/pg.rs"]
mod pg;

use pg::BenchDb;

const THREADS: cpu::Groups = &[
    // The benchmark's tokio runtime: appends, HTTP, PostgreSQL journal writers.
    ("bench", "bench"),
    // The actix system: supervisor and source actors, claims, reads.
    ("actors", "hookbox-actors"),
    // Arbiters running the handler actors.
    ("handlers", "actix-rt"),
    // redb's group-commit writer thread.
    ("redb", "hookbox-journal"),
];

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

/// A handler that does nothing but count, and says it is done.
struct Noop(Arc<AtomicUsize>);

impl Actor for Noop {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Noop {
    type Result = Outcome;

    fn handle(&mut self, _: Delivery, _: &mut Context<Self>) -> Outcome {
        self.0.fetch_add(1, Ordering::Relaxed);
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

/// Where the journals of one backend come from.
enum Backend {
    Redb(tempfile::TempDir),
    Postgres(BenchDb),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Redb(_) => "redb",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn db(&self) -> Option<&BenchDb> {
        match self {
            Backend::Redb(_) => None,
            Backend::Postgres(db) => Some(db),
        }
    }

    /// PostgreSQL: the journal closed and opened again, so that the backends it used
    /// exit and report their statistics (see `pg::Activity`). redb: the same handle.
    async fn reopen(&self, journal: Arc<dyn Journal>) -> Arc<dyn Journal> {
        match self {
            Backend::Redb(_) => journal,
            Backend::Postgres(db) => {
                journal.close().await.expect("close the journal");
                Arc::new(db.journal("a").await)
            }
        }
    }

    /// A fresh, empty journal named `label`.
    async fn open(&self, label: &str) -> Arc<dyn Journal> {
        match self {
            Backend::Redb(dir) => Arc::new(
                RedbJournal::open(dir.path().join(format!("{label}.redb"))).expect("redb journal"),
            ),
            Backend::Postgres(db) => {
                db.reset().await;
                Arc::new(db.journal("a").await)
            }
        }
    }
}

/// Appends `n` events with 64 appends in flight; returns the seconds it took.
async fn fill(journal: &Arc<dyn Journal>, source: &str, n: usize) -> f64 {
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

/// Every event is done with exactly one attempt, and there are `n` of them.
async fn check_all_done(journal: &Arc<dyn Journal>, n: usize) {
    let mut seen = 0;
    let mut wrong = Vec::new();
    let mut before = None;
    loop {
        let page = journal
            .query(&Query {
                before,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("query the journal");
        seen += page.events.len();
        wrong.extend(
            page.events
                .iter()
                .filter(|e| e.state != State::Done || e.attempts != 1)
                .map(|e| (e.id, e.state, e.attempts))
                .take(5),
        );
        match page.next_cursor {
            Some(c) => before = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, n, "the journal holds every event appended, no more");
    assert!(
        wrong.is_empty(),
        "every event ends done after one attempt; not these (id, state, attempts): {wrong:?}"
    );
    assert_eq!(journal.dead_count().await.unwrap(), 0, "no event is dead");
    let newest = journal.query(&Default::default()).await.unwrap().events[0].id;
    let attempts = journal.attempts(newest).await.unwrap();
    assert_eq!(attempts.len(), 1, "one attempt record per delivery");
}

async fn throughput(backend: &Backend, n: usize, concurrency: usize) {
    let journal = backend.open(&format!("tp-{concurrency}")).await;
    let append_secs = fill(&journal, "bench", n).await;
    let journal = backend.reopen(journal).await;
    let db = backend.db();
    let activity = match db {
        Some(db) => Some(db.activity().await),
        None => None,
    };
    let sampler = db.map(BenchDb::sample_waits);
    let handled = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu::snapshot(THREADS);
    let started = Instant::now();
    let h = handled.clone();
    let runtime = Runtime::builder(journal.clone())
        .handler(Route::source("bench"), move || Noop(h.clone()))
        .source("bench", SourceOptions::default().concurrency(concurrency))
        .start();
    let (mut last, mut progress) = (0, Instant::now());
    loop {
        let now = handled.load(Ordering::Relaxed);
        if now >= n {
            break;
        }
        if now > last {
            (last, progress) = (now, Instant::now());
        }
        assert!(
            progress.elapsed() < Duration::from_secs(60),
            "no delivery for 60 s, {now} of {n} handled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let handled_secs = started.elapsed().as_secs_f64();
    // Before the shutdown, which ends the actors' threads (and their CPU counts).
    let cpu = cpu::snapshot(THREADS).zip(cpu0);
    let waits = sampler.map(pg::WaitSampler::finish);
    let pids = match db {
        Some(db) => Some(db.server_pids().await),
        None => None,
    };
    let cpu = cpu.map(|(after, before)| after.since(&before, pids.as_deref()));
    let left = runtime.shutdown_async(Duration::from_secs(30)).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        left, 0,
        "every delivery in flight finished within the drain"
    );
    assert_eq!(
        handled.load(Ordering::Relaxed),
        n,
        "the handler ran once per event"
    );
    let journal = backend.reopen(journal).await;
    let activity = match (db, activity) {
        (Some(db), Some(before)) => Some(db.activity().await.since(&before, n as u64, "delivery")),
        _ => None,
    };
    check_all_done(&journal, n).await;
    journal.close().await.expect("close the journal");

    println!(
        "  {:<8} concurrency {concurrency:>4}: {n} deliveries in {secs:.2} s = {:>8.0}/s  \
         (appending them: {:>8.0}/s)",
        backend.name(),
        n as f64 / secs,
        n as f64 / append_secs
    );
    if let Some(c) = cpu {
        let pct = |ns: u64| ns as f64 / 1e9 / handled_secs * 100.0;
        let mut s: Vec<String> = THREADS
            .iter()
            .map(|(label, _)| format!("{label} {:.0}%", pct(c.group(THREADS, label))))
            .collect();
        s.push(format!("other {:.0}%", pct(c.group(THREADS, "other"))));
        if let Some(ns) = c.postgres {
            s.push(format!(
                "postgres {:.0}% ({:.1} µs/delivery)",
                pct(ns),
                ns as f64 / 1e3 / n as f64
            ));
        }
        s.push(format!(
            "machine {:.0}% of 200%, steal {:.0}%",
            pct(c.machine),
            pct(c.steal)
        ));
        println!("    CPU while delivering (% of one core): {}", s.join(", "));
    }
    if let Some(w) = waits {
        println!("    PostgreSQL while delivering: {w}");
    }
    if let Some(a) = activity {
        print!("{a}");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(backend: &Backend) {
    let journal = backend.open("lat").await;
    let hb = Hookbox::new(journal.clone()).source(Source::new("lat", Verifier::custom(Trusting)));
    let app = axum::Router::new().route_service("/hooks/lat", hb.endpoint("lat"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
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
    server.abort();
    journal.close().await.expect("close the journal");
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
        "  {:<8} 202 -> handler start:     median {:.3} ms, p99 {:.3} ms (negative: the handler started before the client read its 202)",
        backend.name(),
        percentile(&after_ack, 0.5),
        percentile(&after_ack, 0.99)
    );
    println!(
        "  {:<8} request -> handler start: median {:.3} ms, p99 {:.3} ms",
        backend.name(),
        percentile(&after_send, 0.5),
        percentile(&after_send, 0.99)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (and may ask for
    // `--list`): then only check that the benchmark builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("deliver: run with `cargo bench --bench deliver`");
        return;
    }
    let n = env_list("HOOKBOX_BENCH_EVENTS", "200000")[0];
    let journals = std::env::var("HOOKBOX_BENCH_JOURNALS").unwrap_or_default();
    let wanted = |name: &str| journals.is_empty() || journals.split(',').any(|j| j.trim() == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench")
        .enable_all()
        .build()
        .unwrap();
    let mut backends = Vec::new();
    if wanted("redb") {
        backends.push(Backend::Redb(tempfile::tempdir().unwrap()));
    }
    if wanted("postgres") {
        match rt.block_on(BenchDb::create()) {
            Ok(db) => {
                eprintln!("PostgreSQL database {}", db.name());
                backends.push(Backend::Postgres(db));
            }
            Err(e) => eprintln!("SKIPPED the PostgreSQL figures: {e}"),
        }
    }
    rt.block_on(async {
        println!("delivery throughput, no-op handler, outcomes journaled:");
        for backend in &backends {
            for c in env_list("HOOKBOX_BENCH_CONCURRENCY", "16,64,256") {
                throughput(backend, n, c).await;
            }
        }
        println!("latency under light load (400 events, one at a time):");
        for backend in &backends {
            latency(backend).await;
        }
    });
    // The database goes while the runtime its connections ran on still exists.
    drop(backends);
    drop(rt);
}
