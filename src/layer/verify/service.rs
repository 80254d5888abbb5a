use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use bytes::{Buf, Bytes};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use tower_service::Service;

use super::layer::Config;
use super::ResponseFuture;
use crate::layer::problem::problem;
use crate::layer::{closing, drain};
use crate::{ErrorKind, Event, HandshakeReply, Inbound, Verified, VerifyError};

/// Verifies each request's signature before calling the inner service.
///
/// Built by [`VerifyLayer`](super::VerifyLayer). The inner service receives the request
/// with its body buffered and a [`Verified<Event>`](crate::Verified) extension.
#[derive(Debug, Clone)]
pub struct Verify<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

/// The HTTP status for a verification failure.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::MissingHeader
        | ErrorKind::InvalidSignature
        | ErrorKind::TimestampOutOfTolerance => StatusCode::UNAUTHORIZED,
        ErrorKind::MalformedHeader | ErrorKind::InvalidBody => StatusCode::BAD_REQUEST,
        ErrorKind::InvalidSecret => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Counts and answers a refused request.
fn reject(
    source: &str,
    kind: &'static str,
    status: StatusCode,
    title: &str,
    detail: &str,
) -> Response<Body> {
    reject_seen(source, kind, status, title, detail, None, None)
}

/// [`reject`], recording the request's header names and body prefix for the dashboard.
fn reject_seen(
    source: &str,
    kind: &'static str,
    status: StatusCode,
    title: &str,
    detail: &str,
    headers: Option<&http::HeaderMap>,
    body: Option<&[u8]>,
) -> Response<Body> {
    crate::layer::rejections::record(source, kind, status, detail, headers, body);
    metrics::counter!("hookbox_rejected_total", "source" => source.to_owned(), "kind" => kind)
        .increment(1);
    tracing::info!(
        source,
        kind,
        status = status.as_u16(),
        detail,
        "webhook rejected"
    );
    problem(status, kind, title, detail)
}

fn refuse(
    source: &str,
    e: &VerifyError,
    headers: &http::HeaderMap,
    body: Option<&[u8]>,
) -> Response<Body> {
    reject_seen(
        source,
        e.kind().as_str(),
        status_of(e.kind()),
        e.kind().title(),
        e.detail(),
        Some(headers),
        body,
    )
}

/// Why a body was not read whole.
enum Unread<B> {
    /// Over the limit; the rest of the body, to drain.
    TooLarge(std::pin::Pin<Box<B>>),
    /// The body failed.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads `body` up to `limit` bytes; over it, hands back what is left of the body.
async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, Unread<B>>
where
    B: HttpBody,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = Box::pin(body);
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Unread::Failed(e.into()))?;
        if let Ok(mut data) = frame.into_data() {
            if buf.len() + data.remaining() > limit {
                return Err(Unread::TooLarge(body));
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                buf.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
    }
    Ok(buf.freeze())
}

fn too_large(source: &str, limit: usize) -> Response<Body> {
    reject(
        source,
        "body_too_large",
        StatusCode::PAYLOAD_TOO_LARGE,
        "The body is over the size limit",
        &format!("this endpoint accepts bodies of at most {limit} bytes"),
    )
}

fn reply(r: HandshakeReply) -> Response<Body> {
    let mut res = Response::new(Body::from(r.body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    res
}

impl<S, B, ResB> Service<Request<B>> for Verify<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: HttpBody<Data = Bytes> + Send + 'static,
    ResB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The readied service handles this request; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let inner_fut = async move {
            let received_at = SystemTime::now();
            let (mut parts, body) = req.into_parts();
            let source = &*config.source;
            metrics::counter!("hookbox_received_total", "source" => source.to_owned()).increment(1);
            let query = parts.uri.query();
            let empty = Inbound::new(&parts.headers, b"")
                .with_method(&parts.method)
                .with_query(query);
            if let Some(answer) = config.verifier.pre_verify_handshake(&empty) {
                return Ok(match answer {
                    Ok(r) => reply(r),
                    Err(e) => {
                        drain(body);
                        closing(refuse(source, &e, &parts.headers, None))
                    }
                });
            }
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > config.max_body as u64) {
                drain(body);
                return Ok(closing(too_large(source, config.max_body)));
            }
            let bytes = match read_limited(body, config.max_body).await {
                Ok(b) => b,
                Err(Unread::TooLarge(rest)) => {
                    drain(rest);
                    return Ok(closing(too_large(source, config.max_body)));
                }
                Err(Unread::Failed(e)) => {
                    return Ok(reject(
                        source,
                        "body_unreadable",
                        StatusCode::BAD_REQUEST,
                        "The request body could not be read",
                        &e.to_string(),
                    ))
                }
            };
            let inbound = Inbound::new(&parts.headers, &bytes)
                .with_method(&parts.method)
                .with_query(query);
            if let Err(e) = config.verifier.verify(&inbound) {
                return Ok(refuse(source, &e, &parts.headers, Some(&bytes)));
            }
            if let Some(r) = config.verifier.handshake(&inbound) {
                tracing::info!(source, "provider handshake answered");
                return Ok(reply(r));
            }
            let meta = config.verifier.describe(&inbound);
            metrics::counter!("hookbox_verified_total", "source" => source.to_owned()).increment(1);
            let event = Event {
                source: config.source.clone(),
                scheme: config.scheme.clone(),
                delivery_id: meta.id,
                event_type: meta.event_type,
                received_at,
                headers: parts.headers.clone(),
                body: bytes.clone(),
            };
            parts.extensions.insert(Verified::new(event));
            let res = inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await?;
            Ok(res.map(Body::new))
        };
        ResponseFuture {
            inner: Box::pin(inner_fut),
        }
    }
}
