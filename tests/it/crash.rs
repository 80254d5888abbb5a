//! Crash safety: a child `hookbox serve` is SIGKILLed at random moments while signed
//! requests stream in on several connections; every request that got a 2xx must be in
//! the journal exactly once, and the journal must open cleanly after every kill.

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
    let cfg = dir.join("hookbox.toml");
    let journal = dir.join("journal.redb");
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
journal = "{}"

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
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::thread_rng();
    for round in 0..20 {
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
    let counts = delivery_counts(&journal, "sw").await;
    for id in &acked {
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
    println!(
        "{} acknowledged events survived 20 SIGKILLs; journal holds {}",
        acked.len(),
        journal.count().await.unwrap()
    );
}
