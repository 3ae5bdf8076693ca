//! What the store reads from PostgreSQL: each query once, run either on a
//! pooled connection (the console, the passes' lists of due tokens) or on a
//! write transaction's (a decision's reads, consistent with its commit).

use deadpool_postgres::ClientWrapper as Client;
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{Scope, TokenState};
use tokio_postgres::Row;

use super::super::copy::{Page, Row as CopyRow, Table};
use super::super::keys::{CountKey, Identity};
use super::super::upstream::JobEntry;
use super::super::{RecordRows, RefreshRecord, StoreError, UpstreamJob};

/// (tokenId, its record if any) of a user's tokens.
type UserRecords = Vec<(String, Option<Vec<u8>>)>;
use super::{Lock, Postgres, Txn, locked};
use crate::rules::refresh::Lease;

/// The queries, each a function of a connection.
mod q {
    use super::super::prepared::{query, query_opt};
    use super::*;

    pub(super) async fn processed(c: &Client, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let row = query_opt(c, "SELECT reply FROM processed WHERE key = $1", &[&key]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub(super) async fn token_of(
        c: &Client,
        identity: &Identity<'_>,
        lock: Lock,
    ) -> Result<Option<String>, StoreError> {
        let row = query_opt(
            c,
            lock.pick(&locked!(
                "SELECT token_id FROM tokens
                 WHERE client_id = $1 AND end_user_id = $2 AND broker_type = $3
                   AND scope = $4 AND account_id = $5 AND state <> 'revoked'"
            )),
            &[
                &identity.client_id,
                &identity.end_user_id,
                &identity.broker_type,
                &identity.scope.as_str(),
                &identity.account_id,
            ],
        )
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub(super) async fn record(
        c: &Client,
        token_id: &str,
        lock: Lock,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row = query_opt(
            c,
            lock.pick(&locked!("SELECT record FROM tokens WHERE token_id = $1")),
            &[&token_id],
        )
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub(super) async fn refresh_record(
        c: &Client,
        token_id: &str,
        lock: Lock,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let row = query_opt(
            c,
            lock.pick(&locked!(
                "SELECT due_at, attempts, lease_id, lease_sent_at, lease_until, last_error,
                        last_refreshed_at, last_failed_event_at
                 FROM refresh WHERE token_id = $1"
            )),
            &[&token_id],
        )
        .await?;
        row.map(|r| refresh_of(&r, 0)).transpose()
    }

    pub(super) async fn upstream_jobs(
        c: &Client,
        limit: usize,
        lock: Lock,
    ) -> Result<Vec<JobEntry>, StoreError> {
        let rows = query(
            c,
            lock.pick(&locked!(
                "SELECT token_id, client_id, broker_type, scope, created_at, due_at, attempts,
                        sealed, wrapped
                 FROM upstream_jobs ORDER BY token_id LIMIT $1"
            )),
            &[&limit_of(limit)],
        )
        .await?;
        rows.iter()
            .map(|r| {
                let token_id: String = r.try_get(0)?;
                Ok((token_id, job_of(r)))
            })
            .collect()
    }
}

/// A `LIMIT` from a count.
fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A `refresh` row's record, its columns from `at` on.
fn refresh_of(row: &Row, at: usize) -> Result<RefreshRecord, StoreError> {
    let due_at: Option<i64> = row.try_get(at)?;
    let attempts: i32 = row.try_get(at + 1)?;
    let lease_id: Option<i64> = row.try_get(at + 2)?;
    let sent_at: Option<i64> = row.try_get(at + 3)?;
    let until: Option<i64> = row.try_get(at + 4)?;
    Ok(RefreshRecord {
        // A due entry skipped for good has no due time: the record stays
        // for an operator to look at, and it is never due.
        due_at: due_at.unwrap_or(UnixMillis::MAX),
        attempts: u32::try_from(attempts).unwrap_or(0),
        lease: match (lease_id, sent_at, until) {
            (Some(id), Some(sent_at), Some(until)) => Some(Lease {
                id: u64::from_ne_bytes(id.to_ne_bytes()),
                sent_at,
                until,
            }),
            _ => None,
        },
        last_error: row.try_get(at + 5)?,
        last_refreshed_at: row.try_get(at + 6)?,
        last_failed_event_at: row.try_get(at + 7)?,
    })
}

/// An `upstream_jobs` row's job (columns 1 to 8).
fn job_of(row: &Row) -> Result<UpstreamJob, StoreError> {
    let scope: String = row.try_get(3)?;
    let attempts: i32 = row.try_get(6)?;
    Ok(UpstreamJob {
        client_id: row.try_get(1)?,
        broker_type: row.try_get(2)?,
        scope: scope_of(&scope)?,
        created_at: row.try_get(4)?,
        due_at: row.try_get(5)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        sealed: row.try_get(7)?,
        wrapped: row.try_get(8)?,
    })
}

fn scope_of(text: &str) -> Result<Scope, StoreError> {
    match text {
        "read" => Ok(Scope::Read),
        "write" => Ok(Scope::Write),
        _ => Err(StoreError::Column { column: "scope" }),
    }
}

fn state_of(text: &str) -> Result<TokenState, StoreError> {
    match text {
        "active" => Ok(TokenState::Active),
        "reauth_required" => Ok(TokenState::ReauthRequired),
        "revoked" => Ok(TokenState::Revoked),
        _ => Err(StoreError::Column { column: "state" }),
    }
}

/// A decision's reads lock the rows they find until its commit (see
/// [`super::Txn`]); the console's and the passes' reads lock nothing.
impl Txn<'_> {
    /// A processed message's reply: not locked, as a processed row never
    /// changes, and two decisions of one message id cannot both commit
    /// (the second one's insert conflicts with the key).
    pub(in crate::store) fn processed(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(|c| q::processed(c, key))
    }

    pub(in crate::store) fn token_of(
        &self,
        identity: &Identity<'_>,
    ) -> Result<Option<String>, StoreError> {
        self.run(|c| q::token_of(c, identity, self.lock()))
    }

    pub(in crate::store) fn record(&self, token_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(|c| q::record(c, token_id, self.lock()))
    }

    pub(in crate::store) fn refresh_record(
        &self,
        token_id: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        self.run(|c| q::refresh_record(c, token_id, self.lock()))
    }

    /// Jobs no other worker holds: each job is taken by one worker.
    pub(in crate::store) fn upstream_jobs(
        &self,
        limit: usize,
    ) -> Result<Vec<JobEntry>, StoreError> {
        self.run(|c| q::upstream_jobs(c, limit, Lock::SkipLocked))
    }

    /// The due refresh entries no other worker holds, with their tokens,
    /// locked: two workers' lease passes take disjoint tokens, and never
    /// wait for each other.
    pub(in crate::store) fn due_refreshes(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        self.run(|c| async move {
            let rows = super::prepared::query(
                c,
                "SELECT r.due_at, r.token_id FROM refresh r JOIN tokens t USING (token_id)
                 WHERE r.due_at <= $1
                 ORDER BY r.due_at, r.token_id LIMIT $2
                 FOR UPDATE OF t, r SKIP LOCKED",
                &[&now, &limit_of(limit)],
            )
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }
}

impl Postgres {
    pub(in crate::store) fn processed(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.block(async { q::processed(&*self.connection().await?, key).await })
    }

    pub(in crate::store) fn token_of(
        &self,
        identity: &Identity<'_>,
    ) -> Result<Option<String>, StoreError> {
        self.block(async { q::token_of(&*self.connection().await?, identity, Lock::None).await })
    }

    pub(in crate::store) fn record(&self, token_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.block(async { q::record(&*self.connection().await?, token_id, Lock::None).await })
    }

    pub(in crate::store) fn refresh_record(
        &self,
        token_id: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        self.block(async {
            q::refresh_record(&*self.connection().await?, token_id, Lock::None).await
        })
    }

    pub(in crate::store) fn upstream_jobs(
        &self,
        limit: usize,
    ) -> Result<Vec<JobEntry>, StoreError> {
        self.block(async { q::upstream_jobs(&*self.connection().await?, limit, Lock::None).await })
    }

    /// The live tokens of an end user with their records, in identity
    /// order (as the embedded engine's identity keys sort: each part by its
    /// length, then its bytes).
    pub(in crate::store) fn user_records(
        &self,
        client_id: &str,
        end_user_id: &str,
    ) -> Result<UserRecords, StoreError> {
        self.block(async {
            let rows = self
                .connection()
                .await?
                .query(
                    "SELECT token_id, record FROM tokens
                     WHERE client_id = $1 AND end_user_id = $2 AND state <> 'revoked'
                     ORDER BY octet_length(broker_type), broker_type,
                              octet_length(scope), scope,
                              octet_length(account_id), account_id",
                    &[&client_id, &end_user_id],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, Some(r.try_get(1)?))))
                .collect()
        })
    }

    /// The counts by (state, scope, integration), in the embedded engine's
    /// order: a few rows per group (the shards), never the tokens.
    pub(in crate::store) fn counts(&self) -> Result<Vec<(CountKey, u64)>, StoreError> {
        let rows = self.block(async {
            Ok::<_, StoreError>(
                self.connection()
                    .await?
                    .query(
                        "SELECT state, scope, broker_type, sum(n)::bigint FROM token_counts
                         GROUP BY state, scope, broker_type",
                        &[],
                    )
                    .await?,
            )
        })?;
        let mut out = rows
            .iter()
            .map(|r| {
                let state: String = r.try_get(0)?;
                let scope: String = r.try_get(1)?;
                let n: i64 = r.try_get(3)?;
                Ok((
                    CountKey {
                        state: state_of(&state)?,
                        scope: scope_of(&scope)?,
                        broker_type: r.try_get(2)?,
                    },
                    u64::try_from(n).unwrap_or(0),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_cached_key(|(key, _)| key.encode());
        Ok(out)
    }

    fn time_entries(
        &self,
        sql: &str,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        self.block(async {
            let rows = self
                .connection()
                .await?
                .query(sql, &[&now, &limit_of(limit)])
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    pub(in crate::store) fn due_refreshes(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        self.time_entries(
            "SELECT due_at, token_id FROM refresh WHERE due_at <= $1
             ORDER BY due_at, token_id LIMIT $2",
            now,
            limit,
        )
    }

    pub(in crate::store) fn due_expiry_entries(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        self.time_entries(
            "SELECT expiry_at, token_id FROM tokens WHERE expiry_at <= $1
             ORDER BY expiry_at, token_id LIMIT $2",
            now,
            limit,
        )
    }

    pub(in crate::store) fn failing_refreshes(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, RefreshRecord)>, StoreError> {
        self.block(async {
            let rows = self
                .connection()
                .await?
                .query(
                    "SELECT token_id, due_at, attempts, lease_id, lease_sent_at, lease_until,
                            last_error, last_refreshed_at, last_failed_event_at
                     FROM refresh WHERE attempts > 0 ORDER BY token_id LIMIT $1",
                    &[&limit_of(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, refresh_of(r, 1)?)))
                .collect()
        })
    }

    pub(in crate::store) fn due_count(
        &self,
        until: UnixMillis,
        cap: usize,
    ) -> Result<usize, StoreError> {
        let n: i64 = self.block(async {
            Ok::<_, StoreError>(
                self.connection()
                    .await?
                    .query_one(
                        "SELECT count(*) FROM
                           (SELECT 1 FROM refresh WHERE due_at <= $1 LIMIT $2) due",
                        &[&until, &limit_of(cap)],
                    )
                    .await?
                    .try_get(0)?,
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Up to `max` token records after `after`, in tokenId order, and
    /// whether more follow.
    pub(in crate::store) fn records_after(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<RecordRows, StoreError> {
        let rows = self.block(async {
            Ok::<_, StoreError>(
                self.connection()
                    .await?
                    .query(
                        "SELECT token_id, record FROM tokens
                         WHERE $1::text IS NULL OR token_id > $1
                         ORDER BY token_id LIMIT $2",
                        &[&after, &limit_of(max.saturating_add(1))],
                    )
                    .await?,
            )
        })?;
        let more = rows.len() > max;
        let records = rows
            .iter()
            .take(max)
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((records, more))
    }

    /// The value of a named row of `mmt_meta` (a copy's marks).
    pub(in crate::store) fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.block(async {
            let row = self
                .connection()
                .await?
                .query_opt("SELECT value FROM mmt_meta WHERE name = $1", &[&name])
                .await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    /// Up to `max` rows of `table` after the key `after`, and whether more
    /// follow.
    pub(in crate::store) fn export(
        &self,
        table: Table,
        after: Option<&[u8]>,
        max: usize,
    ) -> Result<Page, StoreError> {
        let limit = limit_of(max.saturating_add(1));
        let rows = self.block(async {
            let c = self.connection().await?;
            let after_text = after.map(|a| String::from_utf8_lossy(a).into_owned());
            let rows = match table {
                Table::Tokens => {
                    c.query(
                        "SELECT token_id, record, expiry_at FROM tokens
                         WHERE $1::text IS NULL OR token_id > $1 ORDER BY token_id LIMIT $2",
                        &[&after_text, &limit],
                    )
                    .await?
                }
                Table::Processed => {
                    c.query(
                        "SELECT key, reply FROM processed
                         WHERE $1::bytea IS NULL OR key > $1 ORDER BY key LIMIT $2",
                        &[&after, &limit],
                    )
                    .await?
                }
                Table::Refresh => {
                    c.query(
                        "SELECT token_id, due_at, attempts, lease_id, lease_sent_at, lease_until,
                                last_error, last_refreshed_at, last_failed_event_at
                         FROM refresh WHERE $1::text IS NULL OR token_id > $1
                         ORDER BY token_id LIMIT $2",
                        &[&after_text, &limit],
                    )
                    .await?
                }
                Table::Jobs => {
                    c.query(
                        "SELECT token_id, client_id, broker_type, scope, created_at, due_at,
                                attempts, sealed, wrapped
                         FROM upstream_jobs WHERE $1::text IS NULL OR token_id > $1
                         ORDER BY token_id LIMIT $2",
                        &[&after_text, &limit],
                    )
                    .await?
                }
            };
            Ok::<_, StoreError>(rows)
        })?;
        let more = rows.len() > max;
        let mut out = Vec::with_capacity(rows.len().min(max));
        for r in rows.iter().take(max) {
            let (key, row) = match table {
                Table::Tokens => {
                    let token_id: String = r.try_get(0)?;
                    (
                        token_id.clone().into_bytes(),
                        CopyRow::Token {
                            token_id,
                            record: r.try_get(1)?,
                            expiry_entry: r.try_get(2)?,
                        },
                    )
                }
                Table::Processed => {
                    let key: Vec<u8> = r.try_get(0)?;
                    (
                        key.clone(),
                        CopyRow::Processed {
                            key,
                            reply: r.try_get(1)?,
                        },
                    )
                }
                Table::Refresh => {
                    let token_id: String = r.try_get(0)?;
                    (
                        token_id.clone().into_bytes(),
                        CopyRow::Refresh {
                            token_id,
                            record: refresh_of(r, 1)?,
                        },
                    )
                }
                Table::Jobs => {
                    let token_id: String = r.try_get(0)?;
                    (
                        token_id.clone().into_bytes(),
                        CopyRow::Job {
                            token_id,
                            job: job_of(r)?,
                        },
                    )
                }
            };
            out.push((key, row));
        }
        Ok((out, more))
    }

    /// Up to `max` lines of the audit table after `after` (chain, seq).
    pub(in crate::store) fn audit_page(
        &self,
        after: Option<&(String, i64)>,
        max: usize,
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        let (chain, seq) = after.map_or((None, 0), |(c, s)| (Some(c.as_str()), *s));
        self.block(async {
            let rows = self
                .connection()
                .await?
                .query(
                    "SELECT chain, seq, line FROM audit
                     WHERE $1::text IS NULL OR (chain, seq) > ($1, $2)
                     ORDER BY chain, seq LIMIT $3",
                    &[&chain, &seq, &limit_of(max)],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect()
        })
    }

    /// One round trip on a pooled connection.
    pub(in crate::store) fn ping(&self) -> Result<(), StoreError> {
        self.block(async {
            self.connection().await?.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    /// Bytes the store's tables and their indexes take.
    pub(in crate::store) fn size_on_disk(&self) -> Result<u64, StoreError> {
        let bytes: i64 = self.block(async {
            Ok::<_, StoreError>(
                self.connection()
                    .await?
                    .query_one(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = current_schema() AND c.relkind = 'r'
                           AND c.relname IN ('tokens', 'processed', 'refresh',
                                             'upstream_jobs', 'token_counts', 'mmt_meta')",
                        &[],
                    )
                    .await?
                    .try_get(0)?,
            )
        })?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }
}
