//! The embedded store's purges, on a schedule (CONTRACT.md §13, "Physical
//! deletion"): a revoked token's wrapped data key and sealed secrets leave
//! every file of the data directory within `--purge-within-secs` of the
//! revocation (`store::Store::purge` does the work).
//!
//! A purge starts half the bound after the oldest deletion it covers, so
//! that the deletions of that half share one purge (one rewrite of the
//! store's files) and the other half is left for the purge itself. It runs
//! on a blocking thread while the worker serves: writers go on into a new
//! memtable and journal, and the compaction takes none of their locks. A
//! purge that ends after the bound is logged as a warning; one that fails
//! is tried again with backoff, its deletions still pending.

use std::sync::Arc;
use std::time::Duration;

use mmt_shared::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::service::Service;

/// The bound when nothing else is asked for.
pub const DEFAULT_PURGE_WITHIN: Duration = Duration::from_secs(60);

/// A failed purge is tried again after 1 s, doubling up to 30 s.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// Purges the store within `within` of every deletion until `shutdown`; a
/// purge in hand is finished first. Returns at once for a store the worker
/// does not purge (PostgreSQL).
pub(super) async fn run(service: Arc<Service>, within: Duration, shutdown: CancellationToken) {
    let Some(deletions) = service.store().deletions() else {
        return;
    };
    let mut failures: u32 = 0;
    loop {
        let since = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            since = deletions.pending() => since,
        };
        let due = if failures == 0 {
            tokio::time::Instant::from_std(since) + within / 2
        } else {
            tokio::time::Instant::now() + RETRY.delay(failures - 1)
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let purging = service.clone();
        match tokio::task::spawn_blocking(move || purging.store().purge()).await {
            Ok(Ok(Some(purge))) => {
                failures = 0;
                let lag_ms = millis(purge.lag);
                if purge.lag > within {
                    tracing::warn!(
                        lag_ms,
                        took_ms = millis(purge.took),
                        within_ms = millis(within),
                        "store purged later than --purge-within-secs after a deletion (the purge itself is slow: see docs/security.md)"
                    );
                } else {
                    tracing::info!(
                        lag_ms,
                        took_ms = millis(purge.took),
                        flush_ms = millis(purge.flush),
                        compaction_ms = millis(purge.compaction),
                        segments = purge.segments,
                        bytes = purge.bytes,
                        "store purged: deleted secrets are gone from its files"
                    );
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    failures,
                    error = &error as &dyn std::error::Error,
                    "store purge failed; trying again"
                );
            }
            Err(error) => {
                tracing::error!(%error, "store purge ended abnormally; no more purges until a restart");
                return;
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
