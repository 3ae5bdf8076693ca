//! `integration.connected`: validate the accounts, let the lifecycle decide
//! per account (mint, rotate or reconnect), seal the raw tokens, hand the
//! refresh engine its records.

use mmt_shared::secret::Secret;
use mmt_shared::time_fmt::rfc3339;
use mmt_shared::wire::{
    AccountToken, ConnectedReply, ErrorCode, IntegrationConnected, IssuedToken, SdkAccessToken,
};

use super::{
    Applied, Inbound, MAX_SECRET_BYTES, Outcome, Service, own_refresh, to_json, token_event,
};
use crate::rules::lifecycle::{self, ConnectInput, Holder};
use crate::store::{Found, Identity, StoreError, TokenSecrets, Tx};

impl Service {
    pub(super) fn connected(
        &self,
        tx: &mut Tx<'_>,
        msg: &IntegrationConnected,
        inbound: &Inbound<'_>,
    ) -> Result<Applied, StoreError> {
        let delayed;
        let payload = match (&msg.access_token, &msg.delayed_auth) {
            (Some(payload), None) => payload,
            (None, Some(auth)) => {
                delayed = auth.as_payload();
                &delayed
            }
            // Neither: a required field is missing (CONTRACT.md §6), as
            // serde would have said of one that is always required.
            (None, None) => {
                return Ok(Applied::Invalid(Outcome::invalid(
                    ErrorCode::InvalidMessage,
                    "missing field `accessToken` (or `delayedAuth`)",
                )));
            }
            (Some(_), Some(_)) => {
                return Ok(Applied::Invalid(Outcome::invalid(
                    ErrorCode::InvalidRequest,
                    "give accessToken or delayedAuth, not both",
                )));
            }
        };
        let wallet = lifecycle::is_wallet(&payload.broker_type, &self.extra_wallet_types);
        // Only a wallet may leave `accountTokens` out (it is ignored); which
        // brokerTypes are wallets is the operator's setting, so the decoder
        // cannot tell.
        let accounts = match (&payload.account_tokens, wallet) {
            (Some(accounts), _) => accounts.as_slice(),
            (None, true) => &[],
            (None, false) => {
                return Ok(Applied::Invalid(Outcome::invalid(
                    ErrorCode::InvalidMessage,
                    "missing field `accessToken.accountTokens`",
                )));
            }
        };
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("endUserId", &msg.end_user_id))
            .and_then(|()| lifecycle::check_id("accessToken.brokerType", &payload.broker_type))
        {
            return Ok(Applied::Invalid(r.into()));
        }
        if wallet {
            let reply = ConnectedReply {
                ok: true,
                broker_type: payload.broker_type.clone(),
                scope: msg.scope,
                tokens: Vec::new(),
                access_tokens: Vec::new(),
                wallet: true,
            };
            return Ok(Applied::Stateless {
                reply: to_json(&reply),
            });
        }
        if let Err(invalid) = validate_accounts(accounts, msg.delayed_auth.is_some()) {
            return Ok(Applied::Invalid(invalid));
        }
        let now = inbound.received_at;
        let at = lifecycle::event_time(inbound.timestamp, now);
        let stamp = rfc3339(now);
        let integrations = self.integrations();
        let mut tokens = Vec::with_capacity(accounts.len());
        let mut events = Vec::with_capacity(accounts.len());
        for account in accounts {
            let input = ConnectInput {
                client_id: &msg.client_id,
                end_user_id: &msg.end_user_id,
                broker_type: &payload.broker_type,
                broker_name: payload.broker_name.as_deref().unwrap_or_default(),
                account_id: &account.account.account_id,
                account_name: account.account.account_name.as_deref().unwrap_or_default(),
                scope: msg.scope,
                expires_in_seconds: payload.expires_in_seconds,
                refresh_expires_in_seconds: payload.refresh_token_expires_in_seconds,
                has_refresh_token: account.refresh_token.is_some(),
                at,
            };
            let identity = Identity {
                client_id: input.client_id,
                end_user_id: input.end_user_id,
                broker_type: input.broker_type,
                scope: input.scope,
                account_id: input.account_id,
            };
            let secrets = TokenSecrets {
                access_token: account.access_token.clone(),
                refresh_token: account.refresh_token.clone(),
            };
            let held = match tx.token_of(&identity)? {
                Some(token_id) => {
                    let found = tx.find(&token_id)?;
                    let same_secrets = self.holds_the_same_secrets(&token_id, &found, &secrets)?;
                    Some((token_id, found, same_secrets))
                }
                None => None,
            };
            let holder = held.as_ref().map(|(token_id, found, same_secrets)| Holder {
                token_id,
                lookup: found.lookup(),
                same_secrets: *same_secrets,
            });
            let plan = lifecycle::connect(holder, &input, now, new_token_id);
            let previous = match &held {
                Some((_, Found::Live { meta, .. }, _)) if !plan.created => Some(meta),
                _ => None,
            };
            let meta = &plan.meta;
            let token_id = &plan.token_id;
            tx.put_token(token_id, meta, previous, &secrets)?;
            let previous_refresh = match previous {
                Some(_) => tx.refresh_record(token_id)?,
                None => None,
            };
            own_refresh(
                tx,
                token_id,
                meta,
                previous_refresh.as_ref(),
                integrations.get(&meta.broker_type),
                at,
            )?;
            let mut event = token_event(plan.event, &stamp, token_id, meta.state, meta);
            event.message_id = inbound.message_id.map(str::to_owned);
            events.push(event);
            tokens.push(IssuedToken {
                token_id: plan.token_id.clone(),
                account_id: meta.account_id.clone(),
                created: plan.created,
            });
        }
        let reply = ConnectedReply {
            ok: true,
            broker_type: payload.broker_type.clone(),
            scope: msg.scope,
            access_tokens: tokens
                .iter()
                .map(|t| SdkAccessToken::new(&t.token_id, &payload.broker_type))
                .collect(),
            tokens,
            wallet: false,
        };
        Ok(Applied::Change {
            reply: to_json(&reply),
            events,
        })
    }

    /// Whether the live token under `token_id` already holds exactly these
    /// raw tokens (a reconnection, not a rotation). Secrets that do not open
    /// are not the same: the new ones replace them.
    fn holds_the_same_secrets(
        &self,
        token_id: &str,
        found: &Found,
        secrets: &TokenSecrets,
    ) -> Result<bool, StoreError> {
        let Found::Live {
            meta,
            sealed,
            wrapped,
        } = found
        else {
            return Ok(false);
        };
        match self.store.open_secrets(token_id, meta, sealed, wrapped) {
            Ok(stored) => Ok(same(&stored.access_token, &secrets.access_token)
                && match (&stored.refresh_token, &secrets.refresh_token) {
                    (Some(a), Some(b)) => same(a, b),
                    (None, None) => true,
                    _ => false,
                }),
            Err(error) if error.is_transient() => Err(error),
            Err(_) => Ok(false),
        }
    }
}

/// Checks the accounts of a payload; a `delayed` one (from `delayedAuth`)
/// has one account, accountId `""` and no access token yet.
fn validate_accounts(accounts: &[AccountToken], delayed: bool) -> Result<(), Outcome> {
    if accounts.is_empty() {
        return Err(Outcome::invalid(
            ErrorCode::InvalidRequest,
            "accessToken.accountTokens is empty: nothing to store",
        ));
    }
    let mut seen = std::collections::HashMap::with_capacity(accounts.len());
    for (index, account) in accounts.iter().enumerate() {
        if !delayed {
            lifecycle::check_id("account.accountId", &account.account.account_id)
                .map_err(Outcome::from)?;
        }
        if let Some(first) = seen.insert(account.account.account_id.as_str(), index) {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                format!(
                    "an accountId is listed twice (accessToken.accountTokens[{first}] and [{index}])"
                ),
            ));
        }
        let refresh_len = account
            .refresh_token
            .as_ref()
            .map_or(0, |r| r.expose().len());
        if delayed && refresh_len == 0 {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                "delayedAuth.refreshToken is empty",
            ));
        }
        if !delayed && account.access_token.is_empty() {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                "an accessToken is empty",
            ));
        }
        if account.access_token.expose().len() > MAX_SECRET_BYTES || refresh_len > MAX_SECRET_BYTES
        {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                format!("a raw token is longer than {MAX_SECRET_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// A fresh opaque tokenId: `tok_` and 128 random bits in hex.
fn new_token_id() -> String {
    format!("tok_{}", uuid::Uuid::new_v4().simple())
}

/// Compares two raw tokens in constant time.
fn same(a: &Secret, b: &Secret) -> bool {
    orion::util::secure_cmp(a.expose().as_bytes(), b.expose().as_bytes()).is_ok()
}
