//! `link.access_tokens`: an end user's live tokenIds at a client.

use mmt_shared::wire::{LinkAccessTokens, LinkReply, SdkAccessToken};

use super::{Outcome, Service, to_json};
use crate::rules::lifecycle;
use crate::store::StoreError;

impl Service {
    pub(super) fn link(&self, msg: &LinkAccessTokens) -> Result<Outcome, StoreError> {
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("endUserId", &msg.end_user_id))
        {
            return Ok(r.into());
        }
        let access_tokens = self
            .store
            .tokens_of_user(&msg.client_id, &msg.end_user_id)?
            .into_iter()
            .filter(|(_, meta)| lifecycle::listed(meta, msg.scope))
            .map(|(token_id, meta)| SdkAccessToken::new(&token_id, &meta.broker_type))
            .collect();
        Ok(Outcome::Done {
            reply: to_json(&LinkReply {
                ok: true,
                access_tokens,
            }),
            events: Vec::new(),
            applied: true,
        })
    }
}
