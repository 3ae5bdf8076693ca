//! Health at a glance: the worker process, the key ring (when the worker
//! reports one), resolve latency and refusal rate, every queue's rate,
//! depth, unacknowledged deliveries, consumers and latency, and the top
//! clients by tokens and by refusals. When no worker answers, the last
//! figures stay, greyed, with their age: never zeros that look like real
//! data.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use super::overview::short_queue;
use super::styles::Styles;
use super::{bytes, duration};
use crate::state::{State, WorkerView};

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}ms"))
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).right_aligned())
}

/// The first line: the worker process, or why there is none.
fn process_line(state: &State, worker: Option<&WorkerView>, styles: Styles) -> Line<'static> {
    let Some(w) = worker else {
        return Line::from(Span::styled(
            " worker: no stats yet (no worker has answered)",
            styles.warn(),
        ));
    };
    let mut spans = Vec::new();
    if !state.worker_alive() {
        let age = state.worker_age().unwrap_or(0) / 1000;
        spans.push(Span::styled(
            format!(" STALE {} ago ·", duration(u64::try_from(age).unwrap_or(0))),
            styles.bad(),
        ));
    }
    let label = if w.reporting > 1 {
        format!(" {} workers together ", w.reporting)
    } else {
        " worker ".to_owned()
    };
    spans.push(Span::styled(label, styles.dim()));
    spans.push(Span::raw(format!(
        "cpu {} · rss {} · up {} · store {}{}",
        w.cpu_percent
            .map_or_else(|| "?".to_owned(), |c| format!("{c:.1}%")),
        w.rss_bytes.map_or_else(|| "?".to_owned(), bytes),
        duration(w.uptime_seconds),
        w.store_engine
            .as_deref()
            .map_or_else(String::new, |engine| format!("{engine} ")),
        bytes(w.store_bytes),
    )));
    if w.store_engine.as_deref() == Some("postgres") && w.reporting < 2 {
        // Workers that name no id (older ones) are counted by the broker:
        // every worker of a shared store consumes every queue, so the
        // consumers of one queue are the workers.
        let workers = w.queues.iter().filter_map(|q| q.consumers).max();
        spans.push(Span::raw(format!(
            " · {} workers",
            workers.map_or_else(|| "?".to_owned(), |n| n.to_string())
        )));
    }
    Line::from(spans)
}

/// The second line: resolve latency and how many requests are refused.
fn resolve_line(state: &State, worker: Option<&WorkerView>, styles: Styles) -> Line<'static> {
    let resolve = worker.and_then(|w| w.queues.iter().find(|q| q.name == "token.resolve"));
    let refused = state.rates.rejections.last();
    let resolves = state.rates.resolves.last();
    let share = if resolves > 0 {
        format!("{:.1}%", refused as f64 * 100.0 / resolves as f64)
    } else {
        "-".to_owned()
    };
    Line::from(vec![
        Span::styled(" resolve ", styles.dim()),
        Span::raw(format!(
            "p50 {} · p99 {} · {resolves}/s",
            ms(resolve.and_then(|q| q.latency_ms.0)),
            ms(resolve.and_then(|q| q.latency_ms.1)),
        )),
        Span::styled("   refused ", styles.dim()),
        Span::styled(
            format!("{refused}/s ({share} of resolves)"),
            if refused > 0 {
                styles.bad()
            } else {
                Style::default()
            },
        ),
    ])
}

fn queues(state: &State, worker: Option<&WorkerView>, styles: Styles) -> Table<'static> {
    let mut rows: Vec<Row<'static>> = Vec::new();
    if let Some(w) = worker {
        for q in &w.queues {
            rows.push(Row::new([
                Cell::from(short_queue(&q.name).to_owned()),
                right(format!("{:.1}/s", q.rate)),
                right(q.depth.map_or_else(|| "?".to_owned(), |d| d.to_string())),
                right(q.unacked.to_string()),
                right(
                    q.consumers
                        .map_or_else(|| "?".to_owned(), |c| c.to_string()),
                ),
                right(ms(q.latency_ms.0)),
                right(ms(q.latency_ms.1)),
            ]));
        }
        // The dead-letter queue: nobody consumes it; what it holds and what
        // the worker moved there since it started.
        rows.push(Row::new([
            Cell::from(format!("{}.dead", state.namespace)),
            right(format!("+{}", w.dead_lettered)),
            right(
                w.dead_depth
                    .map_or_else(|| "?".to_owned(), |d| d.to_string()),
            ),
            right("-".into()),
            right("-".into()),
            right("-".into()),
            right("-".into()),
        ]));
    }
    let header = Row::new([
        Cell::from("queue"),
        right("rate".into()),
        right("depth".into()),
        right("unacked".into()),
        right("consumers".into()),
        right("p50".into()),
        right("p99".into()),
    ])
    .style(styles.title());
    Table::new(
        rows,
        [
            Constraint::Min(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .column_spacing(1)
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" Queues (latency: taken to acknowledged, last second; dead: +moved there) "),
    )
}

fn clients(title: &str, rows: &[(String, u64)], empty: &str, styles: Styles) -> Table<'static> {
    let mut lines: Vec<Row<'static>> = rows
        .iter()
        .map(|(client, n)| Row::new([Cell::from(client.clone()), right(n.to_string())]))
        .collect();
    if lines.is_empty() {
        lines.push(Row::new([Cell::from(empty.to_owned())]).style(styles.dim()));
    }
    Table::new(lines, [Constraint::Min(10), Constraint::Length(9)])
        .column_spacing(1)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(title.to_owned()),
        )
}

/// Draws the health screen in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let worker = state.worker.as_ref();
    let keys = worker
        .and_then(|w| w.keys.as_ref())
        .map(|ring| super::keys::lines(ring, area.width, styles))
        .unwrap_or_default();
    let [process, keys_area, resolve, queue_area, client_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::try_from(keys.len()).unwrap_or(u16::MAX)),
        Constraint::Length(1),
        Constraint::Length(9),
        Constraint::Min(3),
    ])
    .areas(area);
    let stale = worker.is_some() && !state.worker_alive();
    let grey = |style: Style| if stale { styles.dim() } else { style };
    frame.render_widget(Paragraph::new(process_line(state, worker, styles)), process);
    frame.render_widget(
        Paragraph::new(keys).style(grey(Style::default())),
        keys_area,
    );
    frame.render_widget(
        Paragraph::new(resolve_line(state, worker, styles)).style(grey(Style::default())),
        resolve,
    );
    frame.render_widget(
        queues(state, worker, styles).style(grey(Style::default())),
        queue_area,
    );
    let [by_tokens, by_refusals] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(client_area);
    let top = &state.top_clients;
    let tokens_empty = if top.loading {
        "counting every token…"
    } else if top.loaded {
        "no token"
    } else {
        "not asked yet (C-r)"
    };
    frame.render_widget(
        clients(
            " Top clients by tokens ",
            &top.by_tokens,
            tokens_empty,
            styles,
        ),
        by_tokens,
    );
    frame.render_widget(
        clients(
            " Top clients by refusals ",
            &state.rejections_by_client,
            "no refusal yet",
            styles,
        )
        .style(grey(Style::default())),
        by_refusals,
    );
}
