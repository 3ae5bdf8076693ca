//! `mmt-worker store release --data-dir D --revoked FILE...`: makes a
//! restored store servable again. A backup holds the tokens as they were
//! when it was taken; a token revoked after that is live in the restored
//! store, so no worker opens it (`store::restored`) until the revocations
//! since then are applied here: each tokenId in the files, live in the
//! store, is revoked as `connection.removed` revokes (`rules::lifecycle`:
//! its secrets destroyed, a tombstone left, its refresh record dropped).
//! Then the mark goes. `--none-revoked` releases with no file: the operator
//! says no token was revoked since the backup was taken.
//!
//! A revocations file has one revocation a line: a tokenId; an event as
//! published on `NS.events` (JSON, as an archive of the exchange or a
//! webhook receiver keeps them); or a line of an audit log (CONTRACT.md
//! §12, a copy of the lost store's `audit.jsonl` kept off the host), whose
//! token is named by its keyed reference: the tokens of the store are
//! looked up by theirs. Events of another kind than `token.revoked` and
//! audit lines of another outcome are skipped and counted. Blank lines and
//! lines starting with `#` are skipped. A line that is none of these is
//! refused, naming the file and the line, before anything is changed. Each
//! revocation is itself an audit line of the released store (kind
//! `store.release`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mmt_shared::time_fmt::now_millis;

use crate::rules::audit::Event as AuditEvent;
use crate::rules::lifecycle::{self, RevokePlan};
use crate::store::copy::{Row, Table};
use crate::store::crypto::{CryptoError, KeyRing};
use crate::store::restored::{self, Restored};
use crate::store::{Decision, Found, Store, StoreError};

/// Revocations per commit.
const PAGE: usize = 1_000;

/// Why a store was not released.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key file.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// A revocations file could not be read.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a revocations file is not a revocation.
    #[error("{path}:{line}: {why}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// What is wrong with it (never its text).
        why: &'static str,
    },
}

/// The revocations read from the files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Each revoked tokenId, with the clientId its event names (none for a
    /// bare tokenId).
    pub tokens: BTreeMap<String, Option<String>>,
    /// The audit log's references of revoked tokens, with their clientIds.
    pub refs: BTreeMap<String, Option<String>>,
    /// Events of other kinds and audit lines of other outcomes, skipped.
    pub other_events: u64,
}

/// What a release did.
#[derive(Debug)]
pub struct Released {
    /// The mark the store carried.
    pub mark: Restored,
    /// Tokens revoked now.
    pub revoked: u64,
    /// Tokens the store already held revoked.
    pub already_revoked: u64,
    /// TokenIds the store does not hold for their client (minted after the
    /// backup was taken, or not this deployment's).
    pub not_found: u64,
}

/// Reads the revocations in `files`.
pub fn revocations(files: &[PathBuf]) -> Result<Revocations, ReleaseError> {
    let mut out = Revocations::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| ReleaseError::File {
            path: path.clone(),
            source,
        })?;
        for (index, line) in text.lines().enumerate() {
            let refused = |why| ReleaseError::Line {
                path: path.clone(),
                line: index + 1,
                why,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !line.starts_with('{') {
                if line.split_whitespace().count() != 1
                    || lifecycle::check_id("tokenId", line).is_err()
                {
                    return Err(refused("neither a tokenId nor a JSON event"));
                }
                out.tokens.entry(line.to_owned()).or_insert(None);
                continue;
            }
            let event: serde_json::Value =
                serde_json::from_str(line).map_err(|_| refused("not JSON"))?;
            let text = |field| event.get(field).and_then(|v| v.as_str());
            // An audit line says what came of its message in `outcome`.
            let audited = event.get("outcome").is_some();
            let revocation = if audited {
                text("outcome") == Some("token.revoked")
            } else {
                text("kind") == Some("token.revoked")
            };
            if !revocation {
                out.other_events += 1;
                continue;
            }
            let Some(token_id) = text("tokenId") else {
                return Err(refused("a revocation without a tokenId"));
            };
            if lifecycle::check_id("tokenId", token_id).is_err() {
                return Err(refused("a revocation whose tokenId is not one"));
            }
            let client_id = text("clientId").map(str::to_owned);
            let into = if audited {
                &mut out.refs
            } else {
                &mut out.tokens
            };
            into.insert(token_id.to_owned(), client_id);
        }
    }
    Ok(out)
}

/// Applies `revocations` to the restored store in `data_dir` (opened with
/// the key in `key_file`) and removes its restore mark.
pub fn release(
    data_dir: &Path,
    key_file: &Path,
    revocations: &Revocations,
) -> Result<Released, ReleaseError> {
    let key = KeyRing::load(key_file, data_dir)?;
    let (store, mark) = Store::open_restored(data_dir, key)?;
    let mut released = Released {
        mark,
        revoked: 0,
        already_revoked: 0,
        not_found: 0,
    };
    let (mut tokens, unmatched) = referenced(&store, &revocations.refs)?;
    released.not_found += unmatched;
    for (token_id, client_id) in &revocations.tokens {
        tokens.entry(token_id.clone()).or_insert(client_id.clone());
    }
    let tokens: Vec<_> = tokens.iter().collect();
    for page in tokens.chunks(PAGE) {
        let (revoked, already, missing) = store.write(|tx| {
            let now = now_millis();
            let (mut revoked, mut already, mut missing) = (0, 0, 0);
            for (token_id, client_id) in page {
                let found = tx.find(token_id)?;
                let owner = match (&found, client_id) {
                    (_, Some(client_id)) => client_id.as_str(),
                    (Found::Live { meta, .. }, None) => meta.client_id.as_str(),
                    (Found::Revoked(tomb), None) => tomb.client_id.as_str(),
                    (Found::Missing, None) => "",
                };
                match (lifecycle::revoke(found.lookup(), owner), &found) {
                    (Ok(RevokePlan::Revoke), Found::Live { meta, .. }) => {
                        tx.revoke(token_id, meta, now)?;
                        if let Some(record) = tx.refresh_record(token_id)? {
                            tx.drop_refresh(token_id, &record, None);
                        }
                        let audited = AuditEvent {
                            kind: "store.release".to_owned(),
                            client_id: Some(meta.client_id.clone()),
                            broker_type: Some(meta.broker_type.clone()),
                            scope: Some(meta.scope.as_str().to_owned()),
                            outcome: "token.revoked".to_owned(),
                            ..AuditEvent::default()
                        };
                        tx.audit(audited, Some(token_id))?;
                        revoked += 1;
                    }
                    (Ok(_), _) => already += 1,
                    (Err(_), _) => missing += 1,
                }
            }
            Ok(Decision::Commit((revoked, already, missing)))
        })?;
        released.revoked += revoked;
        released.already_revoked += already;
        released.not_found += missing;
    }
    store.flush_blocking()?;
    drop(store);
    restored::remove(data_dir)?;
    Ok(released)
}

/// The tokenIds of the store whose audit references are in `refs` (with
/// the clientIds their lines name), and how many references name no token
/// of the store.
fn referenced(
    store: &Store,
    refs: &BTreeMap<String, Option<String>>,
) -> Result<(BTreeMap<String, Option<String>>, u64), StoreError> {
    let mut found = BTreeMap::new();
    if refs.is_empty() {
        return Ok((found, 0));
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (rows, more) = store.export(Table::Tokens, after.as_deref(), PAGE)?;
        for (key, row) in &rows {
            if let Row::Token { token_id, .. } = row
                && let Some(client_id) = refs.get(&store.audit_key().token_ref(token_id))
            {
                found.insert(token_id.clone(), client_id.clone());
            }
            after = Some(key.clone());
        }
        if !more {
            break;
        }
    }
    let unmatched = refs.len().saturating_sub(found.len()) as u64;
    Ok((found, unmatched))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("writes");
        path
    }

    #[test]
    fn revocations_are_token_ids_token_revoked_events_and_audit_lines_one_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = file(
            dir.path(),
            "ids",
            "# since the backup\ntok_a\n\n  tok_b  \n",
        );
        let events = file(
            dir.path(),
            "events",
            concat!(
                r#"{"kind":"token.revoked","at":"2026-01-01T00:00:00Z","tokenId":"tok_c","clientId":"acme","state":"revoked"}"#,
                "\n",
                r#"{"kind":"token.issued","tokenId":"tok_d","clientId":"acme"}"#,
                "\n",
                r#"{"at":"2026-01-01T00:00:00Z","seq":7,"kind":"connection.removed","clientId":"acme","tokenId":"5e1f","outcome":"token.revoked","prev":"ab"}"#,
                "\n",
                r#"{"at":"2026-01-01T00:00:00Z","seq":8,"kind":"token.resolve","clientId":"acme","tokenId":"77aa","outcome":"token.revoked_upstream","prev":"cd"}"#,
                "\n",
            ),
        );
        let read = revocations(&[ids, events]).expect("reads");
        assert_eq!(
            read.tokens.into_iter().collect::<Vec<_>>(),
            [
                ("tok_a".to_owned(), None),
                ("tok_b".to_owned(), None),
                ("tok_c".to_owned(), Some("acme".to_owned())),
            ]
        );
        assert_eq!(
            read.refs.into_iter().collect::<Vec<_>>(),
            [("5e1f".to_owned(), Some("acme".to_owned()))]
        );
        assert_eq!(read.other_events, 2);
    }

    #[test]
    fn a_line_that_is_no_revocation_is_refused_by_file_and_line_without_its_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, why) in [
            (
                "tok_a\nsecret raw-token\n",
                "neither a tokenId nor a JSON event",
            ),
            ("tok_a\n{\"kind\": secret-raw\n", "not JSON"),
            (
                "tok_a\n{\"kind\":\"token.revoked\"}\n",
                "a revocation without a tokenId",
            ),
        ] {
            let path = file(dir.path(), "bad", text);
            let error = revocations(std::slice::from_ref(&path)).expect_err("refused");
            let shown = error.to_string();
            assert!(shown.ends_with(&format!("bad:2: {why}")), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }
}
