//! The overview: token counts per state, integration and scope; the refresh
//! engine's health; rates with sparklines; queue depths; recent lifecycle
//! events.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};

use super::styles::Styles;
use super::table::{self, TableView};
use super::{bytes, duration};
use crate::state::{Series, State};

/// From this width the refresh block is a column of its own beside the
/// counts; below it, it sits under them.
const REFRESH_COLUMN_FROM: u16 = 130;

/// The lifecycle feed's smallest height when the counts grow: its borders,
/// header and five events.
const LIFECYCLE_MIN_HEIGHT: u16 = 8;

/// The refresh block's smallest height: two lines of figures and one
/// failing integration.
const REFRESH_MIN_HEIGHT: u16 = 5;

/// Draws the overview in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let beside = area.width >= REFRESH_COLUMN_FROM;
    let floor = match area.height {
        h if h >= 40 => 16,
        h if h >= 21 && !beside => 14,
        _ => 12,
    };
    // Every integration's line when the rows allow, leaving the lifecycle
    // feed a few rows.
    let lines = u16::try_from(state.counts.len()).unwrap_or(u16::MAX);
    let refresh_wanted = super::refresh::wanted_height(state).max(REFRESH_MIN_HEIGHT);
    let wanted = if beside {
        lines.saturating_add(4).max(refresh_wanted)
    } else {
        lines.saturating_add(4).saturating_add(refresh_wanted)
    };
    let top_height = floor.max(wanted.min(area.height.saturating_sub(LIFECYCLE_MIN_HEIGHT)));
    let [top, bottom] =
        Layout::vertical([Constraint::Length(top_height), Constraint::Min(3)]).areas(area);
    if beside {
        let [counts, refresh, worker] = Layout::horizontal([
            Constraint::Length(44),
            Constraint::Length(58),
            Constraint::Min(30),
        ])
        .areas(top);
        draw_counts(frame, counts, state, styles);
        super::refresh::draw(frame, refresh, state, styles);
        draw_worker(frame, worker, state, styles);
    } else {
        let [left, worker] =
            Layout::horizontal([Constraint::Length(44), Constraint::Min(30)]).areas(top);
        let refresh_height = super::refresh::wanted_height(state).clamp(
            REFRESH_MIN_HEIGHT,
            (top_height / 2 + 1).max(REFRESH_MIN_HEIGHT),
        );
        let counts_height = lines
            .saturating_add(4)
            .min(top_height.saturating_sub(refresh_height));
        let [counts, refresh] =
            Layout::vertical([Constraint::Length(counts_height), Constraint::Min(0)]).areas(left);
        draw_counts(frame, counts, state, styles);
        super::refresh::draw(frame, refresh, state, styles);
        draw_worker(frame, worker, state, styles);
    }
    draw_lifecycle(frame, bottom, state, styles);
}

fn count_cell(n: u64) -> Cell<'static> {
    Cell::from(Line::from(n.to_string()).right_aligned())
}

/// What the counts block says about its data: current, stale (the worker
/// fell silent: the last counts, greyed, with their age), or none yet.
fn counts_title(state: &State) -> (String, bool) {
    match state.worker_age() {
        _ if state.counts.is_empty() && state.worker.is_none() => {
            (" Tokens by state: no data yet ".to_owned(), true)
        }
        Some(age) if !state.worker_alive() => (
            format!(
                " Tokens by state: STALE, {} old ",
                duration(u64::try_from(age / 1000).unwrap_or(0))
            ),
            true,
        ),
        _ => (" Tokens by state ".to_owned(), false),
    }
}

fn draw_counts(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let [active, reauth, revoked] = state.totals();
    let (title, stale) = counts_title(state);
    if stale && state.counts.is_empty() {
        let block = Block::default().borders(Borders::ALL).title(title);
        frame.render_widget(
            Paragraph::new(" no worker has answered: no counts to show")
                .style(styles.dim())
                .block(block),
            area,
        );
        return;
    }
    let mut rows = vec![
        Row::new([
            Cell::from("all"),
            Cell::from(""),
            count_cell(active),
            count_cell(reauth),
            count_cell(revoked),
        ])
        .style(styles.title()),
    ];
    let mut lines: Vec<_> = state.counts.iter().collect();
    lines.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then_with(|| a.0.cmp(b.0)));
    let room = usize::from(area.height.saturating_sub(4));
    let hidden = lines.len().saturating_sub(room);
    let shown = if hidden > 0 {
        room.saturating_sub(1)
    } else {
        room
    };
    for ((integration, scope), line) in lines.iter().take(shown) {
        let [a, r, x] = line.by_state;
        rows.push(Row::new([
            Cell::from(integration.clone()),
            Cell::from(scope.as_str()),
            count_cell(a),
            count_cell(r),
            count_cell(x),
        ]));
    }
    if hidden > 0 {
        let more = lines.len() - shown;
        rows.push(Row::new([Cell::from(format!("+{more} more"))]).style(styles.dim()));
    }
    let header = Row::new([
        Cell::from("integration"),
        Cell::from("scope"),
        Cell::from(Line::from("active").right_aligned()),
        Cell::from(Line::from("reauth").right_aligned()),
        Cell::from(Line::from("revoked").right_aligned()),
    ])
    .style(styles.title());
    let widths = [
        Constraint::Min(10),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::default().borders(Borders::ALL).title(title));
    let table = if stale {
        table.style(styles.dim())
    } else {
        table
    };
    frame.render_widget(table, area);
}

/// A queue's short name for narrow tables.
pub fn short_queue(name: &str) -> &str {
    match name {
        "integration.connected" => "connected",
        "connection.removed" => "removed",
        "token.resolve" => "resolve",
        "link.access_tokens" => "link",
        other => other,
    }
}

fn depth_text(depth: Option<u64>) -> String {
    depth.map_or_else(|| "?".to_owned(), |d| d.to_string())
}

/// The width of a sparkline's `max N` label.
const MAX_WIDTH: u16 = 8;

fn draw_worker(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let title = match &state.worker {
        Some(w) => format!(
            " Worker up {} · store {} ",
            duration(w.uptime_seconds),
            bytes(w.store_bytes)
        ),
        None => " Worker (no stats yet) ".to_owned(),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [scale, rates, queues] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(inner);
    let spark_width = inner.width.saturating_sub(16 + MAX_WIDTH);
    let window = usize::from(spark_width).min(crate::state::HISTORY);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{:<9}{:>6}", "per s", "now"), styles.title()),
            Span::styled(format!(" last {window}s"), styles.dim()),
        ])),
        scale,
    );
    let series: [(&str, &Series, Style); 3] = [
        ("ingest", &state.rates.ingest, styles.spark()),
        ("resolves", &state.rates.resolves, styles.spark()),
        ("rejects", &state.rates.rejections, styles.bad()),
    ];
    for (i, (label, series, style)) in series.into_iter().enumerate() {
        let row = Rect {
            y: rates.y + i as u16,
            height: 1,
            ..rates
        };
        if row.y >= rates.bottom() {
            break;
        }
        let [text, spark, top] = Layout::horizontal([
            Constraint::Length(16),
            Constraint::Min(0),
            Constraint::Length(MAX_WIDTH),
        ])
        .areas(row);
        frame.render_widget(
            Paragraph::new(format!("{label:<9}{:>4}/s", series.last())),
            text,
        );
        let samples = series.samples();
        let shown = samples
            .get(samples.len().saturating_sub(usize::from(spark.width))..)
            .unwrap_or_default();
        let max = shown.iter().copied().max().unwrap_or(0);
        frame.render_widget(
            Sparkline::default()
                .data(shown)
                .max(max.max(1))
                .style(style),
            spark,
        );
        frame.render_widget(
            Paragraph::new(Line::from(format!("max {max}")).right_aligned()).style(styles.dim()),
            top,
        );
    }
    let mut rows: Vec<Row<'_>> = Vec::new();
    if let Some(worker) = &state.worker {
        for queue in &worker.queues {
            rows.push(Row::new([
                Cell::from(short_queue(&queue.name).to_owned()),
                Cell::from(Line::from(format!("{:.1}/s", queue.rate)).right_aligned()),
                Cell::from(Line::from(depth_text(queue.depth)).right_aligned()),
            ]));
        }
        let dead_style = if worker.dead_depth.unwrap_or(0) > 0 {
            styles.bad()
        } else {
            Style::default()
        };
        rows.push(
            Row::new([
                Cell::from(format!(
                    "{}.dead +{}",
                    state.namespace, worker.dead_lettered
                )),
                Cell::from(Line::from("-").right_aligned()),
                Cell::from(Line::from(depth_text(worker.dead_depth)).right_aligned()),
            ])
            .style(dead_style),
        );
    }
    let header = Row::new([
        Cell::from("queue"),
        Cell::from(Line::from("rate").right_aligned()),
        Cell::from(Line::from("depth").right_aligned()),
    ])
    .style(styles.title());
    let table = Table::new(
        rows,
        [
            Constraint::Min(9),
            Constraint::Length(10),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .column_spacing(1);
    frame.render_widget(table, queues);
}

fn draw_lifecycle(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let columns = [
        ("UTC time", Constraint::Length(8)),
        ("event", Constraint::Length(9)),
        ("tokenId", Constraint::Min(12)),
        ("client", Constraint::Length(10)),
        ("integration", Constraint::Length(11)),
        ("scope", Constraint::Length(5)),
    ];
    let len = state.lifecycle.len();
    let row = |i: usize| {
        let Some(event) = len
            .checked_sub(i + 1)
            .and_then(|at| state.lifecycle.get(at))
        else {
            return (Vec::new(), Style::default());
        };
        let style = match event.what {
            "revoked" | "expired" => styles.warn(),
            _ => Style::default(),
        };
        (
            vec![
                event.time.clone(),
                event.what.to_owned(),
                event.token_id.clone(),
                event.client_id.clone(),
                event.broker_type.clone(),
                event.scope.map(|s| s.as_str()).unwrap_or("").to_owned(),
            ],
            style,
        )
    };
    let title = Line::from(vec![
        Span::raw(format!(" Lifecycle events, newest first: {len} kept ")),
        Span::styled(if state.paused { "(PAUSED) " } else { "" }, styles.warn()),
    ]);
    table::render(
        frame,
        area,
        styles,
        &TableView {
            title,
            columns: &columns,
            len,
            selected: (len > 0).then_some(state.lifecycle_selected),
            row: &row,
            empty: "no lifecycle event yet",
            cut_middle: &[],
        },
    );
}
