//! `hookbox serve` on several nodes sharing one PostgreSQL database: traffic spread over
//! the nodes, a real downstream application, a node SIGKILLed mid-stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookbox::Journal;

use crate::pg_faults::readyz;
use crate::serve::{post_ok, signed, verify_forwarded, write_config, SW_SECRET};
use crate::support::pg::{PrivateServer, TestDb};
use crate::support::server::Server;
use crate::support::{downstream, Downstream, Reply};

/// `write_config`'s configuration with the journal on PostgreSQL (read from the
/// environment, as a deployment would), a short lease and an admin API (token `t`).
fn cluster_config(dir: &std::path::Path, app_url: &str, node: &str) -> std::path::PathBuf {
    let sub = dir.join(node);
    std::fs::create_dir_all(&sub).unwrap();
    let cfg = write_config(
        &sub,
        app_url,
        r#"{ schedule = ["200ms", "200ms", "1s"] }"#,
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("journal = ") {
                format!(
                    "journal = \"env:HOOKBOX_TEST_JOURNAL\"\nnode = \"{node}\"\nlease = \"2s\"\n\
                     writers = 2\npool_size = 6"
                )
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Waits (up to a minute) until every id in `acked` reached `app`, each forward with a
/// valid signature; returns every id delivered.
async fn delivered(app: &Downstream, acked: &HashSet<String>) -> HashSet<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<String> = app
            .requests()
            .iter()
            .map(|r| {
                verify_forwarded(r);
                r.header("webhook-id").to_owned()
            })
            .collect();
        if acked.is_subset(&got) {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} acknowledged events delivered",
            acked.intersection(&got).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event id `node`'s admin API lists, all pages.
async fn listed(node: &Server) -> HashSet<String> {
    let client = crate::support::client();
    let mut ids = HashSet::new();
    let mut url = format!("{}/v1/events?limit=500", node.admin.as_deref().unwrap());
    loop {
        let page: serde_json::Value = client
            .get(&url)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["events"].as_array().unwrap() {
            ids.insert(e["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                url = format!(
                    "{}/v1/events?limit=500&cursor={c}",
                    node.admin.as_deref().unwrap()
                )
            }
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_journal_and_a_killed_node_loses_nothing() {
    let Some(db) = TestDb::create("cluster_serve").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = downstream().await;
    let env = [("HOOKBOX_TEST_JOURNAL", db.url.as_str())];
    let mut a = Server::start_with(&cluster_config(dir.path(), &app.url("/in"), "a"), &env);
    let b = Server::start_with(&cluster_config(dir.path(), &app.url("/in"), "b"), &env);
    let client = crate::support::client();
    let mut acked = HashSet::new();
    for n in 0..40 {
        let node = if n % 2 == 0 { &a } else { &b };
        let body = format!(r#"{{"type":"order.created","n":{n}}}"#);
        let req = signed(
            &client,
            &node.url("/hooks/sw"),
            "standard-webhooks",
            SW_SECRET,
            &format!("msg_{n}"),
            body.as_bytes(),
        );
        assert!(acked.insert(post_ok(req).await));
    }
    // The same provider delivery posted to both nodes is one event.
    let dup = |node: &Server| {
        signed(
            &client,
            &node.url("/hooks/sw"),
            "standard-webhooks",
            SW_SECRET,
            "msg_dup",
            br#"{"type":"dup"}"#,
        )
        .send()
    };
    let (ra, rb) = tokio::join!(dup(&a), dup(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 202],
        "one node journals it, the other sees a duplicate"
    );
    let ida: serde_json::Value = ra.json().await.unwrap();
    let idb: serde_json::Value = rb.json().await.unwrap();
    assert_eq!(ida["id"], idb["id"]);
    acked.insert(ida["id"].as_str().unwrap().to_owned());
    // Every node's admin API shows the whole journal.
    let (seen_a, seen_b) = tokio::join!(listed(&a), listed(&b));
    assert_eq!(seen_a, seen_b, "both nodes list the same events");
    assert_eq!(seen_a, acked, "and exactly the acknowledged ones");

    // Node a dies mid-stream; b keeps ingesting and takes a's deliveries over.
    a.kill();
    for n in 40..60 {
        let body = format!(r#"{{"type":"order.created","n":{n}}}"#);
        let req = signed(
            &client,
            &b.url("/hooks/sw"),
            "standard-webhooks",
            SW_SECRET,
            &format!("msg_{n}"),
            body.as_bytes(),
        );
        assert!(acked.insert(post_ok(req).await));
    }
    delivered(&app, &acked).await;
    let journal = hookbox::PostgresJournal::builder(&db.url)
        .node("inspector")
        .open()
        .await
        .unwrap();
    assert_eq!(
        journal.count().await.unwrap(),
        acked.len() as u64,
        "every acknowledged event is in the journal exactly once"
    );
    journal.close().await.unwrap();
    drop(b);
}

/// Posts distinct signed events round-robin over the live nodes in `urls` until `stop`,
/// as a provider would: a request that fails (connection refused or reset, a 5xx) is
/// retried with the same delivery id on the next node. Returns the event ids answered
/// 202 or 200 (a retry whose first try had in fact been journaled).
async fn provider(
    urls: Arc<Mutex<Vec<String>>>,
    prefix: &'static str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> HashSet<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut acked = HashSet::new();
    let mut turn = 0usize;
    for n in 0.. {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let body = format!(r#"{{"type":"order.created","n":"{prefix}-{n}"}}"#);
        loop {
            turn += 1;
            let url = {
                let urls = urls.lock().unwrap();
                format!("{}/hooks/sw", urls[turn % urls.len()])
            };
            let req = signed(
                &client,
                &url,
                "standard-webhooks",
                SW_SECRET,
                &format!("{prefix}-{n}"),
                body.as_bytes(),
            );
            match req.send().await {
                Ok(res) if res.status() == 202 || res.status() == 200 => {
                    let v: serde_json::Value = res.json().await.unwrap();
                    acked.insert(v["id"].as_str().unwrap().to_owned());
                    break;
                }
                Ok(res) => assert!(res.status().is_server_error(), "{}", res.status()),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    acked
}

/// Three nodes and three providers posting over them until stopped.
struct Traffic {
    nodes: Vec<Server>,
    /// The nodes the providers post to, in turn.
    urls: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    providers: Vec<tokio::task::JoinHandle<HashSet<String>>>,
}

impl Traffic {
    fn start(config: &dyn Fn(&str) -> std::path::PathBuf, env: &[(&str, &str)]) -> Traffic {
        let nodes: Vec<Server> = ["a", "b", "c"]
            .iter()
            .map(|n| Server::start_with(&config(n), env))
            .collect();
        let urls = Arc::new(Mutex::new(
            nodes.iter().map(|s| s.base.clone()).collect::<Vec<_>>(),
        ));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let providers = ["p1", "p2", "p3"]
            .into_iter()
            .map(|p| tokio::spawn(provider(urls.clone(), p, stop.clone())))
            .collect();
        Traffic {
            nodes,
            urls,
            stop,
            providers,
        }
    }

    /// Stops the providers; every event id acknowledged to them.
    async fn stop(&mut self) -> HashSet<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acked = HashSet::new();
        for p in self.providers.drain(..) {
            acked.extend(p.await.unwrap());
        }
        acked
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_nothing_when_nodes_are_killed_mid_stream() {
    let Some(db) = TestDb::create("three_nodes").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A downstream slow enough that deliveries are in flight when a node dies.
    let app = Downstream::start(|_, _| Reply::ok().delay(Duration::from_millis(30))).await;
    let env = [("HOOKBOX_TEST_JOURNAL", db.url.as_str())];
    let config = |node: &str| cluster_config(dir.path(), &app.url("/in"), node);
    let mut c = Traffic::start(&config, &env);
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SIGKILL node a mid-stream: no shutdown, its claims stay until reaped.
        c.nodes[0].kill();
        c.urls.lock().unwrap()[0] = c.nodes[1].base.clone();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        c.nodes[0] = Server::start_with(&config("a"), &env);
        c.urls.lock().unwrap()[0] = c.nodes[0].base.clone();
        eprintln!("round {round}: node a killed and restarted");
    }
    // Node c dies for good: its claims come back only when the others reap it.
    c.nodes[2].kill();
    c.urls.lock().unwrap()[2] = c.nodes[0].base.clone();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Each live node's connections carry its name: its pool of `pool_size`, which this
    // load fills, and the one that LISTENs.
    let pg = db.client().await;
    for node in ["a", "b"] {
        let n: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = $1",
                &[&format!("hookbox {node}")],
            )
            .await
            .unwrap()
            .get(0);
        assert!((1..=7).contains(&n), "node {node} holds {n} connections");
    }
    let acked = c.stop().await;
    assert!(acked.len() > 50, "only {} events acknowledged", acked.len());
    nothing_lost(&db.url, &app, &acked).await;
}

/// Every acknowledged event is journaled once and was delivered, with a valid
/// signature; so was everything else journaled.
async fn nothing_lost(url: &str, app: &Downstream, acked: &HashSet<String>) {
    let got = delivered(app, acked).await;
    let journal = hookbox::PostgresJournal::builder(url)
        .node("inspector")
        .open()
        .await
        .unwrap();
    let stored = journal.count().await.unwrap();
    // Every acknowledged event once; an event whose commit landed but whose answer was
    // lost with its node is in the journal too, and was delivered, but nobody has its id.
    assert!(
        stored >= acked.len() as u64,
        "{stored} stored, {} acked",
        acked.len()
    );
    assert_eq!(stored, got.len() as u64, "everything stored was delivered");
    for id in acked {
        let id: hookbox::EventId = id.parse().unwrap();
        assert!(
            journal.get(id).await.unwrap().is_some(),
            "{id} is journaled"
        );
    }
    eprintln!(
        "{} acked, {stored} stored, {} deliveries for {} events",
        acked.len(),
        app.requests().len(),
        got.len()
    );
    journal.close().await.unwrap();
}

/// A crash of PostgreSQL itself mid-stream, twice, on a server of the test's own
/// (`pg_ctl stop -m immediate`: every backend killed, no checkpoint; what was committed
/// without waiting for its flush may be gone): while it is down every node's `/readyz`
/// answers 503, and once it is back (after its WAL recovery) the nodes reconnect by
/// themselves; nothing acknowledged is lost and everything is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_nothing_when_postgres_crashes_mid_stream() {
    let Some(pg) = PrivateServer::start("postgres_crash") else {
        return;
    };
    let url = pg.database().await;
    let dir = tempfile::tempdir().unwrap();
    let app = Downstream::start(|_, _| Reply::ok().delay(Duration::from_millis(30))).await;
    let env = [("HOOKBOX_TEST_JOURNAL", url.as_str())];
    let config = |node: &str| cluster_config(dir.path(), &app.url("/in"), node);
    let mut c = Traffic::start(&config, &env);
    let client = crate::support::client();
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        pg.crash();
        for node in &c.nodes {
            let admin = node.admin.as_deref().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while readyz(&client, admin).await != 503 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: {admin}/readyz still 200 with PostgreSQL down"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        pg.start_again();
        eprintln!("round {round}: PostgreSQL crashed, every node unready, PostgreSQL restarted");
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for node in &c.nodes {
        assert_eq!(readyz(&client, node.admin.as_deref().unwrap()).await, 200);
    }
    let acked = c.stop().await;
    assert!(acked.len() > 50, "only {} events acknowledged", acked.len());
    nothing_lost(&url, &app, &acked).await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_past_its_lease_cannot_settle_what_another_took_over() {
    let Some(db) = TestDb::create("frozen_node").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The first forward hangs until its node is long frozen; later ones answer at once.
    let app = Downstream::start(|n, _| {
        if n == 0 {
            Reply::ok().delay(Duration::from_secs(6))
        } else {
            Reply::ok()
        }
    })
    .await;
    let env = [("HOOKBOX_TEST_JOURNAL", db.url.as_str())];
    let config = |node: &str| cluster_config(dir.path(), &app.url("/in"), node);
    let a = Server::start_with(&config("a"), &env);
    let client = crate::support::client();
    let id = post_ok(signed(
        &client,
        &a.url("/hooks/sw"),
        "standard-webhooks",
        SW_SECRET,
        "frozen-1",
        br#"{"type":"x"}"#,
    ))
    .await;
    app.wait_for(1, Duration::from_secs(10)).await;
    // a holds the claim, its forward in flight: freeze it.
    let pid = a.child.id().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    let b = Server::start_with(&config("b"), &env);
    // b reaps a once a's 2 s lease runs out, takes the delivery over and delivers it.
    let got = app.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].header("webhook-id"), id);
    let journal = hookbox::PostgresJournal::builder(&db.url)
        .node("inspector")
        .open()
        .await
        .unwrap();
    let eid: hookbox::EventId = id.parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while journal.state(eid).await.unwrap().unwrap().state != hookbox::State::Done {
        assert!(std::time::Instant::now() < deadline, "b never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a wakes up; its forward ends (answered, or timed out) and its settle is fenced.
    signal("-CONT");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let st = journal.state(eid).await.unwrap().unwrap();
    assert_eq!(st.state, hookbox::State::Done);
    let attempts = journal.attempts(eid).await.unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "only the node holding the claim recorded an attempt: {attempts:?}"
    );
    assert_eq!(attempts[0].outcome, hookbox::AttemptOutcome::Done);
    journal.close().await.unwrap();
    drop((a, b));
}
