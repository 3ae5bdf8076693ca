//! The stores of the refresh phase, loaded directly (not through the broker)
//! through the store's only write path: every token a refreshable one of the
//! fixture integration, sealed with a refresh token the local provider
//! issued, and owned by the engine (a refresh record and its due entry, no
//! v1 expiry entry), 1,000 tokens per commit on two threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mmt_shared::secret::Secret;
use mmt_shared::time_fmt::{UnixMillis, now_millis};
use mmt_shared::wire::{Scope, TokenState};

use super::super::tokens::{CLIENT_ID, secret, token_id};
use super::super::{BenchError, mix};
use mmt_worker::config::integrations::Integration;
use mmt_worker::rules::lifecycle::TokenMeta;
use mmt_worker::service::own_refresh;
use mmt_worker::store::crypto::KeyRing;
use mmt_worker::store::{Decision, RefreshRecord, Store, TokenSecrets};

/// Tokens per commit.
const CHUNK: usize = 1_000;

/// When the loaded tokens expire and are due.
#[derive(Clone, Copy, Debug)]
pub enum Schedule {
    /// Every token expires at `expires_at` and is due at the load: a backlog.
    AllDue {
        /// The common expiry.
        expires_at: UnixMillis,
    },
    /// The `i`-th of N tokens expires at `base + i * span / N`; its due time
    /// is the one a connect at load time gives it (refresh-ahead window,
    /// jitter).
    Spread {
        /// The first expiry.
        base: UnixMillis,
        /// The expiries are spread over this many milliseconds.
        span: UnixMillis,
    },
}

impl Schedule {
    /// The expiry of the `index`-th of `tokens` tokens.
    pub fn expires_at(&self, index: usize, tokens: usize) -> UnixMillis {
        match *self {
            Schedule::AllDue { expires_at } => expires_at,
            Schedule::Spread { base, span } => {
                let offset = i128::from(span) * index as i128 / tokens.max(1) as i128;
                base.saturating_add(UnixMillis::try_from(offset).unwrap_or(UnixMillis::MAX))
            }
        }
    }
}

/// A loaded data directory and key file.
pub struct Loaded {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The master key file.
    pub key_file: PathBuf,
    /// Tokens per second of the load.
    pub tokens_per_s: f64,
}

/// What the load needs from the phase.
pub struct Plan<'a> {
    /// The fixture integration (its refresh-ahead window schedules `Spread`).
    pub integration: &'a Integration,
    /// The refresh tokens the provider issued, one per token.
    pub refresh_tokens: Vec<String>,
    /// Expiries and due times.
    pub schedule: Schedule,
}

/// Loads one token per refresh token of `plan` into `dir/data`.
pub async fn load(dir: &Path, plan: Plan<'_>) -> Result<Loaded, BenchError> {
    let data_dir = dir.join("data");
    let key_file = dir.join("mmt.key");
    let (key, _) = KeyRing::load_or_create(&key_file)?;
    let store = Arc::new(Store::open(&data_dir, key)?);
    let started = Instant::now();
    let filling = store.clone();
    let integration = plan.integration.clone();
    let refresh_tokens = Arc::new(plan.refresh_tokens);
    let schedule = plan.schedule;
    let tokens = refresh_tokens.len();
    tokio::task::spawn_blocking(move || {
        let workers = 2;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|worker| {
                    let job = Job {
                        store: &filling,
                        integration: &integration,
                        refresh_tokens: &refresh_tokens,
                        schedule,
                    };
                    scope.spawn(move || job.fill(worker, workers))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(BenchError::Panicked("a refresh preload thread")))
                })
                .collect::<Result<Vec<()>, BenchError>>()
        })
    })
    .await??;
    store.flush().await?;
    let secs = started.elapsed().as_secs_f64();
    drop(store);
    Ok(Loaded {
        data_dir,
        key_file,
        tokens_per_s: tokens as f64 / secs.max(f64::MIN_POSITIVE),
    })
}

/// The integration (brokerType) the loaded tokens belong to.
pub const BROKER_TYPE: &str = "fixture";

/// The record of the `index`-th token.
pub fn meta(index: usize, expires_at: UnixMillis, now: UnixMillis) -> TokenMeta {
    TokenMeta {
        client_id: CLIENT_ID.to_owned(),
        end_user_id: format!("user-{index}"),
        broker_type: BROKER_TYPE.to_owned(),
        broker_name: "Fixture".to_owned(),
        account_id: format!("acct-{:016x}", mix(index as u64)),
        account_name: "Fixture Main".to_owned(),
        scope: Scope::Read,
        state: TokenState::Active,
        created_at: now,
        updated_at: now,
        expires_at: Some(expires_at),
        refresh_expires_at: None,
        has_refresh_token: true,
    }
}

struct Job<'a> {
    store: &'a Store,
    integration: &'a Integration,
    refresh_tokens: &'a [String],
    schedule: Schedule,
}

impl Job<'_> {
    /// Loads every `workers`-th chunk, starting at chunk `worker`.
    fn fill(&self, worker: usize, workers: usize) -> Result<(), BenchError> {
        let tokens = self.refresh_tokens.len();
        for chunk in (worker..tokens.div_ceil(CHUNK)).step_by(workers) {
            let now = now_millis();
            self.store.write(|change| {
                for index in chunk * CHUNK..((chunk + 1) * CHUNK).min(tokens) {
                    let id = token_id(index as u64);
                    let meta = meta(index, self.schedule.expires_at(index, tokens), now);
                    let secrets = TokenSecrets {
                        access_token: Secret::new(secret("fxat", index as u64)),
                        refresh_token: self.refresh_tokens.get(index).cloned().map(Secret::new),
                    };
                    change.put_token(&id, &meta, None, &secrets)?;
                    match self.schedule {
                        Schedule::AllDue { .. } => {
                            let due = RefreshRecord {
                                due_at: now,
                                ..RefreshRecord::default()
                            };
                            change.put_refresh(&id, None, &due, meta.expires_at)?;
                        }
                        Schedule::Spread { .. } => {
                            own_refresh(change, &id, &meta, None, Some(self.integration), now)?;
                        }
                    }
                }
                Ok(Decision::Commit(()))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_expiries_cover_the_span_evenly_from_the_base() {
        let spread = Schedule::Spread {
            base: 10_000,
            span: 60_000,
        };
        assert_eq!(spread.expires_at(0, 4), 10_000);
        assert_eq!(spread.expires_at(1, 4), 25_000);
        assert_eq!(spread.expires_at(3, 4), 55_000);
        let all = Schedule::AllDue { expires_at: 7 };
        assert_eq!(all.expires_at(3, 4), 7);
    }
}
