//! The actix messages: [`Delivery`] for handlers, and the runtime's own.

use std::time::Duration;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Message};

use crate::{Delivery, Outcome};

impl Message for Delivery {
    type Result = Outcome;
}

/// Lets a handler answer `type Result = Outcome;` and return the outcome directly.
impl<A: Actor, M: Message<Result = Outcome>> MessageResponse<A, M> for Outcome {
    fn handle(self, _: &mut A::Context, tx: Option<OneshotSender<Outcome>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

/// Something may be due: look at the journal. Sent with `try_send`; a full mailbox
/// already holds a wake-up, so losing one loses nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wake;

impl Message for Wake {
    type Result = ();
}

/// Stop taking deliveries; answer when those in flight have settled or `deadline`
/// passed. Answers how many were still in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drain {
    pub(crate) deadline: Duration,
}

impl Message for Drain {
    type Result = usize;
}

/// A snapshot of a source actor, for tests and the admin API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inspect;

impl Message for Inspect {
    type Result = Vec<super::SourceStats>;
}
