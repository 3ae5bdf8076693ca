//! What the refresh engine tells the on-call engineer (the console's
//! `refresh` stats): tokens failing by integration, the last error code of
//! each, unhealthy integrations and the counters; and the integration health
//! events an answer causes.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use mmt_shared::console::{IntegrationHealth, RefreshStats};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, now_millis, rfc3339};

use crate::refresh::pass::{Failing, Leased};
use crate::rules::refresh::{Failure, Grant};

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn row<'a>(
    rows: &'a mut BTreeMap<String, IntegrationHealth>,
    broker_type: &str,
) -> &'a mut IntegrationHealth {
    rows.entry(broker_type.to_owned())
        .or_insert_with(|| IntegrationHealth {
            broker_type: broker_type.to_owned(),
            ..IntegrationHealth::default()
        })
}

/// The engine's health, kept in memory (read back from the store at start
/// by [`Health::restore`]).
#[derive(Default)]
pub struct Health {
    /// Failing tokens: tokenId -> (brokerType, access token expiry).
    failing: Mutex<BTreeMap<String, (String, Option<UnixMillis>)>>,
    last_error: Mutex<BTreeMap<String, String>>,
    unhealthy: Mutex<HashSet<String>>,
    due_soon: AtomicU64,
    refreshed: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

impl Health {
    /// The stats now, with the engine's bound and its requests in flight.
    pub fn stats(&self, concurrency: usize, in_flight: usize) -> RefreshStats {
        let now = now_millis();
        let mut rows: BTreeMap<String, IntegrationHealth> = BTreeMap::new();
        let mut pending = 0;
        for (broker_type, expires_at) in locked(&self.failing).values() {
            row(&mut rows, broker_type).failing += 1;
            if expires_at.is_some_and(|at| at <= now) {
                pending += 1;
            }
        }
        for (broker_type, code) in locked(&self.last_error).iter() {
            row(&mut rows, broker_type).last_error = Some(code.clone());
        }
        for broker_type in locked(&self.unhealthy).iter() {
            row(&mut rows, broker_type).unhealthy = true;
        }
        RefreshStats {
            concurrency: concurrency as u64,
            in_flight: in_flight as u64,
            due_soon: self.due_soon.load(Ordering::Relaxed),
            refreshed: self.refreshed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            refresh_pending: pending,
            skipped_records: self.skipped.load(Ordering::Relaxed),
            integrations: rows.into_values().collect(),
        }
    }

    /// Takes in the failing tokens a start found in the store (what was
    /// seen since start wins).
    pub fn restore(&self, found: Vec<Failing>) {
        let mut failing = locked(&self.failing);
        let mut last_error = locked(&self.last_error);
        for row in found {
            if let Some(code) = row.last_error {
                last_error.entry(row.broker_type.clone()).or_insert(code);
            }
            failing
                .entry(row.token_id)
                .or_insert((row.broker_type, row.expires_at));
        }
    }

    /// Counts store records a pass skipped.
    pub fn skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets how many tokens are due soon.
    pub fn set_due_soon(&self, n: u64) {
        self.due_soon.store(n, Ordering::Relaxed);
    }

    /// Takes in one answer; the integration health event it causes, if
    /// any (healthy again after a success, unhealthy on `invalid_client`).
    pub fn observe(&self, leased: &Leased, answer: &Result<Grant, Failure>) -> Option<Event> {
        let broker_type = &leased.broker_type;
        let event = |kind: EventKind, reason: Option<String>| {
            let mut event = Event::new(kind, rfc3339(now_millis()));
            event.broker_type = Some(broker_type.clone());
            event.reason = reason;
            event
        };
        match answer {
            Ok(_) => {
                self.refreshed.fetch_add(1, Ordering::Relaxed);
                locked(&self.failing).remove(&leased.token_id);
                locked(&self.unhealthy)
                    .remove(broker_type)
                    .then(|| event(EventKind::IntegrationHealthy, None))
            }
            Err(failure) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let code = failure.code();
                tracing::warn!(
                    token_id = leased.token_id,
                    broker_type,
                    code,
                    "refresh failed"
                );
                locked(&self.last_error).insert(broker_type.clone(), code.clone());
                if *failure == Failure::InvalidGrant {
                    locked(&self.failing).remove(&leased.token_id);
                } else {
                    locked(&self.failing).insert(
                        leased.token_id.clone(),
                        (broker_type.clone(), leased.expires_at),
                    );
                }
                (*failure == Failure::InvalidClient
                    && locked(&self.unhealthy).insert(broker_type.clone()))
                .then(|| event(EventKind::IntegrationUnhealthy, Some(code)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mmt_shared::secret::Secret;

    use super::*;
    use crate::store::Lease;

    fn leased(token_id: &str, expires_at: Option<UnixMillis>) -> Leased {
        Leased {
            token_id: token_id.into(),
            broker_type: "coinbase".into(),
            lease: Lease {
                id: 1,
                sent_at: 0,
                until: 1,
            },
            refresh_token: Secret::new("r".into()),
            expires_at,
        }
    }

    fn grant() -> Grant {
        Grant {
            access_token: Secret::new("a".into()),
            refresh_token: None,
            expires_in: Some(3600),
            refresh_token_expires_in: None,
        }
    }

    fn row_of(health: &Health) -> IntegrationHealth {
        let stats = health.stats(16, 0);
        stats
            .integrations
            .into_iter()
            .find(|i| i.broker_type == "coinbase")
            .unwrap_or_default()
    }

    #[test]
    fn a_failure_counts_until_the_next_success_and_invalid_client_flips_health_both_ways() {
        let health = Health::default();
        let transient = Err(Failure::Transient {
            code: "http_503".into(),
            retry_after: None,
        });
        assert!(health.observe(&leased("t1", Some(0)), &transient).is_none());
        let unhealthy = health
            .observe(&leased("t2", None), &Err(Failure::InvalidClient))
            .expect("an unhealthy event");
        assert_eq!(unhealthy.kind, EventKind::IntegrationUnhealthy);
        assert!(
            health
                .observe(&leased("t2", None), &Err(Failure::InvalidClient))
                .is_none(),
            "said once"
        );
        let row = row_of(&health);
        assert_eq!((row.failing, row.unhealthy), (2, true));
        assert_eq!(row.last_error.as_deref(), Some("invalid_client"));
        assert_eq!(health.stats(16, 0).refresh_pending, 1, "t1 is past expiry");

        let healthy = health.observe(&leased("t2", None), &Ok(grant()));
        assert_eq!(healthy.map(|e| e.kind), Some(EventKind::IntegrationHealthy));
        health.observe(&leased("t1", Some(0)), &Err(Failure::InvalidGrant));
        let row = row_of(&health);
        assert_eq!((row.failing, row.unhealthy), (0, false));
        let stats = health.stats(16, 0);
        assert_eq!((stats.refreshed, stats.failed), (1, 4));
    }

    #[test]
    fn a_restore_adds_what_the_store_says_and_keeps_what_was_seen_since_start() {
        let health = Health::default();
        health.observe(&leased("t1", None), &Err(Failure::InvalidClient));
        health.restore(vec![
            Failing {
                token_id: "t1".into(),
                broker_type: "coinbase".into(),
                expires_at: None,
                last_error: Some("http_503".into()),
            },
            Failing {
                token_id: "t2".into(),
                broker_type: "coinbase".into(),
                expires_at: Some(0),
                last_error: Some("http_503".into()),
            },
        ]);
        let row = row_of(&health);
        assert_eq!(row.failing, 2);
        assert_eq!(row.last_error.as_deref(), Some("invalid_client"));
        assert_eq!(health.stats(16, 0).refresh_pending, 1);
    }
}
