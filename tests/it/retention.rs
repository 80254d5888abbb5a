//! Retention: `Journal::purge` removes done events past their age and nothing else.

use std::time::{Duration, SystemTime};

use hookbox::{EventId, Journal, Next, Query, RedbJournal, ReplayFilter, State};

use crate::support::{append_event, claim_of, peek_ready, settle};

const DAY: Duration = Duration::from_secs(86400);

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn listed(journal: &RedbJournal, source: &str) -> Vec<EventId> {
    journal
        .query(&Query {
            source: Some(source.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test]
async fn purge_removes_only_old_done_events_and_everything_kept_about_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let journal = RedbJournal::open(&path).unwrap();
    let now = SystemTime::now();
    let old = now - 10 * DAY;
    let at = |n: u64| old + Duration::from_secs(n);
    let src = "gh";

    // Appended in time order, so ids follow the receive times.
    let done_a = append_event(&journal, src, "d-a", "push", at(1), b"{}").await;
    let done_b = append_event(&journal, src, "d-b", "push", at(2), b"{}").await;
    let pending = append_event(&journal, src, "d-p", "push", at(3), b"{}").await;
    let retrying = append_event(&journal, src, "d-r", "push", at(4), b"{}").await;
    let dead = append_event(&journal, src, "d-x", "push", at(5), b"{}").await;
    let replayed = append_event(&journal, src, "d-replay", "issues", at(6), b"{}").await;
    let fresh_done = append_event(&journal, src, "d-new", "push", now - DAY / 24, b"{}").await;
    let fresh_pending = append_event(&journal, src, "d-new-p", "push", now, b"{}").await;

    // done_b failed once before it was delivered, and memoised a step.
    settle(&journal, src, done_b, None, Next::RetryAt(ms(now))).await;
    let claim = claim_of(&journal, src, done_b, None).await.unwrap();
    journal
        .save_step(&claim, "charge", b"\"ch_1\"".to_vec())
        .await
        .unwrap();
    journal.abandon(vec![claim]).await.unwrap();
    for id in [done_a, done_b, replayed, fresh_done] {
        settle(&journal, src, id, None, Next::Done).await;
    }
    settle(&journal, src, retrying, None, Next::RetryAt(ms(now + DAY))).await;
    settle(&journal, src, dead, None, Next::Dead("410 Gone".into())).await;
    // A replay of `replayed` is queued and not delivered yet.
    let replay = journal
        .replay(ReplayFilter {
            since_ms: ms(at(6)),
            until_ms: ms(at(7)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(replay.matched, 1);
    assert_eq!(journal.attempts(done_b).await.unwrap().len(), 2);
    let backlog = journal.backlog(src);
    assert_eq!(backlog, 3, "pending, retrying and fresh_pending");

    let cutoff = now - DAY;
    // Chunked: one event per call, then the rest.
    assert_eq!(journal.purge(cutoff, 1).await.unwrap(), 1);
    assert_eq!(journal.purge(cutoff, 100).await.unwrap(), 1);
    assert_eq!(journal.purge(cutoff, 100).await.unwrap(), 0, "nothing left");

    for gone in [done_a, done_b] {
        assert!(journal.get(gone).await.unwrap().is_none(), "{gone} purged");
        assert_eq!(journal.state(gone).await.unwrap(), None);
        assert!(journal.attempts(gone).await.unwrap().is_empty());
        assert!(!listed(&journal, src).await.contains(&gone));
    }
    assert_eq!(journal.step_result(done_b, "charge").await.unwrap(), None);
    assert_eq!(
        journal.lookup(src, "d-a").await.unwrap(),
        None,
        "dedup entry removed"
    );
    assert_eq!(journal.lookup(src, "d-b").await.unwrap(), None);

    let state = |id| {
        let f = journal.state(id);
        async move { f.await.unwrap().map(|s| s.state) }
    };
    assert_eq!(state(pending).await, Some(State::Pending));
    assert_eq!(state(retrying).await, Some(State::Retrying));
    assert_eq!(state(dead).await, Some(State::Dead));
    assert_eq!(
        state(replayed).await,
        Some(State::Done),
        "its replay is waiting"
    );
    assert_eq!(
        state(fresh_done).await,
        Some(State::Done),
        "younger than the cutoff"
    );
    assert_eq!(state(fresh_pending).await, Some(State::Pending));
    for kept in [pending, retrying, dead, replayed, fresh_done, fresh_pending] {
        assert!(journal.get(kept).await.unwrap().is_some(), "{kept} kept");
    }
    assert_eq!(listed(&journal, src).await.len(), 6);
    assert_eq!(
        journal.lookup(src, "d-replay").await.unwrap(),
        Some(replayed)
    );
    assert_eq!(journal.backlog(src), backlog, "backlogs untouched");
    assert_eq!(journal.dead_count().await.unwrap(), 1);

    // Once the replay delivered it, it goes too; the purge is durable.
    assert!(peek_ready(&journal, src, replayed, Some(replay.id))
        .await
        .is_some());
    settle(&journal, src, replayed, Some(replay.id), Next::Done).await;
    assert_eq!(journal.purge(cutoff, 100).await.unwrap(), 1);
    drop(journal);
    let journal = RedbJournal::open(&path).unwrap();
    assert!(journal.get(replayed).await.unwrap().is_none());
    assert_eq!(journal.count().await.unwrap(), 5);
}

#[tokio::test]
async fn purge_keeps_a_dedup_entry_that_names_a_later_event() {
    let dir = tempfile::tempdir().unwrap();
    let journal = RedbJournal::open(dir.path().join("j.redb")).unwrap();
    let now = SystemTime::now();
    let first = append_event(&journal, "gh", "same", "push", now - 40 * DAY, b"{}").await;
    settle(&journal, "gh", first, None, Next::Done).await;
    // The provider reused its delivery id after the dedup window: a new event owns it.
    let event = |id| {
        let cfg = hookbox::SchemeConfig {
            secrets: vec![crate::support::GITHUB_SECRET.into()],
            ..Default::default()
        };
        let mut headers = http::HeaderMap::new();
        let signed = hookbox::sign(
            "github",
            &cfg,
            &hookbox::SignInput {
                body: b"{}",
                id,
                now,
            },
        )
        .unwrap();
        for (k, v) in signed.headers {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        headers.insert("x-github-delivery", id.parse().unwrap());
        hookbox::Verifier::new("github", &cfg)
            .unwrap()
            .verified_event("gh", headers, bytes::Bytes::from_static(b"{}"), now)
            .unwrap()
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = journal
        .append(
            &event("same"),
            &hookbox::AppendOptions {
                dedup_window: Some(Duration::from_millis(1)),
                order_key: None,
                destinations: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(!second.duplicate);
    assert_eq!(journal.lookup("gh", "same").await.unwrap(), Some(second.id));

    assert_eq!(journal.purge(now - 30 * DAY, 100).await.unwrap(), 1);
    assert!(journal.get(first).await.unwrap().is_none());
    assert_eq!(
        journal.lookup("gh", "same").await.unwrap(),
        Some(second.id),
        "the later event's dedup entry stays"
    );
}

#[tokio::test]
async fn hookbox_serve_purges_expired_done_events_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.redb");
    let now = SystemTime::now();
    let (expired, old_pending, recent_done) = {
        let j = RedbJournal::open(&journal_path).unwrap();
        let expired = append_event(&j, "gh", "e-1", "push", now - 40 * DAY, b"{}").await;
        let old_pending = append_event(&j, "gh", "e-2", "push", now - 39 * DAY, b"{}").await;
        let recent_done = append_event(&j, "gh", "e-3", "push", now - DAY, b"{}").await;
        settle(&j, "gh", expired, None, Next::Done).await;
        settle(&j, "gh", recent_done, None, Next::Done).await;
        (expired, old_pending, recent_done)
    };
    let config = dir.path().join("hookbox.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
journal = "{}"

[admin]
listen = "127.0.0.1:0"
token = "t"
"#,
            journal_path.display()
        ),
    )
    .unwrap();
    let server = crate::support::spawn_serve(&config, &[], true);
    let url = format!("{}/v1/events", server.admin.as_deref().unwrap());
    let listed = || async {
        let page: serde_json::Value = crate::support::client()
            .get(&url)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().parse::<EventId>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(listed().await, vec![recent_done, old_pending, expired]);
    // The first run comes shortly after start (the default retention is 30 days).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while listed().await.contains(&expired) {
        assert!(
            std::time::Instant::now() < deadline,
            "not purged within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(listed().await, vec![recent_done, old_pending]);
    let metrics = crate::support::client()
        .get(url.replace("/v1/events", "/metrics"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hookbox_retention_purged_total 1"),
        "{metrics}"
    );
}
