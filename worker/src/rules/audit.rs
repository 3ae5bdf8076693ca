//! The audit log's lines and their chain (CONTRACT.md §12): what a line
//! says, how each line names the one before it (`prev`, an HMAC-SHA256 over
//! the previous line's bytes as written), and the check that finds an
//! edited, deleted or reordered line. Pure: the store writes the lines, the
//! `audit` commands read them.

use orion::hazardous::mac::hmac::sha256::{HmacSha256, SecretKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What the first line of a chain names as its `prev`.
const GENESIS: &[u8] = b"mmt audit log v1: the first line";

/// The audit key: derived from the master key, never stored. It names
/// tokens (`tokenId` as an HMAC, never in clear) and chains the lines.
pub struct AuditKey {
    key: SecretKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

impl AuditKey {
    /// The key from its 32 bytes (derived by the store's crypto).
    pub fn from_bytes(bytes: &Zeroizing<[u8; 32]>) -> Option<Self> {
        SecretKey::try_from(&bytes[..]).ok().map(|key| Self { key })
    }

    fn mac(&self, data: &[u8]) -> String {
        HmacSha256::hmac(&self.key, data)
            .map(|tag| hex::encode(tag.unprotected_as_ref::<[u8]>()))
            .unwrap_or_default()
    }

    /// How the log names `token_id`.
    pub fn token_ref(&self, token_id: &str) -> String {
        let mut data = Vec::with_capacity(6 + token_id.len());
        data.extend_from_slice(b"token:");
        data.extend_from_slice(token_id.as_bytes());
        self.mac(&data)
    }

    /// The `prev` of the line after `line` (`None`: the first line).
    pub fn prev_of(&self, line: Option<&[u8]>) -> String {
        self.mac(line.unwrap_or(GENESIS))
    }
}

/// What happened, as the decision saw it (the store adds `at`, `seq` and
/// `prev` when it appends).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The routing key of the message (or `refresh`, `expiry`, `upstream`).
    pub kind: String,
    /// The client the change belongs to, or the request claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The token's reference ([`AuditKey::token_ref`]), never its tokenId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_type: Option<String>,
    /// The scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What came of it: `created`, `reconnected`, `revoked`, `refreshed`,
    /// `expired`, or the error code of a refusal.
    pub outcome: String,
    /// The message's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The broker user that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_user: Option<String>,
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// When it was appended (RFC 3339, milliseconds, UTC).
    pub at: String,
    /// Its place in the chain, from 1.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
    /// The chain: [`AuditKey::prev_of`] the line before.
    pub prev: String,
}

/// Where a chain is: the next line's `seq` and `prev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The next line's `seq`.
    pub seq: u64,
    /// The next line's `prev`.
    pub prev: String,
}

impl Head {
    /// An empty chain's head.
    pub fn genesis(key: &AuditKey) -> Self {
        Self {
            seq: 1,
            prev: key.prev_of(None),
        }
    }

    /// The head after `line` (its bytes as written, without the newline).
    pub fn after(key: &AuditKey, seq: u64, line: &[u8]) -> Self {
        Self {
            seq: seq.saturating_add(1),
            prev: key.prev_of(Some(line)),
        }
    }

    /// The next line for `event` at `at`, as bytes (no newline), and the
    /// head after it.
    pub fn append(&self, key: &AuditKey, at: String, event: Event) -> (Vec<u8>, Head) {
        let line = Line {
            at,
            seq: self.seq,
            event,
            prev: self.prev.clone(),
        };
        let bytes = serde_json::to_vec(&line).unwrap_or_default();
        let next = Head::after(key, self.seq, &bytes);
        (bytes, next)
    }
}

/// Why a chain does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// A line is not a line of the log.
    #[error("line {line} is not an audit line: {reason}")]
    NotALine {
        /// Its number, from 1, over the whole chain.
        line: u64,
        /// Why.
        reason: String,
    },
    /// A line's `prev` does not name the line before it: that one was
    /// edited, or a line was deleted or moved.
    #[error("line {line} does not follow the line before it (an edited, deleted or moved line)")]
    Chain {
        /// Its number, from 1, over the whole chain.
        line: u64,
    },
    /// A line's `seq` is not the one after the line before it.
    #[error("line {line} has seq {found}, expected {expected}")]
    Seq {
        /// Its number, from 1, over the whole chain.
        line: u64,
        /// Its `seq`.
        found: u64,
        /// The `seq` the chain expected.
        expected: u64,
    },
}

/// Checks a chain line by line; each line's bytes without the newline.
pub struct Verifier<'k> {
    key: &'k AuditKey,
    head: Head,
    line: u64,
}

impl<'k> Verifier<'k> {
    /// A check from the first line of a chain.
    pub fn new(key: &'k AuditKey) -> Self {
        Self {
            key,
            head: Head::genesis(key),
            line: 0,
        }
    }

    /// Checks the next line and returns it parsed.
    pub fn next(&mut self, bytes: &[u8]) -> Result<Line, Broken> {
        self.line += 1;
        let line: Line = serde_json::from_slice(bytes).map_err(|e| Broken::NotALine {
            line: self.line,
            reason: e.to_string(),
        })?;
        if line.prev != self.head.prev {
            return Err(Broken::Chain { line: self.line });
        }
        if line.seq != self.head.seq {
            return Err(Broken::Seq {
                line: self.line,
                found: line.seq,
                expected: self.head.seq,
            });
        }
        self.head = Head::after(self.key, line.seq, bytes);
        Ok(line)
    }

    /// Lines checked so far.
    pub fn lines(&self) -> u64 {
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AuditKey {
        AuditKey::from_bytes(&Zeroizing::new([byte; 32])).expect("32 bytes")
    }

    fn chain(key: &AuditKey, n: u64) -> Vec<Vec<u8>> {
        let mut head = Head::genesis(key);
        (0..n)
            .map(|i| {
                let event = Event {
                    kind: "integration.connected".into(),
                    client_id: Some("acme".into()),
                    token_id: Some(key.token_ref(&format!("tok_{i}"))),
                    outcome: "created".into(),
                    message_id: Some(format!("m-{i}")),
                    ..Event::default()
                };
                let (line, next) = head.append(key, format!("2026-12-06T00:00:0{i}.000Z"), event);
                head = next;
                line
            })
            .collect()
    }

    fn verify(key: &AuditKey, lines: &[Vec<u8>]) -> Result<u64, Broken> {
        let mut v = Verifier::new(key);
        for line in lines {
            v.next(line)?;
        }
        Ok(v.lines())
    }

    #[test]
    fn a_chain_as_written_verifies() {
        let k = key(1);
        assert_eq!(verify(&k, &chain(&k, 5)), Ok(5));
        assert_eq!(verify(&k, &[]), Ok(0));
    }

    #[test]
    fn an_edited_line_is_found_at_the_line_after_it() {
        let k = key(1);
        let mut lines = chain(&k, 5);
        let edited = String::from_utf8(lines[2].clone())
            .expect("utf-8")
            .replace("created", "revoked");
        lines[2] = edited.into_bytes();
        assert_eq!(verify(&k, &lines), Err(Broken::Chain { line: 4 }));
    }

    #[test]
    fn a_deleted_or_moved_line_is_found() {
        let k = key(1);
        let mut deleted = chain(&k, 5);
        deleted.remove(1);
        assert_eq!(verify(&k, &deleted), Err(Broken::Chain { line: 2 }));
        let mut moved = chain(&k, 5);
        moved.swap(2, 3);
        assert_eq!(verify(&k, &moved), Err(Broken::Chain { line: 3 }));
        let mut first_gone = chain(&k, 3);
        first_gone.remove(0);
        assert_eq!(verify(&k, &first_gone), Err(Broken::Chain { line: 1 }));
    }

    #[test]
    fn another_key_does_not_verify_and_names_tokens_otherwise() {
        let lines = chain(&key(1), 2);
        assert_eq!(verify(&key(2), &lines), Err(Broken::Chain { line: 1 }));
        assert_ne!(key(1).token_ref("tok_1"), key(2).token_ref("tok_1"));
        assert_ne!(key(1).token_ref("tok_1"), key(1).token_ref("tok_2"));
    }

    #[test]
    fn a_line_is_json_with_the_contract_fields_and_no_token_id_in_clear() {
        let k = key(1);
        let lines = chain(&k, 1);
        let value: serde_json::Value = serde_json::from_slice(&lines[0]).expect("json");
        for field in [
            "at",
            "seq",
            "kind",
            "clientId",
            "tokenId",
            "outcome",
            "messageId",
            "prev",
        ] {
            assert!(value.get(field).is_some(), "{field}");
        }
        assert!(!String::from_utf8_lossy(&lines[0]).contains("tok_0"));
        assert_eq!(
            verify(&k, &[b"not json".to_vec()])
                .map_err(|e| matches!(e, Broken::NotALine { line: 1, .. })),
            Err(true)
        );
    }
}
