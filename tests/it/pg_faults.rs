//! PostgreSQL failing under the journal, through proxies the tests control: every
//! connection cut at once mid-stream, new connections refused for a while, then traffic
//! passed again, both under a `PostgresJournal` in this process and under a
//! `hookbox serve` child; a database that stops answering with nothing closed; and TLS,
//! terminated by a proxy that speaks PostgreSQL's `SSLRequest` exchange, for each
//! `sslmode`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookbox::{AppendOptions, Journal, JournalError, PostgresJournal};
use serde_json::json;
use tokio::sync::watch;

use crate::serve::{signed, write_config, SW_SECRET};
use crate::support::events::trusted;
use crate::support::pg::{server_addr, TestDb};
use crate::support::pgproxy::Proxy;
use crate::support::server::Server;

/// Polls `cond` every 20 ms until it holds; panics with `what` after `within`.
async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event row in the test database, read on the real port (not through the
/// proxy): provider delivery id -> hookbox ids.
async fn rows_by_delivery(db: &TestDb) -> HashMap<String, Vec<String>> {
    let c = db.client().await;
    let mut rows: HashMap<String, Vec<String>> = HashMap::new();
    for r in c
        .query("SELECT delivery_id, id FROM hookbox_events", &[])
        .await
        .unwrap()
    {
        let delivery: Option<String> = r.get(0);
        let id = shown(r.get::<_, i64>(1));
        rows.entry(delivery.expect("every event here has a delivery id"))
            .or_default()
            .push(id);
    }
    rows
}

/// An id column as hookbox shows the id (`evt_` and 16 hex digits).
fn shown(raw: i64) -> String {
    format!("evt_{:016x}", raw as u64)
}

/// The moments of one outage, as the test caused it.
#[derive(Debug, Clone, Copy)]
struct Outage {
    /// Just before the connections were cut.
    cut: Instant,
    /// Once the proxy had no connection left open: from here nothing can commit.
    cut_done: Instant,
    /// Just before the proxy passed traffic again.
    restored: Instant,
}

impl Outage {
    /// True when a request sent at `sent` and answered at `answered` was in flight when
    /// the connections were cut: its `COMMIT` may have landed with its answer lost.
    fn in_flight_at_cut(&self, sent: Instant, answered: Instant) -> bool {
        sent < self.cut_done && answered >= self.cut
    }

    /// True when a request was sent and answered while no connection could exist.
    fn wholly_inside(&self, sent: Instant, answered: Instant) -> bool {
        sent >= self.cut_done && answered < self.restored
    }
}

// ---- a PostgresJournal through a failing link ------------------------------------

/// One append and its answer.
#[derive(Debug)]
struct Appended {
    delivery: String,
    sent: Instant,
    answered: Instant,
    /// The id, or the error: (retryable, its kind, its text).
    result: Result<String, (bool, &'static str, String)>,
}

fn kind(e: &JournalError) -> &'static str {
    match e {
        JournalError::Unavailable(_) => "unavailable",
        JournalError::Storage(_) => "storage",
        JournalError::Overloaded(_) => "overloaded",
        _ => "other",
    }
}

fn dedup() -> AppendOptions {
    AppendOptions {
        dedup_window: Some(Duration::from_secs(3600)),
        order_key: None,
        destinations: Vec::new(),
    }
}

/// Appends distinct events (`d0`, `d1`, ...) until `stop`, backing off a little after a
/// refusal as a provider would; records every answer.
async fn append_stream(
    journal: Arc<PostgresJournal>,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Appended>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let n = next.fetch_add(1, Ordering::SeqCst);
        if n >= 40_000 {
            break;
        }
        let delivery = format!("d{n}");
        let body = json!({"id": delivery, "type": "order.created", "n": n}).to_string();
        let event = trusted("faults", body.as_bytes());
        let sent = Instant::now();
        let r = journal.append(&event, &dedup()).await;
        let answered = Instant::now();
        let failed = r.is_err();
        log.lock().unwrap().push(Appended {
            delivery,
            sent,
            answered,
            result: r
                .map(|a| {
                    assert!(
                        !a.duplicate,
                        "a fresh delivery id was taken for a duplicate"
                    );
                    a.id.to_string()
                })
                .map_err(|e| (e.is_retryable(), kind(&e), e.to_string())),
        });
        let pause = if failed { 20 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_cut_and_refused_connections_are_acked_only_once_committed() {
    let Some(db) = TestDb::create("pg_faults_journal").await else {
        return;
    };
    let proxy = Proxy::plain(server_addr().await).await;
    // A lease shorter than the outage: the node must also come back from a lease that
    // ran out while it could not heartbeat.
    let journal = Arc::new(
        PostgresJournal::builder(db.url_via(proxy.addr, "sslmode=disable"))
            .node("faults")
            .lease(Duration::from_secs(2))
            .open()
            .await
            .expect("open through the proxy"),
    );
    let log = Arc::new(Mutex::new(Vec::<Appended>::new()));
    let (next, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let streams: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(append_stream(
                journal.clone(),
                next.clone(),
                stop.clone(),
                log.clone(),
            ))
        })
        .collect();
    let acked_since = |t: Instant| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|a| a.sent >= t && a.result.is_ok())
            .count()
    };
    let start = Instant::now();
    wait_until(Duration::from_secs(30), "100 appends acked", || {
        acked_since(start) >= 100
    })
    .await;
    assert!(journal.load().healthy);

    // The outage: every connection dropped mid-stream, new ones closed at once.
    let cut = Instant::now();
    proxy.refuse();
    proxy.cut();
    let cut_done = wait_until(Duration::from_secs(10), "every connection closed", || {
        proxy.open() == 0
    })
    .await;
    wait_until(
        Duration::from_secs(10),
        "the journal reports unhealthy",
        || !journal.load().healthy,
    )
    .await;
    let unhealthy = Instant::now();
    // Hold the outage past the lease, checking the journal stays unhealthy throughout.
    while unhealthy.elapsed() < Duration::from_secs(3) {
        assert!(
            !journal.load().healthy,
            "healthy while the database is cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until(
        Duration::from_secs(10),
        "appends refused during the outage",
        || {
            log.lock()
                .unwrap()
                .iter()
                .filter(|a| a.sent >= cut_done)
                .count()
                >= 20
        },
    )
    .await;
    assert!(
        proxy.refused() > 0,
        "the journal tried to reconnect during the outage"
    );
    let restored = Instant::now();
    proxy.pass();
    let outage = Outage {
        cut,
        cut_done,
        restored,
    };

    // It recovers by itself: healthy again, and appending.
    wait_until(Duration::from_secs(20), "healthy again", || {
        journal.load().healthy
    })
    .await;
    wait_until(Duration::from_secs(30), "100 appends acked after", || {
        acked_since(restored) >= 100
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for s in streams {
        tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("every append is answered")
            .unwrap();
    }
    let log = std::mem::take(&mut *log.lock().unwrap());

    // During the outage: refused, retryably, never acknowledged.
    let inside: Vec<&Appended> = log
        .iter()
        .filter(|a| outage.wholly_inside(a.sent, a.answered))
        .collect();
    assert!(
        inside.len() >= 20,
        "{} appends inside the outage",
        inside.len()
    );
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for a in &inside {
        match &a.result {
            Ok(id) => panic!(
                "{} acked as {id} while the database was cut off",
                a.delivery
            ),
            Err((retryable, kind, e)) => {
                assert!(retryable, "{}: {e} is not retryable", a.delivery);
                assert!(
                    *kind == "unavailable" || *kind == "storage",
                    "{}: {e}",
                    a.delivery
                );
                *kinds.entry(kind).or_default() += 1;
            }
        }
    }
    // Refused without a connection to try: unavailable, not a failed write.
    assert!(
        kinds.get("unavailable").is_some_and(|&n| n > 0),
        "no append during the outage was answered `Unavailable`: {kinds:?}"
    );

    // In the database: every acked event exactly once, under its id; of the refused,
    // only those whose COMMIT was in flight when the link broke may be there.
    let acked: HashMap<&str, &str> = log
        .iter()
        .filter_map(|a| Some((a.delivery.as_str(), a.result.as_ref().ok()?.as_str())))
        .collect();
    let refused: Vec<&Appended> = log.iter().filter(|a| a.result.is_err()).collect();
    let unknown: HashSet<&str> = refused
        .iter()
        .filter(|a| outage.in_flight_at_cut(a.sent, a.answered))
        .map(|a| a.delivery.as_str())
        .collect();
    let rows = rows_by_delivery(&db).await;
    for (delivery, id) in &acked {
        assert_eq!(
            rows.get(*delivery).map(Vec::as_slice),
            Some(&[id.to_string()][..]),
            "acked {delivery} is in the database once, as {id}"
        );
    }
    let landed: Vec<&String> = rows
        .keys()
        .filter(|d| !acked.contains_key(d.as_str()))
        .collect();
    for d in &landed {
        assert!(
            unknown.contains(d.as_str()),
            "{d} was refused outside the cut, yet it is in the database"
        );
        assert_eq!(rows[*d].len(), 1, "{d} is in the database more than once");
    }
    assert!(rows.len() <= acked.len() + unknown.len());

    // The provider retries everything refused; deduplication absorbs the retries of
    // those that had landed.
    let mut retried: HashMap<String, String> = HashMap::new();
    for a in &refused {
        let body = json!({"id": a.delivery, "type": "order.created", "retry": true}).to_string();
        let event = trusted("faults", body.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(20);
        let got = loop {
            match journal.append(&event, &dedup()).await {
                Ok(got) => break got,
                Err(e) => {
                    assert!(Instant::now() < deadline, "retry of {}: {e}", a.delivery);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(
            got.duplicate,
            landed.contains(&&a.delivery),
            "the retry of {} is a duplicate exactly when the first try landed",
            a.delivery
        );
        retried.insert(a.delivery.clone(), got.id.to_string());
    }
    let rows = rows_by_delivery(&db).await;
    let sent: HashSet<&str> = log.iter().map(|a| a.delivery.as_str()).collect();
    assert_eq!(
        rows.keys().map(String::as_str).collect::<HashSet<_>>(),
        sent,
        "after the retries, every delivery is journaled"
    );
    for (d, ids) in &rows {
        let expect = acked
            .get(d.as_str())
            .copied()
            .or(retried.get(d).map(String::as_str));
        assert_eq!(
            ids.as_slice(),
            &[expect.unwrap().to_owned()][..],
            "{d} once"
        );
    }
    assert_eq!(journal.count().await.unwrap(), rows.len() as u64);
    eprintln!(
        "pg_faults: {} appends, {} acked, {} refused ({} inside the outage, {} in flight at the cut, {} of those had landed), {} reconnects refused",
        log.len(),
        acked.len(),
        refused.len(),
        inside.len(),
        unknown.len(),
        landed.len(),
        proxy.refused()
    );
    journal.close().await.unwrap();
}

/// Starts `n` [`append_stream`]s; returns their stop flag and handles.
fn append_streams(
    n: usize,
    journal: &Arc<PostgresJournal>,
    next: &Arc<AtomicU64>,
    log: &Arc<Mutex<Vec<Appended>>>,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..n)
        .map(|_| {
            tokio::spawn(append_stream(
                journal.clone(),
                next.clone(),
                stop.clone(),
                log.clone(),
            ))
        })
        .collect();
    (stop, handles)
}

/// Stops streams and waits (up to 30 s) for each to have its last answer.
async fn stop_streams((stop, handles): (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>)) {
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("every append is answered")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_is_unhealthy_and_appends_get_answers() {
    let Some(db) = TestDb::create("pg_faults_stall").await else {
        return;
    };
    let proxy = Proxy::plain(server_addr().await).await;
    let journal = Arc::new(
        PostgresJournal::builder(db.url_via(proxy.addr, "sslmode=disable"))
            .node("stalled")
            .open()
            .await
            .expect("open through the proxy"),
    );
    let log = Arc::new(Mutex::new(Vec::<Appended>::new()));
    let next = Arc::new(AtomicU64::new(0));
    let acked_since = |t: Instant| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|a| a.sent >= t && a.result.is_ok())
            .count()
    };
    let start = Instant::now();
    let streams = append_streams(6, &journal, &next, &log);
    wait_until(Duration::from_secs(30), "100 appends acked", || {
        acked_since(start) >= 100
    })
    .await;
    stop_streams(streams).await;

    // The database stops answering and nothing is closed (a server that hangs, or a
    // partition): every connection stays open and silent, new ones too. The node is
    // idle: only its own probe can tell.
    let stalled = Instant::now();
    proxy.stall();
    let unhealthy = wait_until(
        Duration::from_secs(20),
        "an idle journal reports unhealthy during the stall",
        || !journal.load().healthy,
    )
    .await;
    // Appends during the stall are answered (refused), none left waiting for good.
    let during = Instant::now();
    let streams = append_streams(6, &journal, &next, &log);
    wait_until(
        Duration::from_secs(60),
        "appends refused during the stall",
        || {
            log.lock()
                .unwrap()
                .iter()
                .filter(|a| a.sent >= during && a.result.is_err())
                .count()
                >= 6
        },
    )
    .await;
    let healed = Instant::now();
    proxy.cut();
    proxy.pass();
    wait_until(Duration::from_secs(20), "healthy again", || {
        journal.load().healthy
    })
    .await;
    wait_until(Duration::from_secs(30), "100 appends acked after", || {
        acked_since(healed) >= 100
    })
    .await;
    stop_streams(streams).await;
    let log = std::mem::take(&mut *log.lock().unwrap());

    let inside: Vec<&Appended> = log
        .iter()
        .filter(|a| a.sent >= during && a.sent < healed)
        .collect();
    let slowest = inside
        .iter()
        .map(|a| a.answered - a.sent)
        .max()
        .unwrap_or_default();
    for a in &inside {
        // A pool wait, a connection attempt or a round trip, each bounded, and a writer
        // to be free: never the whole stall.
        assert!(
            a.answered - a.sent <= Duration::from_secs(30),
            "{} waited {:?} for an answer",
            a.delivery,
            a.answered - a.sent
        );
        if a.answered < healed {
            assert!(
                a.result.is_err(),
                "{} acked while the database hung",
                a.delivery
            );
        }
    }
    let rows = rows_by_delivery(&db).await;
    for a in &log {
        match &a.result {
            Ok(id) => assert_eq!(
                rows.get(&a.delivery).map(Vec::as_slice),
                Some(&[id.clone()][..]),
                "acked {} is in the database once",
                a.delivery
            ),
            Err(_) => assert!(
                !rows.contains_key(&a.delivery),
                "{} was refused, yet it is in the database",
                a.delivery
            ),
        }
    }
    eprintln!(
        "pg_faults stall: unhealthy after {:?}, {} appends during the stall ({} refused, the slowest answered in {slowest:?}), held {:?}",
        unhealthy - stalled,
        inside.len(),
        inside.iter().filter(|a| a.result.is_err()).count(),
        healed - stalled
    );
    journal.close().await.unwrap();
}

// ---- hookbox serve through a failing link ----------------------------------------

/// One webhook post and its answer.
#[derive(Debug)]
struct Posted {
    msg: String,
    body: String,
    sent: Instant,
    answered: Instant,
    status: u16,
    retry_after: Option<String>,
    /// hookbox's id, from a 202 or 200.
    id: Option<String>,
    /// The problem's `kind` and `detail`, from a refusal.
    problem: Option<(String, String)>,
}

async fn post(client: &reqwest::Client, url: &str, msg: &str, body: &str) -> Posted {
    let sent = Instant::now();
    let res = signed(
        client,
        url,
        "standard-webhooks",
        SW_SECRET,
        msg,
        body.as_bytes(),
    )
    .send()
    .await
    .expect("hookbox answers");
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let json = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let id = json["id"].as_str().map(str::to_owned);
    let problem = json["kind"].as_str().map(|k| {
        (
            k.to_owned(),
            json["detail"].as_str().unwrap_or("").to_owned(),
        )
    });
    Posted {
        msg: msg.to_owned(),
        body: body.to_owned(),
        sent,
        answered: Instant::now(),
        status,
        retry_after,
        id,
        problem,
    }
}

/// Posts distinct signed webhooks (`msg_0`, `msg_1`, ...) until `stop`.
async fn post_stream(
    url: String,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Posted>>>,
) {
    let client = crate::support::client();
    while !stop.load(Ordering::SeqCst) {
        let n = next.fetch_add(1, Ordering::SeqCst);
        if n >= 5_000 {
            break;
        }
        let body = format!(r#"{{"type":"order.created","n":{n}}}"#);
        let p = post(&client, &url, &format!("msg_{n}"), &body).await;
        let pause = if p.status == 202 { 10 } else { 40 };
        log.lock().unwrap().push(p);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

pub(crate) async fn readyz(client: &reqwest::Client, admin: &str) -> u16 {
    client
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .expect("the admin listener answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_503_while_postgres_is_cut_off_and_loses_no_acked_webhook() {
    let Some(db) = TestDb::create("pg_faults_serve").await else {
        return;
    };
    let proxy = Proxy::plain(server_addr().await).await;
    // The application holds deliveries back across the cut and fails them during the
    // outage: their outcomes cannot be journaled.
    let app = GatedApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &app.url,
        r#"{ schedule = ["200ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s"] }"#,
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\n",
    );
    let journal = db.url_via(proxy.addr, "sslmode=disable");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("journal = ") {
                format!("journal = \"{journal}\"\nnode = \"faults\"\nlease = \"2s\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, text).unwrap();
    let server = Server::start(&cfg);
    let admin = server.admin.clone().expect("the admin listener");
    let client = crate::support::client();
    assert_eq!(readyz(&client, &admin).await, 200);

    let log = Arc::new(Mutex::new(Vec::<Posted>::new()));
    let (next, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let streams: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(post_stream(
                server.url("/hooks/sw"),
                next.clone(),
                stop.clone(),
                log.clone(),
            ))
        })
        .collect();
    let acked_since = |t: Instant| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|p| p.sent >= t && p.status == 202)
            .count()
    };
    let start = Instant::now();
    wait_until(Duration::from_secs(30), "30 webhooks acked", || {
        acked_since(start) >= 30
    })
    .await;
    app.close_gate();
    wait_until(
        Duration::from_secs(30),
        "a delivery held at the application",
        || app.waiting() > 0,
    )
    .await;

    let cut = Instant::now();
    proxy.refuse();
    proxy.cut();
    let cut_done = wait_until(Duration::from_secs(10), "every connection closed", || {
        proxy.open() == 0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&client, &admin).await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz still 200 during the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unready = Instant::now();
    // The deliveries held back fail now, while nothing can be journaled.
    app.fail_held();
    wait_until(Duration::from_secs(10), "held deliveries answered", || {
        app.waiting() == 0
    })
    .await;
    while unready.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            readyz(&client, &admin).await,
            503,
            "/readyz during the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(
        Duration::from_secs(20),
        "webhooks posted during the outage",
        || {
            log.lock()
                .unwrap()
                .iter()
                .filter(|p| p.sent >= cut_done)
                .count()
                >= 10
        },
    )
    .await;
    let restored = Instant::now();
    proxy.pass();
    let outage = Outage {
        cut,
        cut_done,
        restored,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(&client, &admin).await != 200 {
        assert!(Instant::now() < deadline, "/readyz not 200 again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until(Duration::from_secs(30), "30 webhooks acked after", || {
        acked_since(restored) >= 30
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for s in streams {
        tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("every post is answered")
            .unwrap();
    }
    let log = std::mem::take(&mut *log.lock().unwrap());

    for p in &log {
        assert!(
            p.status == 202 || p.status == 503,
            "{}: {} (only 202 or 503 here)",
            p.msg,
            p.status
        );
        if p.status == 503 {
            assert!(
                p.retry_after.is_some(),
                "{}: a 503 without Retry-After",
                p.msg
            );
            let (kind, detail) = p.problem.as_ref().expect("a problem document");
            let expect = if detail.contains("lease ran out") || detail.contains("unreachable") {
                // Nothing was tried: unavailable, not a storage failure.
                "journal_unavailable"
            } else {
                kind.as_str()
            };
            assert!(
                kind == expect
                    && (kind == "journal_unavailable" || kind == "journal_storage_failed"),
                "{}: {kind}: {detail}",
                p.msg
            );
        }
    }
    let inside: Vec<&Posted> = log
        .iter()
        .filter(|p| outage.wholly_inside(p.sent, p.answered))
        .collect();
    assert!(
        inside.len() >= 10,
        "{} posts inside the outage",
        inside.len()
    );
    for p in &inside {
        assert_eq!(
            p.status, 503,
            "{} answered {} while cut off",
            p.msg, p.status
        );
    }

    // The provider retries every 503 until hookbox takes it: 202, or 200 when the
    // first try had landed after all.
    let acked: HashMap<&str, &str> = log
        .iter()
        .filter(|p| p.status == 202)
        .map(|p| {
            (
                p.msg.as_str(),
                p.id.as_deref().expect("a 202 carries the id"),
            )
        })
        .collect();
    let refused: Vec<&Posted> = log.iter().filter(|p| p.status == 503).collect();
    let rows = rows_by_delivery(&db).await;
    let landed: HashSet<&str> = rows
        .keys()
        .map(String::as_str)
        .filter(|m| !acked.contains_key(m))
        .collect();
    for m in &landed {
        let p = refused
            .iter()
            .find(|p| p.msg == *m)
            .expect("a refused post");
        assert!(
            outage.in_flight_at_cut(p.sent, p.answered),
            "{m} was refused outside the cut, yet it is in the database"
        );
    }
    let mut retried: HashMap<String, String> = HashMap::new();
    for p in &refused {
        let deadline = Instant::now() + Duration::from_secs(20);
        let again = loop {
            let again = post(&client, &server.url("/hooks/sw"), &p.msg, &p.body).await;
            if again.status != 503 {
                break again;
            }
            assert!(
                Instant::now() < deadline,
                "the retry of {} is still 503",
                p.msg
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let expect = if landed.contains(p.msg.as_str()) {
            200
        } else {
            202
        };
        assert_eq!(again.status, expect, "the retry of {}", p.msg);
        retried.insert(p.msg.clone(), again.id.expect("the id"));
    }

    // Every webhook is journaled exactly once, under the id it was answered with.
    let rows = rows_by_delivery(&db).await;
    let sent: HashSet<&str> = log.iter().map(|p| p.msg.as_str()).collect();
    assert_eq!(
        rows.keys().map(String::as_str).collect::<HashSet<_>>(),
        sent
    );
    let mut ids = HashSet::new();
    for (m, got) in &rows {
        let expect = acked
            .get(m.as_str())
            .copied()
            .or(retried.get(m).map(String::as_str));
        assert_eq!(
            got.as_slice(),
            &[expect.unwrap().to_owned()][..],
            "{m} once"
        );
        ids.insert(got[0].clone());
    }

    // And every one is delivered, those whose attempt failed during the outage (its
    // outcome could not be journaled) too; then the journal has each one done.
    assert!(
        app.failed() > 0,
        "attempts failed while the outcome could not be journaled"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = app.delivered.lock().unwrap().clone();
        let missing: Vec<&String> = ids.difference(&got).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} journaled webhooks never delivered: {:?}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = c
            .query_one(
                "SELECT count(*) FROM hookbox_deliveries WHERE state <> 2",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} deliveries delivered but never journaled done"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "pg_faults serve: {} posts, {} acked, {} refused ({} inside the outage, {} had landed), {} attempts ({} failed in the outage)",
        log.len(),
        acked.len(),
        refused.len(),
        inside.len(),
        landed.len(),
        app.attempts.load(Ordering::SeqCst),
        app.failed(),
    );
}

/// The application hookbox delivers to. It answers 200 (and records the id) until
/// [`close_gate`](GatedApp::close_gate); from then on it holds each request until
/// [`fail_held`](GatedApp::fail_held), and answers it 503. After that it answers 200
/// again.
struct GatedApp {
    url: String,
    /// 0: open, 1: holding requests, 2: failing those held.
    gate: Arc<watch::Sender<u8>>,
    waiting: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    delivered: Arc<Mutex<HashSet<String>>>,
}

/// A request held at the gate: (waiting, failed).
struct Held(Arc<AtomicU64>, Arc<AtomicU64>);

impl Drop for Held {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GatedApp {
    async fn start() -> GatedApp {
        let app = GatedApp {
            url: String::new(),
            gate: Arc::new(watch::channel(0).0),
            waiting: Arc::default(),
            attempts: Arc::default(),
            failed: Arc::default(),
            delivered: Arc::default(),
        };
        let (gate, waiting, attempts, failed, delivered) = (
            app.gate.clone(),
            app.waiting.clone(),
            app.attempts.clone(),
            app.failed.clone(),
            app.delivered.clone(),
        );
        let handler = move |headers: http::HeaderMap| {
            let (mut gate, waiting, attempts, failed, delivered) = (
                gate.subscribe(),
                waiting.clone(),
                attempts.clone(),
                failed.clone(),
                delivered.clone(),
            );
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if *gate.borrow_and_update() == 1 {
                    // Counted as failed when answered, or when hookbox gives up on it
                    // first (its timeout) and the request is dropped.
                    waiting.fetch_add(1, Ordering::SeqCst);
                    let _held = Held(waiting, failed);
                    let _ = gate.wait_for(|g| *g != 1).await;
                    return http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                delivered.lock().unwrap().insert(id);
                http::StatusCode::OK
            }
        };
        let addr = crate::support::serve(axum::Router::new().fallback(handler)).await;
        GatedApp {
            url: format!("http://{addr}/in"),
            ..app
        }
    }

    fn close_gate(&self) {
        self.gate.send_replace(1);
    }

    fn fail_held(&self) {
        self.gate.send_replace(2);
    }

    /// Requests held now.
    fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Requests answered 503.
    fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }
}

// ---- TLS -------------------------------------------------------------------------

/// A test CA: its certificate (PEM) and what signs server certificates with it.
struct Ca {
    pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        der: cert.der().clone(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A rustls server configuration with a certificate for `host`, signed by `ca`.
fn server_config(ca: &Ca, host: &str) -> rustls::ServerConfig {
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    params.use_authority_key_identifier_extension = true;
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca.der.clone()], key)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_through_a_tls_terminating_proxy() {
    let Some(db) = TestDb::create("pg_faults_tls").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong) = (ca("hookbox test CA"), ca("some other CA"));
    let right_pem = dir.path().join("ca.pem");
    let wrong_pem = dir.path().join("other-ca.pem");
    std::fs::write(&right_pem, &right.pem).unwrap();
    std::fs::write(&wrong_pem, &wrong.pem).unwrap();
    let upstream = server_addr().await;
    // One proxy presents a certificate for `localhost`, the other one for another name;
    // hookbox connects to both as `localhost` (at 127.0.0.1).
    let named = Proxy::tls(upstream, server_config(&right, "localhost")).await;
    let misnamed = Proxy::tls(upstream, server_config(&right, "db.elsewhere.test")).await;
    let (right_pem, wrong_pem) = (right_pem.display(), wrong_pem.display());

    enum Expect {
        /// Opens, appends and reads back, over TLS.
        Works,
        /// Refuses to open, with an error containing this.
        Fails(&'static str),
    }
    use Expect::*;
    let cases = [
        (
            "verify-full, the right CA",
            &named,
            format!("sslmode=verify-full&sslrootcert={right_pem}"),
            Works,
        ),
        (
            "verify-full, another CA",
            &named,
            format!("sslmode=verify-full&sslrootcert={wrong_pem}"),
            Fails("invalid peer certificate: UnknownIssuer"),
        ),
        (
            "require, no root certificate",
            &named,
            "sslmode=require".to_owned(),
            Works,
        ),
        (
            "require, a root certificate that did not sign the server's",
            &named,
            format!("sslmode=require&sslrootcert={wrong_pem}"),
            Fails("invalid peer certificate: UnknownIssuer"),
        ),
        ("prefer", &named, "sslmode=prefer".to_owned(), Works),
        (
            "disable",
            &named,
            "sslmode=disable".to_owned(),
            Fails("TLS is required"),
        ),
        (
            "verify-ca, a certificate for another host name",
            &misnamed,
            format!("sslmode=verify-ca&sslrootcert={right_pem}"),
            Works,
        ),
        (
            "verify-ca, another CA",
            &misnamed,
            format!("sslmode=verify-ca&sslrootcert={wrong_pem}"),
            Fails("invalid peer certificate: UnknownIssuer"),
        ),
        (
            "verify-full, a certificate for another host name",
            &misnamed,
            format!("sslmode=verify-full&sslrootcert={right_pem}"),
            Fails("invalid peer certificate: certificate not valid for name"),
        ),
    ];
    for (n, (what, proxy, params, expect)) in cases.into_iter().enumerate() {
        // The server trusts local connections, so the password is not used; it must
        // not show in an error either.
        let url = format!(
            "{}&hostaddr=127.0.0.1&password=hunter2",
            db.url_via(format!("localhost:{}", proxy.addr.port()), &params)
        );
        let (handshakes, plain) = (proxy.handshakes(), proxy.plain_refused());
        let opened = tokio::time::timeout(
            Duration::from_secs(30),
            PostgresJournal::builder(&url)
                .node(format!("tls-{n}"))
                .open(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: open neither succeeded nor failed"));
        match (expect, opened) {
            (Works, Ok(journal)) => {
                let id = crate::support::events::append(
                    &journal,
                    "tls",
                    json!({"type": "tls.checked", "case": what}),
                )
                .await;
                let got = journal.get(id).await.unwrap().expect("read back");
                assert_eq!(got.event_type.as_deref(), Some("tls.checked"), "{what}");
                journal.close().await.unwrap();
                assert!(
                    proxy.handshakes() >= handshakes + 2,
                    "{what}: the journal's connections are TLS ({} handshakes)",
                    proxy.handshakes() - handshakes
                );
                assert_eq!(
                    proxy.plain_refused(),
                    plain,
                    "{what}: nothing in plain text"
                );
            }
            (Works, Err(e)) => panic!("{what}: {e}"),
            (Fails(needle), Ok(_)) => panic!("{what}: opened; expected an error about {needle}"),
            (Fails(needle), Err(e)) => {
                let e = e.to_string();
                assert!(
                    e.contains(needle),
                    "{what}: {e:?} does not mention {needle:?}"
                );
                assert!(!e.contains("hunter2"), "{what}: the password is shown: {e}");
                assert!(e.contains("password=[redacted]"), "{what}: {e}");
                eprintln!("pg_faults tls: {what}: {e}");
            }
        }
    }
    // The TLS proxies forwarded every event, so they are in the database.
    let c = db.client().await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM hookbox_events WHERE source = 'tls'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4, "one event per case that opened");
}
