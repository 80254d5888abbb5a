//! The journal's on-disk format: a file written by format version 1 stays readable.
//!
//! `tests/fixtures/journal-v1.redb` was written by `write_v1_fixture` below (run it with
//! `cargo test --test it journal::write_v1_fixture -- --ignored` only when the format
//! version changes on purpose, and keep the old file as a second fixture).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hookbox::{Journal, Query, RedbJournal, State};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/journal-v1.redb"
);

#[tokio::test]
async fn a_version_1_journal_still_opens_and_reads() {
    // Work on a copy: opening may write (redb records a clean open).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    std::fs::copy(FIXTURE, &path).expect("the pinned fixture exists");
    let journal = RedbJournal::open(&path).expect("a v1 file opens");
    let page = journal
        .query(&Query {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 2);
    let newest = &page.events[0];
    assert_eq!(newest.source, "github");
    assert_eq!(newest.delivery_id.as_deref(), Some("d-2"));
    assert_eq!(newest.event_type.as_deref(), Some("push"));
    let e = journal.get(newest.id).await.unwrap().unwrap();
    assert_eq!(
        &e.body[..],
        "{\"ref\":\"refs/heads/main\"}".repeat(20).as_bytes()
    );
    assert_eq!(e.headers["x-github-event"], "push");
    assert_eq!(
        e.received_at,
        UNIX_EPOCH + Duration::from_millis(1_700_000_001_000)
    );
    let first = &page.events[1];
    assert_eq!(
        journal.get(first.id).await.unwrap().unwrap().body,
        Bytes::from_static(b"{}")
    );
    assert_eq!(
        journal.state(first.id).await.unwrap().unwrap().state,
        State::Pending
    );
    assert_eq!(
        journal.lookup("stripe", "evt_1").await.unwrap(),
        Some(first.id)
    );
    assert_eq!(journal.backlog("stripe"), 1);
}

#[tokio::test]
#[ignore = "writes the pinned fixture; run only when the format version changes"]
async fn write_v1_fixture() {
    let _ = std::fs::remove_file(FIXTURE);
    let journal = Arc::new(
        RedbJournal::builder()
            .cache_size(1 << 20)
            .open(FIXTURE)
            .unwrap(),
    );
    let cfg = hookbox::SchemeConfig {
        secrets: vec!["s".into()],
        ..Default::default()
    };
    let verifier = hookbox::Verifier::new("github", &cfg).unwrap();
    for (source, id, ty, ms, body) in [
        (
            "stripe",
            "evt_1",
            "invoice.paid",
            1_700_000_000_000u64,
            "{}".to_owned(),
        ),
        (
            "github",
            "d-2",
            "push",
            1_700_000_001_000,
            "{\"ref\":\"refs/heads/main\"}".repeat(20),
        ),
    ] {
        let at = UNIX_EPOCH + Duration::from_millis(ms);
        let signed = hookbox::sign(
            "github",
            &cfg,
            &hookbox::SignInput {
                body: body.as_bytes(),
                id,
                now: at,
            },
        )
        .unwrap();
        let mut headers = http::HeaderMap::new();
        for (k, v) in signed.headers {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        headers.insert("x-github-event", ty.parse().unwrap());
        let verified = verifier
            .verified_event(source, headers, Bytes::from(body), at)
            .unwrap();
        journal
            .append(
                &verified,
                &hookbox::AppendOptions {
                    dedup_window: Some(Duration::from_secs(60)),
                    order_key: None,
                    destinations: Vec::new(),
                },
            )
            .await
            .unwrap();
    }
}
