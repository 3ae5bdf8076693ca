//! The store v2 workload: keys and values of the shapes and sizes one token
//! costs in store format v2 (identity `i`, token record `t`, processed `p`).
//!
//! Generated, not written through `mmt_worker::store` (which is sled-only):
//! the keys are built the way worker/src/store.rs builds them (length-prefixed
//! parts, `tok_` + 32 hex tokenIds spread at random over the key space), and
//! the values have the sizes the lead measured in a 20,000-token v2 store
//! loaded by `mmt-bench` (token key+value 377 B, processed key+value
//! 351 B, identity about 99 B). Everything is a pure function of the token's
//! index, so a pass can regenerate any key without holding a million of them.

/// Bytes of a token record, key and value (`t` + tokenId, then the record).
pub const TOKEN_ENTRY: usize = 377;
/// Bytes of a processed-message record, key and value.
pub const PROCESSED_ENTRY: usize = 351;
/// Bytes of a revoked token's record value (a tombstone: client, integration,
/// scope, revocation time, format tag and MAC).
pub const TOMBSTONE_VALUE: usize = 48;
/// The client every token belongs to.
const CLIENT_ID: &str = "bench-client";
/// The part of a live record in clear: postcard metadata (ids, names, state,
/// times); the rest is the wrapped data key and the sealed secrets.
const CLEAR_META: usize = 110;

/// One write of a batch: a key and its new value, or a removal.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// A 64-bit mix (splitmix64's finaliser): a pure, well-spread hash.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The tokenId of token `index`: `tok_` + 32 hex digits.
pub fn token_id(index: u64) -> String {
    format!(
        "tok_{:016x}{:016x}",
        mix(index),
        mix(index ^ 0x5555_5555_5555_5555)
    )
}

fn push_part(key: &mut Vec<u8>, part: &str) {
    key.extend_from_slice(&(part.len() as u32).to_be_bytes());
    key.extend_from_slice(part.as_bytes());
}

/// The token record's key: `t` + tokenId.
pub fn token_key(index: u64) -> Vec<u8> {
    let mut key = vec![b't'];
    key.extend_from_slice(token_id(index).as_bytes());
    key
}

/// The identity index key: `i` + (client, user, integration, scope, account).
pub fn identity_key(index: u64) -> Vec<u8> {
    let mut key = vec![b'i'];
    push_part(&mut key, CLIENT_ID);
    push_part(&mut key, &format!("user-{index}"));
    push_part(&mut key, "coinbase");
    push_part(&mut key, "read");
    push_part(&mut key, &format!("acct-{index}"));
    key
}

/// The processed-message key: `p` + routing key + messageId.
pub fn processed_key(index: u64) -> Vec<u8> {
    let mut key = vec![b'p'];
    push_part(&mut key, "integration.connected");
    key.extend_from_slice(format!("bench-load-{index}").as_bytes());
    key
}

/// `len` bytes that do not compress (ciphertext stands in for them).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut n = 0u64;
    while out.len() < len {
        out.extend_from_slice(&mix(seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407)).to_le_bytes());
        n += 1;
    }
    out.truncate(len);
    out
}

/// Text cut or stretched to exactly `len` bytes (stretched with hex digits).
fn fit(mut text: Vec<u8>, seed: u64, len: usize) -> Vec<u8> {
    let mut n = 0u64;
    while text.len() < len {
        text.extend_from_slice(format!("{:016x}", mix(seed ^ n)).as_bytes());
        n += 1;
    }
    text.truncate(len);
    text
}

/// A live token record of `version` (a rotation writes a new version):
/// metadata in clear, then wrapped key and sealed secrets.
pub fn token_value(index: u64, version: u64) -> Vec<u8> {
    let len = TOKEN_ENTRY - token_key(index).len();
    let meta = format!(
        "\x02\x01{CLIENT_ID}user-{index}coinbase\x08Coinbaseacct-{index}\x0dCoinbase Main\x00\x01{version}"
    );
    let mut value = fit(meta.into_bytes(), index, CLEAR_META);
    value.extend(noise(mix(index) ^ version, len - CLEAR_META));
    value
}

/// A revoked token's record: a tombstone.
pub fn tombstone_value(index: u64) -> Vec<u8> {
    fit(
        format!("\x02\x02{CLIENT_ID}coinbase\x01").into_bytes(),
        index,
        TOMBSTONE_VALUE,
    )
}

/// The processed record's value: the reply the message got.
pub fn processed_value(index: u64) -> Vec<u8> {
    let id = token_id(index);
    let reply = format!(
        r#"{{"ok":true,"brokerType":"coinbase","scope":"read","tokens":[{{"tokenId":"{id}","accountId":"acct-{index}","created":true}}],"accessTokens":[{{"tokenId":"{id}","brokerType":"coinbase","accessToken":"mmt_{id}"}}],"wallet":false}}"#
    );
    fit(
        reply.into_bytes(),
        index,
        PROCESSED_ENTRY - processed_key(index).len(),
    )
}

/// The three writes a connect of token `index` makes.
pub fn connect(index: u64) -> [Write; 3] {
    [
        (identity_key(index), Some(token_id(index).into_bytes())),
        (token_key(index), Some(token_value(index, 0))),
        (processed_key(index), Some(processed_value(index))),
    ]
}

/// The writes a revocation of token `index` makes: the identity entry goes,
/// the record becomes a tombstone.
pub fn revoke(index: u64) -> [Write; 2] {
    [
        (identity_key(index), None),
        (token_key(index), Some(tombstone_value(index))),
    ]
}

/// Logical bytes (keys and values) one connected token holds.
pub fn logical_bytes(index: u64) -> usize {
    connect(index)
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_the_store_v2_sizes() {
        for index in [0, 7, 19_999, 999_999] {
            let [identity, token, processed] = connect(index);
            let size = |(k, v): &Write| k.len() + v.as_ref().map_or(0, Vec::len);
            assert_eq!(size(&token), TOKEN_ENTRY);
            assert_eq!(size(&processed), PROCESSED_ENTRY);
            assert!((90..=110).contains(&size(&identity)), "{}", size(&identity));
            assert_eq!(token_id(index).len(), 36);
        }
    }

    #[test]
    fn a_rotation_changes_the_record_but_not_its_size() {
        assert_ne!(token_value(5, 0), token_value(5, 1));
        assert_eq!(token_value(5, 0).len(), token_value(5, 1).len());
    }

    #[test]
    fn token_ids_are_distinct() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(token_id).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
