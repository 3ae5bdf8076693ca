//! The overview's refresh block (CONTRACT.md §9), for the on-call engineer:
//! requests in flight against `refresh_concurrency`, tokens due within a
//! minute, `refresh_pending` and `reauth_required` counts, refreshed and
//! failed totals, and the failing integrations with their last error code.
//! Greyed with its age when the worker falls silent, like the counts.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use super::duration;
use super::styles::Styles;
use crate::state::{RefreshHealth, State};

/// From this inner width the figures line up in columns.
const ALIGNED_FROM: u16 = 54;

fn title(state: &State) -> (String, bool) {
    match state.worker_age() {
        None => (" Refresh: no data yet ".to_owned(), true),
        Some(age) if !state.worker_alive() => (
            format!(
                " Refresh: STALE, {} old ",
                duration(u64::try_from(age / 1000).unwrap_or(0))
            ),
            true,
        ),
        Some(_) => (" Refresh ".to_owned(), false),
    }
}

/// One figure: its label, its value and how it looks.
struct Figure {
    label: &'static str,
    value: String,
    style: Style,
}

/// The figures; flagged ones are coloured unless the data is stale.
fn figures(health: &RefreshHealth, reauth: u64, stale: bool, styles: Styles) -> [[Figure; 3]; 2] {
    let flag = |bad: bool, style: Style| {
        if bad && !stale {
            style
        } else {
            Style::default()
        }
    };
    let figure = |label, value: String, style| Figure {
        label,
        value,
        style,
    };
    [
        [
            figure(
                "in flight",
                format!("{}/{}", health.in_flight, health.concurrency),
                flag(
                    health.concurrency > 0 && health.in_flight >= health.concurrency,
                    styles.warn(),
                ),
            ),
            figure("due <1m", health.due_soon.to_string(), Style::default()),
            figure(
                "pending",
                health.refresh_pending.to_string(),
                flag(health.refresh_pending > 0, styles.bad()),
            ),
        ],
        [
            figure("refreshed", health.refreshed.to_string(), Style::default()),
            figure(
                "failed",
                health.failed.to_string(),
                flag(health.failed > 0, styles.warn()),
            ),
            figure(
                "reauth",
                reauth.to_string(),
                flag(reauth > 0, styles.warn()),
            ),
        ],
    ]
}

fn figure_line(row: &[Figure; 3], aligned: bool, styles: Styles) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, f) in row.iter().enumerate() {
        let gap = if i == 0 { "" } else { "  " };
        if aligned {
            spans.push(Span::styled(format!("{gap}{:<9}", f.label), styles.dim()));
            spans.push(Span::styled(format!("{:>7}", f.value), f.style));
        } else {
            spans.push(Span::styled(format!("{gap}{} ", f.label), styles.dim()));
            spans.push(Span::styled(f.value.clone(), f.style));
        }
    }
    Line::from(spans)
}

/// The height the block asks for: borders, two lines of figures and one
/// line per failing integration (at least one).
pub fn wanted_height(state: &State) -> u16 {
    let failing = state
        .worker
        .as_ref()
        .map_or(0, |w| w.refresh.integrations.len());
    4 + u16::try_from(failing.max(1)).unwrap_or(u16::MAX)
}

/// Draws the block in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let (title, stale) = title(state);
    let block = Block::default().borders(Borders::ALL).title(title);
    let Some(worker) = &state.worker else {
        frame.render_widget(
            Paragraph::new(" no worker has answered: no refresh figures")
                .style(styles.dim())
                .block(block),
            area,
        );
        return;
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let health = &worker.refresh;
    let [summary, failing] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    let aligned = inner.width >= ALIGNED_FROM;
    let lines: Vec<Line<'static>> = figures(health, state.totals()[1], stale, styles)
        .iter()
        .map(|row| figure_line(row, aligned, styles))
        .collect();
    let dim = |p: Paragraph<'static>| if stale { p.style(styles.dim()) } else { p };
    frame.render_widget(dim(Paragraph::new(lines)), summary);
    draw_failing(frame, failing, health, stale, styles);
}

/// The failing integrations, most urgent first, as many as fit.
fn draw_failing(
    frame: &mut Frame<'_>,
    area: Rect,
    health: &RefreshHealth,
    stale: bool,
    styles: Styles,
) {
    if area.height == 0 {
        return;
    }
    let lines = &health.integrations;
    if lines.is_empty() {
        frame.render_widget(
            Paragraph::new("no integration failing since start").style(styles.dim()),
            area,
        );
        return;
    }
    let narrow = area.width < ALIGNED_FROM;
    let room = usize::from(area.height);
    let shown = if lines.len() > room {
        room.saturating_sub(1)
    } else {
        room
    };
    let rows: Vec<Row<'static>> = lines
        .iter()
        .take(shown)
        .map(|line| {
            let style = match (stale, line.unhealthy) {
                (true, _) => styles.dim(),
                (false, true) => styles.bad(),
                (false, false) => styles.warn(),
            };
            let failing = if narrow {
                format!("{} fail", line.failing)
            } else {
                format!("{} failing", line.failing)
            };
            Row::new([
                Cell::from(line.broker_type.clone()),
                Cell::from(Line::from(failing).right_aligned()),
                Cell::from(line.last_error.clone().unwrap_or_else(|| "-".into())),
                Cell::from(if line.unhealthy { "UNHEALTHY" } else { "" }),
            ])
            .style(style)
        })
        .collect();
    let hidden = lines.len() - rows.len();
    if hidden > 0 {
        let names: Vec<&str> = lines
            .iter()
            .skip(shown)
            .map(|l| l.broker_type.as_str())
            .collect();
        let more = Rect {
            y: area.y + u16::try_from(shown).unwrap_or(0),
            height: 1,
            ..area
        };
        frame.render_widget(
            Paragraph::new(format!("+{hidden} more failing: {}", names.join(", ")))
                .style(styles.dim()),
            more,
        );
    }
    let name_width = lines
        .iter()
        .map(|l| l.broker_type.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(6, 16);
    let widths = [
        Constraint::Length(u16::try_from(name_width).unwrap_or(16)),
        Constraint::Length(if narrow { 8 } else { 11 }),
        Constraint::Min(8),
        Constraint::Length(9),
    ];
    let table = Table::new(rows, widths).column_spacing(1);
    let table = if stale {
        table.style(styles.dim())
    } else {
        table
    };
    frame.render_widget(
        table,
        Rect {
            height: u16::try_from(shown).unwrap_or(0),
            ..area
        },
    );
}
