//! The token listing: one page at a time from the worker (never the whole
//! table). In the store's order (tokenId, no filter) it pages by cursor;
//! searched or sorted by another column, the worker scans every token and
//! answers one page by offset with the total.

use mmt_shared::console::{self, SortBy, TokensReply, TokensRequest};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::wire::{Scope, TokenState};

use super::Action;
use super::refresh::TokenRefresh;

/// Rows per page asked of the worker.
pub const PAGE_SIZE: u32 = 200;

/// A token as the listing and the detail pane show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// The tokenId.
    pub token_id: String,
    /// Its client.
    pub client_id: String,
    /// Its end user (none for a revoked token).
    pub end_user_id: Option<String>,
    /// Its exchange account (none for a revoked token).
    pub account_id: Option<String>,
    /// Its integration.
    pub broker_type: String,
    /// Its scope.
    pub scope: Scope,
    /// Its state.
    pub state: TokenState,
    /// When it was minted (RFC 3339), when known.
    pub created_at: Option<String>,
    /// When it expires (RFC 3339); none: never.
    pub expires_at: Option<String>,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// The refresh engine's state of it, when the engine owns it.
    pub refresh: Option<TokenRefresh>,
}

impl From<console::TokenRow> for TokenRow {
    fn from(row: console::TokenRow) -> Self {
        Self {
            token_id: row.token_id,
            client_id: row.client_id,
            end_user_id: row.end_user_id,
            account_id: row.account_id,
            broker_type: row.broker_type,
            scope: row.scope,
            state: row.state,
            created_at: row.created_at,
            expires_at: row.expires_at,
            updated_at: row.updated_at,
            refresh: row.refresh.map(TokenRefresh::from),
        }
    }
}

/// The columns, each sortable by the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// tokenId (the store's order).
    TokenId,
    /// clientId.
    Client,
    /// endUserId.
    User,
    /// brokerType.
    Integration,
    /// scope.
    Scope,
    /// state.
    State,
    /// expiresAt.
    Expires,
    /// last change.
    Changed,
}

impl Column {
    /// Every column, in display order.
    pub const ALL: [Column; 8] = [
        Column::TokenId,
        Column::Client,
        Column::User,
        Column::Integration,
        Column::Scope,
        Column::State,
        Column::Expires,
        Column::Changed,
    ];

    /// The header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::TokenId => "tokenId",
            Column::Client => "client",
            Column::User => "endUser",
            Column::Integration => "integration",
            Column::Scope => "scope",
            Column::State => "state",
            Column::Expires => "expires UTC",
            Column::Changed => "changed UTC",
        }
    }

    fn next(self) -> Column {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Column::ALL.get(i + 1).copied().unwrap_or(Column::TokenId)
    }

    /// The worker's name for the order.
    pub fn sort_by(self) -> SortBy {
        match self {
            Column::TokenId => SortBy::TokenId,
            Column::Client => SortBy::ClientId,
            Column::User => SortBy::EndUserId,
            Column::Integration => SortBy::BrokerType,
            Column::Scope => SortBy::Scope,
            Column::State => SortBy::State,
            Column::Expires => SortBy::ExpiresAt,
            Column::Changed => SortBy::UpdatedAt,
        }
    }
}

/// A key typed while the filter is being edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKey {
    /// A character (replaces the text while it is selected).
    Char(char),
    /// Delete the last character (all of it while selected).
    Backspace,
    /// Clear the text (Ctrl-U).
    Clear,
    /// Keep the selected text and type after it (an arrow, End).
    Deselect,
    /// Apply the filter.
    Enter,
    /// Leave the filter as it was.
    Escape,
}

/// The filter being typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// The text.
    pub text: String,
    /// Whether all of it is selected (reopened with the old filter): the
    /// next character replaces it.
    pub selected: bool,
}

/// The listing's model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// The rows of the page, in the worker's order.
    pub rows: Vec<TokenRow>,
    /// The selected row.
    pub selected: usize,
    /// The page number, from 0.
    pub page: usize,
    /// The sort column and whether it is ascending.
    pub sort: (Column, bool),
    /// The filter applied (empty: none).
    pub filter: String,
    /// The filter being typed, while editing.
    pub editing: Option<Edit>,
    /// Whether a request is in flight.
    pub loading: bool,
    /// Whether a page ever arrived.
    loaded: bool,
    /// Whether tokens changed since the page was asked for.
    stale: bool,
    /// Whether the worker has more pages after this one.
    pub more: bool,
    /// Records the worker examined for this page.
    pub scanned: u64,
    /// How many tokens match in all, when the worker counted them (a
    /// search); `None` in the store's order, where the counts tell.
    pub total: Option<u64>,
    /// The cursor of each page seen so far (page 0 starts at the beginning).
    cursors: Vec<Option<String>>,
    next_after: Option<String>,
    /// The request whose reply is awaited; older replies are ignored.
    pending: Option<TokensRequest>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            selected: 0,
            page: 0,
            sort: (Column::TokenId, true),
            filter: String::new(),
            editing: None,
            loading: false,
            loaded: false,
            stale: false,
            more: false,
            scanned: 0,
            total: None,
            cursors: vec![None],
            next_after: None,
            pending: None,
        }
    }
}

impl Tokens {
    /// Whether a page ever arrived.
    pub fn has_loaded(&self) -> bool {
        self.loaded
    }

    /// Whether tokens changed since the page was asked for, and no request
    /// is in flight or being typed.
    pub fn is_stale(&self) -> bool {
        self.stale && !self.loading && self.editing.is_none()
    }

    /// Whether the listing is a search over every token (filtered, or
    /// sorted by another column than tokenId) rather than the store's order.
    pub fn is_search(&self) -> bool {
        !self.filter.is_empty() || self.sort != (Column::TokenId, true)
    }

    /// The selected row.
    pub fn selected_row(&self) -> Option<&TokenRow> {
        self.rows.get(self.selected)
    }

    fn request(&mut self) -> TokensRequest {
        self.stale = false;
        let (column, ascending) = self.sort;
        let request = if self.is_search() {
            TokensRequest {
                limit: Some(PAGE_SIZE),
                filter: (!self.filter.is_empty()).then(|| self.filter.clone()),
                sort: Some(column.sort_by()),
                descending: !ascending,
                offset: Some(
                    u32::try_from(self.page)
                        .unwrap_or(u32::MAX)
                        .saturating_mul(PAGE_SIZE),
                ),
                ..TokensRequest::default()
            }
        } else {
            TokensRequest {
                after: self.cursors.get(self.page).cloned().flatten(),
                limit: Some(PAGE_SIZE),
                ..TokensRequest::default()
            }
        };
        self.loading = true;
        self.pending = Some(request.clone());
        request
    }

    /// The request for the current page again.
    pub fn reload(&mut self) -> TokensRequest {
        self.request()
    }

    /// A page arrived.
    pub fn loaded(&mut self, request: &TokensRequest, reply: TokensReply) {
        if self.pending.as_ref() != Some(request) {
            return;
        }
        self.pending = None;
        self.loading = false;
        self.loaded = true;
        self.rows = reply.tokens.into_iter().map(TokenRow::from).collect();
        self.more = reply.next_after.is_some() || reply.next_offset.is_some();
        self.next_after = reply.next_after;
        self.scanned = reply.scanned;
        self.total = reply.total;
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
    }

    /// A listing request failed; if it is the one awaited, another may go.
    pub fn failed(&mut self, request: &TokensRequest) {
        if self.pending.as_ref() == Some(request) {
            self.loading = false;
            self.pending = None;
        }
    }

    /// A lifecycle event: update the row if it is on this page, and mark
    /// the page stale (a new token may belong on it).
    pub fn observe(&mut self, event: &Event) {
        self.stale = true;
        let Some(row) = self
            .rows
            .iter_mut()
            .find(|r| Some(r.token_id.as_str()) == event.token_id.as_deref())
        else {
            return;
        };
        if let Some(state) = event.state {
            row.state = state;
        }
        if event.kind != EventKind::RequestRejected {
            row.updated_at = event.at.clone();
        }
    }

    /// A refresh failed somewhere: the page may show it, ask again.
    pub fn touch(&mut self) {
        self.stale = true;
    }

    /// Moves the selection.
    pub fn scroll(&mut self, action: Action, page: usize) {
        let last = self.rows.len().saturating_sub(1);
        let at = self.selected;
        self.selected = match action {
            Action::Up => at.saturating_sub(1),
            Action::Down => at.saturating_add(1),
            Action::PageUp => at.saturating_sub(page),
            Action::PageDown => at.saturating_add(page),
            Action::Top => 0,
            _ => last,
        }
        .min(last);
    }

    fn first_page(&mut self) -> TokensRequest {
        self.page = 0;
        self.cursors = vec![None];
        self.selected = 0;
        self.request()
    }

    /// Sorting, paging and starting the filter; returns a request when a page
    /// must be fetched.
    pub fn act(&mut self, action: Action) -> Option<TokensRequest> {
        match action {
            Action::Filter => {
                self.editing = Some(Edit {
                    selected: !self.filter.is_empty(),
                    text: self.filter.clone(),
                });
                None
            }
            Action::Sort if !self.loading => {
                self.sort = (self.sort.0.next(), true);
                Some(self.first_page())
            }
            Action::Reverse if !self.loading => {
                self.sort.1 = !self.sort.1;
                Some(self.first_page())
            }
            Action::NextPage if self.more && !self.loading => {
                self.cursors.truncate(self.page + 1);
                self.cursors.push(self.next_after.clone());
                self.page += 1;
                self.selected = 0;
                Some(self.request())
            }
            Action::PrevPage if self.page > 0 && !self.loading => {
                self.page -= 1;
                self.selected = 0;
                Some(self.request())
            }
            _ => None,
        }
    }

    /// Whether the filter is being typed.
    pub fn is_editing(&self) -> bool {
        self.editing.is_some()
    }

    /// Leaves the filter being typed as it was.
    pub fn cancel_filter(&mut self) {
        self.editing = None;
    }

    /// A key while the filter is typed; applying it starts at page 0.
    pub fn type_filter(&mut self, key: FilterKey) -> Option<TokensRequest> {
        let edit = self.editing.as_mut()?;
        match key {
            FilterKey::Char(c) => {
                if edit.selected {
                    edit.text.clear();
                    edit.selected = false;
                }
                edit.text.push(c);
            }
            FilterKey::Backspace if edit.selected => {
                edit.text.clear();
                edit.selected = false;
            }
            FilterKey::Backspace => {
                edit.text.pop();
            }
            FilterKey::Clear => {
                edit.text.clear();
                edit.selected = false;
            }
            FilterKey::Deselect => edit.selected = false,
            FilterKey::Escape => self.editing = None,
            FilterKey::Enter => {
                self.filter = self
                    .editing
                    .take()
                    .map(|e| e.text)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                return Some(self.first_page());
            }
        }
        None
    }
}
