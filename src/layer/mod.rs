//! The HTTP edge: Tower layers, in the order a request meets them.
//!
//! ```text
//! ShedLayer   -> cheap 503/429 before the body is read        (shed/)
//! VerifyLayer -> body read up to a limit, signature verified  (verify/)
//! AckLayer    -> journal commit, then the inner service       (ack/)
//! Accepted    -> 202 {"id": ...}                              (ack/)
//! ```
//!
//! A rejection is a response, not an error: every layer answers its refusals itself as
//! `application/problem+json`, so the layers compose on any axum router or hyper service.

pub(crate) mod ack;
pub(crate) mod problem;
pub(crate) mod rejections;
pub(crate) mod shed;
pub(crate) mod verify;

/// The most of a refused request's body read and thrown away: enough that a client
/// which writes its whole body before it reads (most HTTP clients) gets the refusal
/// instead of a broken pipe; a body beyond it is cut off.
const DRAIN_LIMIT: u64 = 16 << 20;

/// How long a refused request's body is read at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// How many refused bodies are drained at once at most: beyond, a refused connection
/// is closed at once (a flood of large refused requests must not cost more than that).
static DRAINS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);

/// Reads and throws away what remains of a refused request's body, in the background,
/// while its refusal is answered: at most 16 MiB, for at most ten seconds, and at most
/// 32 bodies at once.
pub(crate) fn drain<B>(body: B)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    use bytes::Buf as _;
    use http_body_util::BodyExt as _;
    let Ok(permit) = DRAINS.try_acquire() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut body = std::pin::pin!(body);
        let mut read = 0u64;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.remaining() as u64);
                if read > DRAIN_LIMIT {
                    break;
                }
            }
        })
        .await;
    });
}

/// A refusal answered before the request's body was read: the connection closes after
/// it (the rest of the body is drained meanwhile, see [`drain`]).
pub(crate) fn closing(
    mut res: http::Response<axum::body::Body>,
) -> http::Response<axum::body::Body> {
    res.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    res
}
