//! Run with: cargo bench --bench ingest
//!
//! A loopback load benchmark of hookbox's ingest path against a no-op HTTP server.
//!
//! For each body size (realistic Stripe-like JSON `invoice.paid` events of 1 KiB and
//! 16 KiB: nested objects, an array of line items, repeated keys) and each connection
//! count (64 and 256 keep-alive HTTP/1.1 connections, one request in flight on each:
//! a closed loop), it drives, in the same process and the same run:
//!
//! - (a) `noop`: a hyper 1 http1 server that reads the whole body and answers `202`;
//! - (b) `hookbox`: an axum `Router` with `route_service("/hooks/sw", endpoint("sw"))`,
//!   source `sw` verified by `standard-webhooks` (a `whsec_` secret), journaled in a
//!   [`RedbJournal`] in a temporary directory (real fsync: the writer commits with
//!   `Durability::Immediate`), dedup on (the default 7-day window).
//!
//! Both servers share one accept loop and hyper http1 connection code, on their own
//! tokio runtime (2 workers, threads `srv`); the load generator runs on another runtime
//! (threads `load`, 2 workers unless `HOOKBOX_BENCH_CLIENT_THREADS` says otherwise).
//! Every request is distinct and validly signed: the signed header sets (unique
//! `webhook-id`, timestamp "now") are generated with [`hookbox::sign`] before the timed
//! phase and share one `Bytes` body. The hookbox pool is sized from the no-op server's
//! rate in the same cell (which bounds hookbox's) and is never reused, so dedup never
//! short-circuits; the no-op server cycles through a small pool.
//!
//! Each cell: 1 s warm-up, then a fixed measurement window (`HOOKBOX_BENCH_SECS`,
//! default 5) counting completed 2xx responses and recording their latency (request
//! sent to response body read). Any non-2xx answer (a `503` from shedding included) or
//! transport error is an error, printed with its status. Output: a table of req/s, p50,
//! p99 and errors per cell, the hookbox/no-op ratio per (size, connections), a summary
//! against the targets (ratio >= 0.6 at 1 KiB, >= 0.25 at 16 KiB, hookbox p99 <= 10 ms at
//! 64 connections), and a profile of each hookbox cell: the journal's own metrics
//! (`hookbox_journal_batch_size`, `hookbox_journal_commit_seconds`, `hookbox_ingest_seconds`,
//! captured by a small metrics recorder installed here), the CPU time each thread group
//! used (from `/proc/self/task`), the journal's event count checked against the 2xx
//! count, and single-threaded per-request costs of verification, JSON metadata parsing
//! and LZ4 compression.
//!
//! Environment: `HOOKBOX_BENCH_SECS` (measurement seconds, default 5),
//! `HOOKBOX_BENCH_CLIENT_THREADS` (1 or 2, default 2), `HOOKBOX_BENCH_SIZES` (bytes,
//! default `1024,16384`), `HOOKBOX_BENCH_CONNS` (default `64,256`),
//! `HOOKBOX_BENCH_SERVERS` (`noop`, `hookbox` or both, the default; one alone is for
//! profiling, e.g. under `perf record`). Only 127.0.0.1 is used; the temporary
//! directory is removed at the end.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

use hookbox::{sign, Hookbox, Inbound, RedbJournal, SignInput, Source, Verifier};

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
}

static METRICS: LazyLock<JournalMetrics> = LazyLock::new(JournalMetrics::default);

impl JournalMetrics {
    fn reset(&self) {
        self.batch.clear();
        self.commit.clear();
        self.ingest.take();
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
            _ => Histogram::noop(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// CPU time per thread group, from /proc/self/task (Linux; empty elsewhere).
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// Server runtime threads (`srv`).
    server: u64,
    /// Load-generator runtime threads (`load`).
    client: u64,
    /// The journal's group-commit writer thread.
    writer: u64,
    /// Everything else (main thread, disk watcher).
    other: u64,
}

/// Nanoseconds of CPU each thread group has used so far.
fn cpu_snapshot() -> Option<Cpu> {
    let mut cpu = Cpu::default();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let Some(ns) = thread_cpu_ns(&dir) else {
            continue;
        };
        let slot = if comm.starts_with("srv") {
            &mut cpu.server
        } else if comm.starts_with("load") {
            &mut cpu.client
        } else if comm.starts_with("hookbox-journal") {
            &mut cpu.writer
        } else {
            &mut cpu.other
        };
        *slot += ns;
    }
    Some(cpu)
}

fn thread_cpu_ns(dir: &Path) -> Option<u64> {
    // schedstat: run time in ns; stat: utime + stime in clock ticks (USER_HZ = 100).
    if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(ns);
        }
    }
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

impl Cpu {
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            server: self.server.saturating_sub(before.server),
            client: self.client.saturating_sub(before.client),
            writer: self.writer.saturating_sub(before.writer),
            other: self.other.saturating_sub(before.other),
        }
    }
}

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
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Noop => "noop",
            Kind::Hookbox => "hookbox",
        }
    }
}

/// One accept loop and hyper http1 (keep-alive) per connection, for both servers.
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

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    journal: Option<Arc<RedbJournal>>,
}

fn start_server(rt: &Runtime, kind: Kind, dir: &Path) -> Running {
    let listener = rt
        .block_on(TcpListener::bind(("127.0.0.1", 0)))
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel();
    let (task, journal) = match kind {
        Kind::Noop => (rt.spawn(serve(listener, service_fn(noop), stopped)), None),
        Kind::Hookbox => {
            let journal = Arc::new(RedbJournal::open(dir.join("hookbox.redb")).expect("journal"));
            let verifier = Verifier::builder(SCHEME)
                .secret(SECRET)
                .build()
                .expect("verifier");
            let hookbox = Hookbox::new(journal.clone()).source(Source::new("sw", verifier));
            let router: Router = Router::new().route_service(PATH, hookbox.endpoint("sw"));
            let svc = service_fn(move |req: Request<Incoming>| router.clone().oneshot(req));
            (rt.spawn(serve(listener, svc, stopped)), Some(journal))
        }
    };
    Running {
        addr,
        stop,
        task,
        journal,
    }
}

// ---------------------------------------------------------------------------------------
// Load generator.
// ---------------------------------------------------------------------------------------

/// What every virtual client shares.
struct Load {
    phase: AtomicU8,
    pool: Vec<Signature>,
    /// The pool is cycled (no-op server) or used once (hookbox: no duplicates).
    wrap: bool,
    next: AtomicUsize,
    body: Bytes,
    host: HeaderValue,
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

    fn request(&self, sig: &Signature) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = Uri::from_static(PATH);
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
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

/// One virtual client: one keep-alive connection, one request in flight at a time.
async fn client(load: Arc<Load>, addr: SocketAddr) -> ClientStats {
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
            let req = load.request(sig);
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
    /// Events in the journal after the cell, and whether that equals the 2xx count.
    count: Option<u64>,
}

#[derive(Debug)]
struct Cell {
    size: usize,
    conns: usize,
    kind: Kind,
    secs: f64,
    stats: ClientStats,
    cpu: Option<Cpu>,
    journal: Option<JournalProfile>,
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
}

struct Runtimes {
    server: Runtime,
    client: Runtime,
}

#[allow(clippy::too_many_arguments)]
fn run_cell(
    rts: &Runtimes,
    root: &Path,
    index: usize,
    kind: Kind,
    body: &Bytes,
    conns: usize,
    pool: Vec<Signature>,
    secs: Duration,
) -> Cell {
    let dir = root.join(format!("cell-{index}"));
    std::fs::create_dir_all(&dir).expect("cell dir");
    let server = start_server(&rts.server, kind, &dir);
    let load = Arc::new(Load {
        phase: AtomicU8::new(WARM),
        wrap: kind == Kind::Noop,
        pool,
        next: AtomicUsize::new(0),
        body: body.clone(),
        host: HeaderValue::from_str(&server.addr.to_string()).expect("host"),
        length: HeaderValue::from(body.len()),
    });
    let addr = server.addr;
    let (measured, cpu, stats, unfinished) = rts.client.block_on(async {
        let clients: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(client(load.clone(), addr)))
            .collect();
        tokio::time::sleep(WARMUP).await;
        METRICS.reset();
        let cpu0 = cpu_snapshot();
        let t0 = Instant::now();
        load.phase.store(MEASURE, Ordering::Release);
        tokio::time::sleep(secs).await;
        load.phase.store(STOP, Ordering::Release);
        let measured = t0.elapsed();
        let cpu = cpu_snapshot().zip(cpu0).map(|(b, a)| b.since(a));
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
        (measured, cpu, stats, unfinished)
    });
    let batch = METRICS.batch.take();
    let mut commit = METRICS.commit.take();
    let (appends, wait) = METRICS.ingest.take();
    let _ = server.stop.send(());
    let _ = rts.server.block_on(server.task);
    let journal = server.journal.map(|j| {
        let count = j.events_stored().ok();
        j.shutdown();
        drop(j);
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
            count,
        }
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
        unfinished,
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
    let servers = std::env::var("HOOKBOX_BENCH_SERVERS").unwrap_or_default();
    let run_noop = servers.is_empty() || servers.contains("noop");
    let run_hookbox = servers.is_empty() || servers.contains("hookbox");

    metrics::set_global_recorder(BenchRecorder).expect("no other metrics recorder");
    let rts = Runtimes {
        server: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("srv")
            .enable_all()
            .build()
            .expect("server runtime"),
        client: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(client_threads)
            .thread_name("load")
            .enable_all()
            .build()
            .expect("client runtime"),
    };
    let tmp = tempfile::Builder::new()
        .prefix("hookbox-ingest-bench")
        .tempdir()
        .expect("temp dir");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "ingest bench: {} s per cell after {} s warm-up; server runtime 2 workers, load \
         runtime {client_threads}; {cores} CPUs; journal in {}",
        secs.as_secs_f64(),
        WARMUP.as_secs(),
        tmp.path().display()
    );

    let mut cells: Vec<Cell> = Vec::new();
    let mut index = 0;
    for &size in &sizes {
        let body = webhook_body(size);
        let noop_pool = sign_pool(&body, NOOP_POOL, "noop");
        for &conns in &conn_counts {
            index += 1;
            let mut noop_rps = None;
            if run_noop {
                let noop = run_cell(
                    &rts,
                    tmp.path(),
                    index,
                    Kind::Noop,
                    &body,
                    conns,
                    noop_pool.clone(),
                    secs,
                );
                report_progress(&noop);
                noop_rps = Some(noop.rps());
                cells.push(noop);
            }
            if !run_hookbox {
                continue;
            }
            // hookbox cannot outrun the no-op server: its rate bounds the pool needed
            // (without a no-op cell, assume 50k req/s).
            let total = WARMUP + secs + Duration::from_secs(2);
            let rate = noop_rps.unwrap_or(50_000.0).max(2_000.0);
            let n = (rate * total.as_secs_f64() * 1.3) as usize + conns * 4;
            let started = Instant::now();
            let pool = sign_pool(&body, n, &format!("{index:03}"));
            eprintln!(
                "  signed {n} distinct deliveries in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            index += 1;
            let hb = run_cell(
                &rts,
                tmp.path(),
                index,
                Kind::Hookbox,
                &body,
                conns,
                pool,
                secs,
            );
            report_progress(&hb);
            cells.push(hb);
        }
    }
    drop(rts);

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
    let path = tmp.path().to_path_buf();
    drop(tmp);
    if path.exists() {
        eprintln!("warning: could not remove {}", path.display());
    }
}

fn report_progress(c: &Cell) {
    eprintln!(
        "  {:>6} x {:>3} conns  {:<7} {:>9.0} req/s  p50 {} ms  p99 {} ms  errors {}",
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
        "{:>8} | {:>5} | {:<7} | {:>9} | {:>8} | {:>8} | {:>6}",
        "body", "conns", "server", "req/s", "p50 ms", "p99 ms", "errors"
    );
    println!("{}", "-".repeat(70));
    for c in cells {
        println!(
            "{:>8} | {:>5} | {:<7} | {:>9.0} | {:>8} | {:>8} | {:>6}",
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

    println!();
    println!("Ratio hookbox / noop (req/s):");
    let mut ratios = Vec::new();
    for &size in sizes {
        for &conns in conn_counts {
            if let (Some(a), Some(b)) = (
                find(size, conns, Kind::Noop),
                find(size, conns, Kind::Hookbox),
            ) {
                let r = b.rps() / a.rps().max(f64::MIN_POSITIVE);
                ratios.push((size, conns, r));
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

    println!();
    println!("Hookbox profile (measurement window):");
    println!(
        "{:>8} | {:>5} | {:>7} | {:>9} | {:>9} | {:>10} | {:>10} | {:>10} | {:>10} | {:>21}",
        "body",
        "conns",
        "commits",
        "avg batch",
        "max batch",
        "commit avg",
        "commit p50",
        "commit p99",
        "append wait",
        "journal count / 2xx"
    );
    for c in cells.iter().filter(|c| c.kind == Kind::Hookbox) {
        let Some(j) = &c.journal else { continue };
        let count = match j.count {
            Some(n) if n == c.stats.total_ok => format!("{n} = {} ok", c.stats.total_ok),
            Some(n) => format!("{n} != {} MISMATCH", c.stats.total_ok),
            None => "unavailable".into(),
        };
        println!(
            "{:>8} | {:>5} | {:>7} | {:>9.1} | {:>9.0} | {:>7.2} ms | {:>7.2} ms | {:>7.2} ms | {:>8.2} ms | {:>21}",
            size_name(c.size),
            c.conns,
            j.commits,
            j.avg_batch,
            j.max_batch,
            j.avg_commit * 1e3,
            j.p50_commit * 1e3,
            j.p99_commit * 1e3,
            j.avg_append_wait * 1e3,
            count
        );
    }

    println!();
    println!(
        "CPU used in the measurement window (% of one core; server = runtime `srv`, load = \
         runtime `load`, writer = journal thread):"
    );
    println!(
        "{:>8} | {:>5} | {:<7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>14}",
        "body", "conns", "server", "srv %", "load %", "writer %", "other %", "srv µs / req"
    );
    for c in cells {
        let Some(cpu) = c.cpu else { continue };
        let pct = |ns: u64| ns as f64 / 1e9 / c.secs * 100.0;
        println!(
            "{:>8} | {:>5} | {:<7} | {:>8.0} | {:>8.0} | {:>8.0} | {:>8.0} | {:>14.1}",
            size_name(c.size),
            c.conns,
            c.kind.name(),
            pct(cpu.server),
            pct(cpu.client),
            pct(cpu.writer),
            pct(cpu.other),
            cpu.server as f64 / 1e3 / c.stats.measured_ok.max(1) as f64
        );
    }

    println!();
    println!("Targets:");
    let mut pass = true;
    for &(size, conns, r) in &ratios {
        let target = match size {
            1024 => Some(0.6),
            16384 => Some(0.25),
            _ => None,
        };
        if let Some(t) = target {
            let ok = r >= t;
            pass &= ok;
            println!(
                "  [{}] ratio {:.3} >= {t} at {} x {conns} conns",
                if ok { "PASS" } else { "FAIL" },
                r,
                size_name(size)
            );
        }
    }
    for c in cells
        .iter()
        .filter(|c| c.kind == Kind::Hookbox && c.conns == 64)
    {
        let p99 = c.percentile(0.99);
        let ok = p99.is_some_and(|d| d <= Duration::from_millis(10));
        pass &= ok;
        println!(
            "  [{}] hookbox p99 {} ms <= 10 ms at {} x 64 conns",
            if ok { "PASS" } else { "FAIL" },
            ms(p99),
            size_name(c.size)
        );
    }
    let errors: u64 = cells.iter().map(|c| c.stats.errors(MEASURE as usize)).sum();
    println!(
        "  [{}] no errors in any measurement window ({errors})",
        if errors == 0 { "PASS" } else { "FAIL" }
    );
    pass &= errors == 0;
    println!(
        "  overall: {}",
        if pass {
            "all targets met"
        } else {
            "targets NOT met"
        }
    );
}
