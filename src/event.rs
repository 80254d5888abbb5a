//! The event a verified webhook becomes.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderMap;

/// A webhook as received from a provider: who sent it, when, and the exact bytes.
#[derive(Debug, Clone)]
pub struct Event {
    /// The configured source name (`"stripe"`, `"github-main"`).
    pub source: Arc<str>,
    /// The verification scheme's name.
    pub scheme: Arc<str>,
    /// The provider's delivery or event id, where it states one (deduplication key).
    pub delivery_id: Option<String>,
    /// The provider's event type, where it states one.
    pub event_type: Option<String>,
    /// When hookbox received the request.
    pub received_at: SystemTime,
    /// The request headers as received.
    pub headers: HeaderMap,
    /// The raw body as received.
    pub body: Bytes,
}

/// A value whose signature was verified. Only hookbox's verification builds one, so
/// holding a `Verified<Event>` is proof the event passed its scheme's checks.
#[derive(Debug, Clone)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    /// Wraps a value that has just been verified.
    pub(crate) fn new(value: T) -> Self {
        Verified(value)
    }

    /// The verified value.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// Unwraps the verified value (it stops being marked verified).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
