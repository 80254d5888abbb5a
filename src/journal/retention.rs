//! Retention: done events past their age are purged in the background, in bounded
//! chunks, so the journal file stops growing once traffic is steady.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Journal;

/// Events removed per purge call: one write transaction each, so a large backlog of
/// expired events never makes one huge commit that stalls ingest.
const CHUNK: usize = 1000;

/// How often retention runs.
const EVERY: Duration = Duration::from_secs(60);

/// The delay before the first run: soon after start, once startup traffic settled.
const FIRST: Duration = Duration::from_secs(2);

/// Purges done events received more than `keep` ago, every minute, until the task is
/// aborted. Failures are logged and retried at the next run.
pub(crate) async fn run(journal: Arc<dyn Journal>, keep: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST, EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(before) = SystemTime::now().checked_sub(keep) else {
            continue;
        };
        let mut purged = 0u64;
        loop {
            match journal.purge(before, CHUNK).await {
                Ok(n) => {
                    purged += n;
                    metrics::counter!("hookbox_retention_purged_total").increment(n);
                    if n < CHUNK as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed; trying again at the next run");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(
                purged,
                keep_secs = keep.as_secs(),
                "retention removed done events past their age"
            );
        }
    }
}
