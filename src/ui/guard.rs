//! What every dashboard request passes: security headers on the way out, a CSRF check
//! on every state-changing request, and a session (or the bearer token) on every page
//! but the login form and the static assets.

use std::sync::Arc;

use axum::extract::{Request, State as Shared};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use super::{session, templates, Ui};

/// The Content-Security-Policy of every dashboard response: scripts, styles and
/// requests only from the dashboard itself, no inline script, no framing.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Adds the security headers to every `/ui` response.
pub(crate) async fn headers(req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/ui/assets/");
    let mut res = next.run(req).await;
    let cacheable = asset && res.status().is_success();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !cacheable {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The session cookie: the browser sends it by itself, so CSRF applies.
    Cookie,
    /// `Authorization: Bearer`: never sent by a browser on its own.
    Bearer,
}

/// The bearer token of a request, if it carries one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

/// Why a state-changing request looks cross-site, if it does: `Sec-Fetch-Site` must be
/// `same-origin`; a browser that does not send it must send an `Origin` naming this
/// host; a request with neither is refused.
pub(crate) fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return (site.as_bytes() != b"same-origin")
            .then_some("the request came from another site (Sec-Fetch-Site)");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Some("the request carries neither Sec-Fetch-Site nor Origin");
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => None,
        _ => Some("the request's Origin is not this dashboard"),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses state-changing requests that look cross-site, unless they carry the bearer
/// token (which a browser never adds by itself). The login form is covered too.
pub(crate) async fn csrf(Shared(ui): Shared<Arc<Ui>>, req: Request, next: Next) -> Response {
    if !is_safe(req.method()) {
        let by_bearer = bearer(req.headers()).is_some_and(|t| ui.admin.accepts(t));
        if !by_bearer {
            if let Some(why) = cross_site(req.headers()) {
                metrics::counter!("hookbox_admin_rejected_total", "kind" => "csrf").increment(1);
                return templates::error_page(
                    StatusCode::FORBIDDEN,
                    "Refused: cross-site request",
                    why,
                );
            }
        }
    }
    next.run(req).await
}

/// Lets through requests with a live session or the bearer token; sends a browser to
/// the login form otherwise (a `401` for anything but a page load).
pub(crate) async fn require_session(
    Shared(ui): Shared<Arc<Ui>>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = if bearer(req.headers()).is_some_and(|t| ui.admin.accepts(t)) {
        Some(Auth::Bearer)
    } else if session::from_headers(req.headers()).is_some_and(|id| ui.sessions.valid(&id)) {
        Some(Auth::Cookie)
    } else {
        None
    };
    match auth {
        Some(a) => {
            req.extensions_mut().insert(a);
            next.run(req).await
        }
        None if req.method() == Method::GET => {
            let wanted = req
                .uri()
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_owned();
            let to = format!(
                "/ui/login?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &wanted)
                    .finish()
            );
            Redirect::to(&to).into_response()
        }
        None => templates::error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "this action needs a dashboard session or the admin bearer token",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn csrf_matrix() {
        assert!(cross_site(&h(&[("sec-fetch-site", "same-origin")])).is_none());
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&h(&[("sec-fetch-site", "same-site")])).is_some());
        assert!(cross_site(&h(&[("sec-fetch-site", "none")])).is_some());
        assert!(cross_site(&h(&[("origin", "http://a:1"), ("host", "a:1")])).is_none());
        assert!(cross_site(&h(&[("origin", "http://evil"), ("host", "a:1")])).is_some());
        assert!(cross_site(&h(&[("origin", "null"), ("host", "a:1")])).is_some());
        assert!(cross_site(&h(&[("host", "a:1")])).is_some());
    }
}
