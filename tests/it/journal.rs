//! The journal's on-disk format: files written by earlier format versions stay readable.
//!
//! `tests/fixtures/journal-v1.redb` (one delivery per event) and `journal-v2.redb` (one
//! per event and destination) were written by `write_v1_fixture` and `write_v2_fixture`
//! below (run the current one with `cargo test --test it journal::write_v2_fixture --
//! --ignored` only when the format version changes on purpose, and keep the old files).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hookbox::{Journal, Query, RedbJournal, State};
use serde_json::json;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/journal-v1.redb"
);

const FIXTURE_V2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/journal-v2.redb"
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
    // Its deliveries moved to the per-destination tables, to the unnamed destination.
    let claims = journal.claim("stripe", far(), 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!((claims[0].id, &*claims[0].destination), (first.id, ""));
}

fn far() -> std::time::SystemTime {
    std::time::SystemTime::now() + Duration::from_secs(86_400 * 365)
}

#[tokio::test]
async fn a_version_2_journal_still_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    std::fs::copy(FIXTURE_V2, &path).expect("the pinned fixture exists");
    let journal = RedbJournal::open(&path).expect("a v2 file opens");
    let dead = journal.dead(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].source.as_str(), dead[0].destination.as_str()),
        ("stripe", "billing")
    );
    let invoice = dead[0].id;
    let per: Vec<_> = journal
        .deliveries(invoice)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.destination, d.state.state, d.state.attempts))
        .collect();
    assert_eq!(
        per,
        vec![
            ("audit".to_owned(), State::Done, 1),
            ("billing".to_owned(), State::Dead, 1)
        ]
    );
    assert_eq!(
        journal.state(invoice).await.unwrap().unwrap().state,
        State::Dead
    );
    let attempts = journal.attempts(invoice).await.unwrap();
    let mut to: Vec<_> = attempts.iter().map(|a| a.destination.as_str()).collect();
    to.sort();
    assert_eq!(to, ["audit", "billing"]);
    let push = journal.lookup("github", "d-2").await.unwrap().unwrap();
    let st = journal.state(push).await.unwrap().unwrap();
    assert_eq!(
        (st.state, st.next_at_ms),
        (State::Retrying, Some(1_700_000_100_000))
    );
    let claims = journal.claim("github", far(), 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!((claims[0].id, claims[0].attempt), (push, 2));
    assert_eq!(journal.backlog("github"), 1);
    assert_eq!(journal.backlog("stripe"), 0);
}

#[tokio::test]
#[ignore = "writes the pinned fixture; run only when the format version changes"]
async fn write_v2_fixture() {
    let _ = std::fs::remove_file(FIXTURE_V2);
    let journal = RedbJournal::builder()
        .cache_size(1 << 20)
        .open(FIXTURE_V2)
        .unwrap();
    for (source, id, ty, ms, destinations) in [
        (
            "stripe",
            "evt_1",
            "invoice.paid",
            1_700_000_000_000u64,
            vec!["billing", "audit"],
        ),
        ("github", "d-2", "push", 1_700_000_001_000, vec![]),
    ] {
        let body = format!("{{\"id\":\"{id}\",\"type\":\"{ty}\"}}");
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let at = UNIX_EPOCH + Duration::from_millis(ms);
        let verified = hookbox::Verifier::custom(crate::support::events::Trusting)
            .verified_event(source, headers, Bytes::from(body), at)
            .unwrap();
        let opts = hookbox::AppendOptions {
            dedup_window: Some(Duration::from_secs(60)),
            order_key: None,
            destinations: destinations.into_iter().map(str::to_owned).collect(),
        };
        journal.append(&verified, &opts).await.unwrap();
    }
    for c in journal.claim("stripe", far(), 10).await.unwrap() {
        let (outcome, next) = match &*c.destination {
            "billing" => (
                hookbox::AttemptOutcome::Fail,
                hookbox::Next::Dead("410".into()),
            ),
            _ => (hookbox::AttemptOutcome::Done, hookbox::Next::Done),
        };
        let a = attempt(&c, outcome);
        journal.settle(c, a, next).await.unwrap();
    }
    for c in journal.claim("github", far(), 10).await.unwrap() {
        let a = attempt(&c, hookbox::AttemptOutcome::Retry);
        journal
            .settle(c, a, hookbox::Next::RetryAt(1_700_000_100_000))
            .await
            .unwrap();
    }
    journal.shutdown();
}

fn attempt(c: &hookbox::Claim, outcome: hookbox::AttemptOutcome) -> hookbox::Attempt {
    hookbox::Attempt {
        n: c.attempt,
        started_ms: 1_700_000_050_000,
        duration_ms: 7,
        outcome,
        error: None,
        replay: None,
        destination: c.destination.to_string(),
    }
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

const LOG_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/journal-log-v1.log"
);

/// The write-ahead log's version-1 format stays readable: a pinned segment reads back
/// record by record, and a journal whose log directory holds it (and no database yet)
/// applies it at open, even with the log off (and then deletes it).
#[tokio::test]
async fn a_version_1_log_segment_reads_and_applies() {
    use hookbox::wal::{scan, Record};
    let bytes = std::fs::read(LOG_FIXTURE).expect("the pinned log fixture exists");
    let s = scan(&bytes, false).expect("a whole sealed segment");
    let records: Vec<Record> = s
        .records
        .iter()
        .map(|(_, p)| Record::decode(p).unwrap())
        .collect();
    assert_eq!(
        s.records.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 2]
    );
    match &records[0] {
        Record::Append {
            source,
            dedup,
            destinations,
            received_ms,
            ..
        } => {
            assert_eq!(source, "stripe");
            assert_eq!(dedup.as_ref().map(|d| d.0.as_str()), Some("evt_1"));
            assert_eq!(destinations, &["billing", "audit"]);
            assert_eq!(*received_ms, 1_700_000_000_000);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&records[1], Record::Append { order_key, .. } if order_key == "cus_1"));

    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("j.redb-wal");
    std::fs::create_dir_all(&wal).unwrap();
    std::fs::copy(LOG_FIXTURE, wal.join("00000000000000000001.log")).unwrap();
    let journal = RedbJournal::open(dir.path().join("j.redb")).expect("opens and applies");
    let id = journal
        .lookup("stripe", "evt_1")
        .await
        .unwrap()
        .expect("applied");
    let per: Vec<_> = journal
        .deliveries(id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.destination, d.state.state))
        .collect();
    assert_eq!(
        per,
        [
            ("audit".to_owned(), State::Pending),
            ("billing".to_owned(), State::Pending)
        ]
    );
    assert_eq!(journal.backlog("stripe"), 2);
    assert_eq!(journal.backlog("github"), 1);
    assert_eq!(journal.events_stored().unwrap(), 2);
    assert_eq!(
        std::fs::read_dir(&wal).unwrap().count(),
        0,
        "applied, then deleted"
    );
}

#[tokio::test]
#[ignore = "writes the pinned log fixture; run only when the log format version changes"]
async fn write_log_v1_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let journal = RedbJournal::builder()
        .cache_size(1 << 20)
        .log(true)
        .checkpoint_every(Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    for (source, id, ms, key, destinations) in [
        (
            "stripe",
            "evt_1",
            1_700_000_000_000u64,
            None,
            vec!["billing", "audit"],
        ),
        ("github", "d-2", 1_700_000_001_000, Some("cus_1"), vec![]),
    ] {
        let body = format!("{{\"id\":\"{id}\",\"type\":\"t\"}}");
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let at = UNIX_EPOCH + Duration::from_millis(ms);
        let verified = hookbox::Verifier::custom(crate::support::events::Trusting)
            .verified_event(source, headers, Bytes::from(body), at)
            .unwrap();
        let opts = hookbox::AppendOptions {
            dedup_window: Some(Duration::from_secs(60)),
            order_key: key.map(str::to_owned),
            destinations: destinations.into_iter().map(str::to_owned).collect(),
        };
        journal.append(&verified, &opts).await.unwrap();
    }
    journal.shutdown();
    let seg = path
        .with_file_name("j.redb-wal")
        .join("00000000000000000001.log");
    std::fs::copy(seg, LOG_FIXTURE).unwrap();
}

/// The log's segments on disk: (count, bytes, the newest one's first record).
fn log_segments(wal: &std::path::Path) -> (usize, u64, u64) {
    let (mut n, mut bytes, mut newest) = (0, 0, 0);
    for entry in std::fs::read_dir(wal).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let first: u64 = name.trim_end_matches(".log").parse().unwrap();
        n += 1;
        bytes += entry.metadata().unwrap().len();
        newest = newest.max(first);
    }
    (n, bytes, newest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_appends_the_log_is_checkpointed_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = RedbJournal::builder()
        .log(true)
        .checkpoint_every(Duration::from_millis(20))
        .open(dir.path().join("j.redb"))
        .unwrap();
    let wal = dir.path().join("j.redb-wal");
    // About 40 MiB of bodies that compress little: several 8 MiB segments' worth,
    // appended 64 at a time with no pause for the journal to be idle in.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut blob = || {
        (0..2048)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect::<String>()
    };
    let mut appended = 0u64;
    for round in 0..20 {
        let bodies: Vec<_> = (0..64)
            .map(|i| json!({"id": format!("{round}-{i}"), "blob": blob()}))
            .collect();
        futures_util::future::join_all(
            bodies
                .into_iter()
                .map(|b| crate::support::events::append(&journal, "s", b)),
        )
        .await;
        appended += 64;
    }
    let (segments, bytes, newest) = log_segments(&wal);
    assert!(newest > 1, "the log never moved on to a new segment");
    assert!(
        segments <= 3 && bytes < 3 * (8 << 20) + (1 << 20),
        "checkpointed segments stay behind: {segments} files, {bytes} bytes"
    );
    assert_eq!(journal.events_stored().unwrap(), appended);
}

/// A replay scans its window in a read transaction off the writer thread: an append
/// made while a long scan runs is acknowledged before the replay is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_scanning_a_long_window_does_not_hold_up_appends() {
    use hookbox::filter::FilterSpec;
    use hookbox::{Filter, ReplayFilter};

    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let since_ms = now_ms();
    // 8,000 events the replay's payload filter must decode and test one by one.
    for round in 0..40 {
        futures_util::future::join_all((0..200).map(|i| {
            let body = json!({"n": round * 200 + i, "pad": "0123456789abcdef".repeat(60)});
            crate::support::events::append(&*journal, "s", body)
        }))
        .await;
    }
    let spec = json!({"when": {"pointer": "/n", "gte": 0}});
    let filter = Filter::from_spec(&serde_json::from_value::<FilterSpec>(spec).unwrap()).unwrap();
    let replay = tokio::spawn({
        let journal = journal.clone();
        async move {
            let status = journal
                .replay(ReplayFilter {
                    since_ms,
                    until_ms: now_ms() + 1,
                    filter: Some(filter),
                    ..Default::default()
                })
                .await
                .unwrap();
            (status, std::time::Instant::now())
        }
    });
    // Well into the scan (8,000 decodes and filter runs take far longer).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = crate::support::events::append(&*journal, "s", json!({"n": -1})).await;
    let appended = std::time::Instant::now();
    let (status, replayed) = replay.await.unwrap();
    assert_eq!(status.matched, 8000, "the whole window, not the late event");
    assert!(
        appended < replayed,
        "the append waited for the replay's scan: appended {:?} after it",
        appended - replayed
    );
    assert!(journal.get(late).await.unwrap().is_some());
    journal.shutdown();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
