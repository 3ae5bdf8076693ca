//! The detail pane of one token (Enter on a row of any table): every field
//! the worker shows for it. A token not on the loaded page is asked of the
//! worker by tokenId, and asked again while the pane is open (its state,
//! expiry and next refresh change under it) and on `Ctrl-r`.

use mmt_shared::console::{TokensReply, TokensRequest};
use mmt_shared::time_fmt::UnixMillis;

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
    /// When the record shown was asked for (or taken from the page).
    asked_at: UnixMillis,
    /// A lifecycle event of this token arrived since it was asked for.
    changed: bool,
}

/// How often an open pane asks the worker for its token again.
pub const DETAIL_REFRESH_MS: UnixMillis = 2_000;

impl Detail {
    /// A pane for `token_id`: with its row when the page holds it, else with
    /// the request that fetches it.
    pub fn open(
        token_id: String,
        row: Option<TokenRow>,
        now: UnixMillis,
    ) -> (Self, Option<TokensRequest>) {
        let pending = row.is_none().then(|| Self::request(&token_id));
        let detail = Self {
            token_id,
            row,
            loading: pending.is_some(),
            missing: false,
            pending: pending.clone(),
            asked_at: now,
            changed: false,
        };
        (detail, pending)
    }

    fn request(token_id: &str) -> TokensRequest {
        TokensRequest {
            token_id: Some(token_id.to_owned()),
            limit: Some(1),
            ..TokensRequest::default()
        }
    }

    /// Asks the worker for the token again (the record shown stays until
    /// the answer), unless a request is in flight.
    pub fn ask(&mut self, now: UnixMillis) -> Option<TokensRequest> {
        if self.pending.is_some() {
            return None;
        }
        let request = Self::request(&self.token_id);
        self.pending = Some(request.clone());
        self.loading = self.row.is_none();
        self.asked_at = now;
        self.changed = false;
        Some(request)
    }

    /// Asks again when the record is [`DETAIL_REFRESH_MS`] old, or at once
    /// when a lifecycle event of the token arrived since.
    pub fn tick(&mut self, now: UnixMillis) -> Option<TokensRequest> {
        if self.changed || now - self.asked_at >= DETAIL_REFRESH_MS {
            self.ask(now)
        } else {
            None
        }
    }

    /// A lifecycle event of this token arrived.
    pub fn touch(&mut self) {
        self.changed = true;
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
