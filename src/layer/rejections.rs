//! A bounded, redacted record of the webhook requests refused most recently, for the
//! dashboard's "Rejected requests" page: who was refused, when, with which status and
//! why (the verification error's explanation, which never holds a secret), the names
//! of the headers sent (never their values) and at most the first
//! [`BODY_PREFIX`] bytes of the body.

use std::collections::{BTreeMap, VecDeque};
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

/// Per source: refusals and sheds per minute over the last hour (sources are the
/// configured ones, and `*`, so the map stays small).
static PER_MINUTE: Mutex<BTreeMap<String, Minutes>> = Mutex::new(BTreeMap::new());

/// One source's counts per minute, in a ring of the last 60 minutes.
#[derive(Debug, Clone, Copy)]
struct Minutes {
    /// The minute (since the Unix epoch) of the newest slot.
    newest: u64,
    refused: [u64; 60],
    shed: [u64; 60],
}

impl Default for Minutes {
    fn default() -> Self {
        Minutes {
            newest: 0,
            refused: [0; 60],
            shed: [0; 60],
        }
    }
}

impl Minutes {
    /// Moves the ring forward to `minute`, emptying the slots it passes.
    fn advance(&mut self, minute: u64) {
        if minute <= self.newest {
            return;
        }
        for m in (self.newest + 1)..=minute.min(self.newest + 60) {
            let i = (m % 60) as usize;
            self.refused[i] = 0;
            self.shed[i] = 0;
        }
        self.newest = minute;
    }

    /// The last hour, oldest minute first, as of `minute`.
    fn hour(mut self, minute: u64) -> ([u64; 60], [u64; 60]) {
        self.advance(minute);
        let mut refused = [0; 60];
        let mut shed = [0; 60];
        for k in 0..60u64 {
            let i = ((minute + 1 + k) % 60) as usize;
            refused[k as usize] = self.refused[i];
            shed[k as usize] = self.shed[i];
        }
        (refused, shed)
    }
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60
}

/// Whether a status is load shedding (the request was fine, the server too busy).
fn is_shed(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS
}

/// `source`'s refusals and sheds per minute over the last hour, oldest first.
pub(crate) fn last_hour(source: &str) -> ([u64; 60], [u64; 60]) {
    let minute = minute_of(SystemTime::now());
    let map = PER_MINUTE.lock().unwrap_or_else(|e| e.into_inner());
    map.get(source).copied().unwrap_or_default().hour(minute)
}

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
    {
        let minute = minute_of(entry.at);
        let mut map = PER_MINUTE.lock().unwrap_or_else(|e| e.into_inner());
        let counts = map.entry(entry.source.clone()).or_insert_with(|| Minutes {
            newest: minute,
            ..Minutes::default()
        });
        counts.advance(minute);
        let slot = (minute % 60) as usize;
        if is_shed(status) {
            counts.shed[slot] += 1;
        } else {
            counts.refused[slot] += 1;
        }
    }
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
    fn per_minute_counts_cover_the_last_hour_and_age_out() {
        let mut m = Minutes {
            newest: 1000,
            ..Minutes::default()
        };
        m.refused[(1000 % 60) as usize] = 3;
        m.advance(1001);
        m.shed[(1001 % 60) as usize] = 2;
        let (refused, shed) = m.hour(1001);
        assert_eq!((refused[58], refused[59], shed[59]), (3, 0, 2));
        assert_eq!(refused.iter().sum::<u64>(), 3);
        // 59 minutes on, the oldest count is in the first slot; at 60, gone.
        assert_eq!(m.hour(1059).0[0], 3);
        assert_eq!(m.hour(1060).0.iter().sum::<u64>(), 0);
        assert_eq!(m.hour(5000).1.iter().sum::<u64>(), 0);
        record(
            "minutes-test",
            "invalid_signature",
            StatusCode::UNAUTHORIZED,
            "no",
            None,
            None,
        );
        record(
            "minutes-test",
            "overloaded",
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            None,
            None,
        );
        record(
            "minutes-test",
            "rate_limited",
            StatusCode::TOO_MANY_REQUESTS,
            "slow",
            None,
            None,
        );
        let (refused, shed) = last_hour("minutes-test");
        assert_eq!((refused[59], shed[59]), (1, 2));
    }

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
