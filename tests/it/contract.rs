//! The journal contract: one suite, run unchanged against every backend (redb in a
//! temp dir; PostgreSQL in a database of its own). A new backend passes these or it is
//! not a journal. PostgreSQL-only behaviour (several nodes on one database) follows.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookbox::filter::FilterSpec;
use hookbox::{
    Attempt, AttemptOutcome, Claim, DeadDelivery, EventId, Filter, Journal, JournalError, Next,
    PostgresJournal, Query, RedbJournal, RedriveFilter, ReplayFilter, State, MAX_FILTER_SCAN,
};
use serde_json::json;

use crate::support::events::{append, append_keyed, append_result, append_to};
use crate::support::pg::TestDb;

/// A journal under test and what keeps its storage alive.
pub(crate) struct Backend {
    pub(crate) journal: Arc<dyn Journal>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<TestDb>,
}

impl Backend {
    fn redb() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let journal = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
        Backend {
            journal: Arc::new(journal),
            _dir: Some(dir),
            _db: None,
        }
    }

    /// redb with its write-ahead log: appends acknowledged by the log, applied to redb
    /// later (reads must see them all the same).
    fn redb_with_log() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let journal = RedbJournal::builder()
            .log(true)
            .open(dir.path().join("journal.redb"))
            .unwrap();
        Backend {
            journal: Arc::new(journal),
            _dir: Some(dir),
            _db: None,
        }
    }

    async fn postgres(test: &str) -> Option<Backend> {
        let db = TestDb::create(test).await?;
        let journal = PostgresJournal::builder(&db.url)
            .node("contract")
            .open()
            .await
            .expect("open the PostgreSQL journal");
        Some(Backend {
            journal: Arc::new(journal),
            _dir: None,
            _db: Some(db),
        })
    }

    async fn close(self) {
        self.journal.close().await.unwrap();
    }
}

/// Runs each listed case against redb (without and with its log) and PostgreSQL.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod on_redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = super::Backend::redb();
                    super::$case(&*b.journal).await;
                    b.close().await;
                }
            )*
        }
        mod on_redb_with_log {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = super::Backend::redb_with_log();
                    super::$case(&*b.journal).await;
                    b.close().await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(b) = super::Backend::postgres(stringify!($case)).await else {
                        return;
                    };
                    super::$case(&*b.journal).await;
                    b.close().await;
                }
            )*
        }
    };
}

contract!(
    appended_events_read_back,
    a_provider_delivery_id_is_journaled_once,
    a_claim_is_exclusive_and_fenced,
    outcomes_move_an_event_through_its_states,
    redrive_starts_a_fresh_round,
    steps_are_memoised_first_writer_wins_and_fenced,
    per_key_order_has_one_head_in_flight,
    a_dead_head_does_not_stall_its_source,
    replays_deliver_a_window_again,
    purge_removes_only_old_done_events,
    queries_filter_and_page,
    windows_are_exact_by_receive_time,
    each_destination_has_its_own_delivery,
    replays_go_to_every_destination_or_to_one,
    per_key_order_holds_per_destination,
    a_waiting_delivery_names_the_event_it_waits_for,
    payload_filters_select_listings_and_replays,
    a_filtered_page_looks_at_a_bounded_number_of_events,
    destinations_count_in_listings_replays_and_retention,
    the_dead_letter_list_is_ordered_and_limited,
    concurrent_redrives_move_each_dead_delivery_once,
);

fn far() -> SystemTime {
    SystemTime::now() + Duration::from_secs(86400 * 365)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn claim_all(j: &dyn Journal, source: &str) -> Vec<Claim> {
    j.claim(source, far(), 1000).await.unwrap()
}

fn attempt(c: &Claim, outcome: AttemptOutcome, error: Option<&str>) -> Attempt {
    Attempt {
        n: c.attempt,
        started_ms: now_ms(),
        duration_ms: 3,
        outcome,
        error: error.map(str::to_owned),
        replay: c.replay,
        destination: c.destination.to_string(),
    }
}

/// The claims' (event, destination) pairs, sorted.
fn pairs(claims: &[Claim]) -> Vec<(hookbox::EventId, String)> {
    let mut p: Vec<_> = claims
        .iter()
        .map(|c| (c.id, c.destination.to_string()))
        .collect();
    p.sort();
    p
}

async fn done(j: &dyn Journal, c: Claim) {
    let a = attempt(&c, AttemptOutcome::Done, None);
    j.settle(c, a, Next::Done).await.unwrap();
}

async fn appended_events_read_back(j: &dyn Journal) {
    let id = append(j, "gh", json!({"id": "d-1", "type": "push", "n": 1})).await;
    let e = j.get(id).await.unwrap().expect("the event is there");
    assert_eq!(e.source, "gh");
    assert_eq!(e.event_type.as_deref(), Some("push"));
    assert_eq!(e.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(e.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
    assert_eq!(body["n"], 1);
    assert_eq!(j.count().await.unwrap(), 1);
    assert_eq!(j.lookup("gh", "d-1").await.unwrap(), Some(id));
    assert_eq!(j.lookup("gh", "d-2").await.unwrap(), None);
    assert_eq!(j.state(id).await.unwrap().unwrap().state, State::Pending);
    assert_eq!(j.backlog("gh"), 1, "the backlog counts the append at once");
    assert!(j.sources().iter().any(|(s, n)| s == "gh" && *n == 1));
    let later = append(j, "gh", json!({"id": "d-2"})).await;
    assert!(later > id, "ids are time-ordered");
    assert!(j
        .get(hookbox::EventId::lower_bound(far()))
        .await
        .unwrap()
        .is_none());
    assert!(j.load().healthy);
}

async fn a_provider_delivery_id_is_journaled_once(j: &dyn Journal) {
    let body = serde_json::to_vec(&json!({"id": "same", "type": "t"})).unwrap();
    // Dedup is an append option: with a window, the second append is the first event.
    let opts = hookbox::AppendOptions {
        dedup_window: Some(Duration::from_secs(60)),
        order_key: None,
        destinations: Vec::new(),
    };
    let ev = crate::support::events::trusted("gh", &body);
    let first = j.append(&ev, &opts).await.unwrap();
    let again = j.append(&ev, &opts).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    // A repost right after the first answer (before a backend that applies writes
    // later has applied it) is the same event.
    for n in 0..20 {
        let ev = crate::support::events::trusted("gh", format!(r#"{{"id":"re-{n}"}}"#).as_bytes());
        let first = j.append(&ev, &opts).await.unwrap();
        let again = j.append(&ev, &opts).await.unwrap();
        assert!(!first.duplicate && again.duplicate, "repost {n}");
        assert_eq!(again.id, first.id, "repost {n}");
    }
    // Concurrent posts of one delivery id: one event, every answer names it.
    let ev2 = crate::support::events::trusted("gh", br#"{"id":"racy"}"#);
    let answers = futures_util::future::join_all((0..8).map(|_| j.append(&ev2, &opts))).await;
    let ids: Vec<_> = answers.iter().map(|a| a.as_ref().unwrap().id).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| !a.as_ref().unwrap().duplicate)
            .count(),
        1
    );
    assert_eq!(j.count().await.unwrap(), 22);
    // Without a window the same id is a new event each time.
    let plain = append_result(j, "gh", json!({"id": "same"})).await.unwrap();
    assert!(!plain.duplicate);
    assert_eq!(j.count().await.unwrap(), 23);
    // Also when the posts arrive together.
    let no_window = hookbox::AppendOptions {
        dedup_window: None,
        order_key: None,
        destinations: Vec::new(),
    };
    let ev3 = crate::support::events::trusted("gh", br#"{"id":"plain-racy"}"#);
    let answers = futures_util::future::join_all((0..8).map(|_| j.append(&ev3, &no_window))).await;
    let mut ids: Vec<_> = answers.iter().map(|a| a.as_ref().unwrap().id).collect();
    assert!(answers.iter().all(|a| !a.as_ref().unwrap().duplicate));
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "eight distinct events");
    assert_eq!(j.count().await.unwrap(), 31);
    assert!(ids.contains(&j.lookup("gh", "plain-racy").await.unwrap().unwrap()));
    // Once its window has passed, an entry is taken over by the next post.
    let short = hookbox::AppendOptions {
        dedup_window: Some(Duration::from_millis(1)),
        order_key: None,
        destinations: Vec::new(),
    };
    let ev4 = crate::support::events::trusted("gh", br#"{"id":"brief"}"#);
    let a = j.append(&ev4, &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = j.append(&ev4, &short).await.unwrap();
    assert!(!a.duplicate && !b.duplicate);
    assert_ne!(a.id, b.id);
    assert_eq!(j.lookup("gh", "brief").await.unwrap(), Some(b.id));
    // A duplicate within the window still names the event that took the entry over.
    let c = j.append(&ev4, &opts).await.unwrap();
    assert!(c.duplicate);
    assert_eq!(c.id, b.id);
    assert_eq!(j.count().await.unwrap(), 33);
}

async fn a_claim_is_exclusive_and_fenced(j: &dyn Journal) {
    let a = append(j, "s", json!({"n": 1})).await;
    let b = append(j, "s", json!({"n": 2})).await;
    let c = append(j, "other", json!({"n": 3})).await;
    let past = SystemTime::now() - Duration::from_secs(3600);
    assert!(
        j.claim("s", past, 10).await.unwrap().is_empty(),
        "nothing is due before it was received"
    );
    let claims = claim_all(j, "s").await;
    assert_eq!(
        claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![a, b],
        "oldest first, one source only"
    );
    assert!(claims.iter().all(|c| c.attempt == 1 && c.replay.is_none()));
    assert!(
        claim_all(j, "s").await.is_empty(),
        "a claimed delivery is not claimed twice"
    );
    assert_eq!(claim_all(j, "other").await[0].id, c);

    // Abandoned: due again at once, under a new claim; the old one is stale.
    let old = claims[0].clone();
    j.abandon(vec![old.clone()]).await.unwrap();
    let again = claim_all(j, "s").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, a);
    let stale = j
        .settle(
            old.clone(),
            attempt(&old, AttemptOutcome::Done, None),
            Next::Done,
        )
        .await;
    assert!(
        matches!(stale, Err(JournalError::LeaseLost { .. })),
        "{stale:?}"
    );
    assert_eq!(
        j.state(a).await.unwrap().unwrap().attempts,
        0,
        "nothing recorded"
    );
    assert!(j.attempts(a).await.unwrap().is_empty());
    // Abandoning a stale claim changes nothing.
    j.abandon(vec![old]).await.unwrap();
    assert!(claim_all(j, "s").await.is_empty());
    done(j, again[0].clone()).await;
    assert_eq!(j.state(a).await.unwrap().unwrap().state, State::Done);
}

async fn outcomes_move_an_event_through_its_states(j: &dyn Journal) {
    let id = append(j, "s", json!({"type": "x"})).await;
    let c = claim_all(j, "s").await.remove(0);
    let retry_at = now_ms() + 60_000;
    let a = attempt(&c, AttemptOutcome::Retry, Some("503 from the handler"));
    j.settle(c, a, Next::RetryAt(retry_at)).await.unwrap();
    let st = j.state(id).await.unwrap().unwrap();
    assert_eq!(st.state, State::Retrying);
    assert_eq!(st.attempts, 1);
    assert_eq!(st.next_at_ms, Some(retry_at));
    assert_eq!(st.last_error.as_deref(), Some("503 from the handler"));
    assert_eq!(j.backlog("s"), 1, "a retrying event is still pending");
    assert!(
        j.claim("s", SystemTime::now(), 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    assert_eq!(
        j.next_due("s", SystemTime::now()).await.unwrap(),
        Some(retry_at)
    );
    let c = claim_all(j, "s").await.remove(0);
    assert_eq!(c.attempt, 2, "the next attempt's number");
    let a = attempt(&c, AttemptOutcome::Fail, Some("410 Gone"));
    j.settle(c, a, Next::Dead("410 Gone".into())).await.unwrap();
    let st = j.state(id).await.unwrap().unwrap();
    assert_eq!(st.state, State::Dead);
    assert_eq!(st.attempts, 2);
    assert_eq!(st.last_error.as_deref(), Some("410 Gone"));
    assert!(st.dead_at_ms.is_some());
    assert_eq!(j.backlog("s"), 0, "an outcome leaves the backlog at once");
    assert_eq!(
        j.dead(None, 10).await.unwrap(),
        vec![DeadDelivery {
            id,
            source: "s".to_owned(),
            destination: String::new()
        }]
    );
    assert_eq!(j.dead(Some("other"), 10).await.unwrap(), vec![]);
    assert_eq!(j.dead_count().await.unwrap(), 1);
    let attempts = j.attempts(id).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.n, a.outcome))
            .collect::<Vec<_>>(),
        vec![(1, AttemptOutcome::Retry), (2, AttemptOutcome::Fail)]
    );
    assert!(
        claim_all(j, "s").await.is_empty(),
        "the dead are not delivered"
    );
    assert_eq!(j.next_due("s", SystemTime::now()).await.unwrap(), None);
}

async fn redrive_starts_a_fresh_round(j: &dyn Journal) {
    let keep = append(j, "s", json!({"type": "keep"})).await;
    let go = append(j, "s", json!({"type": "invoice.paid"})).await;
    for c in claim_all(j, "s").await {
        let a = attempt(&c, AttemptOutcome::Fail, Some("400"));
        j.settle(c, a, Next::Dead("400".into())).await.unwrap();
    }
    let n = j
        .redrive(RedriveFilter {
            event_type: Some("invoice.*".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let st = j.state(go).await.unwrap().unwrap();
    assert_eq!((st.state, st.redrives), (State::Pending, 1));
    assert_eq!(j.state(keep).await.unwrap().unwrap().state, State::Dead);
    let c = claim_all(j, "s").await;
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].id, c[0].attempt), (go, 1));
    done(j, c[0].clone()).await;
    let limited = j
        .redrive(RedriveFilter {
            max_redrives: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited, 0, "max_redrives holds");
    assert_eq!(j.redrive(RedriveFilter::default()).await.unwrap(), 1);
    assert_eq!(j.dead_count().await.unwrap(), 0);
}

async fn steps_are_memoised_first_writer_wins_and_fenced(j: &dyn Journal) {
    let id = append(j, "s", json!({})).await;
    let c = claim_all(j, "s").await.remove(0);
    assert_eq!(j.step_result(id, "charge").await.unwrap(), None);
    j.save_step(&c, "charge", b"\"ch_1\"".to_vec())
        .await
        .unwrap();
    j.save_step(&c, "charge", b"\"ch_2\"".to_vec())
        .await
        .unwrap();
    assert_eq!(
        j.step_result(id, "charge").await.unwrap().as_deref(),
        Some(&b"\"ch_1\""[..]),
        "the first writer wins"
    );
    j.abandon(vec![c.clone()]).await.unwrap();
    let lost = j.save_step(&c, "ship", b"1".to_vec()).await;
    assert!(
        matches!(lost, Err(JournalError::LeaseLost { .. })),
        "{lost:?}"
    );
    assert_eq!(j.step_result(id, "ship").await.unwrap(), None);
}

async fn per_key_order_has_one_head_in_flight(j: &dyn Journal) {
    let first = append_keyed(j, "s", json!({"n": 1}), Some("cus_1")).await;
    let second = append_keyed(j, "s", json!({"n": 2}), Some("cus_1")).await;
    let other = append_keyed(j, "s", json!({"n": 3}), Some("cus_2")).await;
    let c = claim_all(j, "s").await;
    assert_eq!(
        c.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![first, other],
        "one head per key"
    );
    let head = c.into_iter().find(|c| c.id == first).unwrap();
    let a = attempt(&head, AttemptOutcome::Retry, Some("busy"));
    j.settle(head, a, Next::RetryAt(now_ms())).await.unwrap();
    let c = claim_all(j, "s").await;
    assert_eq!(
        c.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![first],
        "a retrying head still holds its key"
    );
    done(j, c[0].clone()).await;
    let c = claim_all(j, "s").await;
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), vec![second]);
}

/// A key whose head died keeps its followers waiting (until the head is redriven),
/// and the rest of its source is still claimed at once, however many wait: a claim
/// that looked at every earlier delivery for each waiting one would take minutes.
/// Redriven, the head goes first and its followers follow one at a time, in order.
async fn a_dead_head_does_not_stall_its_source(j: &dyn Journal) {
    const WAITING: usize = 10_000;
    // Deliveries done before: a check that walks every earlier delivery meets them.
    for chunk in 0..WAITING / 1000 {
        let appends = (0..1000).map(|i| append(j, "s", json!({"done": chunk * 1000 + i})));
        futures_util::future::join_all(appends).await;
        let claims = claim_all(j, "s").await;
        assert_eq!(claims.len(), 1000);
        futures_util::future::join_all(claims.into_iter().map(|c| done(j, c))).await;
    }
    let head_id = append_keyed(j, "s", json!({"n": "head"}), Some("cus_1")).await;
    let head = claim_all(j, "s").await.remove(0);
    let a = attempt(&head, AttemptOutcome::Fail, Some("410"));
    j.settle(head, a, Next::Dead("410".into())).await.unwrap();
    let mut waiting = Vec::new();
    for chunk in 0..WAITING / 500 {
        let appends =
            (0..500).map(|i| append_keyed(j, "s", json!({"n": chunk * 500 + i}), Some("cus_1")));
        waiting.extend(futures_util::future::join_all(appends).await);
    }
    waiting.sort();
    let free = append(j, "s", json!({"n": "unordered"})).await;
    let claimed = tokio::time::timeout(Duration::from_secs(20), claim_all(j, "s"))
        .await
        .expect("a claim behind 10,000 waiting deliveries answers within 20 s");
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![free],
        "only the unordered event is due; the key waits for its dead head"
    );
    done(j, claimed[0].clone()).await;
    let n = j
        .redrive(RedriveFilter {
            ids: Some(vec![head_id]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let mut order = Vec::new();
    for _ in 0..4 {
        let c = claim_all(j, "s").await;
        assert_eq!(c.len(), 1, "one head of the key at a time");
        order.push(c[0].id);
        done(j, c[0].clone()).await;
    }
    assert_eq!(order, [&[head_id][..], &waiting[..3]].concat(), "in order");
}

async fn replays_deliver_a_window_again(j: &dyn Journal) {
    let a = append(j, "s", json!({"type": "a"})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mid = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = append(j, "s", json!({"type": "b"})).await;
    let c = append(j, "s", json!({"type": "c"})).await;
    for cl in claim_all(j, "s").await {
        done(j, cl).await;
    }
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let filter = ReplayFilter {
        since_ms: ms(mid),
        until_ms: now_ms() + 1,
        dry_run: true,
        ..Default::default()
    };
    let dry = j.replay(filter.clone()).await.unwrap();
    assert_eq!(dry.matched, 2);
    assert!(
        claim_all(j, "s").await.is_empty(),
        "a dry run queues nothing"
    );
    let r = j
        .replay(ReplayFilter {
            dry_run: false,
            ..filter
        })
        .await
        .unwrap();
    assert_eq!(r.matched, 2);
    assert!(r.id > 0);
    let claims = claim_all(j, "s").await;
    let mut ids: Vec<_> = claims.iter().map(|c| c.id).collect();
    ids.sort();
    assert_eq!(ids, vec![b, c]);
    assert!(claims
        .iter()
        .all(|c| c.replay == Some(r.id) && c.attempt == 1));
    for cl in claims {
        done(j, cl).await;
    }
    let status = j.replay_status(r.id).await.unwrap().unwrap();
    assert_eq!((status.matched, status.done, status.failed), (2, 2, 0));
    assert_eq!(
        j.state(a).await.unwrap().unwrap().attempts,
        1,
        "history untouched"
    );
    assert_eq!(j.replay_status(r.id + 100).await.unwrap(), None);
}

async fn purge_removes_only_old_done_events(j: &dyn Journal) {
    let old_done = append(j, "s", json!({"id": "x"})).await;
    let old_pending = append(j, "s2", json!({})).await;
    // Done to one destination, never attempted to the other: still pending.
    let half_done = append_to(j, "s3", json!({}), None, &["a", "b"]).await;
    let a = claim_all(j, "s3").await;
    let a = a.into_iter().find(|c| &*c.destination == "a").unwrap();
    done(j, a.clone()).await;
    j.abandon(claim_all(j, "s3").await).await.unwrap();
    assert_eq!(
        j.state(half_done).await.unwrap().unwrap().state,
        State::Pending
    );
    for c in claim_all(j, "s").await {
        let id = c.id;
        j.save_step(&c, "k", b"1".to_vec()).await.unwrap();
        done(j, c).await;
        assert_eq!(id, old_done);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let new_done = append(j, "s", json!({})).await;
    done(j, claim_all(j, "s").await.remove(0)).await;
    assert_eq!(j.purge(cutoff, 100).await.unwrap(), 1);
    assert_eq!(j.purge(cutoff, 100).await.unwrap(), 0);
    assert!(j.get(old_done).await.unwrap().is_none());
    assert_eq!(j.state(old_done).await.unwrap(), None);
    assert!(j.attempts(old_done).await.unwrap().is_empty());
    assert_eq!(j.step_result(old_done, "k").await.unwrap(), None);
    assert_eq!(j.lookup("s", "x").await.unwrap(), None);
    assert!(j.get(old_pending).await.unwrap().is_some());
    assert!(
        j.get(half_done).await.unwrap().is_some(),
        "b is still to deliver"
    );
    assert!(j.get(new_done).await.unwrap().is_some());
}

async fn queries_filter_and_page(j: &dyn Journal) {
    let mut ids = Vec::new();
    for (i, ty) in ["invoice.paid", "invoice.failed", "customer.created"]
        .iter()
        .enumerate()
    {
        ids.push(append(j, "st", json!({"type": ty, "id": format!("e{i}")})).await);
    }
    ids.push(append(j, "gh", json!({"type": "push"})).await);
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    let page = j.query(&Query::default()).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "newest first"
    );
    let invoices = j
        .query(&q(|q| q.event_type = Some("invoice.*".into())))
        .await
        .unwrap();
    assert_eq!(invoices.events.len(), 2);
    let exact = j
        .query(&q(|q| q.event_type = Some("push".into())))
        .await
        .unwrap();
    assert_eq!(exact.events.len(), 1);
    assert_eq!(exact.events[0].source, "gh");
    let st = j.query(&q(|q| q.source = Some("st".into()))).await.unwrap();
    assert_eq!(st.events.len(), 3);
    done(j, claim_all(j, "gh").await.remove(0)).await;
    let done_only = j.query(&q(|q| q.state = Some(State::Done))).await.unwrap();
    assert_eq!(done_only.events.len(), 1);
    assert_eq!(done_only.events[0].state, State::Done);
    assert_eq!(done_only.events[0].attempts, 1);
    // Paging: two at a time, no overlap, no gap.
    let mut seen = Vec::new();
    let mut query = Query {
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = j.query(&query).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => query.before = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().rev().copied().collect::<Vec<_>>());
    let future = j
        .query(&Query {
            since: Some(far()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(future.events.is_empty());
}

async fn windows_are_exact_by_receive_time(j: &dyn Journal) {
    use crate::support::append_event;
    let base = UNIX_EPOCH + Duration::from_millis(now_ms() - 60_000);
    let ms = |n: u64| base + Duration::from_millis(n);
    let e1 = append_event(j, "gh", "w1", "push", ms(1), b"{}").await;
    let e2 = append_event(j, "gh", "w2", "push", ms(2), b"{}").await;
    let e7 = append_event(j, "gh", "w7", "push", ms(7), b"{}").await;
    // Received at 5 ms but appended after the 7 ms one: its id lies past 7 ms.
    let late = append_event(j, "gh", "w5", "push", ms(5), b"{}").await;
    assert!(late > e7, "ids only grow");
    let window = |since: SystemTime, until: SystemTime| async move {
        let page = j
            .query(&Query {
                since: Some(since),
                until: Some(until),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut ids: Vec<_> = page.events.iter().map(|e| e.id).collect();
        ids.sort();
        ids
    };
    let sub = Duration::from_micros(300);
    assert_eq!(window(ms(1), ms(2)).await, vec![e1], "[1, 2)");
    assert_eq!(
        window(ms(1) + sub, ms(3)).await,
        vec![e1, e2],
        "to the millisecond, as receive times are recorded"
    );
    assert_eq!(window(ms(0), ms(2) + sub).await, vec![e1], "until likewise");
    assert_eq!(
        window(ms(4), ms(6)).await,
        vec![late],
        "by receive time, not id"
    );
    assert_eq!(window(ms(6), ms(8)).await, vec![e7]);
    let replay = |since_ms: u64, until_ms: u64| {
        let base_ms = base.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        j.replay(ReplayFilter {
            since_ms: base_ms + since_ms,
            until_ms: base_ms + until_ms,
            dry_run: true,
            ..Default::default()
        })
    };
    assert_eq!(replay(4, 6).await.unwrap().matched, 1, "the late event");
    assert_eq!(replay(2, 7).await.unwrap().matched, 2, "2 and 5, not 7");
    assert_eq!(replay(0, 100).await.unwrap().matched, 4);
}

/// A filter from its JSON form, as the admin API takes it.
fn filter(spec: serde_json::Value) -> Filter {
    Filter::from_spec(&serde_json::from_value::<FilterSpec>(spec).unwrap()).unwrap()
}

/// A Stripe-like event body of `ty` with `amount` at `/data/object/amount`.
fn stripe(ty: &str, amount: serde_json::Value) -> serde_json::Value {
    json!({"object": "event", "type": ty, "data": {"object": {"amount": amount}}})
}

/// Every id a query returns, following `next_cursor` to the end; no page is over its
/// limit.
async fn all_pages(j: &dyn Journal, mut q: Query) -> Vec<EventId> {
    let mut seen = Vec::new();
    loop {
        let page = j.query(&q).await.unwrap();
        assert!(page.events.len() <= q.limit.max(1));
        seen.extend(page.events.iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => q.before = Some(c),
            None => return seen,
        }
    }
}

async fn payload_filters_select_listings_and_replays(j: &dyn Journal) {
    let big = |ty: &str, amount: u64| {
        // Over the size records are compressed at: the body is read back decompressed.
        let mut b = stripe(ty, json!(amount));
        b["data"]["object"]["memo"] = json!("lorem ipsum ".repeat(200));
        b
    };
    let st = [
        append(j, "st", stripe("invoice.paid", json!(150))).await, // 0 match
        append(j, "st", stripe("invoice.paid", json!(50))).await,
        append(j, "st", stripe("charge.succeeded", json!(500))).await,
        append(j, "st", stripe("invoice.failed", json!(101.5))).await, // 3 match
        append(j, "st", stripe("invoice.paid", json!("2000"))).await,  // not a number
        append(j, "st", big("invoice.paid", 2000)).await,              // 5 match
        append(j, "st", big("invoice.paid", 20)).await,
    ];
    let raw = crate::support::append_event(
        j,
        "gh",
        "d-raw",
        "invoice.paid",
        SystemTime::now(),
        b"amount > 100, but not JSON",
    )
    .await;
    let other = append(j, "other", stripe("invoice.paid", json!(300))).await; // match
    let f = filter(json!({
        "types": ["invoice.*"],
        "when": {"pointer": "/data/object/amount", "gt": 100},
    }));
    assert!(f.needs_body());
    let newest_first = vec![other, st[5], st[3], st[0]];
    let filtered = |limit: usize| Query {
        filter: Some(f.clone()),
        limit,
        ..Default::default()
    };
    let page = j.query(&filtered(0)).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        newest_first,
        "exactly the events the filter takes, newest first"
    );
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.events[1].body_len as usize, {
        serde_json::to_vec(&big("invoice.paid", 2000))
            .unwrap()
            .len()
    });
    for limit in [1, 2, 3] {
        assert_eq!(
            all_pages(j, filtered(limit)).await,
            newest_first,
            "pages of {limit}: every match once, in order"
        );
    }
    let full = j.query(&filtered(4)).await.unwrap();
    assert_eq!(full.events.len(), 4);
    assert_eq!(full.next_cursor, None, "no next page after the last match");
    let with_source = j
        .query(&Query {
            source: Some("st".into()),
            state: Some(State::Pending),
            ..filtered(0)
        })
        .await
        .unwrap();
    assert_eq!(
        with_source.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![st[5], st[3], st[0]],
        "the filter and the other conditions both apply"
    );
    // On types alone: no body is read, and an exclusion takes the rest.
    let not_invoices = filter(json!({"types": ["!invoice.*"]}));
    assert!(!not_invoices.needs_body());
    let page = j
        .query(&Query {
            filter: Some(not_invoices),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![st[2]]
    );
    let not_json = filter(json!({"when": {"not": {"pointer": "", "exists": true}}}));
    let page = j
        .query(&Query {
            filter: Some(not_json),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![raw],
        "a body that is not JSON fails every payload test"
    );

    // Replays: the same events, counted and queued.
    for source in ["st", "gh", "other"] {
        for c in claim_all(j, source).await {
            done(j, c).await;
        }
    }
    let window = ReplayFilter {
        since_ms: 0,
        until_ms: now_ms() + 1,
        filter: Some(f.clone()),
        dry_run: true,
        ..Default::default()
    };
    let dry = j.replay(window.clone()).await.unwrap();
    assert_eq!(dry.matched, 4);
    let only_st = j
        .replay(ReplayFilter {
            source: Some("st".into()),
            ..window.clone()
        })
        .await
        .unwrap();
    assert_eq!(only_st.matched, 3);
    let r = j
        .replay(ReplayFilter {
            dry_run: false,
            ..window.clone()
        })
        .await
        .unwrap();
    assert_eq!(r.matched, 4);
    let mut replayed = Vec::new();
    for source in ["st", "gh", "other"] {
        for c in claim_all(j, source).await {
            assert_eq!(c.replay, Some(r.id));
            replayed.push(c.id);
            done(j, c).await;
        }
    }
    replayed.sort();
    let mut expected = newest_first.clone();
    expected.sort();
    assert_eq!(
        replayed, expected,
        "exactly the matching events are redelivered"
    );
    let status = j.replay_status(r.id).await.unwrap().unwrap();
    assert_eq!((status.matched, status.done), (4, 4));
    let none = j
        .replay(ReplayFilter {
            filter: Some(filter(
                json!({"when": {"pointer": "/nope", "exists": true}}),
            )),
            dry_run: false,
            ..window
        })
        .await
        .unwrap();
    assert_eq!(none.matched, 0);
    for source in ["st", "gh", "other"] {
        assert!(claim_all(j, source).await.is_empty(), "nothing was queued");
    }
}

async fn a_filtered_page_looks_at_a_bounded_number_of_events(j: &dyn Journal) {
    // Two old matches, then more non-matching events than one page looks at.
    let old = [
        append(j, "s", stripe("invoice.paid", json!(500))).await,
        append(j, "s", stripe("invoice.paid", json!(600))).await,
    ];
    let n = MAX_FILTER_SCAN + 5;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        futures_util::future::join_all(
            chunk
                .iter()
                .map(|i| append(j, "s", stripe("invoice.paid", json!(*i as u64 % 100)))),
        )
        .await;
    }
    let q = Query {
        filter: Some(filter(
            json!({"when": {"pointer": "/data/object/amount", "gt": 100}}),
        )),
        limit: 10,
        ..Default::default()
    };
    let first = j.query(&q).await.unwrap();
    assert!(
        first.events.is_empty(),
        "the newest {MAX_FILTER_SCAN} events do not match"
    );
    let cursor = first
        .next_cursor
        .expect("a page that stopped looking says where to go on");
    let rest = j
        .query(&Query {
            before: Some(cursor),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        rest.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![old[1], old[0]]
    );
    assert_eq!(rest.next_cursor, None);
    assert_eq!(all_pages(j, q.clone()).await, vec![old[1], old[0]]);
    // Without a filter nothing is bounded; replays are not either.
    let plain = j
        .query(&Query {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(plain.events.len(), 10);
    let dry = j
        .replay(ReplayFilter {
            since_ms: 0,
            until_ms: now_ms() + 1,
            filter: q.filter,
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dry.matched, 2);
}

// ---- several nodes on one PostgreSQL ---------------------------------------------

async fn node(db: &TestDb, name: &str, lease: Duration) -> PostgresJournal {
    PostgresJournal::builder(&db.url)
        .node(name)
        .lease(lease)
        .open()
        .await
        .expect("open a node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_claim_the_same_delivery() {
    let Some(db) = TestDb::create("two_nodes_never_claim_the_same_delivery").await else {
        return;
    };
    let a = node(&db, "a", Duration::from_secs(30)).await;
    let b = node(&db, "b", Duration::from_secs(30)).await;
    for i in 0..200 {
        append(if i % 2 == 0 { &a } else { &b }, "s", json!({ "n": i })).await;
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let (ca, cb) = tokio::join!(a.claim("s", far(), 7), b.claim("s", far(), 7));
        for c in ca.unwrap().into_iter().chain(cb.unwrap()) {
            assert!(seen.insert(c.id), "{} claimed twice", c.id);
        }
    }
    assert_eq!(seen.len(), 200, "every delivery claimed once");
    assert_eq!(
        a.count().await.unwrap(),
        200,
        "both nodes see the whole journal"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_ran_out_is_fenced_out_and_its_work_taken_over() {
    let Some(db) = TestDb::create("fenced_out").await else {
        return;
    };
    let a = node(&db, "a", Duration::from_secs(30)).await;
    let b = node(&db, "b", Duration::from_millis(600)).await;
    let id = append(&a, "s", json!({})).await;
    let claim = a.claim("s", far(), 10).await.unwrap().remove(0);
    assert_eq!(claim.id, id);
    assert!(
        b.claim("s", far(), 10).await.unwrap().is_empty(),
        "held by a"
    );
    // Node a goes silent (as if frozen): its heartbeat is made to look an hour old.
    db.client()
        .await
        .execute(
            "UPDATE hookbox_nodes SET heartbeat = now() - interval '1 hour' WHERE name = 'a'",
            &[],
        )
        .await
        .unwrap();
    // b's reaper runs every third of its lease and gives a's claims back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let taken = loop {
        let c = b.claim("s", far(), 10).await.unwrap();
        if let Some(c) = c.into_iter().next() {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "never taken over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(taken.id, id);
    let stale = a
        .settle(
            claim.clone(),
            attempt(&claim, AttemptOutcome::Done, None),
            Next::Done,
        )
        .await;
    assert!(
        matches!(stale, Err(JournalError::LeaseLost { .. })),
        "{stale:?}"
    );
    let step = a.save_step(&claim, "charge", b"1".to_vec()).await;
    assert!(
        matches!(step, Err(JournalError::LeaseLost { .. })),
        "{step:?}"
    );
    assert_eq!(b.step_result(id, "charge").await.unwrap(), None);
    done(&b, taken).await;
    let st = b.state(id).await.unwrap().unwrap();
    assert_eq!(
        (st.state, st.attempts),
        (State::Done, 1),
        "settled once, by b"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_posted_to_two_nodes_at_once_is_one_event() {
    let Some(db) = TestDb::create("dedup_two_nodes").await else {
        return;
    };
    let a = node(&db, "a", Duration::from_secs(30)).await;
    let b = node(&db, "b", Duration::from_secs(30)).await;
    let opts = hookbox::AppendOptions {
        dedup_window: Some(Duration::from_secs(60)),
        order_key: None,
        destinations: Vec::new(),
    };
    for i in 0..20 {
        let body = format!(r#"{{"id":"d-{i}"}}"#);
        let ev = crate::support::events::trusted("gh", body.as_bytes());
        let (ra, rb) = tokio::join!(a.append(&ev, &opts), b.append(&ev, &opts));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.id, rb.id, "both answers carry the one event's id");
        assert!(ra.duplicate != rb.duplicate, "exactly one wrote it");
    }
    assert_eq!(a.count().await.unwrap(), 20);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_node_wakes_the_others() {
    let Some(db) = TestDb::create("notify").await else {
        return;
    };
    let a = node(&db, "a", Duration::from_secs(30)).await;
    let b = node(&db, "b", Duration::from_secs(30)).await;
    let mut woken = b.subscribe();
    woken.borrow_and_update();
    let id = append(&a, "s", json!({})).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while *woken.borrow_and_update() < id.as_u64() {
            woken.changed().await.unwrap();
        }
    })
    .await
    .expect("b is told of a's commit");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_migrate_is_idempotent() {
    let Some(db) = TestDb::create("schema").await else {
        return;
    };
    let (found, now) = PostgresJournal::migrate(&db.url).await.unwrap();
    assert_eq!(found, 0);
    let (again, same) = PostgresJournal::migrate(&db.url).await.unwrap();
    assert_eq!((again, same), (now, now));
    db.client()
        .await
        .execute("UPDATE hookbox_schema SET version = 99", &[])
        .await
        .unwrap();
    let err = PostgresJournal::open(&db.url).await.unwrap_err();
    assert!(
        matches!(err, hookbox::OpenError::Version { found: 99, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_with_its_deliveries() {
    let Some(db) = TestDb::create("schema_v1").await else {
        return;
    };
    let j = node(&db, "a", Duration::from_secs(30)).await;
    let ids = [
        append(&j, "gh", json!({"id": "m-1"})).await,
        append(&j, "gh", json!({"id": "m-2"})).await,
    ];
    j.close().await.unwrap();
    // Back to the shape version 1 had: the due index left claimed rows out, and an
    // index on the owner found them.
    db.client()
        .await
        .batch_execute(
            "DROP INDEX hookbox_deliveries_due;
             CREATE INDEX hookbox_deliveries_due ON hookbox_deliveries (source, due_ms, event_id)
                 WHERE state < 2 AND owner IS NULL;
             CREATE INDEX hookbox_deliveries_owned ON hookbox_deliveries (owner)
                 WHERE owner IS NOT NULL;
             UPDATE hookbox_schema SET version = 1;",
        )
        .await
        .unwrap();
    let (found, now) = PostgresJournal::migrate(&db.url).await.unwrap();
    assert_eq!((found, now), (1, 5));
    let c = db.client().await;
    let indexes: Vec<String> = c
        .query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'hookbox_deliveries' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes.iter().all(|d| !d.contains("(owner)")),
        "{indexes:#?}"
    );
    assert!(
        indexes
            .iter()
            .any(|d| d.contains("(source, due_ms, event_id) WHERE ((state < 2) AND (NOT parked))")),
        "{indexes:#?}"
    );
    assert!(
        indexes
            .iter()
            .any(|d| d.contains("(source, target, order_key, event_id)")),
        "per-key order is per destination: {indexes:#?}"
    );
    let fill: Vec<Option<Vec<String>>> = c
        .query(
            "SELECT reloptions FROM pg_class WHERE oid IN (
               SELECT inhrelid FROM pg_inherits WHERE inhparent = 'hookbox_deliveries'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!fill.is_empty());
    assert!(
        fill.iter()
            .all(|o| o.as_deref() == Some(&["fillfactor=70".to_owned()][..])),
        "{fill:?}"
    );
    // The deliveries are there and behave: claimed once, then done.
    let j = node(&db, "a", Duration::from_secs(30)).await;
    let claims = claim_all(&j, "gh").await;
    let mut claimed: Vec<_> = claims.iter().map(|c| c.id).collect();
    claimed.sort();
    assert_eq!(claimed, ids);
    assert!(
        claim_all(&j, "gh").await.is_empty(),
        "claimed rows are skipped"
    );
    for c in claims {
        done(&j, c).await;
    }
    for id in ids {
        assert_eq!(j.state(id).await.unwrap().unwrap().state, State::Done);
    }
    j.close().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_and_the_password_stays_hidden() {
    let err = PostgresJournal::builder("postgres://hookbox:hunter2@127.0.0.1:1/db?sslmode=disable")
        .open()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let bad = PostgresJournal::builder("postgres://h@127.0.0.1/db?sslmode=sometimes")
        .open()
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("sslmode `sometimes`"), "{bad}");
}

/// The events partition of the day of `t`.
fn partition_name(t: SystemTime) -> String {
    let date = time::OffsetDateTime::from(t);
    format!(
        "hookbox_events_d{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

async fn exists_before(db: &TestDb, name: &str) -> bool {
    db.client()
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_done_days_and_deletes_the_rest_in_chunks() {
    let Some(db) = TestDb::create("retention_days").await else {
        return;
    };
    let j = node(&db, "a", Duration::from_secs(30)).await;
    const DAY: Duration = Duration::from_secs(86400);
    let now = SystemTime::now();
    j.prepare_days(now - 41 * DAY, now - 38 * DAY)
        .await
        .unwrap();
    let at = |days: u32, n: u64| now - days * DAY + Duration::from_secs(n);
    use crate::support::{append_event, settle};
    // Day -40: everything done, so the whole day goes.
    let gone1 = append_event(&j, "gh", "d-1", "push", at(40, 1), b"{}").await;
    let gone2 = append_event(&j, "gh", "d-2", "push", at(40, 2), b"{}").await;
    // Day -39: one done, one still pending: the day stays, the done event goes alone.
    let done39 = append_event(&j, "gh", "d-3", "push", at(39, 1), b"{}").await;
    let pending39 = append_event(&j, "gh", "d-4", "push", at(39, 2), b"{}").await;
    // Today: done but young.
    let young = append_event(&j, "gh", "d-5", "push", now, b"{}").await;
    // Ids only grow (a late event gets the next id), so only a clock ahead of the days
    // made in advance reaches a day without a partition: it is made on demand.
    let ahead = append_event(&j, "gh", "d-ahead", "push", now + 20 * DAY, b"{}").await;
    assert!(exists_before(&db, &partition_name(now + 20 * DAY)).await);
    assert!(j.get(ahead).await.unwrap().is_some());
    for id in [gone1, gone2, done39, young] {
        settle(&j, "gh", id, None, Next::Done).await;
    }
    let partition = |days: u32| partition_name(now - days * DAY);
    let client = db.client().await;
    let exists = |name: String| {
        let client = &client;
        async move {
            client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(exists(partition(40)).await);
    assert_eq!(j.purge(now - 30 * DAY, 1000).await.unwrap(), 3);
    assert_eq!(j.purge(now - 30 * DAY, 1000).await.unwrap(), 0);
    assert!(
        !exists(partition(40)).await,
        "the done day was dropped whole"
    );
    assert!(
        exists(partition(39)).await,
        "a day with a pending event stays"
    );
    for id in [gone1, gone2, done39] {
        assert!(j.get(id).await.unwrap().is_none(), "{id} purged");
        assert!(j.attempts(id).await.unwrap().is_empty());
    }
    assert_eq!(
        j.lookup("gh", "d-1").await.unwrap(),
        None,
        "dedup entries go too"
    );
    assert!(j.get(pending39).await.unwrap().is_some());
    assert!(j.get(young).await.unwrap().is_some());
    assert_eq!(j.count().await.unwrap(), 3);
    j.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_nodes() {
    let Some(db) = TestDb::create("order_across_nodes").await else {
        return;
    };
    let a = node(&db, "a", Duration::from_secs(30)).await;
    let b = node(&db, "b", Duration::from_secs(30)).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let via: &dyn Journal = if n % 2 == 0 { &a } else { &b };
        ids.push(append_keyed(via, "s", json!({ "n": n }), Some("cus_1")).await);
    }
    // Both nodes claim as fast as they can; each settles what it got. At any moment at
    // most one event of the key is claimed anywhere, and they are done in order.
    let mut order = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while order.len() < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "stuck after {order:?}"
        );
        let (ca, cb) = tokio::join!(a.claim("s", far(), 10), b.claim("s", far(), 10));
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        assert!(
            ca.len() + cb.len() <= 1,
            "two heads of one key: {ca:?} {cb:?}"
        );
        for (j, c) in [(&a, ca), (&b, cb)] {
            for c in c {
                order.push(c.id);
                done(j, c).await;
            }
        }
    }
    assert_eq!(order, ids, "delivered in order");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A delivery left parked although nothing before it is unfinished (an append that
/// parked it raced with the settle that would have un-parked it) is un-parked by the
/// sweep within seconds; one still behind its head stays parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_parked_by_a_race_is_unparked_by_the_sweep() {
    let Some(db) = TestDb::create("unpark_sweep").await else {
        return;
    };
    let j = node(&db, "a", Duration::from_secs(30)).await;
    let head = append_keyed(&j, "s", json!({"n": 0}), Some("cus_1")).await;
    let next = append_keyed(&j, "s", json!({"n": 1}), Some("cus_1")).await;
    let behind = append_keyed(&j, "s", json!({"n": 2}), Some("cus_2")).await;
    let blocked = append_keyed(&j, "s", json!({"n": 3}), Some("cus_2")).await;
    let c = db.client().await;
    let parked = |id: EventId| {
        let c = &c;
        async move {
            let row = c
                .query_one(
                    "SELECT parked FROM hookbox_deliveries WHERE event_id = $1",
                    &[&(id.as_u64() as i64)],
                )
                .await
                .unwrap();
            row.get::<_, bool>(0)
        }
    };
    assert!(
        !parked(head).await && parked(next).await,
        "parked at append"
    );
    assert!(!parked(behind).await && parked(blocked).await);
    // The race's outcome, made by hand: the head finished, its follower still parked.
    c.execute(
        "UPDATE hookbox_deliveries SET state = 2 WHERE event_id = $1",
        &[&(head.as_u64() as i64)],
    )
    .await
    .unwrap();
    let claimed = claim_all(&j, "s").await;
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![behind],
        "a parked delivery is not claimed"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let c = claim_all(&j, "s").await;
        if !c.is_empty() {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "never un-parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), vec![next]);
    assert!(parked(blocked).await, "still behind its claimed head");
    j.close().await.unwrap();
}

async fn each_destination_has_its_own_delivery(j: &dyn Journal) {
    let id = append_to(
        j,
        "s",
        json!({"type": "invoice.paid"}),
        None,
        &["billing", "audit"],
    )
    .await;
    let plain = append(j, "s", json!({"type": "x"})).await;
    assert_eq!(j.backlog("s"), 3, "one delivery per event and destination");
    let claims = claim_all(j, "s").await;
    assert_eq!(
        pairs(&claims),
        vec![
            (id, "audit".to_owned()),
            (id, "billing".to_owned()),
            (plain, String::new())
        ]
    );
    let retry_at = now_ms() + 60_000;
    for c in claims {
        if &*c.destination == "billing" {
            let a = attempt(&c, AttemptOutcome::Retry, Some("503"));
            j.settle(c, a, Next::RetryAt(retry_at)).await.unwrap();
        } else {
            done(j, c).await;
        }
    }
    let st = j.state(id).await.unwrap().unwrap();
    assert_eq!((st.state, st.attempts), (State::Retrying, 2));
    assert_eq!(st.next_at_ms, Some(retry_at));
    let per = j.deliveries(id).await.unwrap();
    let per: Vec<_> = per
        .iter()
        .map(|d| (d.destination.as_str(), d.state.state, d.state.attempts))
        .collect();
    assert_eq!(
        per,
        vec![("audit", State::Done, 1), ("billing", State::Retrying, 1)],
        "the failing destination does not hold the other back"
    );
    assert_eq!(j.backlog("s"), 1, "only billing's delivery is still open");
    let mut recorded: Vec<_> = j
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.destination, a.outcome))
        .collect();
    recorded.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        recorded,
        vec![
            ("audit".to_owned(), AttemptOutcome::Done),
            ("billing".to_owned(), AttemptOutcome::Retry)
        ]
    );
    let c = claim_all(j, "s").await;
    assert_eq!(pairs(&c), vec![(id, "billing".to_owned())]);
    assert_eq!(c[0].attempt, 2, "billing's own attempt count");
    let a = attempt(&c[0], AttemptOutcome::Fail, Some("410"));
    j.settle(c[0].clone(), a, Next::Dead("410".into()))
        .await
        .unwrap();
    assert_eq!(j.state(id).await.unwrap().unwrap().state, State::Dead);
    assert_eq!(
        j.dead(None, 10).await.unwrap(),
        vec![DeadDelivery {
            id,
            source: "s".to_owned(),
            destination: "billing".to_owned()
        }],
        "the DLQ lists the (event, destination) pair"
    );
    assert_eq!(j.dead_count().await.unwrap(), 1);
    let only_audit = RedriveFilter {
        destination: Some("audit".into()),
        ..Default::default()
    };
    assert_eq!(j.redrive(only_audit).await.unwrap(), 0);
    let only_billing = RedriveFilter {
        destination: Some("billing".into()),
        ..Default::default()
    };
    assert_eq!(j.redrive(only_billing).await.unwrap(), 1);
    let c = claim_all(j, "s").await;
    assert_eq!(pairs(&c), vec![(id, "billing".to_owned())]);
    assert_eq!(c[0].attempt, 1, "a redrive starts a fresh round");
    done(j, c[0].clone()).await;
    let st = j.state(id).await.unwrap().unwrap();
    assert_eq!((st.state, st.redrives), (State::Done, 1));
    assert_eq!(j.backlog("s"), 0);
    assert!(claim_all(j, "s").await.is_empty());
}

/// Kills every claimable delivery of `source`.
async fn kill_all(j: &dyn Journal, source: &str) {
    for c in claim_all(j, source).await {
        let a = attempt(&c, AttemptOutcome::Fail, Some("410"));
        j.settle(c, a, Next::Dead("410".into())).await.unwrap();
    }
}

async fn the_dead_letter_list_is_ordered_and_limited(j: &dyn Journal) {
    // Oldest event first, whatever its source; an event's destinations by name.
    let b1 = append_to(j, "b", json!({"n": 1}), None, &["y", "x"]).await;
    let a1 = append(j, "a", json!({"n": 2})).await;
    let upper = append(j, "B", json!({"n": 3})).await;
    let b2 = append(j, "b", json!({"n": 4})).await;
    let a2 = append(j, "a", json!({"n": 5})).await;
    for s in ["a", "b", "B"] {
        kill_all(j, s).await;
    }
    let d = |id: EventId, source: &str, destination: &str| DeadDelivery {
        id,
        source: source.to_owned(),
        destination: destination.to_owned(),
    };
    let all = vec![
        d(b1, "b", "x"),
        d(b1, "b", "y"),
        d(a1, "a", ""),
        d(upper, "B", ""),
        d(b2, "b", ""),
        d(a2, "a", ""),
    ];
    assert_eq!(j.dead(None, 100).await.unwrap(), all);
    assert_eq!(j.dead_count().await.unwrap(), 6);
    assert_eq!(j.dead(None, 4).await.unwrap(), all[..4], "the oldest four");
    assert_eq!(j.dead(None, 1).await.unwrap(), all[..1]);
    let of_b = vec![all[0].clone(), all[1].clone(), all[4].clone()];
    assert_eq!(j.dead(Some("b"), 100).await.unwrap(), of_b);
    assert_eq!(j.dead(Some("b"), 2).await.unwrap(), of_b[..2]);
    assert_eq!(j.dead(Some("B"), 100).await.unwrap(), vec![all[3].clone()]);
    assert_eq!(j.dead(Some("c"), 100).await.unwrap(), vec![]);
    assert_eq!(
        j.dead(None, 0).await.unwrap(),
        vec![],
        "a limit of 0 lists none"
    );
}

async fn concurrent_redrives_move_each_dead_delivery_once(j: &dyn Journal) {
    futures_util::future::join_all((0..200).map(|n| append(j, "s", json!({"type": "t", "n": n}))))
        .await;
    kill_all(j, "s").await;
    assert_eq!(j.dead_count().await.unwrap(), 200);
    let by_type = || RedriveFilter {
        event_type: Some("t".into()),
        ..Default::default()
    };
    let moved: u64 = futures_util::future::join_all((0..4).map(|_| j.redrive(by_type())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(
        moved, 200,
        "each dead delivery moved by exactly one of the redrives"
    );
    assert_eq!(j.dead_count().await.unwrap(), 0);
    let claims = claim_all(j, "s").await;
    let mut ids: Vec<_> = claims.iter().map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (claims.len(), ids.len()),
        (200, 200),
        "one delivery each, once"
    );
    for c in claims {
        assert_eq!(j.state(c.id).await.unwrap().unwrap().redrives, 1);
        done(j, c).await;
    }
}

async fn replays_go_to_every_destination_or_to_one(j: &dyn Journal) {
    let since = now_ms();
    let id = append_to(j, "s", json!({"type": "a"}), None, &["billing", "audit"]).await;
    for c in claim_all(j, "s").await {
        done(j, c).await;
    }
    let window = ReplayFilter {
        since_ms: since,
        until_ms: now_ms() + 1,
        ..Default::default()
    };
    let all = j.replay(window.clone()).await.unwrap();
    assert_eq!(all.matched, 2, "one delivery per destination");
    let claims = claim_all(j, "s").await;
    assert_eq!(
        pairs(&claims),
        vec![(id, "audit".to_owned()), (id, "billing".to_owned())]
    );
    assert!(claims.iter().all(|c| c.replay == Some(all.id)));
    for c in claims {
        done(j, c).await;
    }
    let one = j
        .replay(ReplayFilter {
            destination: Some("audit".into()),
            ..window
        })
        .await
        .unwrap();
    assert_eq!(one.matched, 1);
    let claims = claim_all(j, "s").await;
    assert_eq!(pairs(&claims), vec![(id, "audit".to_owned())]);
    done(j, claims[0].clone()).await;
    let status = j.replay_status(one.id).await.unwrap().unwrap();
    assert_eq!((status.matched, status.done), (1, 1));
    assert_eq!(
        j.state(id).await.unwrap().unwrap().attempts,
        2,
        "history untouched"
    );
}

async fn per_key_order_holds_per_destination(j: &dyn Journal) {
    let first = append_to(j, "s", json!({"n": 1}), Some("cus_1"), &["a", "b"]).await;
    let second = append_to(j, "s", json!({"n": 2}), Some("cus_1"), &["a", "b"]).await;
    let heads = claim_all(j, "s").await;
    assert_eq!(
        pairs(&heads),
        vec![(first, "a".to_owned()), (first, "b".to_owned())],
        "one head per key and destination"
    );
    let (a, b): (Vec<_>, Vec<_>) = heads.into_iter().partition(|c| &*c.destination == "a");
    done(j, a[0].clone()).await;
    let next = claim_all(j, "s").await;
    assert_eq!(
        pairs(&next),
        vec![(second, "a".to_owned())],
        "destination a moves on while b's head is still in flight"
    );
    let r = attempt(&b[0], AttemptOutcome::Retry, Some("busy"));
    j.settle(b[0].clone(), r, Next::RetryAt(now_ms()))
        .await
        .unwrap();
    done(j, next[0].clone()).await;
    let again = claim_all(j, "s").await;
    assert_eq!(
        pairs(&again),
        vec![(first, "b".to_owned())],
        "b's retrying head still holds b's key"
    );
}

/// Each destination's delivery of `id`: (destination, the event it waits for).
async fn waits(j: &dyn Journal, id: hookbox::EventId) -> Vec<(String, Option<hookbox::EventId>)> {
    let rows = j.deliveries(id).await.unwrap();
    rows.into_iter()
        .map(|d| (d.destination, d.waiting_for))
        .collect()
}

/// A delivery pending behind an earlier event of its key (to its destination) names
/// that event, the key's head, until the head is done; a head, an unordered event
/// and another key's event wait for nothing.
async fn a_waiting_delivery_names_the_event_it_waits_for(j: &dyn Journal) {
    let first = append_to(j, "s", json!({"n": 1}), Some("cus_1"), &["a", "b"]).await;
    let second = append_to(j, "s", json!({"n": 2}), Some("cus_1"), &["a", "b"]).await;
    let third = append_to(j, "s", json!({"n": 3}), Some("cus_1"), &["a", "b"]).await;
    let other = append_to(j, "s", json!({"n": 4}), Some("cus_2"), &["a", "b"]).await;
    let unordered = append_to(j, "s", json!({"n": 5}), None, &["a", "b"]).await;
    let none = |d: &str| (d.to_owned(), None);
    let on = |d: &str, id| (d.to_owned(), Some(id));
    assert_eq!(waits(j, first).await, [none("a"), none("b")]);
    assert_eq!(waits(j, second).await, [on("a", first), on("b", first)]);
    assert_eq!(waits(j, third).await, [on("a", first), on("b", first)]);
    assert_eq!(waits(j, other).await, [none("a"), none("b")]);
    assert_eq!(waits(j, unordered).await, [none("a"), none("b")]);
    let heads = claim_all(j, "s").await;
    let (a, b): (Vec<_>, Vec<_>) = heads
        .into_iter()
        .filter(|c| c.id == first)
        .partition(|c| &*c.destination == "a");
    done(j, a[0].clone()).await;
    // a's head is done: second leads a's key now; b's head has not moved.
    assert_eq!(waits(j, second).await, [none("a"), on("b", first)]);
    assert_eq!(waits(j, third).await, [on("a", second), on("b", first)]);
    let r = attempt(&b[0], AttemptOutcome::Fail, Some("gone"));
    j.settle(b[0].clone(), r, Next::Dead("gone".into()))
        .await
        .unwrap();
    assert_eq!(
        waits(j, second).await,
        [none("a"), on("b", first)],
        "a dead head still holds its key"
    );
}

async fn destinations_count_in_listings_replays_and_retention(j: &dyn Journal) {
    let since = now_ms();
    let both = append_to(j, "s", json!({"n": 1}), None, &["billing", "audit"]).await;
    let twice = append_to(j, "s", json!({"n": 2}), None, &["audit", "audit"]).await;
    assert_eq!(
        j.backlog("s"),
        3,
        "a destination listed twice is one delivery"
    );
    let claims = claim_all(j, "s").await;
    assert_eq!(
        pairs(&claims),
        vec![
            (both, "audit".to_owned()),
            (both, "billing".to_owned()),
            (twice, "audit".to_owned())
        ]
    );
    for c in claims {
        if c.id == both && &*c.destination == "billing" {
            let a = attempt(&c, AttemptOutcome::Fail, Some("410"));
            j.settle(c, a, Next::Dead("410".into())).await.unwrap();
        } else {
            done(j, c).await;
        }
    }
    let listed = |state: State| async move {
        let q = Query {
            state: Some(state),
            ..Default::default()
        };
        j.query(&q)
            .await
            .unwrap()
            .events
            .iter()
            .map(|e| (e.id, e.state, e.attempts))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(State::Dead).await,
        vec![(both, State::Dead, 2)],
        "listed by the state over all destinations, attempts summed"
    );
    assert_eq!(listed(State::Done).await, vec![(twice, State::Done, 1)]);
    assert_eq!(listed(State::Pending).await, vec![]);
    let window = ReplayFilter {
        since_ms: since,
        until_ms: now_ms() + 1,
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(j.replay(window.clone()).await.unwrap().matched, 3);
    let to_one = ReplayFilter {
        destination: Some("audit".into()),
        ..window
    };
    assert_eq!(j.replay(to_one).await.unwrap().matched, 2);
    assert!(
        claim_all(j, "s").await.is_empty(),
        "a dry run queues nothing"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = SystemTime::now();
    assert_eq!(
        j.purge(cutoff, 100).await.unwrap(),
        1,
        "an event goes once every destination is done"
    );
    assert!(j.get(twice).await.unwrap().is_none());
    assert!(j.get(both).await.unwrap().is_some());
    let billing = RedriveFilter {
        destination: Some("billing".into()),
        ..Default::default()
    };
    assert_eq!(j.redrive(billing).await.unwrap(), 1);
    done(j, claim_all(j, "s").await.remove(0)).await;
    assert_eq!(j.purge(cutoff, 100).await.unwrap(), 1);
    assert!(j.get(both).await.unwrap().is_none());
    assert_eq!(j.deliveries(both).await.unwrap(), vec![]);
    assert_eq!(j.state(both).await.unwrap(), None);
}
