//! Every screen drawn into ratatui's `TestBackend` at 80x24 and compared with
//! an `insta` snapshot. The model is fed real-looking data (fresh tokenIds,
//! the current time); the snapshots filter ids and times out.

use mmt_shared::console::{
    ClientCount, CodeCount, CountRow, DeadLetterRow, IntegrationHealth, QueueStats, ReasonCount,
    RefreshStats, SnapshotReply, TokenRefresh, TokenRow as WireRow, TokensReply, WorkerStats,
};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{now_millis, rfc3339};
use mmt_shared::wire::{ErrorCode, Operation, Scope, TokenState};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::state::{Action, Msg};

/// Fresh tokenIds shaped like the worker's, in the order they are made (so
/// the listing's order does not depend on chance).
fn token_ids() -> impl FnMut() -> String {
    let base = uuid::Uuid::new_v4().simple().to_string();
    let mut n = 0u16;
    move || {
        n += 1;
        format!("tok_{}{n:04x}", base.get(..28).unwrap_or_default())
    }
}

fn event(kind: EventKind, at: &str, token: &str, client: &str, scope: Scope) -> Event {
    let mut event = Event::new(kind, at.to_owned());
    event.token_id = Some(token.to_owned());
    event.client_id = Some(client.to_owned());
    event.broker_type = Some("coinbase".into());
    event.scope = Some(scope);
    event
}

fn queue(name: &str, rate: f64, depth: u64) -> QueueStats {
    QueueStats {
        queue: format!("mmt.{name}"),
        received: 0,
        acked: 0,
        rate,
        depth: Some(depth),
        consumers: Some(1),
        unacked: 0,
        latency_p50_ms: Some(1.5),
        latency_p99_ms: Some(8.0),
    }
}

pub(super) fn stats(rejections: u64) -> WorkerStats {
    WorkerStats {
        at: String::new(),
        worker: None,
        uptime_seconds: 3725,
        queues: vec![
            queue("integration.connected", 12.0, 0),
            queue("connection.removed", 1.0, 0),
            queue("token.resolve", 240.5, 17),
            queue("link.access_tokens", 3.0, 0),
        ],
        rejections: vec![
            CodeCount {
                code: ErrorCode::ScopeMismatch,
                count: rejections,
            },
            CodeCount {
                code: ErrorCode::NotFound,
                count: 4,
            },
        ],
        dead_lettered: 2,
        dead_depth: Some(2),
        store_bytes: 3 << 20,
        store_engine: None,
        identity: Default::default(),
        cpu_percent: Some(12.5),
        rss_bytes: Some(54 << 20),
        rejections_by_client: vec![
            ClientCount {
                client_id: "acme".into(),
                count: 4,
            },
            ClientCount {
                client_id: "initech".into(),
                count: 2,
            },
        ],
        refresh: refresh_stats(),
        purge: None,
        keys: None,
    }
}

/// A refresh engine with trouble at two integrations.
fn refresh_stats() -> RefreshStats {
    RefreshStats {
        concurrency: 16,
        in_flight: 2,
        due_soon: 40,
        refreshed: 1203,
        failed: 17,
        refresh_pending: 3,
        skipped_records: 0,
        integrations: vec![
            IntegrationHealth {
                broker_type: "coinbase".into(),
                failing: 12,
                last_error: Some("http_503".into()),
                unhealthy: false,
            },
            IntegrationHealth {
                broker_type: "gemini".into(),
                failing: 2,
                last_error: Some("invalid_client".into()),
                unhealthy: true,
            },
        ],
    }
}

fn snapshot(now: i64) -> SnapshotReply {
    let count = |state, scope, broker_type: &str, count| CountRow {
        state,
        scope,
        broker_type: broker_type.into(),
        count,
    };
    SnapshotReply {
        ok: true,
        at: String::new(),
        counts: vec![
            count(TokenState::Active, Scope::Read, "coinbase", 812_344),
            count(TokenState::Active, Scope::Write, "coinbase", 120_001),
            count(TokenState::ReauthRequired, Scope::Read, "binance", 5_210),
            count(TokenState::Active, Scope::Read, "binance", 61_002),
            count(TokenState::Revoked, Scope::Read, "coinbase", 1_443),
        ],
        recent_rejections: Vec::new(),
        recent_lifecycle: Vec::new(),
        stats: WorkerStats::default(),
        recent_dead_letters: vec![DeadLetterRow {
            at: rfc3339(now - 42_000),
            queue: "mmt.integration.connected".into(),
            reason: "body is not valid JSON: line 1, column 1".into(),
            code: Some(ErrorCode::InvalidMessage),
            message_id: Some("msg-bad-1".into()),
            size: 11,
            broker_user: None,
            client_id: None,
        }],
        dead_by_reason: vec![ReasonCount {
            reason: "body is not valid JSON".into(),
            count: 1,
        }],
    }
}

/// A console that has seen a worker, a few lifecycle events, rejections and
/// a page of tokens.
pub(super) fn busy_state() -> State {
    let now = now_millis();
    let at = rfc3339(now);
    let mut token_id = token_ids();
    let mut state = State::new("mmt", now);
    state.update(Msg::Link(Link::Up), now);
    state.update(Msg::Snapshot(snapshot(now)), now);
    for (i, rejections) in [0, 1, 3, 3, 6].into_iter().enumerate() {
        state.update(Msg::Stats(stats(rejections)), now + (i as i64) * 1000);
    }
    let read_token = token_id();
    let write_token = token_id();
    state.update(
        Msg::Event(event(
            EventKind::TokenIssued,
            &at,
            &read_token,
            "acme",
            Scope::Read,
        )),
        now,
    );
    state.update(
        Msg::Event(event(
            EventKind::TokenIssued,
            &at,
            &write_token,
            "globex",
            Scope::Write,
        )),
        now,
    );
    let mut mismatch = event(
        EventKind::RequestRejected,
        &at,
        &read_token,
        "acme",
        Scope::Read,
    );
    mismatch.operation = Some(Operation::Write);
    mismatch.code = Some(ErrorCode::ScopeMismatch);
    state.update(Msg::Event(mismatch), now);
    let mut not_found = Event::new(EventKind::RequestRejected, at.clone());
    not_found.client_id = Some("initech".into());
    not_found.token_id = Some(token_id());
    not_found.operation = Some(Operation::Read);
    not_found.code = Some(ErrorCode::NotFound);
    state.update(Msg::Event(not_found), now);
    let mut revoked = event(
        EventKind::TokenRevoked,
        &at,
        &read_token,
        "acme",
        Scope::Read,
    );
    revoked.state = Some(TokenState::Revoked);
    state.update(Msg::Event(revoked), now);
    let mut bad = Event::new(EventKind::MessageDeadLettered, at.clone());
    bad.queue = Some("mmt.token.resolve".into());
    bad.reason = Some("body does not match token.resolve: missing field `tokenId`".into());
    bad.code = Some(ErrorCode::InvalidMessage);
    bad.message_id = Some("msg-bad-2".into());
    state.update(Msg::Event(bad), now);
    let request = state.tokens.reload();
    let row = |id: &str, client: &str, scope, token_state, expires: Option<&str>| WireRow {
        token_id: id.to_owned(),
        client_id: client.into(),
        broker_type: "coinbase".into(),
        scope,
        state: token_state,
        expires_at: expires.map(str::to_owned),
        updated_at: at.clone(),
        end_user_id: (token_state != TokenState::Revoked).then(|| format!("user-of-{client}")),
        account_id: (token_state != TokenState::Revoked).then(|| "cb-main".to_owned()),
        created_at: (token_state != TokenState::Revoked).then(|| at.clone()),
        refresh: None,
    };
    let refreshing = |refresh: TokenRefresh, mut row: WireRow| {
        row.refresh = Some(refresh);
        row
    };
    let failing = TokenRefresh {
        next_at: rfc3339(now + 42_000),
        last_refreshed_at: Some(rfc3339(now - 3_600_000)),
        attempts: 2,
        last_error: Some("http_503".into()),
        in_flight: false,
        pending: false,
    };
    let pending = TokenRefresh {
        attempts: 5,
        pending: true,
        ..failing.clone()
    };
    let soon = TokenRefresh {
        attempts: 0,
        last_error: None,
        ..failing.clone()
    };
    let reply = TokensReply {
        ok: true,
        tokens: vec![
            row(&read_token, "acme", Scope::Read, TokenState::Revoked, None),
            refreshing(
                failing,
                row(
                    &write_token,
                    "globex",
                    Scope::Write,
                    TokenState::Active,
                    Some(&at),
                ),
            ),
            row(
                &token_id(),
                "initech",
                Scope::Read,
                TokenState::ReauthRequired,
                Some(&at),
            ),
            refreshing(
                pending,
                row(
                    &token_id(),
                    "umbrella",
                    Scope::Read,
                    TokenState::Active,
                    Some(&at),
                ),
            ),
            refreshing(
                soon,
                row(
                    &token_id(),
                    "hooli",
                    Scope::Read,
                    TokenState::Active,
                    Some(&at),
                ),
            ),
        ],
        next_after: Some("tok_next".into()),
        scanned: 3,
        total: None,
        next_offset: None,
        by_client: Vec::new(),
    };
    state.update(Msg::Tokens(request, reply), now + 5000);
    state
}

/// A snapshot with nothing in it.
pub(super) fn empty_snapshot() -> SnapshotReply {
    SnapshotReply {
        ok: true,
        at: String::new(),
        counts: Vec::new(),
        recent_rejections: Vec::new(),
        recent_lifecycle: Vec::new(),
        stats: WorkerStats::default(),
        recent_dead_letters: Vec::new(),
        dead_by_reason: Vec::new(),
    }
}

pub(super) fn screen(state: &State, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal
        .draw(|frame| draw(frame, state, Styles::new(true)))
        .expect("draws");
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

macro_rules! assert_screen {
    ($name:expr, $text:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"tok_[0-9a-f]{4,32}", "tok_[id]"),
                (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "[date time] UTC"),
                (r"\d{2}:\d{2}:\d{2}", "[time]"),
                (r"\d{2}-\d{2} \d{2}:\d{2}", "[date]"),
                (r"│\d{2}:│", "│[hh]:│"),
            ],
        }, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

#[test]
fn overview() {
    assert_screen!("overview", screen(&busy_state(), 80, 24));
}

#[test]
fn overview_large() {
    assert_screen!("overview_200x60", screen(&busy_state(), 200, 60));
}

#[test]
fn overview_stale_when_the_worker_falls_silent() {
    let mut state = busy_state();
    state.update(Msg::Tick, state.now + 65_000);
    assert_screen!("overview_stale", screen(&state, 80, 24));
}

#[test]
fn tokens_large() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    assert_screen!("tokens_200x60", screen(&state, 200, 60));
}

#[test]
fn tokens_filter_reopened_with_the_old_text_selected() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    state.act(Action::Filter);
    for c in "client:globex".chars() {
        state.type_filter(crate::state::FilterKey::Char(c));
    }
    state.type_filter(crate::state::FilterKey::Enter);
    state.act(Action::Filter);
    assert_screen!("tokens_filter_reopened", screen(&state, 80, 24));
}

fn detail_state() -> State {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    state.act(Action::Down);
    state.act(Action::Open);
    state
}

#[test]
fn detail_pane() {
    assert_screen!("detail", screen(&detail_state(), 80, 24));
}

#[test]
fn detail_pane_large() {
    assert_screen!("detail_200x60", screen(&detail_state(), 200, 60));
}

#[test]
fn detail_pane_of_a_revoked_token_from_the_overview() {
    let mut state = busy_state();
    state.act(Action::Open);
    assert!(state.detail.as_ref().and_then(|d| d.row.as_ref()).is_some());
    assert_screen!("detail_revoked", screen(&state, 80, 24));
}

#[test]
fn dead_letters() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::DeadLetters));
    assert_screen!("dead_letters", screen(&state, 80, 24));
}

#[test]
fn dead_letter_details_show_the_whole_reason() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::DeadLetters));
    state.act(Action::Open);
    let text = screen(&state, 80, 24);
    assert!(
        text.contains("missing field `tokenId`"),
        "the reason in full:\n{text}"
    );
    assert_screen!("dead_letter_detail", text);
}

#[test]
fn dead_letter_details_large() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::DeadLetters));
    state.act(Action::Down);
    state.act(Action::Open);
    assert_screen!("dead_letter_detail_200x60", screen(&state, 200, 60));
}

#[test]
fn dead_letters_large() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::DeadLetters));
    assert_screen!("dead_letters_200x60", screen(&state, 200, 60));
}

#[test]
fn health() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Health));
    assert_screen!("health", screen(&state, 80, 24));
}

#[test]
fn health_large_with_top_clients() {
    let mut state = busy_state();
    let asked = state.act(Action::Jump(Screen::Health));
    let [crate::state::Command::Tokens(request)] = asked.as_slice() else {
        panic!("the top clients are asked for: {asked:?}");
    };
    let mut reply = TokensReply {
        ok: true,
        tokens: Vec::new(),
        next_after: None,
        scanned: 3,
        total: Some(3),
        next_offset: None,
        by_client: Vec::new(),
    };
    reply.by_client = vec![ClientCount {
        client_id: "acme".into(),
        count: 2,
    }];
    state.update(Msg::Tokens(request.clone(), reply), state.now);
    assert_screen!("health_200x60", screen(&state, 200, 60));
}

#[test]
fn health_names_a_shared_store_and_how_many_workers_consume() {
    let mut state = busy_state();
    let mut shared = stats(6);
    shared.store_engine = Some("postgres".into());
    for queue in &mut shared.queues {
        queue.consumers = Some(3);
    }
    state.update(Msg::Stats(shared), state.now + 5_000);
    state.act(Action::Jump(Screen::Health));
    for (width, height) in [(120, 40), (200, 60)] {
        let drawn = screen(&state, width, height);
        assert!(drawn.contains("store postgres"), "{drawn}");
        assert!(drawn.contains("3 workers"), "{drawn}");
    }
}

#[test]
fn health_says_how_many_workers_report_and_adds_up_their_cpu() {
    let mut state = busy_state();
    let at = state.now + 5_000;
    for id in ["a", "b"] {
        let mut shared = stats(6);
        shared.worker = Some(id.into());
        shared.store_engine = Some("postgres".into());
        shared.cpu_percent = Some(10.0);
        state.update(Msg::Stats(shared), at);
    }
    state.act(Action::Jump(Screen::Health));
    let drawn = screen(&state, 120, 40);
    assert!(drawn.contains("2 workers together cpu 20.0%"), "{drawn}");
}

#[test]
fn health_stale_when_the_worker_falls_silent() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Health));
    state.update(Msg::Tick, state.now + 65_000);
    assert_screen!("health_stale", screen(&state, 80, 24));
}

#[test]
fn rejections_large() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Rejections));
    assert_screen!("rejections_200x60", screen(&state, 200, 60));
}

#[test]
fn a_cut_token_id_ends_in_an_ellipsis_at_80_columns() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    let text = screen(&state, 80, 24);
    let id = &state.tokens.rows[0].token_id;
    assert!(!text.contains(id.as_str()), "too wide for 80 columns");
    let cut: String = id.chars().take(10).collect();
    let line = text
        .lines()
        .find(|l| l.contains(&cut))
        .expect("the row is drawn");
    assert!(line.contains('…'), "{line}");
}

#[test]
fn tokens() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    assert_screen!("tokens", screen(&state, 80, 24));
}

#[test]
fn tokens_filter_being_typed() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    state.act(Action::Filter);
    for c in "globex".chars() {
        state.type_filter(crate::state::FilterKey::Char(c));
    }
    assert_screen!("tokens_filter", screen(&state, 80, 24));
}

#[test]
fn rejections() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Rejections));
    assert_screen!("rejections", screen(&state, 80, 24));
}

#[test]
fn rejections_paused() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Rejections));
    state.act(Action::Pause);
    let mut held = Event::new(EventKind::RequestRejected, rfc3339(state.now));
    held.code = Some(ErrorCode::Revoked);
    state.update(Msg::Event(held), state.now);
    assert_screen!("rejections_paused", screen(&state, 80, 24));
}

#[test]
fn help() {
    let mut state = busy_state();
    state.act(Action::Help);
    assert_screen!("help", screen(&state, 80, 24));
}

#[test]
fn before_the_broker_and_the_worker() {
    let state = State::new("mmt", now_millis());
    assert_screen!("starting", screen(&state, 80, 24));
}

#[test]
fn broker_down_and_worker_silent() {
    let mut state = busy_state();
    state.update(
        Msg::Link(Link::Connecting {
            attempt: 2,
            error: Some("connection refused".into()),
        }),
        state.now + 42_000,
    );
    assert_screen!("down", screen(&state, 80, 24));
}

#[test]
fn every_screen_draws_at_odd_sizes_without_panicking() {
    let mut state = busy_state();
    for screen_to_show in Screen::ALL {
        state.act(Action::Jump(screen_to_show));
        for (w, h) in [(20, 5), (80, 24), (200, 60), (1, 1)] {
            let text = screen(&state, w, h);
            assert_eq!(text.lines().count(), usize::from(h));
        }
    }
}

#[test]
fn no_color_means_no_colour_and_the_same_text() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Rejections));
    let draw_with = |styles: Styles| {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
        terminal
            .draw(|frame| draw(frame, &state, styles))
            .expect("draws");
        terminal.backend().buffer().clone()
    };
    let plain = draw_with(Styles::new(false));
    let coloured = draw_with(Styles::new(true));
    let reset = ratatui::style::Color::Reset;
    assert!(
        plain
            .content()
            .iter()
            .all(|c| c.fg == reset && c.bg == reset)
    );
    assert!(
        coloured
            .content()
            .iter()
            .any(|c| c.fg == ratatui::style::Color::Red)
    );
    let symbols = |b: &ratatui::buffer::Buffer| {
        b.content()
            .iter()
            .map(|c| c.symbol().to_owned())
            .collect::<String>()
    };
    assert_eq!(
        symbols(&plain),
        symbols(&coloured),
        "colour is never the only signal"
    );
}
