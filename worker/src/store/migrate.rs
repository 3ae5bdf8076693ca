//! Opening a data directory of an older format: v1 kept a token's wrapped
//! data key under `k` and a revoked token's tombstone under `x`, beside the
//! record under `t`, and each processed message's whole reply under `p` and
//! its full id; v2 keeps one authenticated record under `t` and a short
//! processed record under `q` ([`super::processed`]).
//!
//! The migration runs at open, before the worker serves. It converts tokens
//! in batches; each token's new record and the removal of its v1 keys are in
//! the same atomic batch, so a migration killed at any point resumes where it
//! stopped (a `k`, `x` or `p` key left means "not converted yet"). The format key
//! is written, and the store flushed, only once nothing is left to convert.

use serde::Deserialize;

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{Scope, TokenState};

use super::embedded::mark_key;
use super::keys::prefixed;
use super::kv::Kv;
use super::purge::PURGE_MARK;
use super::record::{self, RecordRef};
use super::{DATA_KEY, PROCESSED_V1, StoreError, TOKEN, TOMBSTONE, processed};
use crate::rules::lifecycle::{TokenMeta, Tombstone};
use crate::store::crypto::Macs;

/// The key of the store's format version.
pub(super) const FORMAT_KEY: &[u8] = b"v";
/// The format this code writes.
pub(super) const FORMAT: u8 = record::FORMAT_V2;

const BATCH: usize = 512;

/// A v1 token record as v1 wrote it (frozen: v1 directories hold exactly
/// this).
#[derive(Deserialize)]
struct V1Token {
    meta: V1Meta,
    sealed: Vec<u8>,
}

#[derive(Deserialize)]
struct V1Meta {
    client_id: String,
    end_user_id: String,
    broker_type: String,
    broker_name: String,
    account_id: String,
    account_name: String,
    scope: Scope,
    state: TokenState,
    created_at: UnixMillis,
    updated_at: UnixMillis,
    expires_at: Option<UnixMillis>,
    refresh_expires_at: Option<UnixMillis>,
    has_refresh_token: bool,
}

impl From<V1Meta> for TokenMeta {
    fn from(v1: V1Meta) -> Self {
        TokenMeta {
            client_id: v1.client_id,
            end_user_id: v1.end_user_id,
            broker_type: v1.broker_type,
            broker_name: v1.broker_name,
            account_id: v1.account_id,
            account_name: v1.account_name,
            scope: v1.scope,
            state: v1.state,
            created_at: v1.created_at,
            updated_at: v1.updated_at,
            expires_at: v1.expires_at,
            refresh_expires_at: v1.refresh_expires_at,
            has_refresh_token: v1.has_refresh_token,
        }
    }
}

/// Brings `db` to the current format, converting at most `limit` tokens
/// (the worker passes `usize::MAX`; tests stop early to play a kill).
/// Returns how many tokens it converted, and whether the store is current.
pub(super) fn to_current(db: &Kv, key: &Macs, limit: usize) -> Result<(usize, bool), StoreError> {
    match db.get(FORMAT_KEY)?.as_deref() {
        Some([FORMAT]) => return Ok((0, true)),
        Some(other) => {
            return Err(StoreError::Format {
                found: other.first().copied().unwrap_or(0),
            });
        }
        None => {}
    }
    let mut converted = 0;
    while converted < limit {
        let n = convert_batch(db, key, (limit - converted).min(BATCH))?;
        if n == 0 {
            break;
        }
        converted += n;
    }
    let done =
        db.scan_prefix([DATA_KEY]).next().is_none() && db.scan_prefix([TOMBSTONE]).next().is_none();
    if done {
        let mut batch = db.batch();
        batch.insert(FORMAT_KEY, [FORMAT]);
        db.apply(batch)?;
        db.flush_blocking()?;
        if converted > 0 {
            tracing::info!(converted, "store migrated to format v2");
        }
    }
    Ok((converted, done))
}

/// Converts up to `max` records in one atomic batch: live tokens first
/// (those with a `k` key), then tombstones (`x`), then processed messages
/// (`p`).
fn convert_batch(db: &Kv, key: &Macs, max: usize) -> Result<usize, StoreError> {
    let mut batch = db.batch();
    let mut n = 0;
    for entry in db.scan_prefix([DATA_KEY]).take(max) {
        let (k, wrapped) = entry?;
        let token_id = token_id_of(&k);
        let record = prefixed(TOKEN, token_id.as_bytes());
        if let Some(v1) = db.get(&record)? {
            let v1: V1Token = postcard::from_bytes(&v1)?;
            let meta = TokenMeta::from(v1.meta);
            let live = RecordRef::Live {
                meta: &meta,
                wrapped: &wrapped,
                sealed: &v1.sealed,
            };
            batch.insert(record, record::encode(key, &token_id, &live)?);
        }
        batch.remove(k);
        n += 1;
    }
    for entry in db.scan_prefix([TOMBSTONE]).take(max - n) {
        let (x, tomb) = entry?;
        let token_id = token_id_of(&x);
        let tomb: Tombstone = postcard::from_bytes(&tomb)?;
        let revoked = record::encode(key, &token_id, &RecordRef::Revoked(&tomb))?;
        batch.insert(prefixed(TOKEN, token_id.as_bytes()), revoked);
        batch.remove(x);
        n += 1;
    }
    for entry in db.scan_prefix([PROCESSED_V1]).take(max - n) {
        let (p, reply) = entry?;
        let (routing_key, message_id) = v1_processed_key(&p)
            .ok_or(StoreError::Decode(postcard::Error::DeserializeBadEncoding))?;
        batch.insert(
            processed::key_of(&routing_key, &message_id),
            processed::encode(&reply)?,
        );
        batch.remove(p);
        n += 1;
    }
    if n > 0 {
        // The v1 values removed here stay in the engine's files until a
        // purge: make one due (super::purge).
        batch.insert(mark_key(PURGE_MARK), []);
        db.apply(batch)?;
    }
    Ok(n)
}

/// (routing key, message id) of a v1 processed key: `p`, the routing key's
/// length (u32, big-endian), the routing key, the message id.
fn v1_processed_key(key: &[u8]) -> Option<(String, String)> {
    let rest = key.get(1..)?;
    let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    let routing_key = std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
    let message_id = String::from_utf8_lossy(rest.get(4 + len..)?);
    Some((routing_key.to_owned(), message_id.into_owned()))
}

fn token_id_of(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned()
}
