//! The refresh engine on screen: the overview's block (live, stale, at both
//! sizes), the token table's refresh column or folded state, and the detail
//! pane's refresh fields.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::tests::{busy_state, screen};
use super::*;
use crate::state::Action;

fn buffer(state: &State, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal
        .draw(|frame| draw(frame, state, Styles::new(true)))
        .expect("draws");
    terminal.backend().buffer().clone()
}

/// The colour of the first cell of `needle` on the screen.
fn colour_of(buffer: &Buffer, needle: &str) -> Option<Color> {
    let width = usize::from(buffer.area.width);
    let cells = buffer.content();
    let text: Vec<String> = cells.iter().map(|c| c.symbol().to_owned()).collect();
    (0..text.len()).find_map(|at| {
        let fits = at % width + needle.chars().count() <= width;
        let here: String = text
            .iter()
            .skip(at)
            .take(needle.chars().count())
            .cloned()
            .collect();
        (fits && here == needle).then(|| cells[at].fg)
    })
}

#[test]
fn the_overview_tells_every_refresh_figure_at_80x24() {
    let text = screen(&busy_state(), 80, 24);
    for needed in [
        "in flight 2/16",
        "due <1m 40",
        "pending 3",
        "refreshed 1203",
        "failed 17",
        "reauth 5210",
        "gemini",
        "invalid_client UNHEALTHY",
        "coinbase  12 fail http_503",
    ] {
        assert!(text.contains(needed), "{needed:?} missing:\n{text}");
    }
}

#[test]
fn the_refresh_block_is_greyed_with_its_age_when_the_worker_falls_silent() {
    let mut state = busy_state();
    let live = buffer(&state, 80, 24);
    assert_eq!(
        colour_of(&live, "3     "),
        Some(Color::Red),
        "pending is red"
    );
    assert_eq!(colour_of(&live, "gemini"), Some(Color::Red));
    state.update(crate::state::Msg::Tick, state.now + 65_000);
    let stale = buffer(&state, 80, 24);
    let text = screen(&state, 80, 24);
    assert!(text.contains("Refresh: STALE, 1m06s old"), "{text}");
    assert_eq!(colour_of(&stale, "gemini"), Some(Color::DarkGray));
    assert_ne!(colour_of(&stale, "3     "), Some(Color::Red));
}

#[test]
fn failing_integrations_that_do_not_fit_are_counted_and_named() {
    let mut state = busy_state();
    let mut stats = super::tests::stats(6);
    for name in ["kraken", "bitstamp", "okx", "bybit"] {
        stats
            .refresh
            .integrations
            .push(mmt_shared::console::IntegrationHealth {
                broker_type: name.into(),
                failing: 1,
                last_error: Some("timeout".into()),
                unhealthy: false,
            });
    }
    state.update(crate::state::Msg::Stats(stats), state.now);
    let text = screen(&state, 80, 24);
    assert!(
        text.contains("+3 more failing: bybit, kraken, okx"),
        "{text}"
    );
    let wide = screen(&state, 200, 60);
    assert!(!wide.contains("more failing"), "all six fit:\n{wide}");
    assert!(wide.contains("okx"), "{wide}");
}

#[test]
fn the_token_table_folds_the_refresh_news_into_the_state_when_narrow() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    let narrow = screen(&state, 80, 24);
    for needed in ["active·failing", "refresh_pending", "active·due<1m"] {
        assert!(narrow.contains(needed), "{needed:?} missing:\n{narrow}");
    }
    let wide = screen(&state, 200, 60);
    for needed in [
        "refresh ",
        "failed 2× http_503",
        "PENDING http_503",
        "in 37s",
    ] {
        assert!(wide.contains(needed), "{needed:?} missing:\n{wide}");
    }
    assert!(!wide.contains("refresh_pending"));
    let pending = buffer(&state, 200, 60);
    assert_eq!(colour_of(&pending, "PENDING"), Some(Color::Red));
}

#[test]
fn the_detail_pane_of_a_pending_token_says_so() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    for _ in 0..3 {
        state.act(Action::Down);
    }
    state.act(Action::Open);
    let text = screen(&state, 80, 24);
    assert!(text.contains("resolve answers refresh_pending"), "{text}");
    assert!(text.contains("5 attempts since the last success, last error http_503"));
    assert_screen!("detail_refresh_pending", text);
    assert_screen!("detail_refresh_pending_200x60", screen(&state, 200, 60));
}

#[test]
fn the_detail_pane_says_why_a_token_has_no_refresh() {
    let mut state = busy_state();
    state.act(Action::Jump(Screen::Tokens));
    state.act(Action::Down);
    state.act(Action::Down);
    state.act(Action::Open);
    let text = screen(&state, 80, 24);
    assert!(
        text.contains("none: the end user must connect again"),
        "{text}"
    );
}
