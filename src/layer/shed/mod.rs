//! [`ShedLayer`]: refuses cheaply, before the body is read, when accepting more would
//! hurt: `503` + `Retry-After` when the journal writer's queue is over its bound, the
//! journal is recovering from a storage failure, its disk's free space is under the floor,
//! or too many requests are already in flight; `429` + `Retry-After` when the source's
//! pending backlog is over its maximum. A request that takes longer than the timeout is
//! answered `503` too, so no request waits without limit.
//!
//! Memory stays bounded under any burst: at most `max_in_flight` bodies (each at most
//! the verify layer's `max_body`) are held at once.
//!
//! axum's `Router` always reports ready, so this layer does not wait for readiness from
//! below: it reads the journal's [`Load`](crate::Load) instead. Refusals are responses
//! (problem+json), because axum routes need infallible services.

mod service;

pub use self::service::{Shed, ShedLayer};
