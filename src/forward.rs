//! Forwarding events to HTTP destinations, re-signed with Standard Webhooks.
//!
//! A [`Destination`] is built once per `[[destination]]` and shared; the delivery
//! runtime calls [`Destination::deliver`] once per attempt. Each call `POST`s the
//! event's original bytes with its original `content-type`, signed as a Standard
//! Webhooks sender would sign them:
//!
//! ```text
//! webhook-id:          the hookbox event id (the same on every attempt and replay)
//! webhook-timestamp:   now, in Unix seconds
//! webhook-signature:   v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">
//! hookbox-source:      the source it arrived on
//! hookbox-event-type:  the provider's event type, when known
//! hookbox-delivery-id: the provider's delivery id, when known
//! hookbox-attempt:     1, 2, ...
//! hookbox-replay:      the replay's id, only on replays
//! user-agent:          hookbox/<version>
//! ```
//!
//! plus the destination's static headers. The destination verifies the request with any
//! Standard Webhooks library and deduplicates on `webhook-id`.
//!
//! A 2xx is delivered. A status listed in `permanent_statuses` is
//! [`ForwardError::Permanent`] (the event goes to the dead-letter queue). Anything else
//! (another status, a redirect, which is never followed, a connection failure, a
//! timeout) is [`ForwardError::Retry`], with the response's `Retry-After` on 429 and
//! 503.
//!
//! Metrics: `hookbox_forward_total{destination, outcome}` (`delivered`, `retry`,
//! `permanent`) and `hookbox_forward_seconds{destination}`.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use http::StatusCode;
use tokio::sync::Semaphore;

use crate::config::{ConfigError, DestinationConfig, RetryConfig};
use crate::{SchemeConfig, Secret, SignInput, StoredEvent};

/// How long one request may take when `timeout` is not configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests at once when `max_connections` is not configured.
const DEFAULT_MAX_CONNECTIONS: usize = 32;

/// The most of a response body read (to explain a failure, or to reuse the connection).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How much of a failed response's body goes into the reason.
const REASON_BODY_CHARS: usize = 200;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// An HTTP endpoint events are forwarded to.
///
/// Cheap to clone: clones share the connection pool and the bound on concurrent
/// requests. `Debug` shows neither the signing secret nor the static header values.
#[derive(Clone)]
pub struct Destination {
    /// The configured name, used in metrics.
    name: Arc<str>,
    /// Where events are posted.
    url: reqwest::Url,
    /// The `whsec_` secret, in the form the crate's signing code takes.
    signing: SchemeConfig,
    /// Pooled connections; redirects are not followed; every request has `timeout`.
    client: reqwest::Client,
    /// The longest one request may take, body included.
    timeout: Duration,
    /// One permit per request in flight, `max_connections` in all. Shared by clones,
    /// dropped with the last one.
    permits: Arc<Semaphore>,
    /// The bound behind `permits`, for `Debug`.
    max_connections: usize,
    /// Statuses that fail for good.
    permanent_statuses: Vec<u16>,
    /// Static headers sent with every request (may carry credentials: never printed).
    headers: HeaderMap,
    /// The destination's retry policy, if it has its own.
    retry: Option<RetryConfig>,
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The destination's 2xx status.
    pub status: StatusCode,
    /// How long the request took, from sending to the response.
    pub duration: Duration,
}

/// A failed delivery. The reasons are short, name no secret, and are fit for the
/// journal's attempt log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Worth trying again: a non-2xx status not listed as permanent, a redirect, a
    /// connection failure or a timeout.
    #[error("{reason}")]
    Retry {
        /// The destination's `Retry-After` (on 429 and 503), at most 24 hours.
        after: Option<Duration>,
        /// What happened (`"HTTP 500: ..."`, `"timed out after 30s"`,
        /// `"connect: connection refused"`).
        reason: String,
    },
    /// Not worth trying again: the status is one of the destination's
    /// `permanent_statuses`.
    #[error("{reason}")]
    Permanent {
        /// What happened (`"HTTP 410: ..."`).
        reason: String,
    },
}

impl Destination {
    /// Builds the `index`th `[[destination]]` of the configuration with its resolved
    /// signing secret, which must be a Standard Webhooks `whsec_<base64>` secret. Errors
    /// name the key (`destination[1].signing_secret`), never the secret.
    pub fn new(
        index: usize,
        cfg: &DestinationConfig,
        signing_secret: &str,
    ) -> Result<Self, ConfigError> {
        cfg.check(index)?;
        let key = |k: &str| format!("destination[{index}].{k}");
        check_signing_secret(signing_secret)
            .map_err(|p| ConfigError::new(key("signing_secret"), p))?;
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| ConfigError::new(key("url"), e.to_string()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            // `check` accepted both.
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(key("headers"), "not a valid header name"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| ConfigError::new(key("headers"), "not a valid header value"))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let timeout = cfg.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        let max_connections = cfg.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .pool_max_idle_per_host(max_connections)
            .user_agent(concat!("hookbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::new(format!("destination[{index}]"), e.to_string()))?;
        Ok(Destination {
            name: cfg.name.as_str().into(),
            url,
            signing: SchemeConfig {
                secrets: vec![Secret::new(signing_secret)],
                ..SchemeConfig::default()
            },
            client,
            timeout,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            permanent_statuses: cfg.permanent_statuses.clone(),
            headers,
            retry: cfg.retry.clone(),
        })
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The longest one request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The destination's own retry policy, if it has one (else the source's applies).
    pub fn retry(&self) -> Option<&RetryConfig> {
        self.retry.as_ref()
    }

    /// Delivers `event` once: attempt `attempt` (1-based) of the original delivery, or
    /// of the replay `replay`. Waits for a free connection first when `max_connections`
    /// requests are already in flight.
    pub async fn deliver(
        &self,
        event: &StoredEvent,
        attempt: u32,
        replay: Option<u64>,
    ) -> Result<Delivered, ForwardError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        // Signed once a connection is free, so a long wait cannot stale the timestamp.
        let headers = self.request_headers(event, attempt, replay, SystemTime::now())?;
        let started = Instant::now();
        let result = self.send(event, headers).await;
        let duration = started.elapsed();
        let outcome = match &result {
            Ok(_) => "delivered",
            Err(ForwardError::Retry { .. }) => "retry",
            Err(ForwardError::Permanent { .. }) => "permanent",
        };
        metrics::counter!(
            "hookbox_forward_total",
            "destination" => self.name.clone(),
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!("hookbox_forward_seconds", "destination" => self.name.clone())
            .record(duration.as_secs_f64());
        match result {
            Ok(status) => Ok(Delivered { status, duration }),
            Err(e) => {
                tracing::debug!(destination = %self.name, event = %event.id, attempt, %e, "forward failed");
                Err(e)
            }
        }
    }

    /// Sends one request and classifies the response.
    async fn send(
        &self,
        event: &StoredEvent,
        headers: HeaderMap,
    ) -> Result<StatusCode, ForwardError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(event.body.clone())
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                return Err(ForwardError::Retry {
                    after: None,
                    reason: self.describe(&e),
                })
            }
        };
        let status = response.status();
        // Read a bounded prefix of the body even on success: a body read to its end
        // lets the connection go back to the pool.
        let body = read_prefix(&mut response, MAX_RESPONSE_BODY).await;
        if status.is_success() {
            return Ok(status);
        }
        let mut reason = format!("HTTP {}", status.as_u16());
        if status.is_redirection() {
            reason.push_str(" (redirects are not followed)");
        }
        let text = excerpt(&body, REASON_BODY_CHARS);
        if !text.is_empty() {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        if self.permanent_statuses.contains(&status.as_u16()) {
            return Err(ForwardError::Permanent { reason });
        }
        let after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                retry_after(response.headers(), SystemTime::now())
            }
            _ => None,
        };
        Err(ForwardError::Retry { after, reason })
    }

    /// The request's headers: static ones first, then hookbox's, which win.
    fn request_headers(
        &self,
        event: &StoredEvent,
        attempt: u32,
        replay: Option<u64>,
        now: SystemTime,
    ) -> Result<HeaderMap, ForwardError> {
        let mut headers = self.headers.clone();
        let content_type = event
            .headers
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, content_type);
        // The body is forwarded exactly as received, so its encoding goes with it.
        if let Some(encoding) = event.headers.get(CONTENT_ENCODING) {
            headers.insert(CONTENT_ENCODING, encoding.clone());
        }
        for (name, value) in self.signature(&event.id.to_string(), &event.body, now)? {
            headers.insert(name, value);
        }
        let mut set = |name: &'static str, value: &str| {
            // Provider-stated values may hold bytes a header cannot carry: left out.
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set("hookbox-source", &event.source);
        if let Some(t) = &event.event_type {
            set("hookbox-event-type", t);
        }
        if let Some(d) = &event.delivery_id {
            set("hookbox-delivery-id", d);
        }
        set("hookbox-attempt", &attempt.to_string());
        if let Some(r) = replay {
            set("hookbox-replay", &r.to_string());
        }
        Ok(headers)
    }

    /// `webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`, signed at
    /// `now` by the crate's Standard Webhooks signer.
    fn signature(
        &self,
        id: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ForwardError> {
        let signed = crate::sign(
            "standard-webhooks",
            &self.signing,
            &SignInput { body, id, now },
        )
        // `new` checked the secret, so this is unexpected; the error names no secret.
        .map_err(|e| ForwardError::Permanent {
            reason: format!("signing: {e}"),
        })?;
        signed
            .headers
            .into_iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes());
                let value = HeaderValue::from_str(&value);
                match (name, value) {
                    (Ok(n), Ok(v)) => Ok((n, v)),
                    _ => Err(ForwardError::Permanent {
                        reason: "signing: the event id cannot be a header value".into(),
                    }),
                }
            })
            .collect()
    }

    /// A short reason for a request that got no response.
    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            );
        }
        let cause = root_cause(e);
        if e.is_connect() {
            format!("connect: {cause}")
        } else {
            format!("request: {cause}")
        }
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A URL may carry credentials in its user info or query: show neither.
        let mut url = format!(
            "{}{}",
            self.url.origin().ascii_serialization(),
            self.url.path()
        );
        if self.url.query().is_some() {
            url.push_str("?[redacted]");
        }
        let header_names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("url", &url)
            .field("signing_secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .field("permanent_statuses", &self.permanent_statuses)
            .field("headers", &header_names)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Accepts a Standard Webhooks signing secret: `whsec_` and the base64 of a non-empty
/// key. The problem never quotes the secret.
pub(crate) fn check_signing_secret(secret: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected a Standard Webhooks secret: `whsec_` followed by base64";
    let b64 = secret.strip_prefix("whsec_").ok_or(EXPECTED)?;
    match crate::verify::common::B64_LENIENT.decode(b64) {
        Ok(key) if !key.is_empty() => Ok(()),
        Ok(_) => Err(format!("{EXPECTED}; the key is empty")),
        Err(_) => Err(format!("{EXPECTED}; the part after `whsec_` is not base64")),
    }
}

/// Reads at most `max` bytes of the body; on a read error, what arrived so far.
async fn read_prefix(response: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let n = chunk.len().min(max - out.len());
                out.extend_from_slice(&chunk[..n]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// The first `chars` characters of `body` as one line of text.
fn excerpt(body: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() >= chars {
            break;
        }
    }
    match out.char_indices().nth(chars) {
        Some((i, _)) => {
            out.truncate(i);
            out.push('…');
            out
        }
        None => out,
    }
}

/// The innermost cause of `e`, lower-cased, without the `(os error N)` suffix:
/// `connection refused`. reqwest's own message is left out because it quotes the URL.
fn root_cause(e: &reqwest::Error) -> String {
    let mut last: Option<&(dyn std::error::Error + 'static)> = None;
    let mut next = e.source();
    while let Some(cause) = next {
        last = Some(cause);
        next = cause.source();
    }
    let Some(cause) = last else {
        return "failed".into();
    };
    let text = cause.to_string();
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) if io.raw_os_error().is_some() => {
            let text = text.split(" (os error").next().unwrap_or(&text);
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        }
        _ => text,
    }
}

/// The `Retry-After` of a response received at `now`: delta-seconds or an HTTP-date,
/// at most 24 hours. Garbage, and a date already past, give `None` (the retry policy
/// decides).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let after = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .ok()?
    };
    Some(after.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn config(secret: &str) -> DestinationConfig {
        DestinationConfig {
            name: "app".into(),
            url: "https://user:pw@app.example/hooks?token=t0ps3cret".into(),
            signing_secret: secret.into(),
            timeout: Some(HumanDuration(Duration::from_secs(5))),
            retry: None,
            permanent_statuses: vec![410],
            max_connections: Some(2),
            headers: [("authorization".to_owned(), "Bearer t0ps3cret".to_owned())].into(),
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            retry_after(&with_retry_after("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&with_retry_after(" 0 "), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let h = with_retry_after("Sun, 06 Nov 1994 08:51:37 GMT");
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        // The obsolete formats HTTP still accepts.
        let h = with_retry_after("Sunday, 06-Nov-94 08:50:37 GMT");
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(60)));
        // Already past: the retry policy decides.
        let h = with_retry_after("Sun, 06 Nov 1994 08:49:36 GMT");
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for garbage in ["soon", "-5", "1.5", "", "7s", "Sun, 06 Nov 1994"] {
            assert_eq!(
                retry_after(&with_retry_after(garbage), now),
                None,
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped_at_a_day() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert_eq!(retry_after(&with_retry_after("86401"), now), Some(day));
        assert_eq!(
            retry_after(&with_retry_after("99999999999999999999999"), now),
            Some(day)
        );
        let far = httpdate::fmt_http_date(now + Duration::from_secs(7 * 86_400));
        assert_eq!(retry_after(&with_retry_after(&far), now), Some(day));
    }

    #[test]
    fn signature_covers_id_timestamp_and_body() {
        // The Standard Webhooks specification's example.
        let d = Destination::new(0, &config(SECRET), SECRET).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_614_265_330);
        let headers = d
            .signature(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                br#"{"test": 2432232314}"#,
                now,
            )
            .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap())
        };
        assert_eq!(get("webhook-id"), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert_eq!(get("webhook-timestamp"), Some("1614265330"));
        assert_eq!(
            get("webhook-signature"),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );

        // The same, computed from the base string by hand.
        use hmac::Mac as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(&SECRET["whsec_".len()..])
            .unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(br#"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}"#);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            get("webhook-signature"),
            Some(format!("v1,{expected}").as_str())
        );
    }

    #[test]
    fn secrets_must_be_whsec() {
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_!!not base64!!",
            "whpk_AAAA",
        ] {
            let e = Destination::new(3, &config(SECRET), bad).unwrap_err();
            assert_eq!(e.key, "destination[3].signing_secret", "{bad:?}");
            assert!(bad.len() < 8 || !e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let d = Destination::new(0, &config(SECRET), SECRET).unwrap();
        let debug = format!("{d:?}");
        for secret in [&SECRET["whsec_".len()..], "t0ps3cret", "pw"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains("https://app.example/hooks?[redacted]"),
            "{debug}"
        );
        assert!(debug.contains("authorization"), "{debug}");
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt(b"  oops\n\tdown  ", 200), "oops down");
        assert_eq!(excerpt(b"", 200), "");
        let long = "é".repeat(300);
        let e = excerpt(long.as_bytes(), 200);
        assert_eq!(e.chars().count(), 201);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(&[0xff, b'a'], 200), "\u{fffd}a");
    }
}
