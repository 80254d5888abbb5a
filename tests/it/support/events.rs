//! Events appended straight to a journal, and a scriptable handler actor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use hookbox::{
    AppendOptions, Delivery, EventId, EventMeta, EventState, Inbound, Journal, Outcome, Scheme,
    Verifier, VerifyError,
};
use http::HeaderMap;

/// Accepts every request; the type is the body's `/type`, the delivery id its `/id`.
#[derive(Debug)]
pub(crate) struct Trusting;

impl Scheme for Trusting {
    fn name(&self) -> &str {
        "trusting"
    }

    fn verify(&self, _: &Inbound<'_>, _: SystemTime) -> Result<(), VerifyError> {
        Ok(())
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let v: serde_json::Value = serde_json::from_slice(req.body).unwrap_or_default();
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        EventMeta {
            id: s("id"),
            event_type: s("type"),
        }
    }
}

/// `body` as a verified event of `source` (its delivery id is the body's `/id`).
pub(crate) fn trusted(source: &str, body: &[u8]) -> hookbox::Verified<hookbox::Event> {
    Verifier::custom(Trusting)
        .verified_event(
            source,
            HeaderMap::new(),
            Bytes::copy_from_slice(body),
            SystemTime::now(),
        )
        .unwrap()
}

/// Appends `body` as an event of `source`: the journal's answer, error or not.
pub(crate) async fn append_result(
    journal: &dyn Journal,
    source: &str,
    body: serde_json::Value,
) -> Result<hookbox::Appended, hookbox::JournalError> {
    let body = Bytes::from(serde_json::to_vec(&body).unwrap());
    let ev = Verifier::custom(Trusting)
        .verified_event(source, HeaderMap::new(), body, SystemTime::now())
        .unwrap();
    journal.append(&ev, &AppendOptions::default()).await
}

/// Appends `body` as an event of `source` (ordered by `order_key`, if any) and returns
/// its id once durable.
pub(crate) async fn append_keyed(
    journal: &dyn Journal,
    source: &str,
    body: serde_json::Value,
    order_key: Option<&str>,
) -> EventId {
    append_to(journal, source, body, order_key, &[]).await
}

/// Appends `body` as an event of `source` for each of `destinations` (ordered by
/// `order_key`, if any) and returns its id once durable.
pub(crate) async fn append_to(
    journal: &dyn Journal,
    source: &str,
    body: serde_json::Value,
    order_key: Option<&str>,
    destinations: &[&str],
) -> EventId {
    let body = Bytes::from(serde_json::to_vec(&body).unwrap());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let ev = Verifier::custom(Trusting)
        .verified_event(source, headers, body, SystemTime::now())
        .unwrap();
    let opts = AppendOptions {
        dedup_window: None,
        order_key: order_key.map(str::to_owned),
        destinations: destinations.iter().map(|d| d.to_string()).collect(),
    };
    journal.append(&ev, &opts).await.expect("append").id
}

/// Appends `body` as an event of `source`.
pub(crate) async fn append(
    journal: &dyn Journal,
    source: &str,
    body: serde_json::Value,
) -> EventId {
    append_keyed(journal, source, body, None).await
}

/// Waits (up to 20 s) until `id`'s state satisfies `done`; returns it.
pub(crate) async fn wait_state(
    journal: &dyn Journal,
    id: EventId,
    done: impl Fn(&EventState) -> bool,
) -> EventState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A journal recovering from a storage failure cannot be read for a moment.
        let st = journal
            .state(id)
            .await
            .map(|s| s.expect("the event exists"));
        if let Ok(st) = &st {
            if done(st) {
                return st.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached the expected state; last {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One call of a [`Script`] handler.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) id: EventId,
    pub(crate) attempt: u32,
    pub(crate) replay: Option<u64>,
    pub(crate) event_type: Option<String>,
    pub(crate) at: Instant,
}

/// What a [`Script`] answers.
pub(crate) type Decide = Arc<dyn Fn(&Delivery) -> Outcome + Send + Sync>;

/// A handler actor that records each call and answers what `decide` says (or panics,
/// when it says so by panicking).
pub(crate) struct Script {
    pub(crate) calls: Arc<Mutex<Vec<Call>>>,
    pub(crate) decide: Decide,
    /// How long each call takes.
    pub(crate) delay: Duration,
}

impl Actor for Script {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Script {
    type Result = ResponseFuture<Outcome>;

    fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Self::Result {
        self.calls.lock().unwrap().push(Call {
            id: d.id(),
            attempt: d.attempt(),
            replay: d.replay(),
            event_type: d.event_type().map(str::to_owned),
            at: Instant::now(),
        });
        let decide = self.decide.clone();
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            decide(&d)
        })
    }
}

/// A factory of [`Script`] handlers sharing one call log; returns the log too.
pub(crate) fn script(
    decide: impl Fn(&Delivery) -> Outcome + Send + Sync + 'static,
    delay: Duration,
) -> (
    impl Fn() -> Script + Send + Sync + 'static,
    Arc<Mutex<Vec<Call>>>,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let decide: Decide = Arc::new(decide);
    let log = calls.clone();
    let factory = move || Script {
        calls: calls.clone(),
        decide: decide.clone(),
        delay,
    };
    (factory, log)
}

/// A handler with one memoised side effect (`charge`), which asks for a second attempt
/// after its first.
pub(crate) struct Stepper {
    pub(crate) effects: Arc<std::sync::atomic::AtomicU32>,
}

impl Actor for Stepper {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Stepper {
    type Result = ResponseFuture<Outcome>;

    fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Self::Result {
        let effects = self.effects.clone();
        Box::pin(async move {
            let charge = d
                .step("charge", || async move {
                    effects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, std::io::Error>("ch_1".to_owned())
                })
                .await;
            match charge {
                Ok(id) if id == "ch_1" && d.attempt() == 1 => Outcome::retry("once more"),
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::retry(e),
            }
        })
    }
}
