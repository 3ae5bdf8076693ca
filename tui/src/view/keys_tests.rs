//! The key ring on the health screen (CONTRACT.md §11): a running rewrap,
//! a finished one, a failing one, and nothing from a worker that reports
//! no key ring.

use mmt_shared::console::{KeysStats, RewrapStats};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::tests::{busy_state, screen, stats};
use super::*;
use crate::state::{Action, Msg};

/// The health screen after a worker reported `keys`.
fn health_with(keys: Option<KeysStats>) -> State {
    let mut state = busy_state();
    let report = mmt_shared::console::WorkerStats { keys, ..stats(6) };
    state.update(Msg::Stats(report), state.now + 5_000);
    state.act(Action::Jump(Screen::Health));
    state
}

/// The key ring's rows as drawn `width` cells wide, without trailing
/// blanks.
fn key_rows(state: &State, width: u16) -> String {
    screen(state, width, 40)
        .lines()
        .skip_while(|row| !row.starts_with(" keys: "))
        .take_while(|row| !row.starts_with(" resolve "))
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

fn ring(wrapped: &[(&str, u64)], rewrap: RewrapStats) -> Option<KeysStats> {
    Some(KeysStats {
        active: "2".into(),
        wrapped: wrapped.iter().map(|(id, n)| ((*id).into(), *n)).collect(),
        counted_at: Some("2026-12-01T22:10:00Z".into()),
        rewrap,
    })
}

const MID_ROTATION: [(&str, u64); 3] = [("0", 1_204), ("1", 97_106), ("2", 12_480)];

fn running() -> RewrapStats {
    RewrapStats {
        running: true,
        done: 40_210,
        total: 98_310,
        to: Some("2".into()),
        per_sec: 2_000,
        rewrapped_total: 40_210,
        last_error: None,
    }
}

#[test]
fn a_running_rewrap_shows_the_counts_and_its_progress_on_as_many_rows_as_it_takes() {
    let state = health_with(ring(&MID_ROTATION, running()));
    assert_eq!(
        key_rows(&state, 200),
        " keys: active 2 · wrapped 0:1,204 1:97,106 2:12,480 · rewrap 41% (40,210/98,310) at 2,000/s"
    );
    assert_eq!(
        key_rows(&state, 80),
        " keys: active 2 · wrapped 0:1,204 1:97,106 2:12,480\n       rewrap 41% (40,210/98,310) at 2,000/s"
    );
}

#[test]
fn a_finished_rewrap_says_the_other_keys_may_go() {
    let done = RewrapStats {
        running: false,
        done: 98_310,
        rewrapped_total: 98_310,
        ..running()
    };
    let state = health_with(ring(&[("2", 110_790)], done.clone()));
    assert_eq!(
        key_rows(&state, 200),
        " keys: active 2 · all 110,790 data keys under key 2 · no other key is needed"
    );
    let state = health_with(ring(&[("0", 0), ("1", 0), ("2", 110_790)], done));
    assert_eq!(
        key_rows(&state, 200),
        " keys: active 2 · all 110,790 data keys under key 2 · key 0, 1 may be deleted from the key file"
    );
}

#[test]
fn a_failing_rewrap_is_a_warning_and_frees_no_key() {
    let failed = RewrapStats {
        running: false,
        last_error: Some("store I/O".into()),
        ..running()
    };
    let state = health_with(ring(&[("1", 0), ("2", 110_790)], failed));
    assert_eq!(
        key_rows(&state, 200),
        " keys: active 2 · wrapped 1:0 2:110,790 · rewrap failed: store I/O, trying again"
    );
    let mut terminal = Terminal::new(TestBackend::new(200, 40)).expect("test backend");
    terminal
        .draw(|frame| draw(frame, &state, Styles::new(true)))
        .expect("draws");
    let row = screen(&state, 200, 40)
        .lines()
        .position(|row| row.starts_with(" keys: "))
        .expect("the key ring's row");
    let at = " keys: active 2 · wrapped 1:0 2:110,790 · ".chars().count();
    let (x, y) = (u16::try_from(at), u16::try_from(row));
    let cell = &terminal.backend().buffer()[(x.expect("narrow"), y.expect("short"))];
    assert_eq!((cell.symbol(), cell.fg), ("r", Color::Yellow));
}

#[test]
fn a_worker_that_reports_no_key_ring_gets_no_line() {
    let state = health_with(None);
    assert_eq!(key_rows(&state, 80), "");
    assert!(
        screen(&state, 80, 24)
            .lines()
            .nth(3)
            .is_some_and(|row| row.starts_with(" resolve "))
    );
}

#[test]
fn workers_on_different_active_keys_are_a_warning_and_an_almost_done_pass_is_not_100() {
    let almost = RewrapStats {
        done: 98_309,
        ..running()
    };
    let mut state = health_with(ring(&MID_ROTATION, almost.clone()));
    let on = |active: &str| mmt_shared::console::WorkerStats {
        keys: ring(&MID_ROTATION, almost.clone()).map(|k| KeysStats {
            active: active.into(),
            ..k
        }),
        ..stats(6)
    };
    // A worker that did not reload its key file, between two reports of
    // one that did.
    state.update(Msg::Stats(on("1")), state.now + 500);
    state.update(Msg::Stats(on("2")), state.now + 500);
    assert_eq!(
        key_rows(&state, 200),
        " keys: active 2 · wrapped 0:1,204 1:97,106 2:12,480 · rewrap 99% (98,309/98,310) at 2,000/s · \
         another worker has key 1 active: SIGHUP every worker"
    );
}

#[test]
fn a_rotation_shared_by_workers_shows_their_sum_and_how_many() {
    let mut state = health_with(None);
    let at = state.now + 1_000;
    for (id, done, total) in [("a", 30_000, 98_310), ("b", 20_000, 90_000)] {
        let mut stats = stats(0);
        stats.worker = Some(id.into());
        stats.keys = ring(
            &MID_ROTATION,
            RewrapStats {
                done,
                total,
                ..running()
            },
        );
        state.update(Msg::Stats(stats), at);
    }
    let rows = key_rows(&state, 200);
    assert!(
        rows.contains("rewrap 51% (50,000/98,310) at 4,000/s on 2 workers"),
        "{rows}"
    );
}
