//! What the model keeps of the refresh engine (CONTRACT.md §9): its health
//! from `worker.stats`, and one token's refresh state from a listing, summed
//! up as the mark the token table shows.

use mmt_shared::console::{self, RefreshStats};
use mmt_shared::time_fmt::{UnixMillis, parse_rfc3339};

/// "Next refresh soon" in the token table: within this window.
pub const SOON_MS: UnixMillis = 60_000;

/// One integration's refresh health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntegrationLine {
    /// The brokerType.
    pub broker_type: String,
    /// Tokens whose last refresh failed.
    pub failing: u64,
    /// The last failure code.
    pub last_error: Option<String>,
    /// Whether the provider refuses the operator's client credentials.
    pub unhealthy: bool,
}

/// The refresh engine's health, as the last `worker.stats` said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshHealth {
    /// `refresh_concurrency` in force.
    pub concurrency: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Tokens due within the next minute.
    pub due_soon: u64,
    /// Successful refreshes since the worker started.
    pub refreshed: u64,
    /// Failed refreshes since the worker started.
    pub failed: u64,
    /// Tokens past `expiresAt` whose refresh keeps failing.
    pub refresh_pending: u64,
    /// The integrations that failed since the worker started: unhealthy
    /// first, then by failing tokens, most first.
    pub integrations: Vec<IntegrationLine>,
}

impl From<&RefreshStats> for RefreshHealth {
    fn from(stats: &RefreshStats) -> Self {
        let mut integrations: Vec<IntegrationLine> = stats
            .integrations
            .iter()
            .map(|i| IntegrationLine {
                broker_type: i.broker_type.clone(),
                failing: i.failing,
                last_error: i.last_error.clone(),
                unhealthy: i.unhealthy,
            })
            .collect();
        integrations.sort_by(|a, b| {
            b.unhealthy
                .cmp(&a.unhealthy)
                .then_with(|| b.failing.cmp(&a.failing))
                .then_with(|| a.broker_type.cmp(&b.broker_type))
        });
        Self {
            concurrency: stats.concurrency,
            in_flight: stats.in_flight,
            due_soon: stats.due_soon,
            refreshed: stats.refreshed,
            failed: stats.failed,
            refresh_pending: stats.refresh_pending,
            integrations,
        }
    }
}

/// A token's refresh state, from the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRefresh {
    /// When the engine looks at it next (RFC 3339).
    pub next_at: String,
    /// When it was last refreshed (RFC 3339), if ever.
    pub last_refreshed_at: Option<String>,
    /// Failed refreshes since the last success.
    pub attempts: u32,
    /// The last failure code while failing.
    pub last_error: Option<String>,
    /// Whether a request is in flight.
    pub in_flight: bool,
    /// Whether resolve answers `refresh_pending`.
    pub pending: bool,
}

impl From<console::TokenRefresh> for TokenRefresh {
    fn from(r: console::TokenRefresh) -> Self {
        Self {
            next_at: r.next_at,
            last_refreshed_at: r.last_refreshed_at,
            attempts: r.attempts,
            last_error: r.last_error,
            in_flight: r.in_flight,
            pending: r.pending,
        }
    }
}

/// What the token table says of a token's refresh, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshMark {
    /// Past `expiresAt` while the provider fails: resolve answers
    /// `refresh_pending`.
    Pending,
    /// Failing (this many attempts), not yet past `expiresAt`.
    Failing(u32),
    /// A request is in flight.
    InFlight,
    /// The next refresh is this many milliseconds away (0: due now).
    Next(UnixMillis),
}

impl RefreshMark {
    /// Whether the mark asks for attention (red or yellow).
    pub fn is_soon(self) -> bool {
        matches!(self, RefreshMark::Next(ms) if ms < SOON_MS)
    }
}

impl TokenRefresh {
    /// The mark at `now`.
    pub fn mark(&self, now: UnixMillis) -> RefreshMark {
        if self.pending {
            RefreshMark::Pending
        } else if self.in_flight {
            RefreshMark::InFlight
        } else if self.attempts > 0 {
            RefreshMark::Failing(self.attempts)
        } else {
            RefreshMark::Next(
                parse_rfc3339(&self.next_at).map_or(0, |at| at.saturating_sub(now).max(0)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use mmt_shared::console::IntegrationHealth;
    use mmt_shared::time_fmt::rfc3339;

    use super::*;

    fn refresh(attempts: u32, in_flight: bool, pending: bool, next_at: UnixMillis) -> TokenRefresh {
        TokenRefresh {
            next_at: rfc3339(next_at),
            last_refreshed_at: None,
            attempts,
            last_error: (attempts > 0).then(|| "timeout".into()),
            in_flight,
            pending,
        }
    }

    #[test]
    fn the_mark_is_the_most_urgent_news() {
        let now = 1_796_163_068_000;
        assert_eq!(refresh(3, true, true, now).mark(now), RefreshMark::Pending);
        assert_eq!(
            refresh(3, true, false, now).mark(now),
            RefreshMark::InFlight
        );
        assert_eq!(
            refresh(3, false, false, now).mark(now),
            RefreshMark::Failing(3)
        );
        let soon = refresh(0, false, false, now + 42_000).mark(now);
        assert_eq!(soon, RefreshMark::Next(42_000));
        assert!(soon.is_soon());
        let later = refresh(0, false, false, now + SOON_MS).mark(now);
        assert!(!later.is_soon());
        assert_eq!(
            refresh(0, false, false, now - 5).mark(now),
            RefreshMark::Next(0),
            "overdue is due now"
        );
    }

    #[test]
    fn unhealthy_integrations_come_first_then_the_most_failing() {
        let line = |name: &str, failing, unhealthy| IntegrationHealth {
            broker_type: name.into(),
            failing,
            last_error: Some("x".into()),
            unhealthy,
        };
        let health = RefreshHealth::from(&RefreshStats {
            integrations: vec![line("a", 1, false), line("b", 9, false), line("c", 1, true)],
            ..RefreshStats::default()
        });
        let order: Vec<&str> = health
            .integrations
            .iter()
            .map(|i| i.broker_type.as_str())
            .collect();
        assert_eq!(order, ["c", "b", "a"]);
    }

    #[test]
    fn stats_carry_the_health_and_a_failed_refresh_reloads_the_token_page() {
        use crate::state::{Action, Command, Link, Msg, Screen, State};
        use mmt_shared::console::{TokenRow as WireRow, TokensReply, WorkerStats};
        use mmt_shared::events::{Event, EventKind};
        use mmt_shared::wire::{Scope, TokenState};

        let t0 = 1_796_163_068_000;
        let mut state = State::new("mmt", t0);
        let asked = state.update(Msg::Link(Link::Up), t0);
        let stats = WorkerStats {
            refresh: RefreshStats {
                concurrency: 16,
                in_flight: 3,
                refresh_pending: 2,
                ..RefreshStats::default()
            },
            ..WorkerStats::default()
        };
        state.update(Msg::Stats(stats), t0);
        let health = state.worker.as_ref().map(|w| w.refresh.clone());
        assert_eq!(
            health.map(|h| (h.in_flight, h.refresh_pending)),
            Some((3, 2))
        );
        state.act(Action::Jump(Screen::Tokens));
        let [Command::Snapshot, Command::Tokens(request)] = asked.as_slice() else {
            panic!("the first page is asked for: {asked:?}");
        };
        let row = WireRow {
            token_id: "tok_a".into(),
            client_id: "acme".into(),
            broker_type: "coinbase".into(),
            scope: Scope::Read,
            state: TokenState::Active,
            expires_at: None,
            updated_at: rfc3339(t0),
            end_user_id: None,
            account_id: None,
            created_at: None,
            refresh: Some(console::TokenRefresh {
                next_at: rfc3339(t0 + 1_000),
                attempts: 1,
                last_error: Some("timeout".into()),
                ..console::TokenRefresh::default()
            }),
        };
        let reply = TokensReply {
            ok: true,
            tokens: vec![row],
            next_after: None,
            scanned: 1,
            total: None,
            next_offset: None,
            by_client: Vec::new(),
        };
        state.update(Msg::Tokens(request.clone(), reply), t0);
        let mark = state.tokens.rows[0].refresh.as_ref().map(|r| r.mark(t0));
        assert_eq!(mark, Some(RefreshMark::Failing(1)));
        assert!(
            state.update(Msg::Tick, t0).is_empty(),
            "nothing changed yet"
        );
        let mut failed = Event::new(EventKind::TokenRefreshFailed, rfc3339(t0));
        failed.token_id = Some("tok_a".into());
        state.update(Msg::Event(failed), t0);
        assert!(
            matches!(state.update(Msg::Tick, t0).as_slice(), [Command::Tokens(_)]),
            "the page is asked again"
        );
    }
}
