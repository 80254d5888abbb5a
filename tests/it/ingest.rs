//! Durable ingest over real HTTP: 202 only after commit, deduplication, shedding, a
//! failing disk, backlog limits and timeouts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use hookbox::{
    sign, Hookbox, Journal, RedbJournal, SchemeConfig, ShedLayer, SignInput, Source, Verifier,
};
use serde_json::Value;

use crate::support::{client, delivery_counts, serve};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn verifier() -> Verifier {
    Verifier::builder("standard-webhooks")
        .secret(SECRET)
        .build()
        .unwrap()
}

async fn app(hb: &Hookbox) -> String {
    let addr = serve(Router::new().route_service("/hooks/sw", hb.endpoint("sw"))).await;
    format!("http://{addr}/hooks/sw")
}

/// Posts a signed Standard Webhooks request with delivery id `id`.
async fn post(url: &str, id: &str, body: &str) -> (u16, Option<String>, Value) {
    let cfg = SchemeConfig {
        secrets: vec![SECRET.into()],
        ..Default::default()
    };
    let signed = sign(
        "standard-webhooks",
        &cfg,
        &SignInput {
            body: body.as_bytes(),
            id,
            now: SystemTime::now(),
        },
    )
    .unwrap();
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn hookbox(journal: Arc<RedbJournal>) -> Hookbox {
    Hookbox::new(journal).source(Source::new("sw", verifier()))
}

#[tokio::test]
async fn ack_comes_only_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let journal = Arc::new(
        RedbJournal::builder()
            .before_commit(move |_| {
                let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(10));
            })
            .open(dir.path().join("j.redb"))
            .unwrap(),
    );
    let url = app(&hookbox(journal.clone())).await;
    let pending = tokio::spawn({
        let url = url.clone();
        async move { post(&url, "msg_held", r#"{"type":"invoice.paid"}"#).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!pending.is_finished(), "answered while the commit was held");
    assert_eq!(
        journal.count().await.unwrap(),
        0,
        "nothing is visible before the commit"
    );
    release.send(()).unwrap();
    let (status, _, v) = pending.await.unwrap();
    assert_eq!(status, 202, "{v}");
    let id: hookbox::EventId = v["id"].as_str().unwrap().parse().unwrap();
    let stored = journal
        .get(id)
        .await
        .unwrap()
        .expect("the acknowledged event is in the journal");
    assert_eq!(&stored.body[..], br#"{"type":"invoice.paid"}"#);
    assert_eq!(stored.delivery_id.as_deref(), Some("msg_held"));
    assert_eq!(stored.event_type.as_deref(), Some("invoice.paid"));
    assert_eq!(stored.source, "sw");
    assert!(
        stored.headers.contains_key("webhook-signature"),
        "signature headers are kept for audit"
    );
}

#[tokio::test]
async fn a_duplicate_delivery_answers_200_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let url = app(&hookbox(journal.clone())).await;
    let (s1, _, v1) = post(&url, "msg_1", "{}").await;
    let (s2, _, v2) = post(&url, "msg_1", "{}").await;
    let (s3, _, v3) = post(&url, "msg_2", "{}").await;
    assert_eq!((s1, s2, s3), (202, 200, 202));
    assert_eq!(v2["id"], v1["id"]);
    assert_eq!(v2["duplicate"], true);
    assert!(v1.get("duplicate").is_none());
    assert_ne!(v3["id"], v1["id"]);
    assert_eq!(journal.count().await.unwrap(), 2);
    assert_eq!(delivery_counts(&*journal, "sw").await["msg_1"], 1);
}

#[tokio::test]
async fn after_the_dedup_window_the_same_id_is_a_new_event() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let hb = Hookbox::new(journal.clone())
        .source(Source::new("sw", verifier()).dedup_window(Some(Duration::from_millis(1))));
    let url = app(&hb).await;
    assert_eq!(post(&url, "msg_1", "{}").await.0, 202);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(post(&url, "msg_1", "{}").await.0, 202);
    assert_eq!(delivery_counts(&*journal, "sw").await["msg_1"], 2);
}

#[tokio::test]
async fn a_slowed_writer_sheds_with_503_and_acks_stay_true() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(
        RedbJournal::builder()
            .queue_capacity(4)
            .before_commit(|_| std::thread::sleep(Duration::from_millis(150)))
            .open(dir.path().join("j.redb"))
            .unwrap(),
    );
    let url = app(&hookbox(journal.clone())).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { post(&url, &format!("msg_{i}"), "{}").await })
        })
        .collect();
    let (mut acked, mut shed) = (Vec::new(), 0);
    for t in tasks {
        let (status, retry, v) = t.await.unwrap();
        match status {
            202 => acked.push(v["id"].as_str().unwrap().to_owned()),
            503 => {
                shed += 1;
                assert!(retry.is_some(), "503 without Retry-After");
                assert_eq!(v["kind"], "journal_overloaded", "{v}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(shed > 0, "nothing was shed");
    assert!(!acked.is_empty(), "nothing was accepted");
    assert_eq!(
        journal.count().await.unwrap() as usize,
        acked.len(),
        "every 202 and only those are journaled"
    );
    for id in acked {
        assert!(journal.get(id.parse().unwrap()).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_acks_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let full = Arc::new(AtomicBool::new(false));
    let journal = crate::support::faults::journal_on_full_disk(&path, full.clone());
    let url = app(&hookbox(journal.clone())).await;
    assert_eq!(post(&url, "msg_before", "{}").await.0, 202);

    full.store(true, Ordering::SeqCst);
    let (status, retry, v) = post(&url, "msg_lost", "{}").await;
    assert_eq!(status, 503, "{v}");
    assert!(retry.is_some());
    assert_eq!(v["kind"], "journal_storage_failed", "{v}");

    full.store(false, Ordering::SeqCst);
    let mut status = 0;
    for _ in 0..50 {
        status = post(&url, "msg_after", "{}").await.0;
        if status == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 202, "the journal recovers once the disk has room");
    assert!(
        journal.lookup("sw", "msg_lost").await.unwrap().is_none(),
        "a refused event was not stored"
    );
    assert!(journal.lookup("sw", "msg_before").await.unwrap().is_some());
    assert!(journal.lookup("sw", "msg_after").await.unwrap().is_some());
}

#[tokio::test]
async fn a_source_over_its_backlog_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let hb =
        Hookbox::new(journal.clone()).source(Source::new("sw", verifier()).max_backlog(Some(2)));
    let url = app(&hb).await;
    assert_eq!(post(&url, "a", "{}").await.0, 202);
    assert_eq!(post(&url, "b", "{}").await.0, 202);
    let (status, retry, v) = post(&url, "c", "{}").await;
    assert_eq!(
        (status, v["kind"].as_str()),
        (429, Some("backlog_full")),
        "{v}"
    );
    assert!(retry.is_some());
    assert_eq!(journal.backlog("sw"), 2);
}

#[tokio::test]
async fn a_disk_under_the_floor_sheds_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let hb = hookbox(journal.clone()).shed(ShedLayer::new(journal.clone()).disk_floor(1 << 62));
    let url = app(&hb).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // the disk watcher's first reading
    let (status, retry, v) = post(&url, "a", "{}").await;
    assert_eq!(
        (status, v["kind"].as_str()),
        (503, Some("disk_full")),
        "{v}"
    );
    assert!(retry.is_some());
    assert_eq!(journal.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_request_that_takes_too_long_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(
        RedbJournal::builder()
            .before_commit(|_| std::thread::sleep(Duration::from_millis(800)))
            .open(dir.path().join("j.redb"))
            .unwrap(),
    );
    let hb = hookbox(journal.clone())
        .shed(ShedLayer::new(journal.clone()).timeout(Duration::from_millis(200)));
    let url = app(&hb).await;
    let (status, retry, v) = post(&url, "slow", "{}").await;
    assert_eq!(
        (status, v["kind"].as_str()),
        (503, Some("request_timeout")),
        "{v}"
    );
    assert!(retry.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_request_whose_client_writes_the_whole_body_first_gets_its_429() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let hb = Hookbox::new(journal).source(Source::new("sw", verifier()).max_backlog(Some(0)));
    let addr = serve(Router::new().route_service("/hooks/sw", hb.endpoint("sw"))).await;
    // Within what a refused body is drained, far beyond what the sockets buffer.
    let body = vec![b' '; 12 << 20];
    let head = format!(
        "POST /hooks/sw HTTP/1.1\r\nHost: hookbox\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    for round in 0..3 {
        let answer = crate::verify_layer::post_whole_then_read(addr, &head, &body)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the connection broke: {e}"));
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after"),
            "{answer}"
        );
        assert!(answer.contains("backlog_full"), "{answer}");
    }
}
