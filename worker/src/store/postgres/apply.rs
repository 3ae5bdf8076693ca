//! A decision's operations as statements of its transaction, in order, and
//! the count deltas they add up to as one statement per touched group.

use std::collections::BTreeMap;

use deadpool_postgres::ClientWrapper as Client;
use mmt_shared::wire::TokenState;

use super::super::change::Op;
use super::super::{RefreshRecord, StoreError};
use super::Txn;
use super::audit::AuditLines;
use super::prepared::execute;
use super::schema::COUNT_SHARDS;
use crate::rules::audit::Event as AuditEvent;
use crate::rules::lifecycle::TokenMeta;
use crate::store::crypto::wrapped_key_id;

/// (state, scope, integration) to a delta.
pub(super) type Deltas = BTreeMap<(&'static str, &'static str, String), i64>;

impl Txn<'_> {
    /// Runs `ops` in the transaction (not yet committed); their count
    /// deltas and their audit lines (on one of the worker's chains) are
    /// written at the commit.
    pub(in crate::store) fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut events = Vec::new();
        {
            let mut deltas = self.deltas.borrow_mut();
            self.run(|c| apply(c, ops, &mut deltas, &mut events))?;
        }
        if !events.is_empty() {
            self.audit_lines(events);
        }
        Ok(())
    }
}

fn count(deltas: &mut Deltas, meta: &TokenMeta, state: TokenState, delta: i64) {
    *deltas
        .entry((
            state.as_str(),
            meta.scope.as_str(),
            meta.broker_type.clone(),
        ))
        .or_default() += delta;
}

/// The v1 expiry entry a live token has: active with an expiry.
fn expiry_of(meta: &TokenMeta) -> Option<i64> {
    (meta.state == TokenState::Active)
        .then_some(meta.expires_at)
        .flatten()
}

async fn apply(
    c: &Client,
    ops: Vec<Op>,
    deltas: &mut Deltas,
    audit: &mut Vec<AuditEvent>,
) -> Result<(), StoreError> {
    for op in ops {
        match op {
            Op::Audit(event) => audit.push(event),
            Op::PutToken {
                token_id,
                meta,
                previous,
                record,
                key_id,
            } => {
                if let Some(prev) = &previous {
                    count(deltas, prev, prev.state, -1);
                }
                count(deltas, &meta, meta.state, 1);
                execute(
                    c,
                    "INSERT INTO tokens (token_id, client_id, end_user_id, broker_type, scope,
                                         account_id, state, expiry_at, record, key_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (token_id) DO UPDATE SET
                         client_id = EXCLUDED.client_id, end_user_id = EXCLUDED.end_user_id,
                         broker_type = EXCLUDED.broker_type, scope = EXCLUDED.scope,
                         account_id = EXCLUDED.account_id, state = EXCLUDED.state,
                         expiry_at = EXCLUDED.expiry_at, record = EXCLUDED.record,
                         key_id = EXCLUDED.key_id",
                    &[
                        &token_id,
                        &meta.client_id,
                        &meta.end_user_id,
                        &meta.broker_type,
                        &meta.scope.as_str(),
                        &meta.account_id,
                        &meta.state.as_str(),
                        &expiry_of(&meta),
                        &record,
                        &i64::from(key_id),
                    ],
                )
                .await?;
            }
            Op::Rewrap {
                token_id,
                record,
                key_id,
            } => {
                execute(
                    c,
                    "UPDATE tokens SET record = $2, key_id = $3 WHERE token_id = $1",
                    &[&token_id, &record, &i64::from(key_id)],
                )
                .await?;
            }
            Op::Expire {
                token_id,
                previous,
                meta,
                record,
            } => {
                count(deltas, &previous, previous.state, -1);
                count(deltas, &meta, meta.state, 1);
                execute(
                    c,
                    "UPDATE tokens SET state = $2, expiry_at = NULL, record = $3
                     WHERE token_id = $1",
                    &[&token_id, &meta.state.as_str(), &record],
                )
                .await?;
            }
            Op::Revoke {
                token_id,
                meta,
                record,
            } => {
                count(deltas, &meta, meta.state, -1);
                count(deltas, &meta, TokenState::Revoked, 1);
                // The tombstone keeps what the embedded one keeps: no end
                // user, no account, no secret.
                execute(
                    c,
                    "UPDATE tokens SET state = 'revoked', end_user_id = NULL, account_id = NULL,
                                       expiry_at = NULL, record = $2
                     WHERE token_id = $1",
                    &[&token_id, &record],
                )
                .await?;
            }
            Op::Processed { key, reply } => {
                execute(
                    c,
                    "INSERT INTO processed (key, reply) VALUES ($1, $2)",
                    &[&key, &reply],
                )
                .await?;
            }
            Op::PutRefresh {
                token_id,
                previous_due: _,
                next,
                expires_at,
            } => {
                put_refresh(c, &token_id, &next).await?;
                if let Some(at) = expires_at {
                    execute(
                        c,
                        "UPDATE tokens SET expiry_at = NULL
                         WHERE token_id = $1 AND expiry_at = $2",
                        &[&token_id, &at],
                    )
                    .await?;
                }
            }
            Op::DropRefresh {
                token_id,
                previous_due: _,
                expires_at,
            } => {
                execute(c, "DELETE FROM refresh WHERE token_id = $1", &[&token_id]).await?;
                if let Some(at) = expires_at {
                    execute(
                        c,
                        "UPDATE tokens SET expiry_at = $2 WHERE token_id = $1",
                        &[&token_id, &at],
                    )
                    .await?;
                }
            }
            Op::SkipDue { token_id, due_at } => {
                execute(
                    c,
                    "UPDATE refresh SET due_at = NULL WHERE token_id = $1 AND due_at = $2",
                    &[&token_id, &due_at],
                )
                .await?;
            }
            Op::SkipExpiry {
                token_id,
                expires_at,
            } => {
                execute(
                    c,
                    "UPDATE tokens SET expiry_at = NULL WHERE token_id = $1 AND expiry_at = $2",
                    &[&token_id, &expires_at],
                )
                .await?;
            }
            Op::PutJob { token_id, job } => {
                let attempts = i32::try_from(job.attempts).unwrap_or(i32::MAX);
                execute(
                    c,
                    "INSERT INTO upstream_jobs (token_id, client_id, broker_type, scope,
                                                created_at, due_at, attempts, sealed, wrapped,
                                                key_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (token_id) DO UPDATE SET
                         due_at = EXCLUDED.due_at, attempts = EXCLUDED.attempts,
                         sealed = EXCLUDED.sealed, wrapped = EXCLUDED.wrapped,
                         key_id = EXCLUDED.key_id",
                    &[
                        &token_id,
                        &job.client_id,
                        &job.broker_type,
                        &job.scope.as_str(),
                        &job.created_at,
                        &job.due_at,
                        &attempts,
                        &job.sealed,
                        &job.wrapped,
                        &i64::from(wrapped_key_id(&job.wrapped)?),
                    ],
                )
                .await?;
            }
            Op::EndJob { token_id } => {
                execute(
                    c,
                    "DELETE FROM upstream_jobs WHERE token_id = $1",
                    &[&token_id],
                )
                .await?;
            }
            Op::ImportToken {
                token_id,
                record,
                key_id,
                live,
                revoked,
                expiry_entry,
            } => {
                let (client_id, end_user_id, broker_type, scope, account_id, state) =
                    match (&live, &revoked) {
                        (Some(m), _) => (
                            m.client_id.as_str(),
                            Some(m.end_user_id.as_str()),
                            m.broker_type.as_str(),
                            m.scope,
                            Some(m.account_id.as_str()),
                            m.state,
                        ),
                        (None, Some(t)) => (
                            t.client_id.as_str(),
                            None,
                            t.broker_type.as_str(),
                            t.scope,
                            None,
                            TokenState::Revoked,
                        ),
                        (None, None) => return Err(StoreError::Column { column: "record" }),
                    };
                *deltas
                    .entry((state.as_str(), scope.as_str(), broker_type.to_owned()))
                    .or_default() += 1;
                execute(
                    c,
                    "INSERT INTO tokens (token_id, client_id, end_user_id, broker_type, scope,
                                         account_id, state, expiry_at, record, key_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        &token_id,
                        &client_id,
                        &end_user_id,
                        &broker_type,
                        &scope.as_str(),
                        &account_id,
                        &state.as_str(),
                        &expiry_entry,
                        &record,
                        &i64::from(key_id),
                    ],
                )
                .await?;
            }
            Op::Mark { name, value } => {
                execute(
                    c,
                    "INSERT INTO mmt_meta (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                    &[&name, &value],
                )
                .await?;
            }
        }
    }
    Ok(())
}

async fn put_refresh(c: &Client, token_id: &str, next: &RefreshRecord) -> Result<(), StoreError> {
    let attempts = i32::try_from(next.attempts).unwrap_or(i32::MAX);
    let lease_id = next.lease.map(|l| i64::from_ne_bytes(l.id.to_ne_bytes()));
    execute(
        c,
        "INSERT INTO refresh (token_id, due_at, attempts, lease_id, lease_sent_at, lease_until,
                              last_error, last_refreshed_at, last_failed_event_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (token_id) DO UPDATE SET
             due_at = EXCLUDED.due_at, attempts = EXCLUDED.attempts,
             lease_id = EXCLUDED.lease_id, lease_sent_at = EXCLUDED.lease_sent_at,
             lease_until = EXCLUDED.lease_until, last_error = EXCLUDED.last_error,
             last_refreshed_at = EXCLUDED.last_refreshed_at,
             last_failed_event_at = EXCLUDED.last_failed_event_at",
        &[
            &token_id,
            &next.due_at,
            &attempts,
            &lease_id,
            &next.lease.map(|l| l.sent_at),
            &next.lease.map(|l| l.until),
            &next.last_error,
            &next.last_refreshed_at,
            &next.last_failed_event_at,
        ],
    )
    .await?;
    Ok(())
}

/// Adds the deltas to one random shard of each group: two workers rarely
/// touch the same row, and a reader sums a handful of rows.
/// Writes the transaction's audit lines in one statement: a group commits
/// the lines of all its decisions with one round trip, not one each.
pub(super) async fn add_audit(c: &Client, lines: AuditLines) -> Result<(), StoreError> {
    if lines.seqs.is_empty() {
        return Ok(());
    }
    execute(
        c,
        "INSERT INTO audit (chain, seq, line)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[])",
        &[&lines.chain, &lines.seqs, &lines.lines],
    )
    .await?;
    Ok(())
}

pub(super) async fn add_counts(c: &Client, deltas: Deltas) -> Result<(), StoreError> {
    let shard: i16 = rand::random_range(0..COUNT_SHARDS);
    for ((state, scope, broker_type), delta) in deltas {
        if delta == 0 {
            continue;
        }
        execute(
            c,
            "INSERT INTO token_counts (state, scope, broker_type, shard, n)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (state, scope, broker_type, shard)
             DO UPDATE SET n = token_counts.n + EXCLUDED.n",
            &[&state, &scope, &broker_type, &shard, &delta],
        )
        .await?;
    }
    Ok(())
}
