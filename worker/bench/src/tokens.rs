//! The bench's tokens: their ids and secrets, computable from an index (so
//! that a phase can name any token without keeping a list), and a data
//! directory loaded with them directly.
//!
//! The load goes through the store's only write path
//! ([`Store::change`], [`Change::put_token`](mmt_worker::store::Change::put_token),
//! [`Change::processed`](mmt_worker::store::Change::processed), commit), 1,000
//! tokens per commit on two threads, with the records one
//! `integration.connected` message would leave: the sealed token, its
//! wrapped data key, the identity index, the counts and the processed-message
//! reply. It does not go through the broker. With `--store-url` the same
//! load goes into a PostgreSQL database ([`Preloaded::load_pg`]): the same
//! writes, each chunk one transaction.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mmt_shared::secret::Secret;
use mmt_shared::time_fmt::now_millis;
use mmt_shared::wire::{ConnectedReply, IssuedToken, MessageKind, Scope, SdkAccessToken};

use super::{BenchError, mix};
use mmt_worker::rules::lifecycle::{self, ConnectInput};
use mmt_worker::store::crypto::KeyRing;
use mmt_worker::store::postgres::PgConfig;
use mmt_worker::store::{Decision, Store, TokenSecrets};

/// The client every preloaded token belongs to.
pub const CLIENT_ID: &str = "bench-client";

/// Tokens per commit of the direct load.
const CHUNK: usize = 1_000;

/// The tokenId of the `index`-th preloaded token: random-looking (so that
/// the keys spread over the tree as uuids do), unique, and computable
/// without keeping a million ids in memory.
pub fn token_id(index: u64) -> String {
    format!(
        "tok_{:016x}{:016x}",
        mix(index),
        mix(index ^ 0x5555_5555_5555_5555)
    )
}

/// A raw-looking token of the `index`-th preloaded token.
pub fn secret(prefix: &str, index: u64) -> String {
    format!(
        "{prefix}_{:016x}{:016x}{:016x}",
        mix(index ^ 1),
        mix(index ^ 2),
        mix(index ^ 3)
    )
}

/// A data directory and key file loaded with `tokens` tokens.
pub struct Preloaded {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The master key file.
    pub key_file: PathBuf,
    /// The PostgreSQL database it is in; `None`: the embedded store in
    /// `data_dir`.
    pub store_url: Option<String>,
    /// How many tokens it holds.
    pub tokens: usize,
    /// How long the load took, in seconds.
    pub load_secs: f64,
    /// Whether no worker has opened it since the load.
    fresh: AtomicBool,
}

impl Preloaded {
    /// Loads `tokens` tokens into `root/name`.
    pub async fn load(root: &Path, name: &str, tokens: usize) -> Result<Self, BenchError> {
        let data_dir = root.join(name).join("data");
        let key_file = root.join(name).join("mmt.key");
        let (key, _) = KeyRing::load_or_create(&key_file)?;
        let store = Store::open(&data_dir, key)?;
        Self::load_into(store, data_dir, key_file, None, tokens).await
    }

    /// Loads `tokens` tokens into the (empty) PostgreSQL database of `url`,
    /// with a key made in `root/name`.
    pub async fn load_pg(
        root: &Path,
        name: &str,
        url: &str,
        tokens: usize,
    ) -> Result<Self, BenchError> {
        let data_dir = root.join(name).join("data");
        let key_file = root.join(name).join("mmt.key");
        let (key, _) = KeyRing::load_or_create(&key_file)?;
        let config = PgConfig::new(url);
        let store = tokio::task::spawn_blocking(move || Store::connect(&config, key)).await??;
        Self::load_into(store, data_dir, key_file, Some(url.to_owned()), tokens).await
    }

    async fn load_into(
        store: Store,
        data_dir: PathBuf,
        key_file: PathBuf,
        store_url: Option<String>,
        tokens: usize,
    ) -> Result<Self, BenchError> {
        let store = Arc::new(store);
        let started = Instant::now();
        let filling = store.clone();
        tokio::task::spawn_blocking(move || {
            let workers = 2;
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|worker| {
                        let store = &*filling;
                        scope.spawn(move || fill(store, tokens, worker, workers))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(BenchError::Panicked("a preload thread")))
                    })
                    .collect::<Result<Vec<()>, BenchError>>()
            })
        })
        .await??;
        store.flush().await?;
        let load_secs = started.elapsed().as_secs_f64();
        // The PostgreSQL engine's runtime may not be dropped on a runtime
        // thread.
        tokio::task::spawn_blocking(move || drop(store)).await?;
        Ok(Self {
            data_dir,
            key_file,
            store_url,
            tokens,
            load_secs,
            fresh: AtomicBool::new(true),
        })
    }

    /// Whether no worker has opened it since the load; the next call says
    /// no.
    pub fn take_first_open(&self) -> bool {
        self.fresh.swap(false, Ordering::SeqCst)
    }

    /// Tokens loaded per second.
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.load_secs.max(f64::MIN_POSITIVE)
    }
}

/// Loads every `workers`-th chunk of tokens, starting at chunk `worker`.
fn fill(store: &Store, tokens: usize, worker: usize, workers: usize) -> Result<(), BenchError> {
    let now = now_millis();
    for chunk in (worker..tokens.div_ceil(CHUNK)).step_by(workers) {
        let indexes = chunk * CHUNK..((chunk + 1) * CHUNK).min(tokens);
        let replies = indexes
            .clone()
            .map(|index| serde_json::to_vec(&reply(index as u64)))
            .collect::<Result<Vec<_>, _>>()?;
        store.write(|change| {
            for (index, reply) in indexes.clone().zip(&replies) {
                let index = index as u64;
                let token_id = token_id(index);
                let end_user_id = format!("user-{index}");
                let account_id = format!("acct-{index}");
                let input = ConnectInput {
                    client_id: CLIENT_ID,
                    end_user_id: &end_user_id,
                    broker_type: "coinbase",
                    broker_name: "Coinbase",
                    account_id: &account_id,
                    account_name: "Coinbase Main",
                    scope: Scope::Read,
                    expires_in_seconds: None,
                    refresh_expires_in_seconds: None,
                    has_refresh_token: true,
                    at: now,
                };
                let plan = lifecycle::connect(None, &input, now, String::new);
                let secrets = TokenSecrets {
                    access_token: Secret::new(secret("cbat", index)),
                    refresh_token: Some(Secret::new(secret("cbrt", index))),
                };
                change.put_token(&token_id, plan.meta(), None, &secrets)?;
                change.record_processed(
                    MessageKind::IntegrationConnected,
                    &format!("bench-load-{index}"),
                    reply,
                )?;
            }
            Ok(Decision::Commit(()))
        })?;
    }
    Ok(())
}

/// The reply the `index`-th token's `integration.connected` got.
fn reply(index: u64) -> ConnectedReply {
    let token_id = token_id(index);
    ConnectedReply {
        ok: true,
        broker_type: "coinbase".into(),
        scope: Scope::Read,
        tokens: vec![IssuedToken {
            token_id: token_id.clone(),
            account_id: format!("acct-{index}"),
            created: true,
        }],
        access_tokens: vec![SdkAccessToken::new(&token_id, "coinbase")],
        wallet: false,
    }
}
