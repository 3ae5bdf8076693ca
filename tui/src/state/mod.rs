//! The console's model: what the operator sees, as a pure function of the
//! messages fed to [`State::update`] and the actions fed to
//! [`State::act`]. No terminal and no broker here; wire messages (events,
//! stats, snapshot and listing replies) are turned into the model's own
//! types at this boundary (`From`), so views never see a wire message; only
//! the contract's small value enums (scope, state, error code) are shared.

mod detail;
mod feed;
mod fleet;
mod health;
mod keys;
mod msg;
mod refresh;
mod select;
mod tokens;
mod worker;

use std::collections::{BTreeMap, VecDeque};

use mmt_shared::console::{WorkerStats, reason_kind};

pub use detail::Detail;
pub use health::TopClients;
pub use keys::KeyRing;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{ErrorCode, Scope};
pub use msg::{Action, Command, Link, Msg, Screen};
use worker::state_index;
pub use worker::{CountLine, QueueLine, Rates, Series, WorkerView};

pub use feed::{DeadLetter, Lifecycle, Rejection};
pub use refresh::{RefreshHealth, RefreshMark};
pub use tokens::{Column, FilterKey, PAGE_SIZE, TokenRow, Tokens};

/// A worker is "alive" while its last `worker.stats` is younger than this.
pub const ALIVE_WITHIN_MS: UnixMillis = 3_000;

/// Whether a dead letter is bad input (`invalid_message`,
/// `invalid_request`): a refusal with no `request.rejected` of its own. A
/// dead letter with another code (`forbidden`) comes with its
/// `request.rejected`, which is the refusal: counted once.
fn is_bad_input(event: &Event) -> bool {
    matches!(
        event.code,
        Some(ErrorCode::InvalidMessage | ErrorCode::InvalidRequest)
    )
}

/// How many seconds of rates the sparklines keep.
pub const HISTORY: usize = 120;

/// How many rejections the feed keeps.
pub const REJECTIONS_KEPT: usize = 1_000;

/// How many lifecycle events the overview keeps.
pub const LIFECYCLE_KEPT: usize = 200;

/// How many dead letters the dead-letter screen keeps.
pub const DEAD_KEPT: usize = 200;

/// How many events are held while the feed is paused; beyond that the oldest
/// held events are dropped (and counted).
pub const HELD_MAX: usize = 10_000;

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
    /// The first key row the help popup shows.
    pub help_scroll: usize,
    /// The terminal's height at the last draw (the help popup's room).
    pub rows: u16,
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
    /// The selected lifecycle event, counted from the newest.
    pub lifecycle_selected: usize,
    /// Refusals by client since the worker started, most first.
    pub rejections_by_client: Vec<(String, u64)>,
    /// Recent dead letters, newest last.
    pub dead_letters: VecDeque<DeadLetter>,
    /// Dead letters by kind of reason, most first.
    pub dead_by_reason: Vec<(String, u64)>,
    /// The selected dead letter, counted from the newest.
    pub dead_selected: usize,
    /// The detail pane, when open.
    pub detail: Option<Detail>,
    /// The dead letter whose details are open.
    pub dead_open: Option<DeadLetter>,
    /// The top clients by tokens (the health screen).
    pub top_clients: TopClients,
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
    /// The workers whose reports the console merges.
    fleet: fleet::Fleet,
    /// Tokens changed since the counts were asked for.
    counts_stale: bool,
    /// A snapshot or counts request is in flight.
    snapshot_pending: bool,
    /// A message was dead-lettered since the list was asked for.
    dead_stale: bool,
}

impl State {
    /// A model for `namespace`, before anything is known.
    pub fn new(namespace: &str, now: UnixMillis) -> Self {
        Self {
            namespace: namespace.to_owned(),
            now,
            screen: Screen::Overview,
            help: false,
            help_scroll: 0,
            rows: 24,
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
            lifecycle_selected: 0,
            rejections_by_client: Vec::new(),
            dead_letters: VecDeque::new(),
            dead_by_reason: Vec::new(),
            dead_selected: 0,
            detail: None,
            dead_open: None,
            top_clients: TopClients::default(),
            paused: false,
            held: VecDeque::new(),
            dropped: 0,
            feed_dropped: 0,
            held_dropped: 0,
            tokens: Tokens::default(),
            notice: None,
            fleet: fleet::Fleet::default(),
            counts_stale: false,
            snapshot_pending: false,
            dead_stale: false,
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
                        .filter(|e| e.kind != EventKind::MessageDeadLettered || is_bad_input(e))
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
                    self.lifecycle_selected = 0;
                }
                if !self.paused && !snapshot.recent_dead_letters.is_empty() {
                    let known = std::mem::take(&mut self.dead_letters);
                    self.dead_letters = snapshot
                        .recent_dead_letters
                        .into_iter()
                        .map(DeadLetter::from)
                        .map(|mut letter| {
                            // What the live event said and the list does not.
                            if let Some(seen) = known.iter().rev().find(|k| k.same(&letter)) {
                                letter.broker_user.clone_from(&seen.broker_user);
                                letter.client_id.clone_from(&seen.client_id);
                            }
                            letter
                        })
                        .collect();
                    self.dead_selected = 0;
                }
                if !snapshot.dead_by_reason.is_empty() {
                    self.dead_by_reason = snapshot
                        .dead_by_reason
                        .into_iter()
                        .map(|r| (r.reason, r.count))
                        .collect();
                }
                Vec::new()
            }
            Msg::Tokens(request, reply) => {
                self.notice = None;
                match self.detail.as_mut() {
                    Some(detail) if detail.awaits(&request) => detail.loaded(reply),
                    _ if self.top_clients.awaits(&request) => self.top_clients.loaded(reply),
                    _ => self.tokens.loaded(&request, reply),
                }
                Vec::new()
            }
            Msg::RequestFailed(request, why) => {
                match request {
                    Some(request) => match self.detail.as_mut() {
                        Some(detail) if detail.awaits(&request) => detail.failed(),
                        _ if self.top_clients.awaits(&request) => self.top_clients.failed(),
                        _ => self.tokens.failed(&request),
                    },
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
                if (self.counts_stale || self.dead_stale)
                    && !self.snapshot_pending
                    && self.worker_alive()
                {
                    self.snapshot_pending = true;
                    commands.push(if self.dead_stale {
                        Command::DeadLetters
                    } else {
                        Command::Counts
                    });
                    self.counts_stale = false;
                    self.dead_stale = false;
                }
                if self.screen == Screen::Tokens && self.tokens.is_stale() {
                    commands.push(Command::Tokens(self.tokens.reload()));
                }
                if self.worker_alive()
                    && let Some(request) = self.detail.as_mut().and_then(|d| d.tick(now))
                {
                    commands.push(Command::Tokens(request));
                }
                commands
            }
        }
    }

    /// Carries out an operator's action; returns what to ask for.
    pub fn act(&mut self, action: Action) -> Vec<Command> {
        if self.help {
            match action {
                Action::Help | Action::Close | Action::Quit => {}
                Action::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                Action::Down => self.help_scroll = (self.help_scroll + 1).min(self.help_last()),
                Action::PageUp | Action::Top => self.help_scroll = 0,
                Action::PageDown | Action::Bottom => self.help_scroll = self.help_last(),
                _ => return Vec::new(),
            }
            if !matches!(action, Action::Help | Action::Close | Action::Quit) {
                return Vec::new();
            }
        }
        if self.detail.is_some() || self.dead_open.is_some() {
            return match action {
                Action::Quit => vec![Command::Quit],
                Action::Help => {
                    self.help = true;
                    self.help_scroll = 0;
                    Vec::new()
                }
                Action::Copy => self.copy(),
                Action::Refresh => {
                    let now = self.now;
                    self.detail
                        .as_mut()
                        .and_then(|d| d.ask(now))
                        .map(Command::Tokens)
                        .into_iter()
                        .collect()
                }
                Action::Close | Action::Open => {
                    self.detail = None;
                    self.dead_open = None;
                    Vec::new()
                }
                _ => Vec::new(),
            };
        }
        let shown = self.screen;
        match action {
            Action::Open => return self.open_detail(),
            Action::Copy => return self.copy(),
            Action::NextPage
                if self.screen == Screen::Tokens && !self.tokens.more && !self.tokens.loading =>
            {
                self.notice = Some(format!(
                    "last page: page {} is the end of the list",
                    self.tokens.page + 1
                ));
            }
            Action::Quit => return vec![Command::Quit],
            Action::NextScreen => self.screen = self.screen.offset(1),
            Action::PrevScreen => self.screen = self.screen.offset(-1),
            Action::Jump(screen) => self.screen = screen,
            Action::Help => {
                self.help = !self.help;
                self.help_scroll = 0;
            }
            Action::Close => {
                self.help = false;
                self.tokens.cancel_filter();
            }
            Action::Pause => self.toggle_pause(),
            Action::Refresh => {
                self.snapshot_pending = true;
                let mut commands = vec![Command::Snapshot];
                commands.push(Command::Tokens(self.tokens.reload()));
                if self.screen == Screen::Health {
                    commands.extend(self.top_clients.ask().map(Command::Tokens));
                }
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
        if self.screen == Screen::Health && shown != Screen::Health {
            return self
                .top_clients
                .ask()
                .map(Command::Tokens)
                .into_iter()
                .collect();
        }
        Vec::new()
    }

    /// The help popup's last first row: the one that shows the last key
    /// with the terminal's height (its borders and header take 3 rows).
    fn help_last(&self) -> usize {
        crate::input::BINDINGS
            .len()
            .saturating_sub(usize::from(self.rows.saturating_sub(3)))
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

    fn refused(&mut self, event: Event) {
        // A refusal that is also dead-lettered (`forbidden` on a
        // state-changing queue) came as a dead letter first: it names the
        // claimed client, which the dead letter does not.
        if let (Some(id), Some(client)) = (&event.message_id, &event.client_id)
            && let Some(dead) = self
                .dead_letters
                .iter_mut()
                .rev()
                .find(|d| d.message_id.as_ref() == Some(id) && d.client_id.is_none())
        {
            dead.client_id = Some(client.clone());
        }
        if self.rejections.len() == REJECTIONS_KEPT {
            self.rejections.pop_front();
        }
        self.rejections.push_back(Rejection::from(event));
        if self.rejection_selected > 0 {
            self.rejection_selected = (self.rejection_selected + 1).min(self.rejections.len() - 1);
        }
    }

    fn dead_lettered(&mut self, event: &Event) {
        if self.dead_letters.len() == DEAD_KEPT {
            self.dead_letters.pop_front();
        }
        let letter = DeadLetter::from(event);
        let kind = reason_kind(&letter.reason).to_owned();
        match self.dead_by_reason.iter_mut().find(|(r, _)| *r == kind) {
            Some((_, n)) => *n += 1,
            None => self.dead_by_reason.push((kind, 1)),
        }
        self.dead_by_reason
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.dead_letters.push_back(letter);
        if self.dead_selected > 0 {
            self.dead_selected = (self.dead_selected + 1).min(self.dead_letters.len() - 1);
        }
        self.dead_stale = true;
    }

    fn apply_event(&mut self, event: Event) {
        match event.kind {
            EventKind::RequestRejected => self.refused(event),
            EventKind::MessageDeadLettered => {
                self.dead_lettered(&event);
                if is_bad_input(&event) {
                    self.refused(event);
                }
            }
            EventKind::TokenIssued
            | EventKind::TokenRotated
            | EventKind::TokenReconnected
            | EventKind::TokenRefreshed
            | EventKind::TokenExpired
            | EventKind::TokenRevoked => {
                if self.lifecycle.len() == LIFECYCLE_KEPT {
                    self.lifecycle.pop_front();
                }
                self.tokens.observe(&event);
                if let Some(detail) = self.detail.as_mut()
                    && event.token_id.as_deref() == Some(detail.token_id.as_str())
                {
                    detail.touch();
                }
                self.counts_stale = true;
                self.lifecycle.push_back(Lifecycle::from(event));
                if self.lifecycle_selected > 0 {
                    self.lifecycle_selected =
                        (self.lifecycle_selected + 1).min(self.lifecycle.len() - 1);
                }
            }
            EventKind::TokenRefreshFailed => self.tokens.touch(),
            EventKind::WorkerStats
            | EventKind::TokenRevokedUpstream
            | EventKind::IntegrationUnhealthy
            | EventKind::IntegrationHealthy => {}
        }
    }

    fn apply_stats(&mut self, report: WorkerStats, now: UnixMillis) {
        let observed = self.fleet.observe(report, now);
        let stats = observed.merged;
        let prefix = format!("{}.", self.namespace);
        if let Some(refused) = observed.sample {
            let rate_of = |suffix: &str| {
                stats
                    .queues
                    .iter()
                    .find(|q| q.queue.strip_prefix(&prefix) == Some(suffix))
                    .map_or(0, |q| q.rate.round() as u64)
            };
            self.rates.ingest.push(rate_of("integration.connected"));
            self.rates.resolves.push(rate_of("token.resolve"));
            self.rates.rejections.push(refused);
        }
        self.rejection_counts = stats.rejections.iter().map(|c| (c.code, c.count)).collect();
        self.rejections_by_client = stats
            .rejections_by_client
            .iter()
            .map(|c| (c.client_id.clone(), c.count))
            .collect();
        self.worker = Some(WorkerView {
            seen_at: now,
            reporting: observed.workers,
            uptime_seconds: stats.uptime_seconds,
            queues: stats
                .queues
                .iter()
                .map(|q| QueueLine {
                    name: q.queue.strip_prefix(&prefix).unwrap_or(&q.queue).to_owned(),
                    rate: q.rate,
                    depth: q.depth,
                    consumers: q.consumers,
                    unacked: q.unacked,
                    latency_ms: (q.latency_p50_ms, q.latency_p99_ms),
                })
                .collect(),
            dead_depth: stats.dead_depth,
            dead_lettered: stats.dead_lettered,
            store_bytes: stats.store_bytes,
            store_engine: stats.store_engine.clone(),
            identity: stats.identity,
            cpu_percent: stats.cpu_percent,
            rss_bytes: stats.rss_bytes,
            refresh: RefreshHealth::from(&stats.refresh),
            keys: stats.keys.as_ref().map(|report| {
                let held = self.worker.as_ref().and_then(|w| w.keys.as_ref());
                KeyRing::merged(held, report, stats.worker.as_deref(), now)
            }),
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
