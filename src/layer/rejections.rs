//! A bounded, redacted record of the webhook requests refused most recently, for the
//! dashboard's "Rejected requests" page: who was refused, when, with which status and
//! why (the verification error's explanation, which never holds a secret), the names
//! of the headers sent (never their values) and at most the first
//! [`BODY_PREFIX`] bytes of the body.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

/// How many refusals are kept; older ones are dropped.
pub(crate) const CAPACITY: usize = 500;

/// The most body bytes kept per refusal.
pub(crate) const BODY_PREFIX: usize = 64;

/// One refused request.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    /// When it was refused.
    pub(crate) at: SystemTime,
    /// The source it was sent to (`*` when shed before a source was known).
    pub(crate) source: String,
    /// The stable error kind (`invalid_signature`, `missing_header`, a shed reason).
    pub(crate) kind: &'static str,
    /// The status answered.
    pub(crate) status: StatusCode,
    /// Why, in words (no secrets).
    pub(crate) detail: String,
    /// The names of the headers sent, lower case, values left out.
    pub(crate) headers: Vec<String>,
    /// The first bytes of the body, when it was read.
    pub(crate) body_prefix: Option<Vec<u8>>,
    /// The body's length, when it was read.
    pub(crate) body_len: Option<usize>,
}

/// The process's record, newest last. A std `Mutex`: each use is a push or a copy.
static RECENT: Mutex<VecDeque<Rejection>> = Mutex::new(VecDeque::new());

/// Records a refusal.
pub(crate) fn record(
    source: &str,
    kind: &'static str,
    status: StatusCode,
    detail: &str,
    headers: Option<&HeaderMap>,
    body: Option<&[u8]>,
) {
    let entry = Rejection {
        at: SystemTime::now(),
        source: source.to_owned(),
        kind,
        status,
        detail: detail.chars().take(500).collect(),
        headers: headers
            .map(|h| h.keys().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default(),
        body_prefix: body.map(|b| b[..b.len().min(BODY_PREFIX)].to_vec()),
        body_len: body.map(<[u8]>::len),
    };
    let mut q = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if q.len() >= CAPACITY {
        q.pop_front();
    }
    q.push_back(entry);
}

/// The refusals kept, newest first.
pub(crate) fn recent() -> Vec<Rejection> {
    let q = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    q.iter().rev().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_bounded_and_keeps_a_prefix_only() {
        let body = vec![b'x'; 1000];
        for _ in 0..CAPACITY + 10 {
            record(
                "bounded-test",
                "invalid_signature",
                StatusCode::UNAUTHORIZED,
                "no",
                None,
                Some(&body),
            );
        }
        let r = recent();
        assert!(r.len() <= CAPACITY);
        let mine = r.iter().find(|r| r.source == "bounded-test").unwrap();
        assert_eq!(mine.body_prefix.as_ref().unwrap().len(), BODY_PREFIX);
        assert_eq!(mine.body_len, Some(1000));
    }
}
