//! `mmt-tui --frame-bench N`: how long the console takes to draw a frame of
//! each screen with a live worker's real snapshot and token page, for
//! `mmt-bench`. Frames are drawn into ratatui's `TestBackend`, so the
//! figure is layout, widgets and the buffer diff, not the terminal's own
//! output.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use mmt_shared::broker::Broker;
use mmt_shared::config::Namespace;
use mmt_shared::time_fmt::now_millis;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Value, json};

use crate::conn;
use crate::state::{self, Action, Command, Msg, Screen, State};
use crate::view;
use crate::view::styles::Styles;

/// The size of the frames drawn: a large terminal, the heaviest case.
const WIDTH: u16 = 200;
const HEIGHT: u16 = 60;

/// Waits for the worker's snapshot and first token page, then draws every
/// screen `frames` times; returns the figures as JSON.
pub async fn run(
    broker: Broker,
    namespace: Namespace,
    frames: u32,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let mut feed = conn::spawn(broker, namespace.clone());
    let mut state = State::new(namespace.as_str(), now_millis());
    let (mut snapshot, mut tokens) = (false, false);
    let deadline = tokio::time::Instant::now() + timeout;
    while !(snapshot && tokens) {
        let msg = tokio::time::timeout_at(deadline, feed.messages.recv())
            .await
            .context("no snapshot and token page from the worker in time")?
            .context("the feed stopped")?;
        let first_snapshot = matches!(msg, Msg::Snapshot(_)) && !snapshot;
        snapshot |= matches!(msg, Msg::Snapshot(_));
        tokens |= matches!(msg, Msg::Tokens(..));
        let mut commands = state.update(msg, now_millis());
        if first_snapshot {
            commands.extend(state.act(Action::Jump(Screen::Tokens)));
        }
        for command in commands {
            let ask = match command {
                Command::Quit | Command::Copy(_) => continue,
                Command::Snapshot => conn::Ask::Snapshot,
                Command::Counts => conn::Ask::Counts,
                Command::DeadLetters => conn::Ask::DeadLetters,
                Command::Tokens(request) => conn::Ask::Tokens(request),
            };
            feed.asks.send(ask).context("the feed stopped")?;
        }
    }
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).context("test backend")?;
    let styles = Styles::new(true);
    let mut screens = serde_json::Map::new();
    let mut heaviest: f64 = 0.0;
    let detail = state
        .tokens
        .rows
        .first()
        .map(|row| state::Detail::open(row.token_id.clone(), Some(row.clone()), state.now).0);
    let panes = Screen::ALL
        .iter()
        .map(|screen| {
            (
                screen.title().to_lowercase().replace(' ', "_"),
                *screen,
                None,
            )
        })
        .chain([("detail".to_owned(), Screen::Tokens, detail)]);
    for (name, screen, detail) in panes {
        state.screen = screen;
        state.detail = detail;
        let mut times = Vec::with_capacity(frames as usize);
        for _ in 0..frames.max(1) {
            let started = Instant::now();
            terminal.draw(|frame| view::draw(frame, &state, styles))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| {
            times[((times.len() as f64 * q).ceil() as usize)
                .saturating_sub(1)
                .min(times.len() - 1)]
        };
        let p99 = at(0.99);
        heaviest = heaviest.max(p99);
        screens.insert(
            name,
            json!({"p50_ms": at(0.5), "p99_ms": p99, "max_ms": at(1.0)}),
        );
    }
    Ok(json!({
        "frames": frames,
        "width": WIDTH,
        "height": HEIGHT,
        "token_rows": state.tokens.rows.len(),
        "screens": screens,
        "heaviest_p99_ms": heaviest,
    }))
}
