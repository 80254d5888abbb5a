//! `application/problem+json` (RFC 9457) responses, built in one place.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};

/// The content type of every rejection.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// A problem response with `kind` as both the `type` suffix and an extension member.
pub(crate) fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": format!("urn:hookbox:problem:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "kind": kind,
    });
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

/// Adds `Retry-After: secs`.
pub(crate) fn retry_after(res: &mut Response<Body>, secs: u64) {
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}
