//! Crash safety: a child `hookbox serve` is SIGKILLed at random moments while signed
//! requests stream in on several connections; every request that got a 2xx must be in
//! the journal exactly once, and the journal must open cleanly after every kill. Also
//! kills while the journal checkpoints (every 5 ms here) and while a restart applies a
//! long write-ahead log.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookbox::{Journal, RedbJournal};
use rand::Rng;

use crate::serve::signed;
use crate::support::delivery_counts;
use crate::support::server::Server;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn write_config(dir: &Path) -> std::path::PathBuf {
    write_config_with(dir, "")
}

fn write_config_with(dir: &Path, server: &str) -> std::path::PathBuf {
    let cfg = dir.join("hookbox.toml");
    let journal = dir.join("journal.redb");
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
journal = "{}"
{server}

[[source]]
name = "sw"
path = "/hooks/sw"
scheme = "standard-webhooks"
secrets = ["{SECRET}"]
"#,
            journal.display()
        ),
    )
    .unwrap();
    cfg
}

/// Sends distinct signed requests until the server dies; records the acknowledged ids.
async fn stream(url: String, prefix: String, acked: Arc<Mutex<Vec<String>>>) {
    let client = reqwest::Client::new();
    let body = br#"{"type":"order.created","data":{"id":"ord_1","total":4200}}"#;
    for n in 0.. {
        let id = format!("{prefix}-{n}");
        let req = signed(&client, &url, "standard-webhooks", SECRET, &id, body)
            .timeout(Duration::from_secs(5));
        match req.send().await {
            Ok(res) if res.status().is_success() => acked.lock().unwrap().push(id),
            Ok(res) => panic!("unexpected status {} before the kill", res.status()),
            Err(_) => return, // killed: this request's fate is unknown, and that is allowed
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_event() {
    kill_rounds(write_config, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_with_the_write_ahead_log_loses_no_acknowledged_event() {
    kill_rounds(|d| write_config_with(d, "write_ahead_log = true"), 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_checkpoints_loses_no_acknowledged_event() {
    // A checkpoint every 5 ms: a good share of the kills land inside one.
    let server = "write_ahead_log = true\ncheckpoint = \"5ms\"";
    kill_rounds(|d| write_config_with(d, server), 12).await;
}

/// A long log (no checkpoint for an hour), then restarts killed while they apply it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_a_restart_applies_the_log_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(dir.path(), "write_ahead_log = true\ncheckpoint = \"1h\"");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut server = Server::start(&config);
    let url = server.url("/hooks/sw");
    let senders: Vec<_> = (0..6)
        .map(|c| tokio::spawn(stream(url.clone(), format!("c{c}"), acked.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    for s in senders {
        s.await.unwrap();
    }
    let log_bytes: u64 = std::fs::read_dir(dir.path().join("journal.redb-wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // Restarts killed a few ms in: while they apply the log (or just before).
    for delay in [2u64, 5, 10, 20, 40] {
        let mut child = crate::support::hookbox_bin()
            .args(["serve", "--config"])
            .arg(&config)
            .env("HOOKBOX_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    Server::start(&config).kill();
    let journal =
        RedbJournal::open(dir.path().join("journal.redb")).expect("the journal opens cleanly");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "too few acknowledged: {}", acked.len());
    check_acked(&journal, &acked).await;
    println!(
        "{} acknowledged events, a {log_bytes}-byte log, 5 restarts killed mid-start: all there",
        acked.len()
    );
}

/// Every acknowledged id is in the journal exactly once, with its body.
async fn check_acked(journal: &RedbJournal, acked: &[String]) {
    let counts = delivery_counts(journal, "sw").await;
    for id in acked {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "acknowledged {id} is not in the journal exactly once"
        );
        let eid = journal.lookup("sw", id).await.unwrap().unwrap();
        assert_eq!(
            &journal.get(eid).await.unwrap().unwrap().body[..],
            br#"{"type":"order.created","data":{"id":"ord_1","total":4200}}"#
        );
    }
}

async fn kill_rounds(config: impl Fn(&Path) -> std::path::PathBuf, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::thread_rng();
    for round in 0..rounds {
        let mut server = Server::start(&config);
        let url = server.url("/hooks/sw");
        let senders: Vec<_> = (0..6)
            .map(|c| tokio::spawn(stream(url.clone(), format!("r{round}c{c}"), acked.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
        server.kill(); // SIGKILL
        for s in senders {
            s.await.unwrap();
        }
    }
    // One more clean start proves the journal still opens and serves.
    Server::start(&config).kill();

    let journal =
        RedbJournal::open(dir.path().join("journal.redb")).expect("the journal opens cleanly");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few requests were acknowledged to mean anything: {}",
        acked.len()
    );
    check_acked(&journal, &acked).await;
    println!(
        "{} acknowledged events survived {rounds} SIGKILLs; journal holds {}",
        acked.len(),
        journal.count().await.unwrap()
    );
}
