//! The idempotency records: which messages were applied, and their original
//! replies, kept small.
//!
//! Key: `q` + the first 16 bytes of BLAKE2b-256(routing key, 0, message id).
//! Value: the reply in a compact form when that form gives back the very same
//! bytes (checked when it is written), else the reply as it was. A connect
//! reply is kept as its integration, scope and (tokenId, accountId, created)
//! triples, tokenIds of the usual `tok_` + 32 hex form in 16 bytes: about 60
//! bytes instead of about 310. Never a secret: replies that carry one
//! (resolve) are never recorded.

use mmt_shared::wire::{
    ConnectedReply, IssuedToken, MessageKind, RemovedReply, Scope, SdkAccessToken,
};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// The prefix of a processed-message record.
pub(super) const PROCESSED: u8 = b'q';

/// The record key of a message.
pub(super) fn key(kind: MessageKind, message_id: &str) -> Vec<u8> {
    key_of(kind.routing_key(), message_id)
}

/// The record key of a message, from its routing key.
pub(super) fn key_of(routing_key: &str, message_id: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(routing_key.len() + 1 + message_id.len());
    input.extend_from_slice(routing_key.as_bytes());
    input.push(0);
    input.extend_from_slice(message_id.as_bytes());
    let mut key = vec![PROCESSED];
    match orion::hash::digest(&input) {
        Ok(digest) => key.extend_from_slice(&digest.as_ref()[..16]),
        // BLAKE2b of a non-empty input does not fail; the id itself keeps
        // the key unique if it ever did.
        Err(_) => key.extend_from_slice(&input),
    }
    key
}

#[derive(Serialize, Deserialize)]
enum Stored {
    /// The reply bytes as they were.
    Raw(Vec<u8>),
    /// A connect reply, rebuilt by [`expand`].
    Connected {
        broker_type: String,
        scope: Scope,
        wallet: bool,
        tokens: Vec<(Id, String, bool)>,
    },
    /// A removal reply.
    Removed { revoked: bool },
}

/// A tokenId: `tok_` + 32 lowercase hex digits in 16 bytes, or as it is.
#[derive(Serialize, Deserialize)]
enum Id {
    Hex([u8; 16]),
    Text(String),
}

impl Id {
    fn of(token_id: &str) -> Self {
        token_id
            .strip_prefix("tok_")
            .filter(|hex| {
                hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
            .and_then(|hex| hex::decode(hex).ok())
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .map_or_else(|| Id::Text(token_id.to_owned()), Id::Hex)
    }

    fn text(&self) -> String {
        match self {
            Id::Hex(bytes) => format!("tok_{}", hex::encode(bytes)),
            Id::Text(text) => text.clone(),
        }
    }
}

/// The stored form of `reply`.
pub(super) fn encode(reply: &[u8]) -> Result<Vec<u8>, StoreError> {
    let compact = compact(reply).filter(|c| expand(c).is_ok_and(|bytes| bytes == reply));
    let stored = compact.unwrap_or_else(|| Stored::Raw(reply.to_vec()));
    Ok(postcard::to_stdvec(&stored)?)
}

/// The original reply bytes of a stored form.
pub(super) fn decode(stored: &[u8]) -> Result<Vec<u8>, StoreError> {
    expand(&postcard::from_bytes(stored)?)
}

fn compact(reply: &[u8]) -> Option<Stored> {
    if let Ok(removed) = serde_json::from_slice::<RemovedReply>(reply) {
        return removed.ok.then_some(Stored::Removed {
            revoked: removed.revoked,
        });
    }
    let connected = serde_json::from_slice::<ConnectedReply>(reply).ok()?;
    Some(Stored::Connected {
        tokens: connected
            .tokens
            .iter()
            .map(|t| (Id::of(&t.token_id), t.account_id.clone(), t.created))
            .collect(),
        broker_type: connected.broker_type,
        scope: connected.scope,
        wallet: connected.wallet,
    })
}

fn expand(stored: &Stored) -> Result<Vec<u8>, StoreError> {
    let bytes = match stored {
        Stored::Raw(bytes) => return Ok(bytes.clone()),
        Stored::Removed { revoked } => serde_json::to_vec(&RemovedReply {
            ok: true,
            revoked: *revoked,
        }),
        Stored::Connected {
            broker_type,
            scope,
            wallet,
            tokens,
        } => {
            let tokens: Vec<IssuedToken> = tokens
                .iter()
                .map(|(id, account_id, created)| IssuedToken {
                    token_id: id.text(),
                    account_id: account_id.clone(),
                    created: *created,
                })
                .collect();
            serde_json::to_vec(&ConnectedReply {
                ok: true,
                broker_type: broker_type.clone(),
                scope: *scope,
                access_tokens: tokens
                    .iter()
                    .map(|t| SdkAccessToken::new(&t.token_id, broker_type))
                    .collect(),
                tokens,
                wallet: *wallet,
            })
        }
    };
    bytes.map_err(|_| StoreError::Decode(postcard::Error::SerdeSerCustom))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(token_ids: &[&str]) -> Vec<u8> {
        let tokens: Vec<IssuedToken> = token_ids
            .iter()
            .enumerate()
            .map(|(i, id)| IssuedToken {
                token_id: (*id).to_owned(),
                account_id: format!("cb-{i}"),
                created: i % 2 == 0,
            })
            .collect();
        serde_json::to_vec(&ConnectedReply {
            ok: true,
            broker_type: "coinbase".into(),
            scope: Scope::Write,
            access_tokens: tokens
                .iter()
                .map(|t| SdkAccessToken::new(&t.token_id, "coinbase"))
                .collect(),
            tokens,
            wallet: false,
        })
        .expect("serializes")
    }

    #[test]
    fn replies_come_back_byte_for_byte_and_connect_replies_shrink() {
        let hex = "tok_0123456789abcdef0123456789abcdef";
        let replies = [
            connected(&[hex]),
            connected(&[hex, "tok_not-hex", "tok_0123456789ABCDEF0123456789ABCDEF"]),
            connected(&[]),
            br#"{"ok":true,"revoked":true}"#.to_vec(),
            br#"{"ok":true,"revoked":false}"#.to_vec(),
            br#"{"ok":false,"error":{"code":"not_found","message":"no such tokenId for this client"}}"#.to_vec(),
            br#"{"ok":true,  "revoked":true}"#.to_vec(),
            br#"{"ok":true,"revoked":true,"extra":1}"#.to_vec(),
        ];
        for reply in &replies {
            let stored = encode(reply).expect("encodes");
            assert_eq!(&decode(&stored).expect("decodes"), reply);
        }
        let one = connected(&[hex]);
        let stored = encode(&one).expect("encodes");
        assert!(
            stored.len() * 4 < one.len(),
            "{} of {}",
            stored.len(),
            one.len()
        );
    }

    #[test]
    fn keys_differ_by_kind_and_id_and_are_short() {
        let a = key(MessageKind::IntegrationConnected, "m-1");
        assert_eq!(a.len(), 17);
        assert_ne!(a, key(MessageKind::ConnectionRemoved, "m-1"));
        assert_ne!(a, key(MessageKind::IntegrationConnected, "m-2"));
        assert_eq!(a, key_of("integration.connected", "m-1"));
    }
}
