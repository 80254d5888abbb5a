//! The delivery runtime over a real redb journal: retries on schedule, the dead-letter
//! queue, redrive, panics, per-key order, memoised steps across a SIGKILL, and memory
//! under a large backlog (the last two in child processes).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookbox::{
    AttemptOutcome, Journal, Outcome, RedbJournal, RedriveFilter, RetryPolicy, Route, Runtime,
    SourceOptions, State,
};
use serde_json::json;

use crate::support::events::{append, append_keyed, script, wait_state};

fn journal(dir: &tempfile::TempDir) -> Arc<RedbJournal> {
    Arc::new(RedbJournal::open(dir.path().join("journal.redb")).unwrap())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_is_retried_on_schedule_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (factory, calls) = script(
        |d| {
            if d.attempt() <= 3 {
                Outcome::retry(format!("downstream said no ({})", d.attempt()))
            } else {
                Outcome::Done
            }
        },
        Duration::ZERO,
    );
    let schedule = vec![ms(200), ms(400), ms(800)];
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("shop"), factory)
        .source(
            "shop",
            SourceOptions::default().retry(RetryPolicy::schedule(schedule.clone()).max_attempts(5)),
        )
        .start();
    let id = append(&*j, "shop", json!({"type": "order.created"})).await;
    let st = wait_state(&*j, id, |s| s.state == State::Done).await;
    assert_eq!(st.attempts, 4);

    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    for (i, want) in schedule.iter().enumerate() {
        let gap = calls[i + 1].at - calls[i].at;
        assert!(
            gap >= *want && gap < *want + ms(400),
            "attempt {} came {gap:?} after the previous one; scheduled {want:?}",
            i + 2
        );
    }
    let attempts = j.attempts(id).unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome).collect();
    use AttemptOutcome::*;
    assert_eq!(outcomes, [Retry, Retry, Retry, Done]);
    assert_eq!(attempts[2].error.as_deref(), Some("downstream said no (3)"));
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_goes_to_the_dlq_at_once_and_redrive_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let fixed = Arc::new(AtomicU32::new(0));
    let f = fixed.clone();
    let (factory, calls) = script(
        move |_| {
            if f.load(Ordering::SeqCst) == 0 {
                Outcome::fail("customer does not exist")
            } else {
                Outcome::Done
            }
        },
        Duration::ZERO,
    );
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("crm"), factory)
        .start();
    let id = append(&*j, "crm", json!({"type": "contact.deleted"})).await;
    let other = append(&*j, "crm", json!({"type": "contact.created"})).await;
    let st = wait_state(&*j, id, |s| s.state == State::Dead).await;
    assert_eq!(st.attempts, 1, "Fail is not retried");
    assert_eq!(st.last_error.as_deref(), Some("customer does not exist"));
    wait_state(&*j, other, |s| s.state == State::Dead).await;
    assert_eq!(j.dead_count().unwrap(), 2);

    // Redrive one by id: only it comes back, and it is delivered.
    fixed.store(1, Ordering::SeqCst);
    let n = j
        .redrive(RedriveFilter {
            ids: Some(vec![id]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let st = wait_state(&*j, id, |s| s.state == State::Done).await;
    assert_eq!((st.attempts, st.redrives), (2, 1));
    let outcomes: Vec<_> = j.attempts(id).unwrap().iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Fail, AttemptOutcome::Done],
        "history kept"
    );
    assert_eq!(j.state(other).unwrap().unwrap().state, State::Dead);
    assert_eq!(j.dead(None, 10).unwrap(), vec![(other, "crm".to_owned())]);
    assert_eq!(calls.lock().unwrap().len(), 3);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_attempt_makes_the_event_dead_and_the_redrive_policy_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (factory, calls) = script(|_| Outcome::retry("still down"), Duration::ZERO);
    let rt = Runtime::builder(j.clone())
        .handler(Route::any(), factory)
        .defaults(SourceOptions::default().retry(RetryPolicy::schedule(vec![ms(50)])))
        .redrive_policy(hookbox::RedrivePolicy {
            after: ms(300),
            max_redrives: 1,
        })
        .tick(ms(50))
        .start();
    let id = append(&*j, "billing", json!({"type": "x"})).await;
    let st = wait_state(&*j, id, |s| s.state == State::Dead && s.redrives == 1).await;
    assert_eq!(st.last_error.as_deref(), Some("still down"));
    // Two attempts, redriven once, two attempts more; then the policy stops.
    tokio::time::sleep(ms(800)).await;
    let st = j.state(id).unwrap().unwrap();
    assert_eq!((st.state, st.redrives), (State::Dead, 1));
    assert_eq!(calls.lock().unwrap().len(), 4);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_restarted_and_the_event_retried() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let built = Arc::new(AtomicU32::new(0));
    let (inner, calls) = script(
        |d| {
            if d.attempt() == 1 {
                panic!("handler bug (expected by this test)");
            }
            Outcome::Done
        },
        Duration::ZERO,
    );
    let b = built.clone();
    let factory = move || {
        b.fetch_add(1, Ordering::SeqCst);
        inner()
    };
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("s"), factory)
        .source(
            "s",
            SourceOptions::default().retry(RetryPolicy::schedule(vec![ms(20)])),
        )
        .start();
    let id = append(&*j, "s", json!({"type": "t"})).await;
    wait_state(&*j, id, |s| s.state == State::Done).await;
    let outcomes: Vec<_> = j.attempts(id).unwrap().iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Crashed, AttemptOutcome::Done]);
    assert_eq!(built.load(Ordering::SeqCst), 2, "the actor was built again");
    assert_eq!(calls.lock().unwrap().len(), 2);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_handler_times_out_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (factory, calls) = script(|_| Outcome::Done, ms(400));
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("s"), factory)
        .source(
            "s",
            SourceOptions::default()
                .attempt_timeout(ms(100))
                .retry(RetryPolicy::schedule(vec![ms(10)]).max_attempts(2)),
        )
        .start();
    let id = append(&*j, "s", json!({"type": "t"})).await;
    let st = wait_state(&*j, id, |s| s.state == State::Dead).await;
    assert_eq!(st.attempts, 2);
    let outcomes: Vec<_> = j.attempts(id).unwrap().iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Timeout, AttemptOutcome::Timeout]);
    assert_eq!(calls.lock().unwrap().len(), 2);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_type_and_unrouted_types_go_to_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (invoices, inv_calls) = script(|_| Outcome::Done, Duration::ZERO);
    let (charges, ch_calls) = script(|_| Outcome::Done, Duration::ZERO);
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("stripe").event_type("invoice.*"), invoices)
        .handler(
            Route::source("stripe").event_type("charge.succeeded"),
            charges,
        )
        .start();
    let a = append(&*j, "stripe", json!({"type": "invoice.paid"})).await;
    let b = append(&*j, "stripe", json!({"type": "charge.succeeded"})).await;
    let c = append(&*j, "stripe", json!({"type": "customer.created"})).await;
    let quiet = append(&*j, "unrouted", json!({"type": "x"})).await;
    wait_state(&*j, a, |s| s.state == State::Done).await;
    wait_state(&*j, b, |s| s.state == State::Done).await;
    let st = wait_state(&*j, c, |s| s.state == State::Dead).await;
    assert!(st.last_error.unwrap().contains("customer.created"));
    let ids = |c: &Arc<std::sync::Mutex<Vec<crate::support::events::Call>>>| {
        c.lock().unwrap().iter().map(|c| c.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&inv_calls), [a]);
    assert_eq!(ids(&ch_calls), [b]);
    // A source no route names is not delivered: its events wait.
    assert_eq!(j.state(quiet).unwrap().unwrap().state, State::Pending);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_while_the_first_event_of_a_key_retries() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (factory, calls) = script(
        |d| {
            let v: serde_json::Value = d.json().unwrap();
            if v["n"] == 1 && d.attempt() < 3 {
                Outcome::retry("not yet")
            } else {
                Outcome::Done
            }
        },
        Duration::ZERO,
    );
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("orders"), factory)
        .source(
            "orders",
            SourceOptions::default().retry(RetryPolicy::schedule(vec![ms(300)]).max_attempts(5)),
        )
        .start();
    let a1 = append_keyed(&*j, "orders", json!({"type": "t", "n": 1}), Some("alice")).await;
    let a2 = append_keyed(&*j, "orders", json!({"type": "t", "n": 2}), Some("alice")).await;
    let b1 = append_keyed(&*j, "orders", json!({"type": "t", "n": 3}), Some("bob")).await;
    let a3 = append_keyed(&*j, "orders", json!({"type": "t", "n": 4}), Some("alice")).await;
    for id in [a1, a2, b1, a3] {
        wait_state(&*j, id, |s| s.state == State::Done).await;
    }
    let calls = calls.lock().unwrap().clone();
    let order: Vec<_> = calls.iter().map(|c| (c.id, c.attempt)).collect();
    // bob's event is not held up by alice's; alice's later events wait for her first.
    assert_eq!(order[0], (a1, 1));
    assert_eq!(order[1], (b1, 1));
    assert_eq!(&order[2..], [(a1, 2), (a1, 3), (a2, 1), (a3, 1)]);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_deliver_again_without_touching_the_original_history() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (factory, calls) = script(|_| Outcome::Done, Duration::ZERO);
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("gh"), factory)
        .start();
    let since = std::time::SystemTime::now();
    let id = append(&*j, "gh", json!({"type": "push"})).await;
    wait_state(&*j, id, |s| s.state == State::Done).await;
    let status = j
        .replay(hookbox::ReplayFilter {
            since_ms: hookbox_ms(since),
            until_ms: hookbox_ms(std::time::SystemTime::now()) + 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(status.matched, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while j.replay_status(status.id).unwrap().unwrap().done < 1 {
        assert!(Instant::now() < deadline, "the replay was not delivered");
        tokio::time::sleep(ms(10)).await;
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].replay, Some(status.id));
    let st = j.state(id).unwrap().unwrap();
    assert_eq!((st.state, st.attempts), (State::Done, 1));
    rt.shutdown_async(Duration::from_secs(5)).await;
}

fn hookbox_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_deliveries_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (factory, calls) = script(|_| Outcome::Done, ms(300));
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("s"), factory)
        .start();
    let id = append(&*j, "s", json!({"type": "t"})).await;
    while calls.lock().unwrap().is_empty() {
        tokio::time::sleep(ms(5)).await;
    }
    let left = rt.shutdown_async(Duration::from_secs(5)).await;
    assert_eq!(left, 0);
    assert_eq!(j.state(id).unwrap().unwrap().state, State::Done);

    // A deadline shorter than the handler leaves the delivery pending for next time.
    let (factory, calls) = script(|_| Outcome::Done, ms(2000));
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("s"), factory)
        .start();
    let id = append(&*j, "s", json!({"type": "t"})).await;
    while calls.lock().unwrap().is_empty() {
        tokio::time::sleep(ms(5)).await;
    }
    let left = rt.shutdown_async(ms(100)).await;
    assert_eq!(left, 1);
    assert_eq!(j.state(id).unwrap().unwrap().state, State::Pending);
    let (factory, _) = script(|_| Outcome::Done, Duration::ZERO);
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("s"), factory)
        .start();
    wait_state(&*j, id, |s| s.state == State::Done).await;
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_memoised_across_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let effects = Arc::new(AtomicU32::new(0));
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("pay"), {
            let effects = effects.clone();
            move || crate::support::events::Stepper {
                effects: effects.clone(),
            }
        })
        .source(
            "pay",
            SourceOptions::default().retry(RetryPolicy::schedule(vec![ms(20)])),
        )
        .start();
    let id = append(&*j, "pay", json!({"type": "t"})).await;
    wait_state(&*j, id, |s| s.state == State::Done).await;
    assert_eq!(effects.load(Ordering::SeqCst), 1, "the charge ran once");
    assert_eq!(j.attempts(id).unwrap().len(), 2);
    assert_eq!(
        j.step_result(id, "charge").unwrap().as_deref(),
        Some(&b"\"ch_1\""[..])
    );
    rt.shutdown_async(Duration::from_secs(5)).await;
}
