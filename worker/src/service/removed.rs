//! `connection.removed`: revoke locally at once, then hand the provider's
//! revocation to a durable upstream job where one is configured.

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::{ConnectionRemoved, ErrorReply, MessageKind, RemovedReply, TokenState};

use super::{Applied, Service, to_json, token_event};
use crate::rules::lifecycle::{self, RevokePlan};
use crate::store::{Found, StoreError, Tx};

impl Service {
    pub(super) fn removed(
        &self,
        tx: &mut Tx<'_>,
        msg: &ConnectionRemoved,
        now: UnixMillis,
    ) -> Result<Applied, StoreError> {
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("tokenId", &msg.token_id))
        {
            return Ok(Applied::Invalid(r.into()));
        }
        let found = tx.find(&msg.token_id)?;
        let stamp = rfc3339(now);
        let (reply, events) = match (lifecycle::revoke(found.lookup(), &msg.client_id), &found) {
            (
                Ok(RevokePlan::Revoke),
                Found::Live {
                    meta,
                    sealed,
                    wrapped,
                },
            ) => {
                tx.revoke(&msg.token_id, meta, now)?;
                let revokes_upstream = self
                    .integrations()
                    .get(&meta.broker_type)
                    .is_some_and(|i| i.revoke_url.is_some());
                if revokes_upstream {
                    match self
                        .store
                        .open_secrets(&msg.token_id, meta, sealed, wrapped)
                    {
                        Ok(secrets) => {
                            tx.start_upstream_job(&msg.token_id, meta, &secrets, now)?;
                        }
                        Err(error) if error.is_transient() => return Err(error),
                        Err(error) => tracing::error!(
                            token_id = msg.token_id,
                            error = &error as &dyn std::error::Error,
                            "revoked locally; its secrets do not open, so no upstream revocation"
                        ),
                    }
                }
                if let Some(record) = tx.refresh_record(&msg.token_id)? {
                    tx.drop_refresh(&msg.token_id, &record, None);
                }
                let event = token_event(
                    EventKind::TokenRevoked,
                    &stamp,
                    &msg.token_id,
                    TokenState::Revoked,
                    meta,
                );
                (
                    to_json(&RemovedReply {
                        ok: true,
                        revoked: true,
                    }),
                    vec![event],
                )
            }
            (Ok(_), _) => (
                to_json(&RemovedReply {
                    ok: true,
                    revoked: false,
                }),
                Vec::new(),
            ),
            (Err(rejection), _) => {
                let mut event = Event::new(EventKind::RequestRejected, stamp);
                event.token_id = Some(msg.token_id.clone());
                event.client_id = Some(msg.client_id.clone());
                event.code = Some(rejection.code);
                event.queue = Some(MessageKind::ConnectionRemoved.routing_key().to_owned());
                (
                    to_json(&ErrorReply::new(rejection.code, rejection.message)),
                    vec![event],
                )
            }
        };
        Ok(Applied::Change { reply, events })
    }
}
