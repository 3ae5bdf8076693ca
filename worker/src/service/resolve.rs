//! `token.resolve`: the one reply that carries a raw token, and only when
//! the lifecycle rules allow it.

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::{
    ErrorCode, ErrorReply, MessageKind, ResolveReply, TokenResolve, TokenState,
};

use super::{Outcome, Service, to_json};
use crate::rules;
use crate::rules::lifecycle::{self, Rejection};
use crate::store::{Found, StoreError};

impl Service {
    pub(super) fn resolve(
        &self,
        msg: &TokenResolve,
        now: UnixMillis,
    ) -> Result<Outcome, StoreError> {
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("tokenId", &msg.token_id))
        {
            return Ok(r.into());
        }
        let found = self.store.find(&msg.token_id)?;
        let mut verdict = lifecycle::resolve(found.lookup(), &msg.client_id, msg.operation, now);
        if let (Err(rejection), Found::Live { meta, .. }) = (&mut verdict, &found)
            && rejection.code == ErrorCode::ReauthRequired
            && rules::refresh::pending(
                meta,
                self.integrations().get(&meta.broker_type).is_some(),
                now,
            )
        {
            *rejection = Rejection {
                code: ErrorCode::RefreshPending,
                message: "the token is being refreshed at its provider; retry shortly".into(),
            };
        }
        match (verdict, found) {
            (
                Ok(()),
                Found::Live {
                    meta,
                    sealed,
                    wrapped,
                },
            ) => {
                let secrets = self
                    .store
                    .open_secrets(&msg.token_id, &meta, &sealed, &wrapped)?;
                let reply = ResolveReply {
                    ok: true,
                    token_id: msg.token_id.clone(),
                    broker_type: meta.broker_type.clone(),
                    account_id: meta.account_id.clone(),
                    scope: meta.scope,
                    access_token: secrets.access_token,
                    expires_at: meta.expires_at.map(rfc3339),
                };
                Ok(Outcome::Done {
                    reply: to_json(&reply),
                    events: Vec::new(),
                    applied: true,
                })
            }
            (result, found) => {
                let rejection = result.err().unwrap_or_else(|| Rejection {
                    code: ErrorCode::NotFound,
                    message: "no such tokenId for this client".into(),
                });
                let mut event = Event::new(EventKind::RequestRejected, rfc3339(now));
                event.token_id = Some(msg.token_id.clone());
                event.client_id = Some(msg.client_id.clone());
                event.operation = Some(msg.operation);
                event.code = Some(rejection.code);
                event.queue = Some(MessageKind::TokenResolve.routing_key().to_owned());
                if rejection.code != ErrorCode::NotFound {
                    match &found {
                        Found::Live { meta, .. } => {
                            event.broker_type = Some(meta.broker_type.clone());
                            event.scope = Some(meta.scope);
                            event.state = Some(lifecycle::effective_state(meta, now));
                        }
                        Found::Revoked(tomb) => {
                            event.broker_type = Some(tomb.broker_type.clone());
                            event.scope = Some(tomb.scope);
                            event.state = Some(TokenState::Revoked);
                        }
                        Found::Missing => {}
                    }
                }
                Ok(Outcome::Done {
                    reply: to_json(&ErrorReply::new(rejection.code, rejection.message)),
                    events: vec![event],
                    applied: true,
                })
            }
        }
    }
}
