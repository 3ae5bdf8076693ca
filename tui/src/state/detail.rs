//! The detail pane of one token (Enter on a row of any table): every field
//! the worker shows for it. A token not on the loaded page is asked of the
//! worker by tokenId.

use mmt_shared::console::{TokensReply, TokensRequest};

use super::tokens::TokenRow;

/// What the pane shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    /// The token shown.
    pub token_id: String,
    /// Its record, once known.
    pub row: Option<TokenRow>,
    /// Whether the worker is being asked.
    pub loading: bool,
    /// Whether the worker answered that it holds no such token.
    pub missing: bool,
    pending: Option<TokensRequest>,
}

impl Detail {
    /// A pane for `token_id`: with its row when the page holds it, else with
    /// the request that fetches it.
    pub fn open(token_id: String, row: Option<TokenRow>) -> (Self, Option<TokensRequest>) {
        let pending = row.is_none().then(|| TokensRequest {
            token_id: Some(token_id.clone()),
            limit: Some(1),
            ..TokensRequest::default()
        });
        let detail = Self {
            token_id,
            row,
            loading: pending.is_some(),
            missing: false,
            pending: pending.clone(),
        };
        (detail, pending)
    }

    /// Whether `request` is this pane's.
    pub fn awaits(&self, request: &TokensRequest) -> bool {
        self.pending.as_ref() == Some(request)
    }

    /// The worker answered.
    pub fn loaded(&mut self, reply: TokensReply) {
        self.pending = None;
        self.loading = false;
        self.row = reply
            .tokens
            .into_iter()
            .find(|r| r.token_id == self.token_id)
            .map(TokenRow::from);
        self.missing = self.row.is_none();
    }

    /// The worker did not answer.
    pub fn failed(&mut self) {
        self.pending = None;
        self.loading = false;
    }
}
