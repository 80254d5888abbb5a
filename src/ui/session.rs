//! Dashboard sessions: a random id in an HttpOnly, SameSite=Strict cookie, kept in
//! memory as its SHA-256 so that a lookup reveals nothing of the ids held.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use sha2::{Digest, Sha256};

/// The cookie's name.
pub(crate) const COOKIE: &str = "hookbox_session";

/// How long a session lasts after login.
pub(crate) const TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The most sessions held at once; the oldest go first beyond it.
const MAX_SESSIONS: usize = 4096;

/// The live sessions, by digest of their id, with their expiry. A std `Mutex`: every
/// use is a short map operation, never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], Instant>>);

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session; returns its id (the cookie's value), or `None` when the system's
    /// random source fails.
    pub(crate) fn create(&self) -> Option<String> {
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).ok()?;
        let id = hex::encode(raw);
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, exp| *exp > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, exp)| **exp).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&id), now + TTL);
        Some(id)
    }

    /// True when `id` names a live session.
    pub(crate) fn valid(&self, id: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&digest(id))
            .is_some_and(|exp| *exp > Instant::now())
    }

    /// Ends the session `id` (logout).
    pub(crate) fn remove(&self, id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&digest(id));
    }
}

/// The session cookie's value in a request's `Cookie` headers.
pub(crate) fn from_headers(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `Set-Cookie` value that stores `id`.
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_removed() {
        let s = Sessions::default();
        let id = s.create().unwrap();
        assert_eq!(id.len(), 64);
        assert!(s.valid(&id));
        assert!(!s.valid("nope"));
        s.remove(&id);
        assert!(!s.valid(&id));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; hookbox_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(from_headers(&h).as_deref(), Some("abc"));
    }
}
