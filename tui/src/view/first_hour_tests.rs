//! Issue 19, "The first hour": the console as `.ci/up` shows it (the fixed
//! model of the captures, namespace `mmt`), checked at 80x24 and at
//! 120x40, one test per finding, and every screen captured at both sizes.

use mmt_shared::console::{IdentityMode, WorkerStats};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::rfc3339;
use mmt_shared::wire::{ErrorCode, TokenState};

use super::captures::{NOW, answer, at, demo, id, serve};
use super::tests::screen;
use crate::input::BINDINGS;
use crate::state::{Action, Command, Msg, Screen, State};

/// The two sizes of the issue.
const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

/// The reason the worker gives a broker user of another client.
const NOT_THIS_CLIENT: &str = "this broker user may not act for the clientId it names";

fn shown(state: &State, screen_: Screen) -> State {
    let mut state = state.clone();
    let asked = state.act(Action::Jump(screen_));
    serve(&mut state, asked);
    state
}

/// A `forbidden` connection as strict mode answers it: dead-lettered
/// first (the broker user named, no clientId), then refused.
fn forbidden_connection(state: &mut State, message_id: &str) {
    let mut dead = Event::new(EventKind::MessageDeadLettered, at(-1_000));
    dead.queue = Some("mmt.integration.connected".into());
    dead.reason = Some(NOT_THIS_CLIENT.into());
    dead.code = Some(ErrorCode::Forbidden);
    dead.message_id = Some(message_id.into());
    dead.broker_user = Some("mmt-demo-publisher".into());
    state.update(Msg::Event(dead), NOW);
    let mut refused = Event::new(EventKind::RequestRejected, at(-1_000));
    refused.queue = Some("integration.connected".into());
    refused.code = Some(ErrorCode::Forbidden);
    refused.client_id = Some("initech".into());
    refused.message_id = Some(message_id.into());
    refused.broker_user = Some("mmt-demo-publisher".into());
    state.update(Msg::Event(refused), NOW);
}

#[test]
fn every_screen_at_80x24_and_120x40() {
    let state = demo();
    for (w, h) in SIZES {
        for (name, screen_) in [
            ("overview", Screen::Overview),
            ("tokens", Screen::Tokens),
            ("rejections", Screen::Rejections),
            ("dead_letters", Screen::DeadLetters),
            ("health", Screen::Health),
        ] {
            let state = shown(&state, screen_);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(&state, w, h));
        }
        let mut detail = shown(&state, Screen::Tokens);
        detail.act(Action::Open);
        insta::assert_snapshot!(format!("detail_{w}x{h}"), screen(&detail, w, h));
        let mut dead = shown(&state, Screen::DeadLetters);
        forbidden_connection(&mut dead, "fx-impersonation");
        dead.act(Action::Open);
        insta::assert_snapshot!(format!("dead_letter_detail_{w}x{h}"), screen(&dead, w, h));
        let mut help = state.clone();
        help.rows = h;
        help.act(Action::Help);
        insta::assert_snapshot!(format!("help_{w}x{h}"), screen(&help, w, h));
    }
}

#[test]
fn a_refused_message_that_is_also_dead_lettered_is_one_refusal() {
    let mut state = shown(&demo(), Screen::Rejections);
    let before = state.rejections.len();
    forbidden_connection(&mut state, "fx-impersonation");
    assert_eq!(state.rejections.len(), before + 1, "one row, not two");
    assert_eq!(state.dead_letters.len(), 6, "and one dead letter");
    let row = state.rejections.back().expect("the refusal");
    assert_eq!(row.client_id, "initech", "the request.rejected is the row");
    // The worker's list in a snapshot holds both events: one row there too.
    let mut dead = Event::new(EventKind::MessageDeadLettered, at(-1_000));
    dead.code = Some(ErrorCode::Forbidden);
    let mut refused = Event::new(EventKind::RequestRejected, at(-1_000));
    refused.code = Some(ErrorCode::Forbidden);
    let mut bad = Event::new(EventKind::MessageDeadLettered, at(-1_000));
    bad.code = Some(ErrorCode::InvalidMessage);
    let mut snapshot = super::tests::empty_snapshot();
    snapshot.recent_rejections = vec![dead, refused, bad];
    state.update(Msg::Snapshot(snapshot), NOW);
    assert_eq!(state.rejections.len(), 2, "forbidden once, bad input once");
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        assert_eq!(text.matches("forbidden").count(), 1, "{text}");
    }
}

#[test]
fn the_by_code_line_never_cuts_a_count() {
    let state = shown(&demo(), Screen::Rejections);
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        for (code, count) in &state.rejection_counts {
            assert!(
                text.contains(&format!("{code} {count}")),
                "{code} {count} whole at {w}x{h}:\n{text}"
            );
        }
    }
    // Too many to fit two lines: whole items, then how many are left out.
    let mut crowded = state.clone();
    for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
        crowded.rejection_counts.insert(code, 1_000_000 + i as u64);
    }
    let text = screen(&crowded, 80, 24);
    let lines: Vec<&str> = text.lines().skip(2).take(2).collect();
    assert!(lines[1].contains("more"), "{text}");
    for line in lines {
        for word in line.split("  ").filter(|w| !w.trim().is_empty()) {
            let word = word.trim().trim_start_matches("by code:").trim();
            assert!(
                word.ends_with("more") || word.split(' ').nth(1).is_some_and(|n| n.len() == 7),
                "a cut count: {word:?} in\n{text}"
            );
        }
    }
}

#[test]
fn at_80_columns_the_header_keeps_strict_mode_and_says_what_liveness_measures() {
    let state = demo();
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        let header = text.lines().next().unwrap_or_default();
        assert!(header.contains("strict mode"), "{header}");
        assert!(header.contains("worker last heard 0s ago"), "{header}");
        assert!(!header.contains("alive"), "{header}");
    }
    let header = screen(&state, 80, 24);
    let header = header.lines().next().unwrap_or_default();
    assert!(
        !header.contains("ns mmt"),
        "the namespace gives way first: {header}"
    );
    let wide = screen(&state, 120, 40);
    assert!(wide.lines().next().unwrap_or_default().contains("ns mmt"));
    // Paused never gives way.
    let mut paused = state.clone();
    paused.act(Action::Pause);
    let text = screen(&paused, 80, 24);
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.contains("PAUSED") && header.contains("strict mode"),
        "{header}"
    );
}

fn stats_at(uptime_seconds: u64, refusals: u64) -> WorkerStats {
    WorkerStats {
        uptime_seconds,
        rejections: vec![mmt_shared::console::CodeCount {
            code: ErrorCode::ScopeMismatch,
            count: refusals,
        }],
        identity: IdentityMode::Strict,
        ..WorkerStats::default()
    }
}

#[test]
fn the_rejects_sparkline_counts_refusals_from_the_first_second() {
    let mut state = State::new("mmt", NOW);
    state.update(Msg::Stats(stats_at(1, 3)), NOW);
    assert_eq!(
        state.rates.rejections.last(),
        3,
        "the worker's first second"
    );
    state.update(Msg::Stats(stats_at(2, 5)), NOW + 1_000);
    assert_eq!(state.rates.rejections.last(), 2);
    for (w, h) in SIZES {
        let mut at_first = State::new("mmt", NOW);
        at_first.update(Msg::Stats(stats_at(1, 3)), NOW);
        let text = screen(&at_first, w, h);
        assert!(text.contains("rejects     3/s"), "{w}x{h}:\n{text}");
    }
    // A worker started again counts from its own start.
    state.update(Msg::Stats(stats_at(1, 4)), NOW + 2_000);
    assert_eq!(state.rates.rejections.last(), 4);
    // Seen long after its start: when its refusals were is not known.
    let mut late = State::new("mmt", NOW);
    late.update(Msg::Stats(stats_at(600, 40)), NOW);
    assert_eq!(late.rates.rejections.last(), 0);
}

#[test]
fn the_detail_pane_refreshes_while_open_and_on_ctrl_r() {
    let mut state = shown(&demo(), Screen::Tokens);
    state.act(Action::Open);
    let token = state.detail.as_ref().map(|d| d.token_id.clone());
    assert_eq!(token.as_deref(), Some(id(1).as_str()));
    let ask = |commands: &[Command]| {
        commands
            .iter()
            .any(|c| matches!(c, Command::Tokens(r) if r.token_id == token))
    };
    assert!(!ask(&state.update(Msg::Tick, NOW + 1_000)), "not yet");
    // Stats keep the worker alive; two seconds on, the pane asks again.
    state.update(Msg::Stats(WorkerStats::default()), NOW + 2_000);
    let commands = state.update(Msg::Tick, NOW + 2_000);
    assert!(ask(&commands), "{commands:?}");
    // The worker's answer changes what is shown.
    let Some(Command::Tokens(request)) = commands
        .into_iter()
        .find(|c| matches!(c, Command::Tokens(r) if r.token_id == token))
    else {
        unreachable!("asked above");
    };
    let mut reply = answer(&request);
    for row in &mut reply.tokens {
        if Some(&row.token_id) == token.as_ref() {
            row.state = TokenState::ReauthRequired;
            row.expires_at = Some(rfc3339(NOW + 3_600_000));
        }
    }
    state.update(Msg::Tokens(request, reply), NOW + 2_100);
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        assert!(text.contains("reauth_required"), "{w}x{h}:\n{text}");
        assert!(text.contains("2026-12-01 23:11:08 UTC"), "{w}x{h}:\n{text}");
    }
    // Ctrl-r asks at once; a lifecycle event of the token asks at the next
    // tick.
    assert!(ask(&state.act(Action::Refresh)));
    let mut state = shown(&demo(), Screen::Tokens);
    state.act(Action::Open);
    state.update(Msg::Stats(WorkerStats::default()), NOW + 500);
    let mut rotated = Event::new(EventKind::TokenRotated, at(500));
    rotated.token_id = token.clone();
    state.update(Msg::Event(rotated), NOW + 500);
    assert!(ask(&state.update(Msg::Tick, NOW + 600)));
}

#[test]
fn events_in_the_detail_pane_are_in_true_time_order() {
    let mut state = shown(&demo(), Screen::Tokens);
    state.act(Action::Open);
    // Same second: a fraction of a second sorts after none, not before.
    let mut first = Event::new(EventKind::TokenRotated, "2026-12-01T22:11:07Z".into());
    first.token_id = Some(id(1));
    let mut second = Event::new(
        EventKind::TokenReconnected,
        "2026-12-01T22:11:07.250Z".into(),
    );
    second.token_id = Some(id(1));
    state.update(Msg::Event(second), NOW);
    state.update(Msg::Event(first), NOW);
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        let reconnected = text.find("reconnected").expect("shown");
        let rotated = text.find("rotated").expect("shown");
        assert!(reconnected < rotated, "newest first:\n{text}");
    }
}

#[test]
fn ids_are_shortened_only_when_the_width_lacks_room() {
    let tokens = shown(&demo(), Screen::Tokens);
    let text = screen(&tokens, 120, 40);
    for row in &tokens.tokens.rows {
        assert!(text.contains(&row.token_id), "whole at 120:\n{text}");
    }
    let dead = shown(&demo(), Screen::DeadLetters);
    for (w, h) in SIZES {
        let text = screen(&dead, w, h);
        let ids: Vec<String> = text
            .lines()
            .filter(|l| l.contains("fx-"))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("fx-")))
            .map(str::to_owned)
            .collect();
        assert_eq!(ids.len(), 5, "{text}");
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len(), "alike at {w}x{h}: {ids:?}");
    }
    let text = screen(&dead, 120, 40);
    assert!(text.contains("fx-bad-unknown-operation"), "{text}");
}

#[test]
fn the_help_popup_fits_at_80x24_and_scrolls_to_every_key() {
    let mut state = demo();
    state.act(Action::Help);
    let text = screen(&state, 80, 24);
    assert!(text.contains("Keys 1-21 of 25"), "{text}");
    for _ in 0..BINDINGS.len() {
        state.act(Action::Down);
    }
    let text = screen(&state, 80, 24);
    assert!(text.contains("Keys 5-25 of 25"), "{text}");
    assert!(text.contains("close the help"), "the last key:\n{text}");
    state.act(Action::Up);
    assert!(screen(&state, 80, 24).contains("Keys 4-24 of 25"));
    let mut tall = demo();
    tall.rows = 40;
    tall.act(Action::Help);
    let text = screen(&tall, 120, 40);
    for binding in BINDINGS {
        assert!(text.contains(binding.help), "{}:\n{text}", binding.help);
    }
}

#[test]
fn the_overview_shows_every_integration_when_rows_allow() {
    let state = demo();
    let text = screen(&state, 120, 40);
    for (integration, scope) in state.counts.keys() {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("│{integration:<13}{:<6}", scope.as_str()))),
            "{integration} {scope:?}:\n{text}"
        );
    }
    assert!(
        screen(&state, 80, 24).contains("+3 more"),
        "80x24 lacks rows"
    );
}

#[test]
fn health_lists_the_dead_letter_queue_by_its_name() {
    let state = shown(&demo(), Screen::Health);
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        let line = text
            .lines()
            .find(|l| l.contains("mmt.dead"))
            .unwrap_or_else(|| panic!("{w}x{h}:\n{text}"));
        assert!(line.contains("+5") && line.contains(" 5 "), "{line}");
    }
}

#[test]
fn a_bad_input_refusal_shows_its_reason() {
    let state = shown(&demo(), Screen::Rejections);
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        let line = text
            .lines()
            .find(|l| l.starts_with('│') && l.contains("invalid_message"))
            .unwrap_or_else(|| panic!("{w}x{h}:\n{text}"));
        assert!(line.contains("body is not"), "{line}");
    }
}

#[test]
fn a_dead_letter_names_its_broker_user_and_claimed_client() {
    let mut state = shown(&demo(), Screen::DeadLetters);
    forbidden_connection(&mut state, "fx-impersonation");
    state.act(Action::Open);
    for (w, h) in SIZES {
        let text = screen(&state, w, h);
        assert!(text.contains("broker user mmt-demo-publisher"), "{text}");
        assert!(text.contains("initech (claimed by the body)"), "{text}");
    }
    // The worker's list, in a later snapshot, keeps what the events said.
    let mut again = shown(&demo(), Screen::DeadLetters);
    forbidden_connection(&mut again, "fx-impersonation");
    let mut snapshot = super::tests::empty_snapshot();
    snapshot.recent_dead_letters = vec![mmt_shared::console::DeadLetterRow {
        at: at(-1_000),
        queue: "mmt.integration.connected".into(),
        reason: NOT_THIS_CLIENT.into(),
        code: Some(ErrorCode::Forbidden),
        message_id: Some("fx-impersonation".into()),
        size: 120,
        broker_user: None,
        client_id: None,
    }];
    again.update(Msg::Snapshot(snapshot), NOW);
    let letter = again.dead_letters.back().expect("kept");
    assert_eq!(letter.broker_user.as_deref(), Some("mmt-demo-publisher"));
    assert_eq!(letter.client_id.as_deref(), Some("initech"));
}

#[test]
fn labels_name_real_queues() {
    let state = demo();
    for (w, h) in SIZES {
        for screen_ in Screen::ALL {
            let mut state = shown(&state, screen_);
            let text = screen(&state, w, h);
            assert!(!text.contains("NS."), "{screen_:?} at {w}x{h}:\n{text}");
            state.act(Action::Open);
            let text = screen(&state, w, h);
            assert!(!text.contains("NS."), "{screen_:?} at {w}x{h}:\n{text}");
        }
        let dead = shown(&state, Screen::DeadLetters);
        assert!(screen(&dead, w, h).contains("5 in mmt.dead"));
    }
}
