//! What the store's unit tests share: a token's metadata and secrets.

use mmt_shared::secret::Secret;
use mmt_shared::wire::Scope;

use super::TokenSecrets;
use crate::rules::lifecycle::{self, ConnectInput, TokenMeta};

/// The metadata of a Coinbase token of `client`'s `user` that expires at
/// 61,000 ms.
pub(super) fn meta(client: &str, user: &str, scope: Scope) -> TokenMeta {
    let input = ConnectInput {
        client_id: client,
        end_user_id: user,
        broker_type: "coinbase",
        broker_name: "Coinbase",
        account_id: "cb-1",
        account_name: "Main",
        scope,
        expires_in_seconds: Some(60),
        refresh_expires_in_seconds: None,
        has_refresh_token: false,
        at: 1_000,
    };
    lifecycle::connect(None, &input, 1_000, String::new).meta
}

/// Raw secrets that tests look for.
pub(super) fn secrets() -> TokenSecrets {
    TokenSecrets {
        access_token: Secret::new("raw-access".into()),
        refresh_token: Some(Secret::new("raw-refresh".into())),
    }
}

/// Runs `open` until the store's file lock is free: sled releases it from
/// its background threads a moment after the last handle is dropped, so a
/// test that reopens a directory at once may find it still held.
pub(super) fn when_unlocked<T, E: std::fmt::Debug>(
    mut open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(e)
                if format!("{e:?}").contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            other => return other,
        }
    }
}
