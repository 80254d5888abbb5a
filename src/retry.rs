//! [`RetryPolicy`]: when a failed delivery is tried again, and when it is given up.

use std::time::Duration;

use crate::config::{Backoff, RetryConfig};
use crate::ConfigError;

/// The default schedule: delays before attempts 2 to 8, about a day in all, like the
/// schedules the large webhook senders use.
pub const DEFAULT_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// When a failed delivery is tried again.
///
/// - [`RetryPolicy::schedule`]: fixed delays before attempts 2, 3, ...; the default is
///   [`DEFAULT_SCHEDULE`] (8 attempts).
/// - [`RetryPolicy::exponential`]: a random delay in `[0, base * 2^(n-1)]` (full
///   jitter, which spreads a burst of failures instead of retrying it in lockstep), at
///   most `cap`.
///
/// A handler's `Retry { after }` is honoured within the cap. After `max_attempts`
/// attempts the event is dead.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    kind: Kind,
    cap: Duration,
    max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Schedule(Vec<Duration>),
    Exponential { base: Duration },
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::schedule(DEFAULT_SCHEDULE.to_vec())
    }
}

impl RetryPolicy {
    /// Fixed delays before attempts 2, 3, ...: `delays.len() + 1` attempts in all. An
    /// empty schedule means one attempt.
    pub fn schedule(delays: Vec<Duration>) -> Self {
        let cap = delays
            .iter()
            .copied()
            .max()
            .unwrap_or_default()
            .max(Duration::from_secs(10 * 3600));
        let max_attempts = delays.len() as u32 + 1;
        RetryPolicy {
            kind: Kind::Schedule(delays),
            cap,
            max_attempts,
        }
    }

    /// Exponential backoff with full jitter from `base`, at most `cap`, 8 attempts.
    pub fn exponential(base: Duration, cap: Duration) -> Self {
        RetryPolicy {
            kind: Kind::Exponential { base },
            cap,
            max_attempts: 8,
        }
    }

    /// Sets how many attempts are made in all (at least 1). With a schedule shorter
    /// than that, its last delay repeats.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the longest delay, also for a handler's `Retry { after }`.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// How many attempts are made in all.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The policy a `retry = {...}` table describes; `key` names it in errors.
    pub fn from_config(c: &RetryConfig, key: &str) -> Result<Self, ConfigError> {
        let exponential = c.backoff == Some(Backoff::Exponential);
        if exponential && c.schedule.is_some() {
            return Err(ConfigError::new(
                format!("{key}.schedule"),
                "give either a schedule or backoff = \"exponential\", not both",
            ));
        }
        if !exponential && (c.base.is_some()) {
            return Err(ConfigError::new(
                format!("{key}.base"),
                "`base` applies to backoff = \"exponential\" only",
            ));
        }
        let mut p = if exponential {
            let base = c.base.map_or(Duration::from_secs(1), |d| d.0);
            if base.is_zero() {
                return Err(ConfigError::new(format!("{key}.base"), "must be over 0"));
            }
            RetryPolicy::exponential(base, Duration::from_secs(10 * 3600))
        } else {
            match &c.schedule {
                Some(s) => RetryPolicy::schedule(s.iter().map(|d| d.0).collect()),
                None => RetryPolicy::default(),
            }
        };
        if let Some(cap) = c.cap {
            p = p.cap(cap.0);
        }
        if let Some(n) = c.max_attempts {
            if n == 0 {
                return Err(ConfigError::new(
                    format!("{key}.max_attempts"),
                    "must be at least 1",
                ));
            }
            p = p.max_attempts(n);
        }
        Ok(p)
    }

    /// The delay before the attempt after attempt `n` (1-based) failed, or `None` when
    /// `n` was the last. `hint` is the handler's (or the destination's) own request,
    /// honoured within the cap. `n = 0` gets the first delay, like `n = 1`.
    pub fn delay(&self, n: u32, hint: Option<Duration>) -> Option<Duration> {
        if n >= self.max_attempts {
            return None;
        }
        if let Some(h) = hint {
            return Some(h.min(self.cap));
        }
        let d = match &self.kind {
            Kind::Schedule(s) => s
                .get((n as usize).saturating_sub(1))
                .or(s.last())
                .copied()
                .unwrap_or_default(),
            Kind::Exponential { base } => {
                let ceiling = base
                    .checked_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
                    .unwrap_or(self.cap)
                    .min(self.cap);
                ceiling.mul_f64(fastrand::f64())
            }
        };
        Some(d.min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HumanDuration;

    #[test]
    fn default_schedule_gives_eight_attempts() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempts(), 8);
        assert_eq!(p.delay(1, None), Some(Duration::from_secs(5)));
        assert_eq!(p.delay(7, None), Some(Duration::from_secs(36_000)));
        assert_eq!(p.delay(8, None), None);
    }

    #[test]
    fn hints_are_honoured_within_the_cap() {
        let p = RetryPolicy::default().cap(Duration::from_secs(60));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(p.delay(2, None), Some(Duration::from_secs(60)));
    }

    #[test]
    fn exponential_has_full_jitter_under_the_cap() {
        let p = RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(1))
            .max_attempts(40);
        for n in 1..40 {
            let d = p.delay(n, None).unwrap();
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1 << (n - 1).min(20))
                .min(Duration::from_secs(1));
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
        }
        assert_eq!(p.delay(40, None), None);
    }

    #[test]
    fn a_short_schedule_repeats_its_last_delay() {
        let p = RetryPolicy::schedule(vec![Duration::from_secs(1), Duration::from_secs(2)])
            .max_attempts(5);
        let delays: Vec<_> = (1..6).map(|n| p.delay(n, None)).collect();
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(delays, vec![s(1), s(2), s(2), s(2), None]);
    }

    #[test]
    fn attempt_zero_gets_the_first_delay() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0, None), Some(DEFAULT_SCHEDULE[0]));
        let p = RetryPolicy::schedule(Vec::new()).max_attempts(3);
        assert_eq!(p.delay(0, None), Some(Duration::ZERO));
        let p = RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(1));
        assert!(p.delay(0, None).unwrap() <= Duration::from_millis(100));
        assert_eq!(p.delay(u32::MAX, None), None);
    }

    #[test]
    fn config_errors_name_the_key() {
        let c = RetryConfig {
            backoff: Some(Backoff::Exponential),
            schedule: Some(vec![HumanDuration(Duration::from_secs(1))]),
            ..Default::default()
        };
        let e = RetryPolicy::from_config(&c, "source[0].retry").unwrap_err();
        assert_eq!(e.key, "source[0].retry.schedule");
        let c = RetryConfig {
            max_attempts: Some(0),
            ..Default::default()
        };
        let e = RetryPolicy::from_config(&c, "destination[1].retry").unwrap_err();
        assert_eq!(e.key, "destination[1].retry.max_attempts");
        let c = RetryConfig {
            schedule: Some(vec![HumanDuration(Duration::from_millis(10))]),
            max_attempts: Some(3),
            ..Default::default()
        };
        let p = RetryPolicy::from_config(&c, "r").unwrap();
        assert_eq!(p.attempts(), 3);
        assert_eq!(p.delay(2, None), Some(Duration::from_millis(10)));
    }
}
