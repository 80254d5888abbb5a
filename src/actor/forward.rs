//! The handler of `hookbox serve`: forwards each event to its source's destinations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use crate::{
    Delivery, Destination, Filter, FilterInput, ForwardError, Journal, Outcome, StepError,
};

/// Forwards a delivery to its destination.
///
/// A delivery names its destination: each destination of an event is a delivery of its
/// own (its filter took the event at ingest), with its own attempts and retries. A
/// delivery without one (journaled before destinations had their own, or taken by no
/// filter) goes to every destination of its source whose filter takes it, at once; with
/// several, each success is memoised as a step (`forward:NAME`), so a retry resends only
/// to those that failed. None taking it: the event is done, filtered out.
pub(crate) struct Forwarder {
    /// Each destination with the filter of the source's reference to it.
    destinations: Arc<[(Arc<Destination>, Filter)]>,
    journal: Arc<dyn Journal>,
    /// Replay id -> its destination filter, read once per replay.
    replays: Arc<Mutex<HashMap<u64, Option<String>>>>,
}

impl Forwarder {
    pub(crate) fn new(
        destinations: Vec<(Arc<Destination>, Filter)>,
        journal: Arc<dyn Journal>,
    ) -> Self {
        Forwarder {
            destinations: destinations.into(),
            journal,
            replays: Arc::default(),
        }
    }

    /// A fresh actor sharing this one's destinations (restarts use it).
    pub(crate) fn fresh(&self) -> Self {
        Forwarder {
            destinations: self.destinations.clone(),
            journal: self.journal.clone(),
            replays: self.replays.clone(),
        }
    }
}

impl Actor for Forwarder {
    type Context = Context<Self>;
}

/// One destination's result for a delivery.
enum Sent {
    Ok,
    Retry(Option<Duration>, String),
    Permanent(String),
}

impl Handler<Delivery> for Forwarder {
    type Result = ResponseFuture<Outcome>;

    fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Self::Result {
        let cache = self.replays.clone();
        let journal = self.journal.clone();
        let destinations = self.destinations.clone();
        Box::pin(async move {
            if !d.destination().is_empty() {
                let Some((dest, _)) = destinations
                    .iter()
                    .find(|(dest, _)| dest.name() == d.destination())
                else {
                    return Outcome::fail(format!(
                        "`{}` is not a destination of source `{}`",
                        d.destination(),
                        d.source()
                    ));
                };
                return match send(&d, dest, false).await {
                    Sent::Ok => Outcome::Done,
                    Sent::Permanent(reason) => Outcome::fail(reason),
                    Sent::Retry(after, reason) => Outcome::Retry { after, reason },
                };
            }
            let only = match d.replay() {
                None => None,
                Some(r) => {
                    let cached = cache.lock().expect("replay cache lock").get(&r).cloned();
                    match cached {
                        Some(only) => only,
                        None => {
                            let only = journal
                                .replay_status(r)
                                .await
                                .ok()
                                .flatten()
                                .and_then(|s| s.destination);
                            let mut cache = cache.lock().expect("replay cache lock");
                            cache.insert(r, only.clone());
                            only
                        }
                    }
                }
            };
            let named: Vec<&(Arc<Destination>, Filter)> = destinations
                .iter()
                .filter(|(dest, _)| only.as_deref().is_none_or(|o| o == dest.name()))
                .collect();
            let memoise = destinations.len() > 1;
            if named.is_empty() {
                return Outcome::fail(format!(
                    "the replay's destination `{}` is not a destination of source `{}`",
                    only.unwrap_or_default(),
                    d.source()
                ));
            }
            let event = d.event();
            let input = FilterInput {
                event_type: event.event_type.as_deref(),
                body: &event.body,
            };
            let targets: Vec<Arc<Destination>> = named
                .iter()
                .filter(|(_, filter)| filter.accepts(&input))
                .map(|(dest, _)| dest.clone())
                .collect();
            if targets.is_empty() {
                return Outcome::Filtered {
                    reason: format!(
                        "filtered out: no filter of {} takes it",
                        named
                            .iter()
                            .map(|(dest, _)| format!("`{}`", dest.name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
            }
            let sends = targets.iter().map(|dest| send(&d, dest, memoise));
            let results = futures_util::future::join_all(sends).await;
            let mut permanent = Vec::new();
            let mut retry = Vec::new();
            let mut after: Option<Duration> = None;
            let mut all_have_after = true;
            for (dest, r) in targets.iter().zip(results) {
                match r {
                    Sent::Ok => {}
                    Sent::Permanent(reason) => permanent.push(format!("{}: {reason}", dest.name())),
                    Sent::Retry(a, reason) => {
                        retry.push(format!("{}: {reason}", dest.name()));
                        match a {
                            Some(a) => after = Some(after.map_or(a, |b| b.max(a))),
                            None => all_have_after = false,
                        }
                    }
                }
            }
            if !permanent.is_empty() {
                permanent.extend(retry);
                Outcome::fail(permanent.join("; "))
            } else if !retry.is_empty() {
                Outcome::Retry {
                    after: after.filter(|_| all_have_after),
                    reason: retry.join("; "),
                }
            } else {
                Outcome::Done
            }
        })
    }
}

async fn send(d: &Delivery, dest: &Destination, memoise: bool) -> Sent {
    let deliver = || async {
        dest.deliver(d.event(), d.attempt(), d.replay())
            .await
            .map(|ok| ok.status.as_u16())
    };
    let res = if memoise {
        match d.step(&format!("forward:{}", dest.name()), deliver).await {
            Ok(_) => Ok(()),
            Err(StepError::Failed(e)) => Err(e),
            Err(e) => {
                return Sent::Retry(None, format!("journal: {e}"));
            }
        }
    } else {
        deliver().await.map(|_| ())
    };
    match res {
        Ok(()) => Sent::Ok,
        Err(ForwardError::Permanent { reason }) => Sent::Permanent(reason),
        Err(ForwardError::Retry { after, reason }) => Sent::Retry(after, reason),
    }
}
