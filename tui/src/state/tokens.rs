//! The token listing: one page at a time from the worker (never the whole
//! table), sorted and scrolled here, filtered by the worker.

use mmt_shared::console::{self, TokensReply, TokensRequest};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::wire::{Scope, TokenState};

use super::Action;

/// Rows per page asked of the worker.
pub const PAGE_SIZE: u32 = 200;

/// A token as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// The tokenId.
    pub token_id: String,
    /// Its client.
    pub client_id: String,
    /// Its integration.
    pub broker_type: String,
    /// Its scope.
    pub scope: Scope,
    /// Its state.
    pub state: TokenState,
    /// When it expires (`YYYY-MM-DD HH:MM`), or empty.
    pub expires: String,
    /// When it last changed (`YYYY-MM-DD HH:MM:SS`).
    pub changed: String,
}

fn short_time(at: &str, len: usize) -> String {
    at.get(..len).unwrap_or(at).replace('T', " ")
}

impl From<console::TokenRow> for TokenRow {
    fn from(row: console::TokenRow) -> Self {
        Self {
            token_id: row.token_id,
            client_id: row.client_id,
            broker_type: row.broker_type,
            scope: row.scope,
            state: row.state,
            expires: row
                .expires_at
                .as_deref()
                .map(|at| short_time(at, 16))
                .unwrap_or_default(),
            changed: short_time(&row.updated_at, 19),
        }
    }
}

/// The sortable columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// tokenId (the worker's order).
    TokenId,
    /// clientId.
    Client,
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
    pub const ALL: [Column; 7] = [
        Column::TokenId,
        Column::Client,
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
            Column::Integration => "broker",
            Column::Scope => "scope",
            Column::State => "state",
            Column::Expires => "expires",
            Column::Changed => "changed",
        }
    }

    fn next(self) -> Column {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Column::ALL.get(i + 1).copied().unwrap_or(Column::TokenId)
    }

    fn key(self, row: &TokenRow) -> (&str, &str) {
        match self {
            Column::TokenId => (&row.token_id, ""),
            Column::Client => (&row.client_id, &row.token_id),
            Column::Integration => (&row.broker_type, &row.token_id),
            Column::Scope => (row.scope.as_str(), &row.token_id),
            Column::State => (row.state.as_str(), &row.token_id),
            Column::Expires => (&row.expires, &row.token_id),
            Column::Changed => (&row.changed, &row.token_id),
        }
    }
}

/// A key typed while the filter is being edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKey {
    /// A character.
    Char(char),
    /// Delete the last character.
    Backspace,
    /// Apply the filter.
    Enter,
    /// Leave the filter as it was.
    Escape,
}

/// The listing's model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// The rows of the page, in display order.
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
    pub editing: Option<String>,
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

    fn request(&mut self) -> TokensRequest {
        self.stale = false;
        let request = TokensRequest {
            after: self.cursors.get(self.page).cloned().flatten(),
            limit: Some(PAGE_SIZE),
            filter: (!self.filter.is_empty()).then(|| self.filter.clone()),
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
        self.more = reply.next_after.is_some();
        self.next_after = reply.next_after;
        self.scanned = reply.scanned;
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        self.sort_rows();
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
            row.changed = short_time(&event.at, 19);
        }
    }

    fn sort_rows(&mut self) {
        let (column, ascending) = self.sort;
        self.rows.sort_by(|a, b| {
            let order = column.key(a).cmp(&column.key(b));
            if ascending { order } else { order.reverse() }
        });
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

    /// Sorting, paging and starting the filter; returns a request when a page
    /// must be fetched.
    pub fn act(&mut self, action: Action) -> Option<TokensRequest> {
        match action {
            Action::Filter => {
                self.editing = Some(self.filter.clone());
                None
            }
            Action::Sort => {
                self.sort = (self.sort.0.next(), true);
                self.sort_rows();
                None
            }
            Action::Reverse => {
                self.sort.1 = !self.sort.1;
                self.sort_rows();
                None
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
        let text = self.editing.as_mut()?;
        match key {
            FilterKey::Char(c) => text.push(c),
            FilterKey::Backspace => {
                text.pop();
            }
            FilterKey::Escape => self.editing = None,
            FilterKey::Enter => {
                self.filter = self.editing.take().unwrap_or_default().trim().to_owned();
                self.page = 0;
                self.cursors = vec![None];
                self.selected = 0;
                return Some(self.request());
            }
        }
        None
    }
}
