//! The token table: pages of tokens in tokenId order, metadata only.

use super::record::{self, Record};
use super::{Store, StoreError, TOKEN, keys::prefixed};
use crate::rules::lifecycle::{TokenMeta, Tombstone};

/// A token in a listing: its record without any sealed material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// A live token (active or reauth_required).
    Live(TokenMeta),
    /// A revoked token.
    Revoked(Tombstone),
}

/// One page of [`Store::list_tokens`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPage {
    /// The kept tokens, ordered by tokenId.
    pub tokens: Vec<(String, Listed)>,
    /// The last tokenId examined, when the table goes on after it.
    pub next_after: Option<String>,
    /// How many records were examined.
    pub scanned: usize,
}

impl Store {
    /// A page of the tokens, live and revoked, ordered by tokenId, starting
    /// after `after`: at most `limit` tokens for which `keep` holds, after
    /// examining at most `max_scan` records. Only metadata is kept; the
    /// sealed secrets are never opened.
    pub fn list_tokens(
        &self,
        after: Option<&str>,
        limit: usize,
        max_scan: usize,
        keep: &dyn Fn(&str, &Listed) -> bool,
    ) -> Result<TokenPage, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(prefixed(TOKEN, after.as_bytes())),
            None => Bound::Included(vec![TOKEN]),
        };
        let mut records = self
            .kv
            .range::<Vec<u8>, _>((start, Bound::Excluded(vec![TOKEN + 1])));
        let mut page = TokenPage {
            tokens: Vec::new(),
            next_after: None,
            scanned: 0,
        };
        while page.tokens.len() < limit && page.scanned < max_scan {
            let Some((key, value)) = records.next().transpose()? else {
                page.next_after = None;
                return Ok(page);
            };
            page.scanned += 1;
            let token_id = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
            let listed = match record::decode(&self.key, &token_id, &value)? {
                Record::Live { meta, .. } => Listed::Live(meta),
                Record::Revoked(tomb) => Listed::Revoked(tomb),
            };
            if keep(&token_id, &listed) {
                page.tokens.push((token_id.clone(), listed));
            }
            page.next_after = Some(token_id);
        }
        if records.next().is_none() {
            page.next_after = None;
        }
        Ok(page)
    }
}
