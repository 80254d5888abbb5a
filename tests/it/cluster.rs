//! `hookbox serve` on several nodes sharing one PostgreSQL database: traffic spread over
//! the nodes, a real downstream application, a node SIGKILLed mid-stream.

use std::collections::HashSet;
use std::time::Duration;

use hookbox::Journal;

use crate::serve::{post_ok, signed, verify_forwarded, write_config, SW_SECRET};
use crate::support::downstream;
use crate::support::pg::TestDb;
use crate::support::server::Server;

/// `write_config`'s configuration with the journal on PostgreSQL (read from the
/// environment, as a deployment would) and a short lease.
fn cluster_config(dir: &std::path::Path, app_url: &str, node: &str) -> std::path::PathBuf {
    let sub = dir.join(node);
    std::fs::create_dir_all(&sub).unwrap();
    let cfg = write_config(
        &sub,
        app_url,
        r#"{ schedule = ["200ms", "200ms", "1s"] }"#,
        "",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("journal = ") {
                format!("journal = \"env:HOOKBOX_TEST_JOURNAL\"\nnode = \"{node}\"\nlease = \"2s\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, text).unwrap();
    cfg
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
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} acknowledged events delivered",
            acked.intersection(&got).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
