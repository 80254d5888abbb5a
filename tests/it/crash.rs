//! Crash safety: a child `hookbox serve` is SIGKILLed at random moments while signed
//! requests stream in on several connections; every request that got a 2xx must be in
//! the journal exactly once, and the journal must open cleanly after every kill.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hookbox::{sign, Journal, RedbJournal, SchemeConfig, SignInput};
use rand::Rng;

use crate::support::{delivery_counts, hookbox_bin};

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

/// Starts the server and returns it with its webhook URL.
fn start(config: &Path) -> (Child, String) {
    let mut child = hookbox_bin()
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKBOX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hookbox serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("hookbox listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"));
    (child, format!("{addr}/hooks/sw"))
}

/// Sends distinct signed requests until the server dies; returns the acknowledged ids.
async fn stream(url: String, prefix: String, acked: Arc<Mutex<Vec<String>>>) {
    let client = reqwest::Client::new();
    let cfg = SchemeConfig {
        secrets: vec![SECRET.into()],
        ..Default::default()
    };
    let body = br#"{"type":"order.created","data":{"id":"ord_1","total":4200}}"#;
    for n in 0.. {
        let id = format!("{prefix}-{n}");
        let s = sign(
            "standard-webhooks",
            &cfg,
            &SignInput {
                body,
                id: &id,
                now: SystemTime::now(),
            },
        )
        .unwrap();
        let mut req = client
            .post(&url)
            .body(body.to_vec())
            .timeout(Duration::from_secs(5));
        for (k, v) in &s.headers {
            req = req.header(k, v);
        }
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
        let (mut child, url) = start(&config);
        let senders: Vec<_> = (0..6)
            .map(|c| tokio::spawn(stream(url.clone(), format!("r{round}c{c}"), acked.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
        child.kill().expect("SIGKILL"); // std's kill sends SIGKILL on Unix
        child.wait().unwrap();
        for s in senders {
            s.await.unwrap();
        }
    }
    // One more clean start proves the journal still opens and serves.
    let (mut child, _) = start(&config);
    child.kill().unwrap();
    child.wait().unwrap();

    let journal =
        RedbJournal::open(dir.path().join("journal.redb")).expect("the journal opens cleanly");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few requests were acknowledged to mean anything: {}",
        acked.len()
    );
    let counts = delivery_counts(&journal, "sw");
    for id in &acked {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "acknowledged {id} is not in the journal exactly once"
        );
        let eid = journal.lookup("sw", id).unwrap().unwrap();
        assert_eq!(
            &journal.get(eid).unwrap().unwrap().body[..],
            br#"{"type":"order.created","data":{"id":"ord_1","total":4200}}"#
        );
    }
    println!(
        "{} acknowledged events survived 20 SIGKILLs; journal holds {}",
        acked.len(),
        journal.count().unwrap()
    );
}
