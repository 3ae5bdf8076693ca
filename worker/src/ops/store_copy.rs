//! `mmt-worker store copy --from A --to B`: moves a deployment between the
//! embedded store and PostgreSQL (either way), offline. Every row is copied
//! as it is stored, table by table in key order, a page per commit with a
//! mark of the last row copied in the same commit: a copy that is killed
//! starts again where its last commit ended. Then the two stores are
//! compared: the counts, and a sample of tokens opened with the key in
//! both.
//!
//! Offline: the embedded store is locked while the copy holds it, so no
//! worker runs on it; PostgreSQL takes no such lock, so the operator stops
//! the workers of the source first (docs/scale-out.md).

use super::progress::Progress;
use crate::store::copy::{Row, Table};
use crate::store::{CountKey, Decision, Found, Store, StoreError};

/// Rows per commit.
pub const PAGE: usize = 1_000;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// The destination holds data that is not an earlier run of a copy.
    #[error(
        "the destination already holds a store (tokens or processed messages, and no mark of an unfinished copy): refusing to mix two stores"
    )]
    NotEmpty,
    /// The stores differ after the copy.
    #[error("the copy does not match its source: {0}")]
    Mismatch(String),
}

/// What a run copied, by table (in [`Table::ALL`] order), and whether it
/// went on from an earlier run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Rows copied by this run, by table.
    pub rows: [u64; 4],
    /// Whether an earlier run had started.
    pub resumed: bool,
    /// Whether it copied everything (`false`: `go_on` stopped it).
    pub complete: bool,
}

/// Copies every row of `from` into `to`, `page` rows a commit; `go_on` is
/// told after each commit and stops the copy by answering `false` (it goes
/// on at the next run).
pub fn copy(
    from: &Store,
    to: &Store,
    page: usize,
    go_on: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Copied, CopyError> {
    let mut marks = Vec::with_capacity(Table::ALL.len());
    for table in Table::ALL {
        marks.push(to.copy_mark(table)?);
    }
    let resumed = marks.iter().any(Option::is_some);
    if !resumed && holds_anything(to)? {
        return Err(CopyError::NotEmpty);
    }
    let tokens = from.counts()?.iter().map(|(_, n)| n).sum();
    let mut copied = Copied {
        resumed,
        ..Copied::default()
    };
    for (index, (table, mark)) in Table::ALL.into_iter().zip(marks).enumerate() {
        let mut after = mark;
        let mut progress = Progress::start(table, tokens, "copied");
        loop {
            let (rows, more) = from.export(table, after.as_deref(), page.max(1))?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            let last = last.clone();
            to.write(|tx| {
                for (_, row) in &rows {
                    tx.import(row.clone())?;
                }
                tx.mark_copied(table, &last);
                Ok(Decision::Commit(()))
            })?;
            let n = rows.len() as u64;
            copied.rows[index] += n;
            progress.done += n;
            after = Some(last);
            if !go_on(&progress) {
                return Ok(copied);
            }
            if !more {
                break;
            }
        }
    }
    copied.complete = true;
    Ok(copied)
}

/// Whether `store` holds a token or a processed message.
fn holds_anything(store: &Store) -> Result<bool, StoreError> {
    for table in [Table::Tokens, Table::Processed] {
        if !store.export(table, None, 1)?.0.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The counts that are not zero, for comparing two stores.
fn counted(store: &Store) -> Result<Vec<(CountKey, u64)>, StoreError> {
    Ok(store
        .counts()?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// Compares the two stores: the same counts, and `sample` tokens (spread
/// over the table) the same in both, the live ones' secrets opened with the
/// key in the destination and equal to the source's. Gives how many tokens
/// were compared.
pub fn verify(from: &Store, to: &Store, sample: usize) -> Result<usize, CopyError> {
    let (source, copy) = (counted(from)?, counted(to)?);
    if source != copy {
        return Err(CopyError::Mismatch(format!(
            "counts differ: source {source:?}, copy {copy:?}"
        )));
    }
    sampled(from, sample, |token_id| same_token(from, to, token_id))
}

/// Calls `each` with up to `sample` tokenIds spread over `store`'s tokens,
/// in tokenId order. Gives how many.
pub fn sampled<E: From<StoreError>>(
    store: &Store,
    sample: usize,
    mut each: impl FnMut(&str) -> Result<(), E>,
) -> Result<usize, E> {
    let total: u64 = counted(store)?.iter().map(|(_, n)| n).sum();
    let stride = usize::try_from(total / sample.max(1) as u64)
        .unwrap_or(1)
        .max(1);
    let mut compared = 0;
    let mut after: Option<Vec<u8>> = None;
    while compared < sample {
        let (rows, more) = store.export(Table::Tokens, after.as_deref(), stride)?;
        let Some((last, Row::Token { token_id, .. })) = rows.into_iter().next_back() else {
            break;
        };
        after = Some(last);
        each(&token_id)?;
        compared += 1;
        if !more {
            break;
        }
    }
    Ok(compared)
}

fn same_token(from: &Store, to: &Store, token_id: &str) -> Result<(), CopyError> {
    let differ = |what: &str| CopyError::Mismatch(format!("token {token_id}: {what}"));
    match (from.find(token_id)?, to.find(token_id)?) {
        (
            Found::Live {
                meta,
                sealed,
                wrapped,
            },
            Found::Live {
                meta: copied,
                sealed: copied_sealed,
                wrapped: copied_wrapped,
            },
        ) => {
            if meta != copied {
                return Err(differ("metadata differs"));
            }
            let a = from.open_secrets(token_id, &meta, &sealed, &wrapped)?;
            let b = to.open_secrets(token_id, &copied, &copied_sealed, &copied_wrapped)?;
            if a.access_token != b.access_token || a.refresh_token != b.refresh_token {
                return Err(differ("secrets differ"));
            }
            Ok(())
        }
        (Found::Revoked(a), Found::Revoked(b)) if a == b => Ok(()),
        _ => Err(differ("not the same in both stores")),
    }
}

#[cfg(test)]
mod tests {
    use mmt_shared::secret::Secret;
    use mmt_shared::wire::{MessageKind, Scope};

    use super::*;
    use crate::rules::lifecycle::{self, ConnectInput, TokenMeta};
    use crate::rules::refresh::RefreshRecord;
    use crate::store::TokenSecrets;
    use crate::store::crypto::KeyRing;
    use crate::store::postgres::PgConfig;

    fn meta(user: &str, expires: Option<u64>) -> TokenMeta {
        let input = ConnectInput {
            client_id: "acme",
            end_user_id: user,
            broker_type: "coinbase",
            broker_name: "Coinbase",
            account_id: "cb-1",
            account_name: "Main",
            scope: Scope::Read,
            expires_in_seconds: expires,
            refresh_expires_in_seconds: None,
            has_refresh_token: true,
            at: 1_000,
        };
        lifecycle::connect(None, &input, 1_000, String::new).meta
    }

    fn secrets(i: usize) -> TokenSecrets {
        TokenSecrets {
            access_token: Secret::new(format!("raw-access-{i}")),
            refresh_token: Some(Secret::new(format!("raw-refresh-{i}"))),
        }
    }

    /// Live tokens with and without an expiry entry, refresh-owned ones, a
    /// revoked one with an upstream job, and processed replies.
    fn fill(store: &Store) {
        store
            .write(|tx| {
                for i in 0..25 {
                    let m = meta(&format!("u{i}"), (i % 2 == 0).then_some(60));
                    let id = format!("tok_{i:02}");
                    tx.put_token(&id, &m, None, &secrets(i))?;
                    tx.record_processed(
                        MessageKind::IntegrationConnected,
                        &format!("m-{i}"),
                        br#"{"ok":true}"#,
                    )?;
                    if i % 5 == 0 {
                        let record = RefreshRecord {
                            due_at: 30_000 + i as i64,
                            attempts: u32::try_from(i % 3).unwrap_or(0),
                            ..RefreshRecord::default()
                        };
                        tx.put_refresh(&id, None, &record, m.expires_at)?;
                    }
                }
                let revoked = meta("u3", None);
                tx.revoke("tok_03", &revoked, 5_000)?;
                tx.start_upstream_job("tok_03", &revoked, &secrets(3), 5_000)?;
                Ok(Decision::Commit(()))
            })
            .expect("fills");
    }

    /// The test's one key, read again for each store that opens it.
    fn key(keys: &std::path::Path) -> KeyRing {
        KeyRing::load_or_create(&keys.join("mmt.key"))
            .expect("key")
            .0
    }

    fn embedded(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("data"), key(dir.parent().expect("a parent"))).expect("opens")
    }

    fn everything(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for table in Table::ALL {
            let (rows, _) = store.export(table, None, 10_000).expect("exports");
            for (key, row) in rows {
                out.push(match row {
                    Row::Token {
                        token_id,
                        record,
                        expiry_entry,
                    } => format!("t {token_id} {} {expiry_entry:?}", hex::encode(record)),
                    Row::Processed { key, reply } => {
                        format!("q {} {}", hex::encode(key), hex::encode(reply))
                    }
                    Row::Refresh { token_id, record } => format!("r {token_id} {record:?}"),
                    Row::Job { token_id, job } => format!("u {token_id} {job:?}"),
                });
                let _ = key;
            }
        }
        out
    }

    #[test]
    fn embedded_to_postgres_and_back_copies_every_row_as_it_is() {
        let Some(db) = mmt_pg_fixture::TestDatabase::create("copy-round-trip") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let source = embedded(&dir.path().join("a"));
        fill(&source);
        let shared =
            Store::connect(&PgConfig::new(db.url.clone()), key(dir.path())).expect("connects");
        let there = copy(&source, &shared, 7, &mut |_| true).expect("copies");
        assert_eq!(there.rows, [25, 25, 5, 1]);
        assert!(there.complete && !there.resumed);
        assert_eq!(verify(&source, &shared, 10).expect("verifies"), 10);
        assert_eq!(everything(&source), everything(&shared));
        let back = embedded(&dir.path().join("b"));
        copy(&shared, &back, 4, &mut |_| true).expect("copies back");
        assert_eq!(verify(&shared, &back, 100).expect("verifies"), 25);
        assert_eq!(everything(&source), everything(&back));
        assert_eq!(
            source.due_refreshes(i64::MAX, 100).expect("due"),
            back.due_refreshes(i64::MAX, 100).expect("due")
        );
        assert_eq!(
            source.due_expiry_entries(i64::MAX, 100).expect("due"),
            shared.due_expiry_entries(i64::MAX, 100).expect("due")
        );
    }

    #[test]
    fn a_copy_stopped_half_way_goes_on_from_its_last_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = embedded(&dir.path().join("a"));
        fill(&source);
        let target = embedded(&dir.path().join("b"));
        let mut pages = 0;
        let first = copy(&source, &target, 4, &mut |_| {
            pages += 1;
            pages < 3
        })
        .expect("copies part");
        assert_eq!((first.rows[0], first.complete), (12, false));
        let second = copy(&source, &target, 4, &mut |_| true).expect("goes on");
        assert!(second.resumed && second.complete);
        assert_eq!(
            second.rows[0], 13,
            "the first 12 tokens are not copied again"
        );
        verify(&source, &target, 100).expect("verifies");
        assert_eq!(everything(&source), everything(&target));
        let again = copy(&source, &target, 4, &mut |_| true).expect("a finished copy");
        assert_eq!(again.rows, [0, 0, 0, 0]);
    }

    #[test]
    fn a_destination_holding_another_store_is_refused_and_a_changed_one_fails_verification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = embedded(&dir.path().join("a"));
        fill(&source);
        let other = embedded(&dir.path().join("b"));
        other
            .write(|tx| {
                tx.put_token("tok_x", &meta("x", None), None, &secrets(9))?;
                Ok(Decision::Commit(()))
            })
            .expect("writes");
        assert!(matches!(
            copy(&source, &other, 10, &mut |_| true),
            Err(CopyError::NotEmpty)
        ));
        assert!(matches!(
            verify(&source, &other, 5),
            Err(CopyError::Mismatch(_))
        ));
    }
}
