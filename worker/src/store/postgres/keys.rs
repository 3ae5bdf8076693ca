//! The key ring in the shared store (CONTRACT.md §11): what the store knows
//! of it (the `keyring` row of `mmt_meta`, settled under the migration lock
//! so that workers adopting a ring at once do it one after the other), the
//! count of data keys by the key that wraps them (`key_id` columns), and the
//! rewrap's reads: live tokens under an older key, locked and skipping the
//! ones another worker holds, so a rotation is rewrapped once however many
//! workers run it.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;

use super::super::ring;
use super::super::{RewrapRows, StoreError};
use super::connect::{ring_state, save_ring_state};
use super::schema::MIGRATION_LOCK;
use super::{Postgres, Txn};
use crate::store::crypto::{KeyId, KeyRing, Macs};

/// Live tokens and upstream jobs by the key that wraps their data key.
const COUNT_WRAPPED: &str = "SELECT key_id, count(*) FROM (
         SELECT key_id FROM tokens WHERE state <> 'revoked'
         UNION ALL SELECT key_id FROM upstream_jobs
     ) k GROUP BY key_id";

async fn count_wrapped(c: &impl GenericClient) -> Result<BTreeMap<KeyId, u64>, StoreError> {
    let rows = c.query(COUNT_WRAPPED, &[]).await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        let id = KeyId::try_from(id).map_err(|_| StoreError::Column { column: "key_id" })?;
        out.insert(id, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

impl Postgres {
    /// Live tokens and upstream jobs by the key that wraps their data key.
    pub(in crate::store) fn count_wrapped(&self) -> Result<BTreeMap<KeyId, u64>, StoreError> {
        self.block(async {
            let c = self.connection().await?;
            count_wrapped(&c).await
        })
    }

    /// What the store knows of the key ring.
    pub(in crate::store) fn ring_state(&self) -> Result<ring::RingState, StoreError> {
        self.block(async {
            let mut client = self.connection().await?;
            let tx = client.transaction().await?;
            ring_state(&tx)
                .await?
                .ok_or_else(|| StoreError::MissingKeyCheckFor {
                    store: self.shown.clone(),
                })
        })
    }

    /// Settles `ring` with what the store knows ([`ring::settle`]), in one
    /// transaction under the migration lock.
    pub(in crate::store) fn adopt_ring(
        &self,
        ring: &KeyRing,
        macs: &Macs,
    ) -> Result<(), StoreError> {
        self.block(async {
            let mut client = self.connection().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            let state = ring_state(&tx)
                .await?
                .ok_or_else(|| StoreError::MissingKeyCheckFor {
                    store: self.shown.clone(),
                })?;
            ring::open_macs(&state, ring, |_| StoreError::WrongKeyFor {
                store: self.shown.clone(),
            })?;
            let counts = if state.checks.keys().any(|id| !ring.has(*id)) {
                count_wrapped(&tx).await?
            } else {
                BTreeMap::new()
            };
            if let Some(next) = ring::settle(&state, ring, macs, |_| Ok(counts))? {
                save_ring_state(&tx, &next).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

impl Txn<'_> {
    /// Up to `max` live tokens after `after` (tokenId order) whose data key
    /// an older key than `active` wraps, locked until the commit; tokens
    /// another worker holds are skipped (it is rewrapping them, or serving
    /// them and a later pass takes them). With the tokenId to go on after,
    /// `None` at the end.
    pub(in crate::store) fn rewrap_candidates(
        &self,
        after: Option<&str>,
        max: usize,
        active: KeyId,
    ) -> Result<RewrapRows, StoreError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.run(|c| async move {
            let rows = super::prepared::query(
                c,
                "SELECT token_id, record FROM tokens
                 WHERE ($1::text IS NULL OR token_id > $1) AND state <> 'revoked' AND key_id < $2
                 ORDER BY token_id LIMIT $3
                 FOR UPDATE SKIP LOCKED",
                &[&after, &i64::from(active), &limit],
            )
            .await?;
            let records = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(String, Vec<u8>)>, StoreError>>()?;
            let next = (records.len() == max)
                .then(|| records.last().map(|(id, _)| id.clone()))
                .flatten();
            Ok((records, next))
        })
    }
}
