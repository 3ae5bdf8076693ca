//! The console's model: what the operator sees, as a pure function of the
//! messages fed to [`State::update`] and the actions fed to
//! [`State::act`]. No terminal and no broker here; wire messages (events,
//! stats, snapshot and listing replies) are turned into the model's own
//! types at this boundary (`From`), so views never see a wire message; only
//! the contract's small value enums (scope, state, error code) are shared.

mod feed;
mod tokens;

use std::collections::{BTreeMap, VecDeque};

use mmt_shared::console::{SnapshotReply, TokensReply, TokensRequest, WorkerStats};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{ErrorCode, Scope, TokenState};

pub use feed::{Lifecycle, Rejection};
pub use tokens::{Column, FilterKey, Tokens};

/// A worker is "alive" while its last `worker.stats` is younger than this.
pub const ALIVE_WITHIN_MS: UnixMillis = 3_000;

/// How many seconds of rates the sparklines keep.
pub const HISTORY: usize = 120;

/// How many rejections the feed keeps.
pub const REJECTIONS_KEPT: usize = 1_000;

/// How many lifecycle events the overview keeps.
pub const LIFECYCLE_KEPT: usize = 200;

/// How many events are held while the feed is paused; beyond that the oldest
/// held events are dropped (and counted).
pub const HELD_MAX: usize = 10_000;

/// The screens, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Counts, rates, queues, recent lifecycle events.
    Overview,
    /// The token listing.
    Tokens,
    /// The feed of refused requests.
    Rejections,
}

impl Screen {
    /// Every screen, in Tab order.
    pub const ALL: [Screen; 3] = [Screen::Overview, Screen::Tokens, Screen::Rejections];

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Tokens => "Tokens",
            Screen::Rejections => "Rejections",
        }
    }

    fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    fn offset(self, by: isize) -> Screen {
        let n = Screen::ALL.len() as isize;
        let next = (self.index() as isize + by).rem_euclid(n) as usize;
        Screen::ALL.get(next).copied().unwrap_or(Screen::Overview)
    }
}

/// The broker link, as the feed reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// Trying to connect (`attempt` 0 is the first try); `error` says why the
    /// previous try or link failed.
    Connecting {
        /// How many tries failed in a row.
        attempt: u32,
        /// Why the last one failed.
        error: Option<String>,
    },
    /// Connected and subscribed to `NS.events`.
    Up,
}

/// What the feed tells the model.
#[derive(Clone, Debug)]
pub enum Msg {
    /// The broker link changed.
    Link(Link),
    /// An event from `NS.events` (not `worker.stats`).
    Event(Event),
    /// A `worker.stats` body.
    Stats(WorkerStats),
    /// The reply to a snapshot request.
    Snapshot(SnapshotReply),
    /// The reply to a token listing request.
    Tokens(TokensRequest, TokensReply),
    /// A request got no usable answer: why, and the listing request when it
    /// was one.
    RequestFailed(Option<TokensRequest>, String),
    /// The feed has dropped this many events in total (it could not keep
    /// up).
    Dropped(u64),
    /// Time passes (ages in the header).
    Tick,
}

/// What the operator asked for (from the key table, see `input.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave the console.
    Quit,
    /// Next screen.
    NextScreen,
    /// Previous screen.
    PrevScreen,
    /// Go to a screen.
    Jump(Screen),
    /// Open or close the help popup.
    Help,
    /// Close the help popup or cancel the filter being typed.
    Close,
    /// Freeze or resume the feeds (nothing is lost while frozen).
    Pause,
    /// Move the selection up.
    Up,
    /// Move the selection down.
    Down,
    /// A screenful up.
    PageUp,
    /// A screenful down.
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Start typing a filter.
    Filter,
    /// Sort by the next column.
    Sort,
    /// Reverse the sort order.
    Reverse,
    /// Next page of the token listing.
    NextPage,
    /// Previous page of the token listing.
    PrevPage,
    /// Ask the worker again (snapshot and the current page).
    Refresh,
}

/// What the model wants the feed to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Ask for a snapshot.
    Snapshot,
    /// Ask for the token counts only (a snapshot without recent events).
    Counts,
    /// Ask for a page of the token listing.
    Tokens(TokensRequest),
    /// Leave.
    Quit,
}

/// One integration and scope, with its count per state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountLine {
    /// Tokens per state: active, reauth_required, revoked.
    pub by_state: [u64; 3],
}

impl CountLine {
    /// Every token of the line, revoked included.
    pub fn total(&self) -> u64 {
        self.by_state.iter().sum()
    }
}

fn state_index(state: TokenState) -> usize {
    match state {
        TokenState::Active => 0,
        TokenState::ReauthRequired => 1,
        TokenState::Revoked => 2,
    }
}

/// One queue of the worker.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueLine {
    /// The queue's name without the namespace.
    pub name: String,
    /// Deliveries per second.
    pub rate: f64,
    /// Ready messages, when known.
    pub depth: Option<u64>,
}

/// What the last `worker.stats` said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerView {
    /// When the console received it (console clock).
    pub seen_at: UnixMillis,
    /// The worker's uptime.
    pub uptime_seconds: u64,
    /// Its queues.
    pub queues: Vec<QueueLine>,
    /// Messages in `NS.dead`.
    pub dead_depth: Option<u64>,
    /// Messages dead-lettered since the worker started.
    pub dead_lettered: u64,
    /// The store's size on disk.
    pub store_bytes: u64,
}

/// Per-second series for the sparklines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series(VecDeque<u64>);

impl Series {
    fn push(&mut self, value: u64) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(value);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<u64> {
        self.0.iter().copied().collect()
    }

    /// The latest sample.
    pub fn last(&self) -> u64 {
        self.0.back().copied().unwrap_or(0)
    }
}

/// The rates of the overview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// `integration.connected` deliveries per second.
    pub ingest: Series,
    /// `token.resolve` deliveries per second.
    pub resolves: Series,
    /// Rejections per second.
    pub rejections: Series,
}

/// The whole model.
#[derive(Clone, Debug)]
pub struct State {
    /// The namespace watched.
    pub namespace: String,
    /// The current time (console clock), set by the caller.
    pub now: UnixMillis,
    /// The screen shown.
    pub screen: Screen,
    /// Whether the help popup is open.
    pub help: bool,
    /// The broker link.
    pub link: Link,
    /// How many times the link came back after a loss.
    pub reconnects: u32,
    /// The worker, once it has published stats.
    pub worker: Option<WorkerView>,
    /// Token counts by (integration, scope).
    pub counts: BTreeMap<(String, Scope), CountLine>,
    /// Rates for the sparklines.
    pub rates: Rates,
    /// Rejections by code since the worker started.
    pub rejection_counts: BTreeMap<ErrorCode, u64>,
    /// Recent lifecycle events, newest last.
    pub lifecycle: VecDeque<Lifecycle>,
    /// Recent rejections, newest last.
    pub rejections: VecDeque<Rejection>,
    /// The selected rejection, counted from the newest.
    pub rejection_selected: usize,
    /// Whether the feeds are frozen.
    pub paused: bool,
    /// Events received while paused, applied on resume.
    pub held: VecDeque<Event>,
    /// Events the console could not keep (feed overflow, held overflow).
    pub dropped: u64,
    feed_dropped: u64,
    held_dropped: u64,
    /// The token listing.
    pub tokens: Tokens,
    /// The last request that failed, for the status line.
    pub notice: Option<String>,
    last_rejection_total: Option<u64>,
    /// Tokens changed since the counts were asked for.
    counts_stale: bool,
    /// A snapshot or counts request is in flight.
    snapshot_pending: bool,
}

impl State {
    /// A model for `namespace`, before anything is known.
    pub fn new(namespace: &str, now: UnixMillis) -> Self {
        Self {
            namespace: namespace.to_owned(),
            now,
            screen: Screen::Overview,
            help: false,
            link: Link::Connecting {
                attempt: 0,
                error: None,
            },
            reconnects: 0,
            worker: None,
            counts: BTreeMap::new(),
            rates: Rates::default(),
            rejection_counts: BTreeMap::new(),
            lifecycle: VecDeque::new(),
            rejections: VecDeque::new(),
            rejection_selected: 0,
            paused: false,
            held: VecDeque::new(),
            dropped: 0,
            feed_dropped: 0,
            held_dropped: 0,
            tokens: Tokens::default(),
            notice: None,
            last_rejection_total: None,
            counts_stale: false,
            snapshot_pending: false,
        }
    }

    /// Whether the worker published stats recently.
    pub fn worker_alive(&self) -> bool {
        self.worker_age().is_some_and(|age| age < ALIVE_WITHIN_MS)
    }

    /// How long ago the last `worker.stats` arrived.
    pub fn worker_age(&self) -> Option<UnixMillis> {
        self.worker
            .as_ref()
            .map(|w| self.now.saturating_sub(w.seen_at).max(0))
    }

    /// Totals per state over every integration: active, reauth_required,
    /// revoked.
    pub fn totals(&self) -> [u64; 3] {
        let mut totals = [0; 3];
        for line in self.counts.values() {
            for (total, n) in totals.iter_mut().zip(line.by_state) {
                *total += n;
            }
        }
        totals
    }

    /// Applies what the feed says at time `now`; returns what to ask for.
    pub fn update(&mut self, msg: Msg, now: UnixMillis) -> Vec<Command> {
        self.now = now;
        match msg {
            Msg::Link(link) => {
                let was_up = self.link == Link::Up;
                let up = link == Link::Up;
                self.link = link;
                if up {
                    if self.reconnects > 0 || was_up {
                        self.notice = Some("broker link restored".into());
                    }
                    return self.resync();
                }
                if was_up {
                    self.reconnects = self.reconnects.saturating_add(1);
                }
                Vec::new()
            }
            Msg::Event(event) => {
                if self.paused {
                    if self.held.len() == HELD_MAX {
                        self.held.pop_front();
                        self.held_dropped += 1;
                        self.dropped = self.feed_dropped + self.held_dropped;
                    }
                    self.held.push_back(event);
                } else {
                    self.apply_event(event);
                }
                Vec::new()
            }
            Msg::Stats(stats) => {
                let was_alive = self.worker_alive();
                self.apply_stats(stats, now);
                if was_alive { Vec::new() } else { self.resync() }
            }
            Msg::Snapshot(snapshot) => {
                self.notice = None;
                self.snapshot_pending = false;
                self.set_counts(&snapshot.counts);
                if !self.paused && !snapshot.recent_rejections.is_empty() {
                    self.rejections = snapshot
                        .recent_rejections
                        .into_iter()
                        .map(Rejection::from)
                        .collect();
                    self.rejection_selected = 0;
                }
                if !self.paused && !snapshot.recent_lifecycle.is_empty() {
                    self.lifecycle = snapshot
                        .recent_lifecycle
                        .into_iter()
                        .map(Lifecycle::from)
                        .collect();
                }
                Vec::new()
            }
            Msg::Tokens(request, reply) => {
                self.notice = None;
                self.tokens.loaded(&request, reply);
                Vec::new()
            }
            Msg::RequestFailed(request, why) => {
                match request {
                    Some(request) => self.tokens.failed(&request),
                    None => self.snapshot_pending = false,
                }
                self.notice = Some(why);
                Vec::new()
            }
            Msg::Dropped(total) => {
                if total > self.feed_dropped {
                    self.counts_stale = true;
                }
                self.feed_dropped = total;
                self.dropped = self.feed_dropped + self.held_dropped;
                Vec::new()
            }
            Msg::Tick => {
                let mut commands = Vec::new();
                if self.counts_stale && !self.snapshot_pending && self.worker_alive() {
                    self.counts_stale = false;
                    self.snapshot_pending = true;
                    commands.push(Command::Counts);
                }
                if self.screen == Screen::Tokens && self.tokens.is_stale() {
                    commands.push(Command::Tokens(self.tokens.reload()));
                }
                commands
            }
        }
    }

    /// Carries out an operator's action; returns what to ask for.
    pub fn act(&mut self, action: Action) -> Vec<Command> {
        if self.help && !matches!(action, Action::Help | Action::Close | Action::Quit) {
            return Vec::new();
        }
        let shown = self.screen;
        match action {
            Action::Quit => return vec![Command::Quit],
            Action::NextScreen => self.screen = self.screen.offset(1),
            Action::PrevScreen => self.screen = self.screen.offset(-1),
            Action::Jump(screen) => self.screen = screen,
            Action::Help => self.help = !self.help,
            Action::Close => {
                self.help = false;
                self.tokens.cancel_filter();
            }
            Action::Pause => self.toggle_pause(),
            Action::Refresh => {
                self.snapshot_pending = true;
                let mut commands = vec![Command::Snapshot];
                commands.push(Command::Tokens(self.tokens.reload()));
                return commands;
            }
            Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom => {
                self.scroll(action);
            }
            Action::Filter
            | Action::Sort
            | Action::Reverse
            | Action::NextPage
            | Action::PrevPage => {
                if self.screen == Screen::Tokens {
                    return self
                        .tokens
                        .act(action)
                        .into_iter()
                        .map(Command::Tokens)
                        .collect();
                }
            }
        }
        if self.screen == Screen::Tokens && shown != Screen::Tokens && !self.tokens.loading {
            return vec![Command::Tokens(self.tokens.reload())];
        }
        Vec::new()
    }

    /// A character typed while the token filter is being edited; returns the
    /// request to send when the filter is applied.
    pub fn type_filter(&mut self, key: FilterKey) -> Vec<Command> {
        self.tokens
            .type_filter(key)
            .into_iter()
            .map(Command::Tokens)
            .collect()
    }

    fn scroll(&mut self, action: Action) {
        const PAGE: usize = 10;
        match self.screen {
            Screen::Tokens => self.tokens.scroll(action, PAGE),
            Screen::Rejections => {
                let last = self.rejections.len().saturating_sub(1);
                let at = self.rejection_selected;
                self.rejection_selected = match action {
                    Action::Up => at.saturating_sub(1),
                    Action::Down => at.saturating_add(1),
                    Action::PageUp => at.saturating_sub(PAGE),
                    Action::PageDown => at.saturating_add(PAGE),
                    Action::Top => 0,
                    _ => last,
                }
                .min(last);
            }
            Screen::Overview => {}
        }
    }

    fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        if !self.paused {
            while let Some(event) = self.held.pop_front() {
                self.apply_event(event);
            }
        }
    }

    fn resync(&mut self) -> Vec<Command> {
        self.snapshot_pending = true;
        self.counts_stale = false;
        let mut commands = vec![Command::Snapshot];
        if !self.tokens.has_loaded() {
            commands.push(Command::Tokens(self.tokens.reload()));
        }
        commands
    }

    fn apply_event(&mut self, event: Event) {
        match event.kind {
            EventKind::RequestRejected => {
                if self.rejections.len() == REJECTIONS_KEPT {
                    self.rejections.pop_front();
                }
                self.rejections.push_back(Rejection::from(event));
                if self.rejection_selected > 0 {
                    self.rejection_selected =
                        (self.rejection_selected + 1).min(self.rejections.len() - 1);
                }
            }
            EventKind::TokenIssued
            | EventKind::TokenRotated
            | EventKind::TokenRefreshed
            | EventKind::TokenExpired
            | EventKind::TokenRevoked => {
                if self.lifecycle.len() == LIFECYCLE_KEPT {
                    self.lifecycle.pop_front();
                }
                self.tokens.observe(&event);
                self.counts_stale = true;
                self.lifecycle.push_back(Lifecycle::from(event));
            }
            EventKind::MessageDeadLettered
            | EventKind::WorkerStats
            | EventKind::TokenRefreshFailed
            | EventKind::TokenRevokedUpstream
            | EventKind::IntegrationUnhealthy
            | EventKind::IntegrationHealthy => {}
        }
    }

    fn apply_stats(&mut self, stats: WorkerStats, now: UnixMillis) {
        let prefix = format!("{}.", self.namespace);
        let rate_of = |suffix: &str| {
            stats
                .queues
                .iter()
                .find(|q| q.queue.strip_prefix(&prefix) == Some(suffix))
                .map_or(0, |q| q.rate.round() as u64)
        };
        self.rates.ingest.push(rate_of("integration.connected"));
        self.rates.resolves.push(rate_of("token.resolve"));
        let total: u64 = stats.rejections.iter().map(|c| c.count).sum();
        let delta = self
            .last_rejection_total
            .map_or(0, |last| total.saturating_sub(last));
        self.last_rejection_total = Some(total);
        self.rates.rejections.push(delta);
        self.rejection_counts = stats.rejections.iter().map(|c| (c.code, c.count)).collect();
        self.worker = Some(WorkerView {
            seen_at: now,
            uptime_seconds: stats.uptime_seconds,
            queues: stats
                .queues
                .iter()
                .map(|q| QueueLine {
                    name: q.queue.strip_prefix(&prefix).unwrap_or(&q.queue).to_owned(),
                    rate: q.rate,
                    depth: q.depth,
                })
                .collect(),
            dead_depth: stats.dead_depth,
            dead_lettered: stats.dead_lettered,
            store_bytes: stats.store_bytes,
        });
    }

    fn set_counts(&mut self, rows: &[mmt_shared::console::CountRow]) {
        if rows.is_empty() && !self.counts.is_empty() {
            return;
        }
        self.counts.clear();
        for row in rows {
            let line = self
                .counts
                .entry((row.broker_type.clone(), row.scope))
                .or_default();
            line.by_state[state_index(row.state)] += row.count;
        }
        self.counts.retain(|_, line| line.total() > 0);
    }
}

#[cfg(test)]
mod tests;
