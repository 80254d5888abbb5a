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
    let attempts = j.attempts(id).await.unwrap();
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
    assert_eq!(j.dead_count().await.unwrap(), 2);

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
    let outcomes: Vec<_> = j
        .attempts(id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Fail, AttemptOutcome::Done],
        "history kept"
    );
    assert_eq!(j.state(other).await.unwrap().unwrap().state, State::Dead);
    assert_eq!(
        j.dead(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d.source))
            .collect::<Vec<_>>(),
        vec![(other, "crm".to_owned())]
    );
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
    let st = j.state(id).await.unwrap().unwrap();
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
    let outcomes: Vec<_> = j
        .attempts(id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome)
        .collect();
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
    let outcomes: Vec<_> = j
        .attempts(id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome)
        .collect();
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
    assert_eq!(j.state(quiet).await.unwrap().unwrap().state, State::Pending);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

/// Routes with filters: a declarative one and a closure. An event of a routed type
/// that no route's filter takes is done (outcome `filtered`), never dead; a type no
/// route names still goes to the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_filters_pick_handlers_and_what_none_takes_is_done_not_dead() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (big, big_calls) = script(|_| Outcome::Done, Duration::ZERO);
    let (eu, eu_calls) = script(|_| Outcome::Done, Duration::ZERO);
    let over_100: hookbox::filter::FilterSpec =
        toml::from_str(r#"when = { pointer = "/amount", gt = 100 }"#).unwrap();
    let rt = Runtime::builder(j.clone())
        .handler(
            Route::source("shop")
                .event_type("order.*")
                .filter(hookbox::Filter::from_spec(&over_100).unwrap()),
            big,
        )
        .handler(
            Route::source("shop")
                .event_type("order.*")
                .when(|e| e.body.windows(12).any(|w| w == br#""region":"eu"#)),
            eu,
        )
        .start();
    let a = append(&*j, "shop", json!({"type": "order.paid", "amount": 500})).await;
    let b = append(
        &*j,
        "shop",
        json!({"type": "order.paid", "amount": 5, "region": "eu"}),
    )
    .await;
    let c = append(&*j, "shop", json!({"type": "order.paid", "amount": 5})).await;
    let d = append(
        &*j,
        "shop",
        json!({"type": "refund.created", "amount": 500}),
    )
    .await;
    wait_state(&*j, a, |s| s.state == State::Done).await;
    wait_state(&*j, b, |s| s.state == State::Done).await;
    let st = wait_state(&*j, c, |s| s.state == State::Done).await;
    assert_eq!(st.attempts, 1);
    let attempts = j.attempts(c).await.unwrap();
    assert_eq!(attempts[0].outcome, hookbox::AttemptOutcome::Filtered);
    assert!(attempts[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("filtered out"));
    let st = wait_state(&*j, d, |s| s.state == State::Dead).await;
    assert!(st.last_error.unwrap().contains("refund.created"));
    let ids = |c: &Arc<std::sync::Mutex<Vec<crate::support::events::Call>>>| {
        c.lock().unwrap().iter().map(|c| c.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&big_calls), [a]);
    assert_eq!(ids(&eu_calls), [b]);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_while_the_first_event_of_a_key_retries() {
    let dir = tempfile::tempdir().unwrap();
    per_key_order_while_a_head_retries(journal(&dir)).await;
}

/// The same through PostgreSQL, where a key's later events wait parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_while_the_first_event_of_a_key_retries_on_postgres() {
    let Some(db) = crate::support::pg::TestDb::create("runtime_order").await else {
        return;
    };
    let j = hookbox::PostgresJournal::builder(&db.url)
        .node("runtime")
        .open()
        .await
        .unwrap();
    per_key_order_while_a_head_retries(Arc::new(j)).await;
}

async fn per_key_order_while_a_head_retries(j: Arc<dyn Journal>) {
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
    j.close().await.unwrap();
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
    while j.replay_status(status.id).await.unwrap().unwrap().done < 1 {
        assert!(Instant::now() < deadline, "the replay was not delivered");
        tokio::time::sleep(ms(10)).await;
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].replay, Some(status.id));
    let st = j.state(id).await.unwrap().unwrap();
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
    assert_eq!(j.state(id).await.unwrap().unwrap().state, State::Done);

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
    assert_eq!(j.state(id).await.unwrap().unwrap().state, State::Pending);
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
    assert_eq!(j.attempts(id).await.unwrap().len(), 2);
    assert_eq!(
        j.step_result(id, "charge").await.unwrap().as_deref(),
        Some(&b"\"ch_1\""[..])
    );
    rt.shutdown_async(Duration::from_secs(5)).await;
}

// ---- Child processes: a handler killed between two steps, and a large backlog ----

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the child processes below start. Does nothing in a normal run.
#[test]
#[ignore = "started as a child process by other tests"]
fn child_process() {
    let Ok(role) = std::env::var("HOOKBOX_TEST_CHILD") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("HOOKBOX_TEST_DIR").unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match role.as_str() {
        "steps" => rt.block_on(child_steps(&dir)),
        "backlog" => rt.block_on(child_backlog(&dir)),
        other => panic!("unknown child role {other}"),
    }
}

fn spawn_child(role: &str, dir: &Path, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "runtime::child_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HOOKBOX_TEST_CHILD", role)
    .env("HOOKBOX_TEST_DIR", dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Appends a line to `file` and syncs it: a side effect that survives SIGKILL.
fn effect(file: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    writeln!(f, "{line}").unwrap();
    f.sync_all().unwrap();
}

struct TwoSteps {
    dir: PathBuf,
    pause: bool,
}

impl actix::Actor for TwoSteps {
    type Context = actix::Context<Self>;
}

impl actix::Handler<hookbox::Delivery> for TwoSteps {
    type Result = actix::ResponseFuture<Outcome>;

    fn handle(&mut self, d: hookbox::Delivery, _: &mut Self::Context) -> Self::Result {
        let dir = self.dir.clone();
        let pause = self.pause;
        Box::pin(async move {
            let effects = dir.join("effects.log");
            let one = d
                .step("reserve", || async {
                    effect(&effects, "reserve");
                    Ok::<_, std::io::Error>(17u32)
                })
                .await;
            if one.is_err() {
                return Outcome::retry("step 1");
            }
            if pause {
                // Between the steps: the parent kills us here.
                effect(&dir.join("between"), "x");
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
            let two = d
                .step("ship", || async {
                    effect(&effects, "ship");
                    Ok::<_, std::io::Error>("shp_9".to_owned())
                })
                .await;
            match two {
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::retry(e),
            }
        })
    }
}

async fn child_steps(dir: &Path) {
    let j = Arc::new(RedbJournal::open(dir.join("journal.redb")).unwrap());
    let pause = std::env::var("HOOKBOX_TEST_PAUSE").is_ok();
    let d = dir.to_path_buf();
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("shop"), move || TwoSteps {
            dir: d.clone(),
            pause,
        })
        .start();
    let id = j
        .query(&hookbox::Query::default())
        .await
        .unwrap()
        .events
        .remove(0)
        .id;
    wait_state(&*j, id, |s| s.state == State::Done).await;
    rt.shutdown_async(Duration::from_secs(5)).await;
    j.shutdown();
}

#[test]
fn sigkill_between_two_steps_runs_the_second_once_and_never_the_first_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(append(&j, "shop", json!({"type": "order.paid"})));
        j.shutdown();
    }
    let mut child = spawn_child("steps", dir.path(), &[("HOOKBOX_TEST_PAUSE", "1")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("between").exists() {
        assert!(Instant::now() < deadline, "the child never reached step 2");
        std::thread::sleep(ms(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let effects = || std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    assert_eq!(effects(), "reserve\n");

    let mut child = spawn_child("steps", dir.path(), &[]);
    let status = child.wait().unwrap();
    assert!(status.success(), "the restarted child failed: {status}");
    assert_eq!(
        effects(),
        "reserve\nship\n",
        "step 1 never again, step 2 once"
    );

    let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt
        .block_on(j.query(&hookbox::Query::default()))
        .unwrap()
        .events[0]
        .id;
    assert_eq!(
        rt.block_on(j.state(id)).unwrap().unwrap().state,
        State::Done
    );
    assert_eq!(
        rt.block_on(j.step_result(id, "reserve"))
            .unwrap()
            .as_deref(),
        Some(&b"17"[..])
    );
    assert_eq!(
        rt.block_on(j.step_result(id, "ship")).unwrap().as_deref(),
        Some(&b"\"shp_9\""[..])
    );
}

/// Resident and peak memory of this process, in MiB.
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") / 1024, kib("VmHWM:") / 1024)
}

/// Appends `n` events of about 512 bytes with 64 appends in flight.
async fn append_many(j: &Arc<RedbJournal>, source: &str, n: usize, tag: &str) -> Vec<Duration> {
    let per = n / 64;
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let j = j.clone();
            let source = source.to_owned();
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let body = json!({
                        "type": "invoice.paid",
                        "id": format!("{tag}-{t}-{i}"),
                        "data": {"customer": format!("cus_{i:08}"), "pad": "x".repeat(400)},
                    });
                    let started = Instant::now();
                    append(&*j, &source, body).await;
                    lat.push(started.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn child_backlog(dir: &Path) {
    let n: usize = std::env::var("HOOKBOX_TEST_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let j = Arc::new(RedbJournal::open(dir.join("journal.redb")).unwrap());
    let started = Instant::now();
    append_many(&j, "bulk", n / 10, "a").await;
    let (rss_tenth, _) = memory_mib();
    append_many(&j, "bulk", n - n / 10, "b").await;
    let (rss_full, _) = memory_mib();
    let append_secs = started.elapsed().as_secs_f64();

    let (factory, calls) = script(|_| Outcome::Done, ms(20));
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("bulk"), factory)
        .start();
    // Intake goes on while the slow handler works through the backlog.
    let lat = append_many(&j, "bulk", 6400, "c").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_delivering, hwm) = memory_mib();
    let delivered = calls.lock().unwrap().len();
    let stats = rt.stats().await;
    rt.shutdown_async(Duration::from_secs(5)).await;
    let mut lat: Vec<_> = lat.into_iter().map(|d| d.as_secs_f64() * 1e3).collect();
    lat.sort_by(f64::total_cmp);
    let report = json!({
        "backlog": j.backlog("bulk"),
        "append_secs": append_secs,
        "rss_tenth_mib": rss_tenth,
        "rss_full_mib": rss_full,
        "rss_delivering_mib": rss_delivering,
        "peak_mib": hwm,
        "delivered": delivered,
        "in_flight_max": stats.iter().map(|s| s.running + s.settling).max(),
        "intake_p50_ms": lat[lat.len() / 2],
        "intake_p99_ms": lat[lat.len() * 99 / 100],
    });
    println!("BACKLOG-REPORT {report}");
}

#[test]
fn a_million_event_backlog_keeps_memory_bounded_and_intake_working() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child("backlog", dir.path(), &[]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the child failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.split_once("BACKLOG-REPORT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no report in {text}"));
    eprintln!("backlog: {line}");
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    let n = |k: &str| r[k].as_f64().unwrap();
    let backlog: f64 = std::env::var("HOOKBOX_TEST_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000.0);
    // Most of the backlog is still waiting, on disk (about 512 MB of bodies for 1M).
    assert!(n("backlog") > backlog * 0.9, "{line}");
    assert!(n("delivered") > 0.0, "{line}");
    // Memory follows the page cache (64 MiB) and the delivery window, not the backlog:
    // the last 90% of the events added little, and the whole run stays small.
    assert!(n("rss_full_mib") - n("rss_tenth_mib") < 96.0, "{line}");
    assert!(n("peak_mib") < 320.0, "{line}");
    assert!(n("in_flight_max") <= 16.0 + 4096.0, "{line}");
    assert!(n("intake_p99_ms") < 1000.0, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_spreads_deliveries_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(append(&*j, "slowapi", json!({"type": "t", "n": n})).await);
    }
    let (factory, calls) = script(|_| Outcome::Done, Duration::ZERO);
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("slowapi"), factory)
        .source("slowapi", SourceOptions::default().rate(Some(20.0)))
        .start();
    for id in &ids {
        wait_state(&*j, *id, |s| s.state == State::Done).await;
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 50);
    // A burst of one second's worth, then 20 per second: 30 more take 1.5 s.
    let spread = calls[49].at - calls[0].at;
    assert!(
        spread >= ms(1300) && spread < ms(4000),
        "50 deliveries at 20/s took {spread:?}"
    );
    let first_second = calls
        .iter()
        .filter(|c| c.at - calls[0].at < ms(1000))
        .count();
    assert!(first_second <= 41, "{first_second} in the first second");
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_takes_the_key_from_the_body_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let hb = hookbox::Hookbox::new(j.clone()).source(
        hookbox::Source::new(
            "orders",
            hookbox::Verifier::builder("standard-webhooks")
                .secret(crate::serve::SW_SECRET)
                .build()
                .unwrap(),
        )
        .order_by("/customer/id"),
    );
    let app = axum::Router::new().route_service("/hooks/orders", hb.endpoint("orders"));
    let addr = crate::support::serve(app).await;
    let client = crate::support::client();
    let url = format!("http://{addr}/hooks/orders");
    let mut keys = Vec::new();
    for (n, body) in [
        r#"{"type":"order.created","customer":{"id":"cus_42"}}"#,
        r#"{"type":"order.created","customer":{"id":7}}"#,
        r#"{"type":"order.created"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let req = crate::serve::signed(
            &client,
            &url,
            "standard-webhooks",
            crate::serve::SW_SECRET,
            &format!("m{n}"),
            body.as_bytes(),
        );
        let id: hookbox::EventId = crate::serve::post_ok(req).await.parse().unwrap();
        keys.push(j.state(id).await.unwrap().unwrap().order_key);
    }
    assert_eq!(keys, ["cus_42", "7", ""]);
}

/// An example config, as shipped and with each commented-out `# key = value` line
/// taken in: the options it shows are real keys with valid values.
fn example_config(name: &str) -> (hookbox::Config, hookbox::Config) {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let shown: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                }) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(shown, text, "{name} shows no commented-out option");
    let parse = |t: &str| hookbox::Config::from_toml(t).unwrap_or_else(|e| panic!("{name}: {e}"));
    (parse(&text), parse(&shown))
}

#[test]
fn the_shipped_example_config_is_valid() {
    let (cfg, all) = example_config("hookbox.toml");
    assert!(cfg.admin.is_some());
    assert!(cfg
        .sources
        .iter()
        .all(|s| s.destinations.iter().map(|d| d.name()).eq(["app"])));
    assert!(all.server.redrive.is_some());
}

#[test]
fn the_cluster_example_config_is_valid() {
    let (cfg, all) = example_config("cluster.toml");
    assert_eq!(cfg.server.journal, "env:HOOKBOX_JOURNAL_URL");
    assert!(cfg.admin.is_some());
    assert_eq!(
        (
            all.server.node.as_deref(),
            all.server.writers,
            all.server.pool_size
        ),
        (Some("web-1"), Some(2), Some(16))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_resume_after_a_storage_failure_and_each_is_done_once() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let j = crate::support::faults::journal_on_full_disk(&dir.path().join("j.redb"), full.clone());
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(append(&*j, "s", json!({"type": "t", "n": n})).await);
    }
    let (factory, calls) = script(|_| Outcome::Done, ms(100));
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("s"), factory)
        .source("s", SourceOptions::default().concurrency(4))
        .start();
    while calls.lock().unwrap().len() < 4 {
        tokio::time::sleep(ms(5)).await;
    }
    // The disk fills: outcomes cannot be journaled (the first durable commit, within a
    // second, fails), the journal closes to recover, and the source actor, unable to
    // read, is restarted by its supervisor.
    full.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(ms(1500)).await;
    full.store(false, std::sync::atomic::Ordering::SeqCst);
    for id in &ids {
        wait_state(&*j, *id, |s| s.state == State::Done).await;
    }
    for id in &ids {
        let done = j
            .attempts(*id)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Done)
            .count();
        assert_eq!(done, 1, "{id}: one journaled success");
    }
    let stats = rt.stats().await;
    assert!(stats[0].restarts >= 1, "{stats:?}");
    assert!(calls.lock().unwrap().len() >= 40);
    rt.shutdown_async(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_delays_and_rates_are_far_future_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let (factory, calls) = script(|_| Outcome::retry("later"), Duration::ZERO);
    let ages = Duration::from_secs(300_000_000_000 * 365 * 86400 / 1000);
    let rt = Runtime::builder(j.clone())
        .handler(Route::source("s"), factory)
        .source(
            "s",
            SourceOptions::default()
                .rate(Some(1e-300))
                .retry(RetryPolicy::schedule(vec![ages, Duration::MAX])),
        )
        .start();
    let a = append(&*j, "s", json!({"type": "t"})).await;
    let b = append(&*j, "s", json!({"type": "t"})).await;
    let st = wait_state(&*j, a, |s| s.state == State::Retrying).await;
    assert!(st.next_at_ms.unwrap() > hookbox_ms(std::time::SystemTime::now()) + 86_400_000);
    // The rate allows one delivery now and the next in ages: b waits, nothing panics.
    tokio::time::sleep(ms(300)).await;
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(j.state(b).await.unwrap().unwrap().state, State::Pending);
    assert!(rt.stats().await[0].started >= 1, "the actor is alive");
    rt.shutdown_async(Duration::from_secs(5)).await;
}
