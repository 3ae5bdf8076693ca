//! The store's key encodings: identities, the expiry index, the count groups.

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{Scope, TokenState};

use super::{COUNT, EXPIRY, IDENTITY};

/// The identity of a token: (client, end user, integration, scope, account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The client.
    pub client_id: &'a str,
    /// The end user.
    pub end_user_id: &'a str,
    /// The integration.
    pub broker_type: &'a str,
    /// The scope.
    pub scope: Scope,
    /// The account.
    pub account_id: &'a str,
}

pub(super) fn push_part(key: &mut Vec<u8>, part: &str) {
    key.extend_from_slice(&(part.len() as u32).to_be_bytes());
    key.extend_from_slice(part.as_bytes());
}

pub(super) fn user_prefix(client_id: &str, end_user_id: &str) -> Vec<u8> {
    let mut key = vec![IDENTITY];
    push_part(&mut key, client_id);
    push_part(&mut key, end_user_id);
    key
}

impl Identity<'_> {
    pub(super) fn key(&self) -> Vec<u8> {
        let mut key = user_prefix(self.client_id, self.end_user_id);
        push_part(&mut key, self.broker_type);
        push_part(&mut key, self.scope.as_str());
        push_part(&mut key, self.account_id);
        key
    }
}

pub(super) fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

pub(super) fn expiry_key(expires_at: UnixMillis, token_id: &str) -> Vec<u8> {
    let mut key = vec![EXPIRY];
    key.extend_from_slice(&(expires_at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(token_id.as_bytes());
    key
}

/// A group of the token counts: (state, scope, integration).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CountKey {
    /// The state.
    pub state: TokenState,
    /// The scope.
    pub scope: Scope,
    /// The integration.
    pub broker_type: String,
}

impl CountKey {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut key = vec![COUNT];
        push_part(&mut key, self.state.as_str());
        push_part(&mut key, self.scope.as_str());
        key.extend_from_slice(self.broker_type.as_bytes());
        key
    }

    pub(super) fn decode(key: &[u8]) -> Option<Self> {
        let mut rest = key.strip_prefix(&[COUNT])?;
        let mut part = || -> Option<&[u8]> {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let value = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            Some(value)
        };
        let state = match part()? {
            b"active" => TokenState::Active,
            b"reauth_required" => TokenState::ReauthRequired,
            b"revoked" => TokenState::Revoked,
            _ => return None,
        };
        let scope = match part()? {
            b"read" => Scope::Read,
            b"write" => Scope::Write,
            _ => return None,
        };
        let broker_type = String::from_utf8(rest.to_vec()).ok()?;
        Some(Self {
            state,
            scope,
            broker_type,
        })
    }
}
