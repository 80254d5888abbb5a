//! Run with: cargo bench --bench ingest
//!
//! A loopback load benchmark of hookbox's ingest path: hookbox on redb against a no-op
//! HTTP server, and hookbox on PostgreSQL against the receiver a user would write
//! instead on the same PostgreSQL.
//!
//! For each body size (realistic Stripe-like JSON `invoice.paid` events of 1 KiB and
//! 16 KiB: nested objects, an array of line items, repeated keys) and each connection
//! count (64 and 256 keep-alive HTTP/1.1 connections, one request in flight on each:
//! a closed loop), it drives, in the same process and the same run, these servers
//! (`HOOKBOX_BENCH_SERVERS`, default all):
//!
//! - `noop`: a hyper 1 http1 server that reads the whole body and answers `202`;
//! - `hookbox`: an axum `Router` with `route_service("/hooks/sw", endpoint("sw"))`,
//!   source `sw` verified by `standard-webhooks` (a `whsec_` secret), journaled in a
//!   [`RedbJournal`] in a temporary directory with its defaults (real fsync: each batch
//!   is a durable redb commit), dedup on (the default 7-day window);
//! - `hookbox-log`: the same, with the journal's write-ahead log on (`server.write_ahead_log`):
//!   acknowledged after the log's `fdatasync`, redb committing without fsync between
//!   checkpoints (the comparison in one run);
//! - `hookbox-drain`: `hookbox`, with a delivery runtime taking every event to a no-op
//!   handler actor at the same time (ingest while a destination drains);
//! - `hookbox-log-drain`: `hookbox-log` with that delivery runtime;
//! - `hookbox-pg`: the same `Router` and endpoint over a
//!   [`PostgresJournal`](hookbox::PostgresJournal) (node `a`, default settings: 2
//!   group-commit writers, `synchronous_commit` on) on the run's own database;
//! - `naive-pg`: the baseline a user would write instead, on the same database: an axum
//!   handler that reads the body, verifies it with the same [`Verifier`] (so only the
//!   storage differs), runs ONE `INSERT` per request (source, `webhook-id`, the headers
//!   as text, the body as `bytea`; `ON CONFLICT DO NOTHING` on (source, id), the dedup
//!   hookbox does too) on a deadpool-postgres pool of 16 connections, and answers `202`
//!   once it returned (autocommit: one commit, one WAL flush wait per request);
//! - `hookbox-pg3`: three nodes (`a`, `b`, `c`): three PostgreSQL journal handles on
//!   the same database, each behind its own `Router` and listener in this process, the
//!   connections spread round-robin over the three.
//!
//! Every server shares one accept loop and hyper http1 connection code, on its own
//! tokio runtime (2 workers, threads `srv`; the PostgreSQL journals' writer tasks and
//! connections run there too); the load generator runs on another runtime (threads
//! `load`, 2 workers unless `HOOKBOX_BENCH_CLIENT_THREADS` says otherwise). PostgreSQL
//! 15 runs on the same machine, so it shares the same cores. Every request is distinct
//! and validly signed: the signed header sets (unique `webhook-id`, timestamp "now") are
//! generated with [`hookbox::sign`] before the timed phase and share one `Bytes` body.
//! The pool of a storing server is sized from the no-op server's rate in the same cell
//! (which bounds every other) and is never reused, so dedup never short-circuits; the
//! no-op server cycles through a small pool.
//!
//! PostgreSQL: the run creates its own database `hookbox_bench_<pid>` (on
//! `HOOKBOX_BENCH_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`),
//! empties it (`DROP SCHEMA public CASCADE`) and checkpoints before each PostgreSQL
//! cell, and drops it at the end. Without a reachable server the PostgreSQL cells are
//! skipped, with a line saying why.
//!
//! Each cell: 1 s warm-up, then a fixed measurement window (`HOOKBOX_BENCH_SECS`,
//! default 5) counting completed 2xx responses and recording their latency (request
//! sent to response body read). Any non-2xx answer (a `503` from shedding included) or
//! transport error is an error, printed with its status. Output: a table of req/s, p50,
//! p99 and errors per cell; the ratios hookbox / noop, hookbox-pg / naive-pg and
//! hookbox-pg3 / hookbox-pg per (size, connections); a summary against the targets
//! (redb: ratio >= 0.6 at 1 KiB, >= 0.25 at 16 KiB, p99 <= 10 ms at 64 connections;
//! PostgreSQL: hookbox-pg >= 3x naive-pg with p99 <= 10 ms at 64 connections, three
//! nodes no slower than one); and a profile of each storing cell: the journal's own
//! metrics (`hookbox_journal_batch_size`, `hookbox_journal_commit_seconds`,
//! `hookbox_ingest_seconds`, captured by a small metrics recorder installed here), the
//! CPU time each thread group and the PostgreSQL server used (from `/proc`), the stored
//! event count checked against the 2xx count, and single-threaded per-request costs of
//! verification, JSON metadata parsing and LZ4 compression.
//!
//! Environment: `HOOKBOX_BENCH_SECS` (measurement seconds, default 5),
//! `HOOKBOX_BENCH_CLIENT_THREADS` (1 or 2, default 2), `HOOKBOX_BENCH_SIZES` (bytes,
//! default `1024,16384`), `HOOKBOX_BENCH_CONNS` (default `64,256`),
//! `HOOKBOX_BENCH_SERVERS` (a comma-separated subset of `noop,hookbox,hookbox-log,
//! hookbox-drain,hookbox-log-drain,hookbox-pg,naive-pg,hookbox-pg3`; one alone is for profiling, e.g. under `perf record`),
//! `HOOKBOX_BENCH_CHECKPOINT_MS` (the redb journal's checkpoint interval),
//! `HOOKBOX_BENCH_PG_WRITERS` and `HOOKBOX_BENCH_PG_POOL` (the PostgreSQL journals'
//! writers and pool size per node, for exploring; the defaults otherwise).
//! Traffic goes only to 127.0.0.1 (and the PostgreSQL server); the temporary directory
//! and the database are removed at the end.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tower::ServiceExt;

use hookbox::{sign, Hookbox, Inbound, Journal, RedbJournal, SignInput, Source, Verifier};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/pg.rs"]
mod pg;

use pg::BenchDb;

/// The Standard Webhooks signing secret of the benchmark source.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SCHEME: &str = "standard-webhooks";
const PATH: &str = "/hooks/sw";
const WARMUP: Duration = Duration::from_secs(1);
/// The no-op server cycles through this many signed header sets.
const NOOP_POOL: usize = 8192;

const WARM: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TS: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIG: HeaderName = HeaderName::from_static("webhook-signature");

// ---------------------------------------------------------------------------------------
// Metrics: the journal's histograms, captured for the measurement window.
// ---------------------------------------------------------------------------------------

/// Every value recorded (the writer thread records a few thousand per second at most).
#[derive(Default)]
struct Series(Mutex<Vec<f64>>);

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        self.0.lock().expect("series lock").push(value);
    }
}

impl Series {
    fn clear(&self) {
        self.0.lock().expect("series lock").clear();
    }

    fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.0.lock().expect("series lock"))
    }
}

/// Count and sum only (recorded once per request, from every server worker).
#[derive(Default)]
struct Summary {
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl HistogramFn for Summary {
    fn record(&self, value: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((value * 1e9) as u64, Ordering::Relaxed);
    }
}

impl Summary {
    fn take(&self) -> (u64, f64) {
        let n = self.count.swap(0, Ordering::Relaxed);
        let s = self.sum_ns.swap(0, Ordering::Relaxed);
        (n, s as f64 / 1e9)
    }
}

#[derive(Default)]
struct JournalMetrics {
    batch: Arc<Series>,
    commit: Arc<Series>,
    ingest: Arc<Summary>,
    /// redb's part of a batch (the transaction and its commit), and the log's fdatasync.
    apply: Arc<Summary>,
    sync: Arc<Summary>,
}

static METRICS: LazyLock<JournalMetrics> = LazyLock::new(JournalMetrics::default);

impl JournalMetrics {
    fn reset(&self) {
        self.batch.clear();
        self.commit.clear();
        self.ingest.take();
        self.apply.take();
        self.sync.take();
    }
}

/// Records the three histograms of interest; everything else is a no-op.
struct BenchRecorder;

impl metrics::Recorder for BenchRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match key.name() {
            "hookbox_journal_batch_size" => Histogram::from_arc(METRICS.batch.clone()),
            "hookbox_journal_commit_seconds" => Histogram::from_arc(METRICS.commit.clone()),
            "hookbox_ingest_seconds" => Histogram::from_arc(METRICS.ingest.clone()),
            "hookbox_journal_apply_seconds" => Histogram::from_arc(METRICS.apply.clone()),
            "hookbox_journal_log_sync_seconds" => Histogram::from_arc(METRICS.sync.clone()),
            _ => Histogram::noop(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// CPU time per thread group (`support/cpu.rs`); threads of no group count as `other`
// (main thread, disk watcher).
// ---------------------------------------------------------------------------------------

const THREADS: cpu::Groups = &[
    // Server runtime threads (PostgreSQL journal writers included).
    ("srv", "srv"),
    // Load-generator runtime threads.
    ("load", "load"),
    // The redb journal's group-commit writer thread.
    ("writer", "hookbox-journal"),
];

// ---------------------------------------------------------------------------------------
// Bodies and signed headers.
// ---------------------------------------------------------------------------------------

/// A small deterministic generator for ids and amounts.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `prefix_` and `n` base62 characters, like Stripe's ids.
    fn id(&mut self, prefix: &str, n: usize) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut s = String::with_capacity(prefix.len() + 1 + n);
        s.push_str(prefix);
        s.push('_');
        for _ in 0..n {
            s.push(ALPHABET[self.below(62) as usize] as char);
        }
        s
    }
}

const PRODUCTS: &[(&str, u64)] = &[
    ("Pro plan", 1999),
    ("Team seat", 1200),
    ("Additional storage (100 GB)", 500),
    ("Priority support", 4900),
    ("API calls (per 10k)", 250),
    ("Enterprise SSO add-on", 9900),
    ("Analytics dashboard", 2900),
];

fn line_item(rng: &mut XorShift, invoice: &str, created: u64) -> Value {
    let (product, unit) = PRODUCTS[rng.below(PRODUCTS.len() as u64) as usize];
    let quantity = 1 + rng.below(12);
    json!({
        "id": rng.id("il", 24),
        "object": "line_item",
        "amount": unit * quantity,
        "amount_excluding_tax": unit * quantity,
        "currency": "usd",
        "description": format!("{quantity} × {product} (at ${}.{:02} / month)", unit / 100, unit % 100),
        "discount_amounts": [],
        "discountable": true,
        "invoice": invoice,
        "livemode": false,
        "metadata": {},
        "period": { "end": created + 2_592_000, "start": created },
        "price": {
            "id": rng.id("price", 24),
            "object": "price",
            "active": true,
            "billing_scheme": "per_unit",
            "currency": "usd",
            "product": rng.id("prod", 14),
            "recurring": { "interval": "month", "interval_count": 1, "usage_type": "licensed" },
            "type": "recurring",
            "unit_amount": unit
        },
        "proration": false,
        "quantity": quantity,
        "subscription": rng.id("sub", 24),
        "tax_amounts": [],
        "type": "subscription"
    })
}

/// A Stripe-like `invoice.paid` event of exactly `size` bytes of compact JSON (line
/// items fill it; the invoice's `footer` text pads the rest).
fn webhook_body(size: usize) -> Bytes {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ size as u64);
    let created = 1_718_000_000u64;
    let invoice = rng.id("in", 24);
    let customer = rng.id("cus", 14);
    let mut event = json!({
        "id": rng.id("evt", 24),
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": { "object": {
            "id": invoice,
            "object": "invoice",
            "account_country": "US",
            "amount_due": 0,
            "amount_paid": 0,
            "billing_reason": "subscription_cycle",
            "currency": "usd",
            "customer": customer,
            "customer_email": "jenny.rosen@example.com",
            "customer_address": { "city": "Oakland", "country": "US", "line1": "510 Townsend St", "postal_code": "94103", "state": "CA" },
            "footer": "",
            "lines": { "object": "list", "data": [], "has_more": false, "total_count": 0, "url": format!("/v1/invoices/{invoice}/lines") },
            "metadata": { "order_id": "6735", "plan": "pro" },
            "paid": true,
            "status": "paid",
            "status_transitions": { "finalized_at": created, "paid_at": created + 3 },
        }},
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": "invoice.paid"
    });
    let len = |v: &Value| serde_json::to_vec(v).expect("json").len();
    let mut total = 0;
    loop {
        let item = line_item(&mut rng, &invoice, created);
        let mut next = event.clone();
        let obj = &mut next["data"]["object"];
        total += item["amount"].as_u64().unwrap_or(0);
        obj["lines"]["data"]
            .as_array_mut()
            .expect("lines")
            .push(item);
        obj["lines"]["total_count"] = json!(obj["lines"]["data"].as_array().expect("lines").len());
        obj["amount_due"] = json!(total);
        obj["amount_paid"] = json!(total);
        if len(&next) > size {
            break;
        }
        event = next;
    }
    const WORDS: &[&str] = &[
        "Thank",
        "you",
        "for",
        "your",
        "business.",
        "Questions?",
        "Contact",
        "billing",
        "support",
        "any",
        "time.",
        "Payment",
        "received",
        "with",
        "thanks.",
    ];
    let missing = size.saturating_sub(len(&event));
    let mut footer = String::with_capacity(missing);
    let mut i = 0;
    while footer.len() < missing {
        if !footer.is_empty() {
            footer.push(' ');
        }
        footer.push_str(WORDS[i % WORDS.len()]);
        i += 1;
    }
    footer.truncate(missing);
    event["data"]["object"]["footer"] = json!(footer);
    let body = serde_json::to_vec(&event).expect("json");
    Bytes::from(body)
}

/// The three Standard Webhooks headers of one delivery.
type Signature = [HeaderValue; 3];

/// `n` signed header sets for `body`, with ids `msg_<tag><i>`, signed now (in parallel
/// on two threads).
fn sign_pool(body: &Bytes, n: usize, tag: &str) -> Vec<Signature> {
    let cfg = Verifier::builder(SCHEME).secret(SECRET).config().clone();
    let now = SystemTime::now();
    let sign_range = |range: std::ops::Range<usize>| -> Vec<Signature> {
        range
            .map(|i| {
                let id = format!("msg_{tag}{i:010}");
                let signed = sign(SCHEME, &cfg, &SignInput { body, id: &id, now }).expect("sign");
                let value = |name: &str| {
                    let (_, v) = signed
                        .headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .expect("signed header");
                    HeaderValue::from_str(v).expect("header value")
                };
                [
                    value("webhook-id"),
                    value("webhook-timestamp"),
                    value("webhook-signature"),
                ]
            })
            .collect()
    };
    let half = n / 2;
    std::thread::scope(|s| {
        let first = s.spawn(|| sign_range(0..half));
        let mut second = sign_range(half..n);
        let mut all = first.join().expect("signing thread");
        all.append(&mut second);
        all
    })
}

// ---------------------------------------------------------------------------------------
// Servers.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Noop,
    Hookbox,
    HookboxLog,
    HookboxDrain,
    HookboxLogDrain,
    HookboxPg,
    NaivePg,
    HookboxPg3,
}

impl Kind {
    /// Every server, in the order each cell runs them.
    const ALL: [Kind; 8] = [
        Kind::Noop,
        Kind::Hookbox,
        Kind::HookboxLog,
        Kind::HookboxDrain,
        Kind::HookboxLogDrain,
        Kind::HookboxPg,
        Kind::NaivePg,
        Kind::HookboxPg3,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Noop => "noop",
            Kind::Hookbox => "hookbox",
            Kind::HookboxLog => "hookbox-log",
            Kind::HookboxDrain => "hookbox-drain",
            Kind::HookboxLogDrain => "hookbox-log-drain",
            Kind::HookboxPg => "hookbox-pg",
            Kind::NaivePg => "naive-pg",
            Kind::HookboxPg3 => "hookbox-pg3",
        }
    }

    fn postgres(self) -> bool {
        matches!(self, Kind::HookboxPg | Kind::NaivePg | Kind::HookboxPg3)
    }

    /// The servers `HOOKBOX_BENCH_SERVERS` names (all when unset or empty).
    fn selected() -> Vec<Kind> {
        let list = std::env::var("HOOKBOX_BENCH_SERVERS").unwrap_or_default();
        let names: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return Kind::ALL.to_vec();
        }
        for n in &names {
            assert!(
                Kind::ALL.iter().any(|k| k.name() == *n),
                "HOOKBOX_BENCH_SERVERS: unknown server `{n}` (expected some of {})",
                Kind::ALL.map(Kind::name).join(",")
            );
        }
        Kind::ALL
            .into_iter()
            .filter(|k| names.contains(&k.name()))
            .collect()
    }
}

/// One accept loop and hyper http1 (keep-alive) per connection, for every server.
async fn serve<S, B>(listener: TcpListener, svc: S, mut stop: oneshot::Receiver<()>)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let svc = svc.clone();
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // The clients have closed their connections by now; give stragglers a moment.
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    conns.abort_all();
}

/// The same small answer hookbox gives, after reading the whole body.
async fn noop(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = req.into_body().collect().await;
    let mut res = Response::new(Full::new(Bytes::from_static(
        br#"{"id":"evt_0000000000000000"}"#,
    )));
    *res.status_mut() = StatusCode::ACCEPTED;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

fn verifier() -> Verifier {
    Verifier::builder(SCHEME)
        .secret(SECRET)
        .build()
        .expect("verifier")
}

/// What users mount: `endpoint("sw")` on an axum `Router`, over `journal`.
fn hookbox_router(journal: Arc<dyn Journal>) -> Router {
    let hookbox = Hookbox::new(journal).source(Source::new("sw", verifier()));
    Router::new().route_service(PATH, hookbox.endpoint("sw"))
}

// The naive receiver's table and its one statement per request.
const NAIVE_TABLE: &str = "CREATE TABLE naive_webhooks (
    source text NOT NULL,
    event_id text NOT NULL,
    headers text NOT NULL,
    body bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id))";
const NAIVE_INSERT: &str = "INSERT INTO naive_webhooks (source, event_id, headers, body)
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const NAIVE_COUNT: &str = "SELECT count(*) FROM naive_webhooks";

#[derive(Clone)]
struct Naive {
    pool: deadpool_postgres::Pool,
    verifier: Verifier,
}

/// The naive receiver: verify, one `INSERT` (its own commit), `202`.
async fn naive_receive(
    State(naive): State<Naive>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if naive
        .verifier
        .verify(&Inbound::new(&headers, &body))
        .is_err()
    {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let id = headers
        .get(&WEBHOOK_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut text = String::new();
    for (name, value) in &headers {
        text.push_str(name.as_str());
        text.push_str(": ");
        text.push_str(&String::from_utf8_lossy(value.as_bytes()));
        text.push('\n');
    }
    let inserted = async {
        let client = naive.pool.get().await.map_err(|e| e.to_string())?;
        let stmt = client
            .prepare_cached(NAIVE_INSERT)
            .await
            .map_err(|e| e.to_string())?;
        client
            .execute(&stmt, &[&"sw", &id, &text, &body.as_ref()])
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match inserted {
        Ok(1) => (StatusCode::ACCEPTED, format!(r#"{{"id":"{id}"}}"#)),
        Ok(_) => (
            StatusCode::OK,
            format!(r#"{{"id":"{id}","duplicate":true}}"#),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// A deadpool-postgres pool of 16 connections on the bench database, as a user would
/// configure one.
fn naive_pool(url: &str) -> deadpool_postgres::Pool {
    let config: tokio_postgres::Config = url
        .replace("?sslmode=disable", "")
        .parse()
        .expect("database url");
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(16)
        .build()
        .expect("pool")
}

/// What a server stored its events in, to count them after the cell.
enum Store {
    Nothing,
    /// One journal, or several nodes on one database.
    Journals(Vec<Arc<dyn Journal>>),
    Naive(deadpool_postgres::Pool),
}

impl Store {
    async fn count(&self) -> Option<u64> {
        match self {
            Store::Nothing => None,
            // Nodes share one database: any of them counts every node's events.
            Store::Journals(nodes) => nodes[0].count().await.ok(),
            Store::Naive(pool) => {
                let c = pool.get().await.ok()?;
                let row = c.query_one(NAIVE_COUNT, &[]).await.ok()?;
                Some(row.get::<_, i64>(0) as u64)
            }
        }
    }

    async fn close(self) {
        match self {
            Store::Nothing => {}
            Store::Journals(nodes) => {
                for j in nodes {
                    if let Err(e) = j.close().await {
                        eprintln!("warning: closing the journal: {e}");
                    }
                }
            }
            Store::Naive(pool) => pool.close(),
        }
    }
}

/// One listener and its accept loop.
struct Listener {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn listen<S, B>(rt: &Runtime, svc: S) -> Listener
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = rt
        .block_on(TcpListener::bind(("127.0.0.1", 0)))
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel();
    let task = rt.spawn(serve(listener, svc, stopped));
    Listener { addr, stop, task }
}

fn listen_router(rt: &Runtime, router: Router) -> Listener {
    listen(
        rt,
        service_fn(move |req: Request<Incoming>| router.clone().oneshot(req)),
    )
}

/// A running server: its listeners (three for `hookbox-pg3`) and its storage.
struct Running {
    listeners: Vec<Listener>,
    store: Store,
    /// `hookbox-drain`'s delivery runtime, stopped with the server.
    delivering: Option<hookbox::Runtime>,
}

/// A handler that takes every delivery at once.
struct Drop0;

impl actix::Actor for Drop0 {
    type Context = actix::Context<Self>;
}

impl actix::Handler<hookbox::Delivery> for Drop0 {
    type Result = hookbox::Outcome;

    fn handle(&mut self, _: hookbox::Delivery, _: &mut Self::Context) -> hookbox::Outcome {
        hookbox::Outcome::Done
    }
}

/// Opens PostgreSQL journal nodes `names` on the bench database.
async fn open_nodes(db: &BenchDb, names: &[&str]) -> Vec<Arc<dyn Journal>> {
    let mut nodes: Vec<Arc<dyn Journal>> = Vec::new();
    for name in names {
        nodes.push(Arc::new(db.journal(name).await));
    }
    nodes
}

fn start_server(rt: &Runtime, kind: Kind, dir: &Path, db: Option<&BenchDb>) -> Running {
    let db = || db.expect("a PostgreSQL cell runs only with the bench database");
    match kind {
        Kind::Noop => Running {
            listeners: vec![listen(rt, service_fn(noop))],
            store: Store::Nothing,
            delivering: None,
        },
        Kind::Hookbox | Kind::HookboxLog | Kind::HookboxDrain | Kind::HookboxLogDrain => {
            let log = matches!(kind, Kind::HookboxLog | Kind::HookboxLogDrain);
            let mut builder = RedbJournal::builder().log(log);
            if let Some(ms) = std::env::var("HOOKBOX_BENCH_CHECKPOINT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                builder = builder.checkpoint_every(Duration::from_millis(ms));
            }
            let journal: Arc<dyn Journal> =
                Arc::new(builder.open(dir.join("hookbox.redb")).expect("journal"));
            let drain = matches!(kind, Kind::HookboxDrain | Kind::HookboxLogDrain);
            let delivering = drain.then(|| {
                hookbox::Runtime::builder(journal.clone())
                    .handler(hookbox::Route::source("sw"), || Drop0)
                    .start()
            });
            Running {
                listeners: vec![listen_router(rt, hookbox_router(journal.clone()))],
                store: Store::Journals(vec![journal]),
                delivering,
            }
        }
        Kind::HookboxPg | Kind::HookboxPg3 => {
            let names: &[&str] = if kind == Kind::HookboxPg3 {
                &["a", "b", "c"]
            } else {
                &["a"]
            };
            let nodes = rt.block_on(open_nodes(db(), names));
            Running {
                listeners: nodes
                    .iter()
                    .map(|j| listen_router(rt, hookbox_router(j.clone())))
                    .collect(),
                store: Store::Journals(nodes),
                delivering: None,
            }
        }
        Kind::NaivePg => {
            let db = db();
            rt.block_on(async {
                db.client()
                    .await
                    .batch_execute(NAIVE_TABLE)
                    .await
                    .expect("create the naive receiver's table")
            });
            let pool = naive_pool(&db.url);
            let naive = Naive {
                pool: pool.clone(),
                verifier: verifier(),
            };
            let router = Router::new()
                .route(PATH, post(naive_receive))
                .with_state(naive);
            Running {
                listeners: vec![listen_router(rt, router)],
                store: Store::Naive(pool),
                delivering: None,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Load generator.
// ---------------------------------------------------------------------------------------

/// What every virtual client shares.
struct Load {
    phase: AtomicU8,
    pool: Vec<Signature>,
    /// The pool is cycled (no-op server) or used once (storing servers: no duplicates).
    wrap: bool,
    next: AtomicUsize,
    body: Bytes,
    /// Where the clients connect (round-robin), and the `Host` header for each.
    targets: Vec<(SocketAddr, HeaderValue)>,
    length: HeaderValue,
}

impl Load {
    fn take(&self) -> Option<&Signature> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.wrap {
            Some(&self.pool[i % self.pool.len()])
        } else {
            self.pool.get(i)
        }
    }

    fn request(&self, sig: &Signature, host: &HeaderValue) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = Uri::from_static(PATH);
        let h = req.headers_mut();
        h.insert(HOST, host.clone());
        h.insert(USER_AGENT, HeaderValue::from_static("hookbox-bench/1.0"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CONTENT_LENGTH, self.length.clone());
        h.insert(WEBHOOK_ID.clone(), sig[0].clone());
        h.insert(WEBHOOK_TS.clone(), sig[1].clone());
        h.insert(WEBHOOK_SIG.clone(), sig[2].clone());
        req
    }
}

#[derive(Debug, Default)]
struct ClientStats {
    /// 2xx answers completed in the measurement window.
    measured_ok: u64,
    /// Latencies (ns) of those.
    latencies: Vec<u64>,
    /// 2xx answers in any phase (the journal must hold exactly the hookbox ones).
    total_ok: u64,
    /// 200 (a duplicate) rather than 202: the pool was reused, a benchmark bug.
    duplicates: u64,
    /// Answers by status, by phase (warm-up, measurement, tail).
    statuses: BTreeMap<u16, [u64; 3]>,
    /// Connection or protocol errors, by phase.
    transport: [u64; 3],
    pool_exhausted: bool,
}

impl ClientStats {
    fn merge(&mut self, other: ClientStats) {
        self.measured_ok += other.measured_ok;
        self.latencies.extend(other.latencies);
        self.total_ok += other.total_ok;
        self.duplicates += other.duplicates;
        for (s, n) in other.statuses {
            let e = self.statuses.entry(s).or_default();
            for p in 0..3 {
                e[p] += n[p];
            }
        }
        for p in 0..3 {
            self.transport[p] += other.transport[p];
        }
        self.pool_exhausted |= other.pool_exhausted;
    }

    /// Non-2xx answers and transport errors in phase `p`.
    fn errors(&self, p: usize) -> u64 {
        let bad: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n[p])
            .sum();
        bad + self.transport[p]
    }
}

/// Virtual client `n`: one keep-alive connection (to target `n` modulo their number),
/// one request in flight at a time.
async fn client(load: Arc<Load>, n: usize) -> ClientStats {
    let (addr, host) = load.targets[n % load.targets.len()].clone();
    let mut st = ClientStats::default();
    let phase = || load.phase.load(Ordering::Acquire);
    'connection: while phase() < STOP {
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                st.transport[phase().min(2) as usize] += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
            {
                Ok(c) => c,
                Err(_) => {
                    st.transport[phase().min(2) as usize] += 1;
                    continue;
                }
            };
        tokio::spawn(conn);
        loop {
            if phase() >= STOP {
                break 'connection;
            }
            if sender.ready().await.is_err() {
                st.transport[phase().min(2) as usize] += 1;
                continue 'connection;
            }
            let Some(sig) = load.take() else {
                st.pool_exhausted = true;
                break 'connection;
            };
            let req = load.request(sig, &host);
            let started = Instant::now();
            let (status, read) = match sender.send_request(req).await {
                Ok(res) => {
                    let status = res.status();
                    (status, res.into_body().collect().await.is_ok())
                }
                Err(_) => {
                    st.transport[phase().min(2) as usize] += 1;
                    continue 'connection;
                }
            };
            let took = started.elapsed();
            let p = phase().min(2) as usize;
            if !read {
                st.transport[p] += 1;
                continue 'connection;
            }
            st.statuses.entry(status.as_u16()).or_default()[p] += 1;
            if status.is_success() {
                st.total_ok += 1;
                if status == StatusCode::OK {
                    st.duplicates += 1;
                }
                if p == MEASURE as usize {
                    st.measured_ok += 1;
                    st.latencies.push(took.as_nanos() as u64);
                }
            }
        }
    }
    st
}

// ---------------------------------------------------------------------------------------
// Cells.
// ---------------------------------------------------------------------------------------

/// The journal's own figures over the measurement window (none for `naive-pg`).
#[derive(Debug)]
struct JournalProfile {
    commits: usize,
    avg_batch: f64,
    max_batch: f64,
    avg_commit: f64,
    p50_commit: f64,
    p99_commit: f64,
    /// Average time an append waited for its commit.
    avg_append_wait: f64,
    /// Average redb transaction (and commit) per batch, and log fdatasync, when logged.
    avg_apply: f64,
    avg_sync: f64,
}

impl JournalProfile {
    /// From the metrics recorded in the measurement window.
    fn take() -> JournalProfile {
        let batch = METRICS.batch.take();
        let mut commit = METRICS.commit.take();
        let (appends, wait) = METRICS.ingest.take();
        let (applies, apply) = METRICS.apply.take();
        let (syncs, sync) = METRICS.sync.take();
        commit.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if commit.is_empty() {
                return 0.0;
            }
            let i = ((commit.len() as f64 * q).ceil() as usize).clamp(1, commit.len()) - 1;
            commit[i]
        };
        let n = batch.len().max(1) as f64;
        JournalProfile {
            commits: batch.len(),
            avg_batch: batch.iter().sum::<f64>() / n,
            max_batch: batch.iter().copied().fold(0.0, f64::max),
            avg_commit: commit.iter().sum::<f64>() / commit.len().max(1) as f64,
            p50_commit: pick(0.5),
            p99_commit: pick(0.99),
            avg_append_wait: wait / appends.max(1) as f64,
            avg_apply: apply / applies.max(1) as f64,
            avg_sync: sync / syncs.max(1) as f64,
        }
    }
}

#[derive(Debug)]
struct Cell {
    size: usize,
    conns: usize,
    kind: Kind,
    secs: f64,
    stats: ClientStats,
    cpu: Option<cpu::Used>,
    journal: Option<JournalProfile>,
    /// Events stored after the cell (journal or naive table), to check against the
    /// 2xx count; `None` for the no-op server, or when it could not be read.
    stored: Option<u64>,
    /// What PostgreSQL counted for the whole cell, per stored event.
    activity: Option<String>,
    /// What the bench database's backends were doing in the measurement window.
    waits: Option<String>,
    unfinished: bool,
}

impl Cell {
    fn rps(&self) -> f64 {
        self.stats.measured_ok as f64 / self.secs
    }

    fn percentile(&self, q: f64) -> Option<Duration> {
        let l = &self.stats.latencies;
        if l.is_empty() {
            return None;
        }
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        Some(Duration::from_nanos(l[i]))
    }

    /// The stored count against the 2xx count.
    fn stored_check(&self) -> String {
        match self.stored {
            Some(n) if n == self.stats.total_ok => format!("{n} = {} ok", self.stats.total_ok),
            Some(n) => format!("{n} != {} MISMATCH", self.stats.total_ok),
            None => "unavailable".into(),
        }
    }
}

/// What every cell of a run shares.
struct Bench {
    server: Runtime,
    client: Runtime,
    /// Where redb journals go (one directory per cell).
    dir: tempfile::TempDir,
    /// The run's PostgreSQL database, when one could be had.
    db: Option<BenchDb>,
    secs: Duration,
}

impl Bench {
    fn run_cell(
        &self,
        index: usize,
        kind: Kind,
        body: &Bytes,
        conns: usize,
        pool: Vec<Signature>,
    ) -> Cell {
        let dir = self.dir.path().join(format!("cell-{index}"));
        std::fs::create_dir_all(&dir).expect("cell dir");
        let activity = kind.postgres().then(|| {
            let db = self.db.as_ref().expect("the bench database");
            self.server.block_on(async {
                db.reset().await;
                db.activity().await
            })
        });
        let mut server = start_server(&self.server, kind, &dir, self.db.as_ref());
        let load = Arc::new(Load {
            phase: AtomicU8::new(WARM),
            wrap: kind == Kind::Noop,
            pool,
            next: AtomicUsize::new(0),
            body: body.clone(),
            targets: server
                .listeners
                .iter()
                .map(|l| {
                    let host = HeaderValue::from_str(&l.addr.to_string()).expect("host");
                    (l.addr, host)
                })
                .collect(),
            length: HeaderValue::from(body.len()),
        });
        let secs = self.secs;
        let sample = self.db.as_ref().filter(|_| kind.postgres());
        let (measured, cpu, waits, stats, unfinished) = self.client.block_on(async {
            let clients: Vec<_> = (0..conns)
                .map(|n| tokio::spawn(client(load.clone(), n)))
                .collect();
            tokio::time::sleep(WARMUP).await;
            METRICS.reset();
            let sampler = sample.map(BenchDb::sample_waits);
            let cpu0 = cpu::snapshot(THREADS);
            let t0 = Instant::now();
            load.phase.store(MEASURE, Ordering::Release);
            tokio::time::sleep(secs).await;
            load.phase.store(STOP, Ordering::Release);
            let measured = t0.elapsed();
            let cpu = cpu::snapshot(THREADS).zip(cpu0);
            let waits = sampler.map(pg::WaitSampler::finish);
            let mut stats = ClientStats::default();
            let mut unfinished = false;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            for c in clients {
                let abort = c.abort_handle();
                match tokio::time::timeout_at(deadline, c).await {
                    Ok(Ok(s)) => stats.merge(s),
                    _ => {
                        abort.abort();
                        unfinished = true;
                    }
                }
            }
            (measured, cpu, waits, stats, unfinished)
        });
        let journal = matches!(server.store, Store::Journals(_)).then(JournalProfile::take);
        // The server's processes that worked for this cell: listed while its
        // connections are still open.
        let pids = match (&self.db, kind.postgres()) {
            (Some(db), true) => Some(self.server.block_on(db.server_pids())),
            _ => None,
        };
        let cpu = cpu.map(|(after, before)| after.since(&before, pids.as_deref()));
        for l in server.listeners {
            let _ = l.stop.send(());
            let _ = self.server.block_on(l.task);
        }
        if let Some(r) = server.delivering.take() {
            r.shutdown(Duration::from_secs(5));
        }
        let stored = self.server.block_on(async {
            let n = server.store.count().await;
            server.store.close().await;
            n
        });
        let activity = activity.map(|before| {
            let db = self.db.as_ref().expect("the bench database");
            let after = self.server.block_on(db.activity());
            after.since(&before, stored.unwrap_or(0), "stored event")
        });
        let _ = std::fs::remove_dir_all(&dir);
        let mut stats = stats;
        stats.latencies.sort_unstable();
        Cell {
            size: body.len(),
            conns,
            kind,
            secs: measured.as_secs_f64(),
            stats,
            cpu,
            journal,
            stored,
            activity,
            waits,
            unfinished,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Per-request CPU costs, single-threaded, outside the server.
// ---------------------------------------------------------------------------------------

struct Costs {
    verify: Duration,
    describe: Duration,
    lz4: Duration,
    lz4_ratio: f64,
    json_value: Duration,
    json_typed: Duration,
}

/// Only the event type, the rest of the document skipped (what `describe` needs).
#[derive(serde::Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    _ty: Option<std::borrow::Cow<'a, str>>,
}

fn per_op(iters: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

fn costs(body: &Bytes) -> Costs {
    let verifier = Verifier::builder(SCHEME)
        .secret(SECRET)
        .build()
        .expect("verifier");
    let sig = &sign_pool(body, 2, "cost")[0];
    let mut headers = HeaderMap::new();
    headers.insert(WEBHOOK_ID.clone(), sig[0].clone());
    headers.insert(WEBHOOK_TS.clone(), sig[1].clone());
    headers.insert(WEBHOOK_SIG.clone(), sig[2].clone());
    let inbound = Inbound::new(&headers, body);
    let iters = (20_000_000 / body.len().max(1000)) as u32;
    let verify = per_op(iters, || {
        verifier.verify(&inbound).expect("verifies");
    });
    let describe = per_op(iters, || {
        std::hint::black_box(verifier.describe(&inbound));
    });
    let json_value = per_op(iters, || {
        std::hint::black_box(serde_json::from_slice::<Value>(body).expect("json"));
    });
    let json_typed = per_op(iters, || {
        std::hint::black_box(serde_json::from_slice::<TypeOnly<'_>>(body).expect("json"));
    });
    let mut clen = 0;
    let lz4 = per_op(iters, || {
        clen = std::hint::black_box(lz4_flex::block::compress(body)).len();
    });
    Costs {
        verify,
        describe,
        lz4,
        lz4_ratio: body.len() as f64 / clen.max(1) as f64,
        json_value,
        json_typed,
    }
}

// ---------------------------------------------------------------------------------------
// Main.
// ---------------------------------------------------------------------------------------

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn size_name(size: usize) -> String {
    if size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "-".into())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only check
    // that the benchmark builds and its bodies are what they claim.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        for size in [1024, 16384] {
            assert_eq!(webhook_body(size).len(), size);
        }
        println!("ingest: run with `cargo bench --bench ingest`");
        return;
    }
    let secs = std::env::var("HOOKBOX_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(5));
    let client_threads = std::env::var("HOOKBOX_BENCH_CLIENT_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2)
        .clamp(1, 2);
    let sizes = env_list("HOOKBOX_BENCH_SIZES", &[1024, 16384]);
    let conn_counts = env_list("HOOKBOX_BENCH_CONNS", &[64, 256]);
    let mut kinds = Kind::selected();

    metrics::set_global_recorder(BenchRecorder).expect("no other metrics recorder");
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("srv")
        .enable_all()
        .build()
        .expect("server runtime");
    let db = if kinds.iter().any(|k| k.postgres()) {
        match server.block_on(BenchDb::create()) {
            Ok(db) => Some(db),
            Err(e) => {
                eprintln!("SKIPPED the PostgreSQL cells: {e}");
                kinds.retain(|k| !k.postgres());
                None
            }
        }
    } else {
        None
    };
    let bench = Bench {
        server,
        client: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(client_threads)
            .thread_name("load")
            .enable_all()
            .build()
            .expect("client runtime"),
        dir: tempfile::Builder::new()
            .prefix("hookbox-ingest-bench")
            .tempdir()
            .expect("temp dir"),
        db,
        secs,
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "ingest bench: {} s per cell after {} s warm-up; server runtime 2 workers, load \
         runtime {client_threads}; {cores} CPUs; redb journals in {}{}",
        secs.as_secs_f64(),
        WARMUP.as_secs(),
        bench.dir.path().display(),
        bench
            .db
            .as_ref()
            .map(|db| format!("; PostgreSQL database {}", db.name()))
            .unwrap_or_default()
    );

    let mut cells: Vec<Cell> = Vec::new();
    let mut index = 0;
    for &size in &sizes {
        let body = webhook_body(size);
        let noop_pool = sign_pool(&body, NOOP_POOL, "noop");
        for &conns in &conn_counts {
            let mut noop_rps = None;
            for &kind in &kinds {
                index += 1;
                let pool = if kind == Kind::Noop {
                    noop_pool.clone()
                } else {
                    // No storing server outruns the no-op server: its rate bounds the
                    // pool needed (without a no-op cell, assume 50k req/s).
                    let total = WARMUP + secs + Duration::from_secs(2);
                    let rate = noop_rps.unwrap_or(50_000.0_f64).max(2_000.0);
                    let n = (rate * total.as_secs_f64() * 1.3) as usize + conns * 4;
                    let started = Instant::now();
                    let pool = sign_pool(&body, n, &format!("{index:03}"));
                    eprintln!(
                        "  signed {n} distinct deliveries in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    pool
                };
                let cell = bench.run_cell(index, kind, &body, conns, pool);
                report_progress(&cell);
                if kind == Kind::Noop {
                    noop_rps = Some(cell.rps());
                }
                cells.push(cell);
            }
        }
    }

    print_results(&cells, &sizes, &conn_counts, secs);

    println!();
    println!("Per-request CPU, one thread, outside the server (what hookbox adds to HTTP):");
    println!(
        "{:>8} | {:>10} | {:>12} | {:>14} | {:>14} | {:>8} | {:>9}",
        "body", "verify µs", "describe µs", "json Value µs", "json typed µs", "lz4 µs", "lz4 ratio"
    );
    for &size in &sizes {
        let c = costs(&webhook_body(size));
        println!(
            "{:>8} | {:>10.2} | {:>12.2} | {:>14.2} | {:>14.2} | {:>8.2} | {:>8.2}x",
            size_name(size),
            c.verify.as_secs_f64() * 1e6,
            c.describe.as_secs_f64() * 1e6,
            c.json_value.as_secs_f64() * 1e6,
            c.json_typed.as_secs_f64() * 1e6,
            c.lz4.as_secs_f64() * 1e6,
            c.lz4_ratio
        );
    }
    let Bench {
        server,
        client,
        dir,
        db,
        ..
    } = bench;
    drop(client);
    // The database goes first, while the runtime its connections ran on still exists.
    drop(db);
    drop(server);
    let path = dir.path().to_path_buf();
    drop(dir);
    if path.exists() {
        eprintln!("warning: could not remove {}", path.display());
    }
}

fn report_progress(c: &Cell) {
    eprintln!(
        "  {:>6} x {:>3} conns  {:<17} {:>9.0} req/s  p50 {} ms  p99 {} ms  errors {}",
        size_name(c.size),
        c.conns,
        c.kind.name(),
        c.rps(),
        ms(c.percentile(0.5)),
        ms(c.percentile(0.99)),
        c.stats.errors(MEASURE as usize)
    );
}

fn print_results(cells: &[Cell], sizes: &[usize], conn_counts: &[usize], secs: Duration) {
    println!();
    println!(
        "hookbox ingest over loopback: closed loop, one request in flight per connection, \
         {} s measured per cell",
        secs.as_secs_f64()
    );
    println!();
    println!(
        "{:>8} | {:>5} | {:<17} | {:>9} | {:>8} | {:>8} | {:>6}",
        "body", "conns", "server", "req/s", "p50 ms", "p99 ms", "errors"
    );
    println!("{}", "-".repeat(80));
    for c in cells {
        println!(
            "{:>8} | {:>5} | {:<17} | {:>9.0} | {:>8} | {:>8} | {:>6}",
            size_name(c.size),
            c.conns,
            c.kind.name(),
            c.rps(),
            ms(c.percentile(0.5)),
            ms(c.percentile(0.99)),
            c.stats.errors(MEASURE as usize)
        );
    }

    // Errors and anomalies in detail.
    let mut clean = true;
    for c in cells {
        let warm = c.stats.errors(WARM as usize);
        let meas = c.stats.errors(MEASURE as usize);
        let tail = c.stats.errors(STOP as usize);
        if warm + meas + tail > 0
            || c.stats.duplicates > 0
            || c.stats.pool_exhausted
            || c.unfinished
        {
            if clean {
                println!();
                println!("Errors (non-2xx answers and transport errors, by phase):");
                clean = false;
            }
            let statuses: Vec<String> = c
                .stats
                .statuses
                .iter()
                .filter(|(s, _)| !(200..300).contains(*s))
                .map(|(s, n)| format!("{s}: {}/{}/{}", n[0], n[1], n[2]))
                .collect();
            println!(
                "  {} x {} {}: warm-up {warm}, measured {meas}, tail {tail}; by status \
                 (warm/measured/tail) [{}]; transport {:?}; duplicates {}{}{}",
                size_name(c.size),
                c.conns,
                c.kind.name(),
                statuses.join(", "),
                c.stats.transport,
                c.stats.duplicates,
                if c.stats.pool_exhausted {
                    "; POOL EXHAUSTED (results invalid)"
                } else {
                    ""
                },
                if c.unfinished {
                    "; CLIENTS DID NOT FINISH"
                } else {
                    ""
                },
            );
        }
    }
    if clean {
        println!();
        println!("Errors: none (every answer in every phase was 2xx).");
    }

    let find = |size: usize, conns: usize, kind: Kind| {
        cells
            .iter()
            .find(|c| c.size == size && c.conns == conns && c.kind == kind)
    };
    // `over` / `base` in req/s for every (size, connections) where both ran.
    let ratios = |title: &str, over: Kind, base: Kind| -> Vec<(usize, usize, f64)> {
        let mut found = Vec::new();
        for &size in sizes {
            for &conns in conn_counts {
                if let (Some(a), Some(b)) = (find(size, conns, base), find(size, conns, over)) {
                    let r = b.rps() / a.rps().max(f64::MIN_POSITIVE);
                    if found.is_empty() {
                        println!();
                        println!("Ratio {title} (req/s):");
                    }
                    found.push((size, conns, r));
                    println!(
                        "  {:>8} x {:>3} conns: {:>6.0} / {:>6.0} = {:.3}",
                        size_name(size),
                        conns,
                        b.rps(),
                        a.rps(),
                        r
                    );
                }
            }
        }
        found
    };
    let redb = ratios("hookbox / noop", Kind::Hookbox, Kind::Noop);
    ratios(
        "hookbox with its write-ahead log / noop",
        Kind::HookboxLog,
        Kind::Noop,
    );
    ratios(
        "hookbox with a destination draining / noop",
        Kind::HookboxDrain,
        Kind::Noop,
    );
    ratios(
        "hookbox with its log and a destination draining / noop",
        Kind::HookboxLogDrain,
        Kind::Noop,
    );
    let pg = ratios("hookbox-pg / naive-pg", Kind::HookboxPg, Kind::NaivePg);
    let nodes = ratios(
        "hookbox-pg3 (three nodes) / hookbox-pg (one node)",
        Kind::HookboxPg3,
        Kind::HookboxPg,
    );

    println!();
    println!("Storage profile (measurement window; the stored count covers the whole cell):");
    println!(
        "{:>8} | {:>5} | {:<17} | {:>7} | {:>9} | {:>9} | {:>10} | {:>10} | {:>10} | {:>11} | {:>23}",
        "body",
        "conns",
        "server",
        "commits",
        "avg batch",
        "max batch",
        "commit avg",
        "commit p50",
        "commit p99",
        "append wait",
        "stored count / 2xx"
    );
    for c in cells.iter().filter(|c| c.kind != Kind::Noop) {
        let journal = match &c.journal {
            Some(j) => format!(
                "{:>7} | {:>9.1} | {:>9.0} | {:>7.2} ms | {:>7.2} ms | {:>7.2} ms | {:>8.2} ms",
                j.commits,
                j.avg_batch,
                j.max_batch,
                j.avg_commit * 1e3,
                j.p50_commit * 1e3,
                j.p99_commit * 1e3,
                j.avg_append_wait * 1e3,
            ),
            // One INSERT, one commit per request.
            None => format!(
                "{:>7} | {:>9} | {:>9} | {:>10} | {:>10} | {:>10} | {:>11}",
                c.stats.total_ok, 1, 1, "-", "-", "-", "-"
            ),
        };
        println!(
            "{:>8} | {:>5} | {:<17} | {journal} | {:>23}",
            size_name(c.size),
            c.conns,
            c.kind.name(),
            c.stored_check()
        );
        if let Some(j) = c.journal.as_ref().filter(|j| j.avg_apply > 0.0) {
            println!(
                "{:>8}   {:>5}   of a batch: redb transaction {:.3} ms, log fdatasync {:.3} ms",
                "",
                "",
                j.avg_apply * 1e3,
                j.avg_sync * 1e3
            );
        }
    }

    println!();
    println!(
        "CPU used in the measurement window (% of one core; srv = server runtime with the \
         PostgreSQL journals' writers, load = load generator, writer = redb journal thread, \
         pg = the PostgreSQL server's processes for the bench database; machine = every \
         process on the machine, of 200 %; steal = CPU the hypervisor took away):"
    );
    println!(
        "{:>8} | {:>5} | {:<17} | {:>6} | {:>6} | {:>8} | {:>7} | {:>6} | {:>9} | {:>7} | {:>12} | {:>11}",
        "body",
        "conns",
        "server",
        "srv %",
        "load %",
        "writer %",
        "other %",
        "pg %",
        "machine %",
        "steal %",
        "srv µs / req",
        "pg µs / req"
    );
    for c in cells {
        let Some(cpu) = &c.cpu else { continue };
        let pct = |ns: u64| ns as f64 / 1e9 / c.secs * 100.0;
        let per_req = |ns: u64| ns as f64 / 1e3 / c.stats.measured_ok.max(1) as f64;
        let srv = cpu.group(THREADS, "srv");
        let (pg, pg_per_req) = match cpu.postgres {
            Some(ns) => (format!("{:.0}", pct(ns)), format!("{:.1}", per_req(ns))),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:>8} | {:>5} | {:<17} | {:>6.0} | {:>6.0} | {:>8.0} | {:>7.0} | {:>6} | {:>9.0} | {:>7.0} | {:>12.1} | {:>11}",
            size_name(c.size),
            c.conns,
            c.kind.name(),
            pct(srv),
            pct(cpu.group(THREADS, "load")),
            pct(cpu.group(THREADS, "writer")),
            pct(cpu.group(THREADS, "other")),
            pg,
            pct(cpu.machine),
            pct(cpu.steal),
            per_req(srv),
            pg_per_req
        );
    }

    for c in cells {
        if let Some(a) = &c.activity {
            if std::ptr::eq(c, cells.iter().find(|c| c.activity.is_some()).expect("one")) {
                println!();
                println!(
                    "PostgreSQL for each cell: what its backends were doing in the \
                     measurement window (sampled), and its own counts for the whole cell:"
                );
            }
            println!("  {} x {} {}:", size_name(c.size), c.conns, c.kind.name());
            if let Some(w) = &c.waits {
                println!("    {w}");
            }
            print!("{a}");
        }
    }

    println!();
    println!("Targets:");
    let mut pass = true;
    let mut check = |ok: bool, what: String| {
        pass &= ok;
        println!("  [{}] {what}", if ok { "PASS" } else { "FAIL" });
    };
    for &(size, conns, r) in &redb {
        let target = match size {
            1024 => Some(0.6),
            16384 => Some(0.25),
            _ => None,
        };
        if let Some(t) = target {
            check(
                r >= t,
                format!(
                    "hookbox / noop {r:.3} >= {t} at {} x {conns} conns",
                    size_name(size)
                ),
            );
        }
    }
    for &(size, conns, r) in pg.iter().filter(|(_, conns, _)| *conns == 64) {
        check(
            r >= 3.0,
            format!(
                "hookbox-pg / naive-pg {r:.2} >= 3 at {} x {conns} conns",
                size_name(size)
            ),
        );
    }
    for c in cells
        .iter()
        .filter(|c| matches!(c.kind, Kind::Hookbox | Kind::HookboxPg) && c.conns == 64)
    {
        let p99 = c.percentile(0.99);
        check(
            p99.is_some_and(|d| d <= Duration::from_millis(10)),
            format!(
                "{} p99 {} ms <= 10 ms at {} x 64 conns",
                c.kind.name(),
                ms(p99),
                size_name(c.size)
            ),
        );
    }
    for &(size, conns, r) in nodes
        .iter()
        .filter(|(size, conns, _)| *size == 1024 && *conns == 64)
    {
        check(
            r >= 1.0,
            format!(
                "three nodes / one node {r:.2} >= 1 at {} x {conns} conns",
                size_name(size)
            ),
        );
    }
    let errors: u64 = cells.iter().map(|c| c.stats.errors(MEASURE as usize)).sum();
    check(
        errors == 0,
        format!("no errors in any measurement window ({errors})"),
    );
    let mismatched = cells
        .iter()
        .filter(|c| c.kind != Kind::Noop && c.stored != Some(c.stats.total_ok))
        .count();
    check(
        mismatched == 0,
        format!("every storing cell stored exactly its 2xx count ({mismatched} did not)"),
    );
    println!(
        "  overall: {}",
        if pass {
            "all targets met"
        } else {
            "targets NOT met"
        }
    );
}
