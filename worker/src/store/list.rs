//! The token table: pages of tokens in tokenId order, metadata only.

use super::record::{self, Record};
use super::{Engine, Store, StoreError};
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
        let mut page = TokenPage {
            tokens: Vec::new(),
            next_after: None,
            scanned: 0,
        };
        let mut after = after.map(str::to_owned);
        let mut exhausted = false;
        'pages: while page.tokens.len() < limit && page.scanned < max_scan {
            // Read in chunks, so that a page that keeps few tokens reads no
            // more than it examines.
            let chunk = (max_scan - page.scanned).min(CHUNK);
            let (records, more) = match &self.engine {
                Engine::Embedded(e) => e.records_after(after.as_deref(), chunk)?,
                Engine::Postgres(pg) => pg.records_after(after.as_deref(), chunk)?,
            };
            let read = records.len();
            if read == 0 {
                exhausted = true;
                break;
            }
            for (index, (token_id, value)) in records.into_iter().enumerate() {
                if page.tokens.len() >= limit {
                    break 'pages;
                }
                page.scanned += 1;
                let listed = match record::decode(&self.macs, &token_id, &value)? {
                    Record::Live { meta, .. } => Listed::Live(meta),
                    Record::Revoked(tomb) => Listed::Revoked(tomb),
                };
                if keep(&token_id, &listed) {
                    page.tokens.push((token_id.clone(), listed));
                }
                page.next_after = Some(token_id.clone());
                after = Some(token_id);
                exhausted = index + 1 == read && !more;
            }
            if exhausted {
                break;
            }
        }
        if exhausted {
            page.next_after = None;
        }
        Ok(page)
    }
}

/// Records read at once while a page is filled.
const CHUNK: usize = 512;
