//! `mmt-worker audit verify` and `audit query` (CONTRACT.md §12): read the
//! audit log while workers append to it, from the embedded store's files
//! or the shared store's table, check its chains, and print the lines an
//! operator asks for.

use std::io::Write;
use std::path::{Path, PathBuf};

use mmt_shared::time_fmt::{UnixMillis, parse_rfc3339};

use crate::rules::audit::{AuditKey, Broken, Line, Verifier};
use crate::store::{Store, StoreError, audit_log};

/// Where the log is read from.
pub enum Source<'a> {
    /// The embedded store's data directory (its `audit*.jsonl` files).
    Dir(&'a Path),
    /// A shared store (its `audit` table).
    Shared(&'a Store),
}

/// Why the log could not be read or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file of the log could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The shared store could not be read.
    #[error("cannot read the audit table")]
    Store(#[from] StoreError),
    /// A chain is broken.
    #[error("{place}: {broken}")]
    Broken {
        /// The file and line, or the chain and seq.
        place: String,
        /// How.
        broken: Broken,
    },
    /// The output could not be written.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

/// What a verification found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Lines checked.
    pub lines: u64,
    /// Chains checked (one for the embedded store).
    pub chains: u64,
}

/// Which lines `query` prints.
#[derive(Debug, Default)]
pub struct Filter {
    /// Only this client's.
    pub client: Option<String>,
    /// Only this token's (its tokenId: matched by its reference).
    pub token_id: Option<String>,
    /// Only those appended at or after this time.
    pub since: Option<UnixMillis>,
}

impl Filter {
    /// `since` as given on the command line (RFC 3339).
    pub fn parse_since(text: &str) -> Option<UnixMillis> {
        parse_rfc3339(text)
    }
}

/// Checks every chain of the log from its first line.
pub fn verify(source: &Source<'_>, key: &AuditKey) -> Result<Verified, AuditError> {
    let mut verified = Verified::default();
    let mut verifier: Option<(String, Verifier<'_>)> = None;
    each_line(source, |chain, place, bytes| {
        let fresh = verifier.as_ref().is_none_or(|(id, _)| id != chain);
        if fresh {
            verifier = Some((chain.to_owned(), Verifier::new(key)));
            verified.chains += 1;
        }
        if let Some((_, v)) = verifier.as_mut() {
            v.next(bytes).map_err(|broken| AuditError::Broken {
                place: place(),
                broken,
            })?;
        }
        verified.lines += 1;
        Ok(())
    })?;
    Ok(verified)
}

/// Prints the lines `filter` selects, as they are written; returns how
/// many.
pub fn query(
    source: &Source<'_>,
    key: &AuditKey,
    filter: &Filter,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let token_ref = filter.token_id.as_deref().map(|t| key.token_ref(t));
    let mut printed = 0;
    each_line(source, |_, place, bytes| {
        let line: Line = serde_json::from_slice(bytes).map_err(|e| AuditError::Broken {
            place: place(),
            broken: Broken::NotALine {
                line: 0,
                reason: e.to_string(),
            },
        })?;
        let wanted = filter
            .client
            .as_ref()
            .is_none_or(|c| line.event.client_id.as_ref() == Some(c))
            && token_ref
                .as_ref()
                .is_none_or(|t| line.event.token_id.as_ref() == Some(t))
            && filter
                .since
                .is_none_or(|since| parse_rfc3339(&line.at).is_some_and(|at| at >= since));
        if wanted {
            out.write_all(bytes)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(AuditError::Output)?;
            printed += 1;
        }
        Ok(())
    })?;
    Ok(printed)
}

/// Calls `each` with every complete line of the log, chain after chain,
/// in order: its chain, where it is (for an error), its bytes.
fn each_line(
    source: &Source<'_>,
    mut each: impl FnMut(&str, &dyn Fn() -> String, &[u8]) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    match source {
        Source::Dir(dir) => {
            let files = audit_log::files(dir).map_err(|source| AuditError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
            for path in files {
                let text = std::fs::read(&path).map_err(|source| AuditError::Read {
                    path: path.clone(),
                    source,
                })?;
                // The part after the last newline is a line still being
                // written.
                let complete = text
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(&text[..0], |end| &text[..end]);
                for (i, line) in complete.split(|b| *b == b'\n').enumerate() {
                    let place = || format!("{} line {}", path.display(), i + 1);
                    each("", &place, line)?;
                }
            }
        }
        Source::Shared(store) => {
            let mut after: Option<(String, i64)> = None;
            loop {
                let page = store.audit_page(after.as_ref(), 1_000)?;
                let Some((chain, seq, _)) = page.last() else {
                    break;
                };
                let next = (chain.clone(), *seq);
                for (chain, seq, line) in &page {
                    let place = || format!("chain {chain} seq {seq}");
                    each(chain, &place, line.as_bytes())?;
                }
                after = Some(next);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::audit::{Event, Head};
    use zeroize::Zeroizing;

    fn key() -> AuditKey {
        AuditKey::from_bytes(&Zeroizing::new([3; 32])).expect("32 bytes")
    }

    fn write_log(dir: &Path, n: usize) {
        let k = key();
        let mut head = Head::genesis(&k);
        let mut text = Vec::new();
        for i in 0..n {
            let event = Event {
                kind: "integration.connected".into(),
                client_id: Some(if i % 2 == 0 { "acme" } else { "globex" }.into()),
                token_id: Some(k.token_ref(&format!("tok_{i}"))),
                outcome: "token.issued".into(),
                ..Event::default()
            };
            let (line, next) = head.append(&k, format!("2026-12-06T10:00:{i:02}.000Z"), event);
            head = next;
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        text.extend_from_slice(b"{\"at\":\"2026-12-06T10:");
        std::fs::write(dir.join(audit_log::CURRENT), text).expect("writes");
    }

    #[test]
    fn a_log_verifies_and_a_line_being_written_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 6);
        assert_eq!(
            verify(&Source::Dir(dir.path()), &key()).expect("verifies"),
            Verified {
                lines: 6,
                chains: 1
            }
        );
    }

    #[test]
    fn an_edited_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 6);
        let path = dir.path().join(audit_log::CURRENT);
        let text = std::fs::read_to_string(&path).expect("reads");
        std::fs::write(&path, text.replacen("globex", "acme", 1)).expect("writes");
        let error = verify(&Source::Dir(dir.path()), &key()).expect_err("broken");
        assert!(error.to_string().contains("audit.jsonl line 3"), "{error}");
    }

    #[test]
    fn query_selects_by_client_token_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 6);
        let run = |filter: Filter| {
            let mut out = Vec::new();
            let n = query(&Source::Dir(dir.path()), &key(), &filter, &mut out).expect("queries");
            (n, String::from_utf8(out).expect("utf-8"))
        };
        assert_eq!(
            run(Filter {
                client: Some("acme".into()),
                ..Filter::default()
            })
            .0,
            3
        );
        let (n, text) = run(Filter {
            token_id: Some("tok_3".into()),
            ..Filter::default()
        });
        assert_eq!(n, 1);
        assert!(text.contains("globex") && !text.contains("tok_3"));
        assert_eq!(
            run(Filter {
                since: Filter::parse_since("2026-12-06T10:00:04Z"),
                ..Filter::default()
            })
            .0,
            2
        );
    }
}
