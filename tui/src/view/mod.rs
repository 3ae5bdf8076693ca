//! Drawing: the frame every screen shares (header, tabs, footer, help) and
//! one module per screen. Views read the [`State`] and never change it.

mod dead;
mod detail;
pub mod dump;
mod health;
mod help;
mod keys;
mod overview;
mod refresh;
mod rejections;
pub mod styles;
mod table;
mod tokens;

use mmt_shared::console::IdentityMode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};

use crate::input;
use crate::state::{Link, Screen, State};
use styles::Styles;

/// Draws the whole console.
pub fn draw(frame: &mut Frame<'_>, state: &State, styles: Styles) {
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(header_line(state, styles, header.width)),
        header,
    );
    draw_tabs(frame, tabs, state, styles);
    match state.screen {
        Screen::Overview => overview::draw(frame, body, state, styles),
        Screen::Tokens => tokens::draw(frame, body, state, styles),
        Screen::Rejections => rejections::draw(frame, body, state, styles),
        Screen::DeadLetters => dead::draw(frame, body, state, styles),
        Screen::Health => health::draw(frame, body, state, styles),
    }
    frame.render_widget(Paragraph::new(footer_line(state.screen, styles)), footer);
    detail::draw(frame, body, state, styles);
    if state.help {
        help::draw(frame, frame.area(), styles, state.help_scroll);
    }
}

/// `label` then `items` (each a name and its count, in a style) as whole
/// items over at most `max_lines` lines of `width` cells, two spaces
/// between them: a count is never cut; what does not fit is said as
/// `+N more` at the end.
pub fn count_lines(
    label: &str,
    items: &[(String, u64, ratatui::style::Style)],
    width: u16,
    max_lines: usize,
    styles: Styles,
) -> Vec<Line<'static>> {
    let width = usize::from(width);
    let indent = label.chars().count();
    let mut done: Vec<Line<'static>> = Vec::new();
    let mut spans = vec![Span::styled(label.to_owned(), styles.dim())];
    let mut used = indent;
    let mut shown = 0;
    for (name, count, style) in items {
        let text = format!("{name} {count}");
        let w = text.chars().count();
        if used + w > width && used > indent {
            if done.len() + 1 == max_lines {
                break;
            }
            done.push(Line::from(std::mem::take(&mut spans)));
            spans.push(Span::raw(" ".repeat(indent)));
            used = indent;
        }
        if used + w > width {
            break;
        }
        spans.push(Span::styled(text, *style));
        spans.push(Span::raw("  "));
        used += w + 2;
        shown += 1;
    }
    if items.is_empty() {
        spans.push(Span::styled("none yet", styles.dim()));
    }
    // What did not fit: `+N more`, taking back whole items until it fits.
    while shown < items.len() {
        let more = format!("+{} more", items.len() - shown);
        if used + more.chars().count() <= width || spans.len() < 3 {
            spans.push(Span::styled(more, styles.dim()));
            break;
        }
        spans.pop();
        used -= spans.pop().map_or(0, |s| s.width()) + 2;
        shown -= 1;
    }
    done.push(Line::from(spans));
    done
}

/// Bytes as `58 KiB`, `3.0 MiB` or `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    match n {
        n if n < 1 << 20 => format!("{} KiB", n >> 10),
        n if n < 1 << 30 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
    }
}

/// Seconds as `42s`, `3m05s` or `2h07m`.
pub fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The header's parts, each with the order in which it gives way when the
/// width lacks room (0 never does): the namespace first, then `LIVE` (never
/// `PAUSED`), then `dropped 0` (never a count above 0), then the title.
fn header_parts(state: &State, styles: Styles) -> Vec<(u8, Span<'static>)> {
    let link = match &state.link {
        Link::Up if state.reconnects > 0 => Span::styled(
            format!(
                "broker up, {} reconnect{}",
                state.reconnects,
                if state.reconnects == 1 { "" } else { "s" }
            ),
            styles.good(),
        ),
        Link::Up => Span::styled("broker up", styles.good()),
        Link::Connecting {
            attempt: 0,
            error: None,
        } => Span::styled("broker connecting…", styles.warn()),
        Link::Connecting { attempt, .. } => {
            Span::styled(format!("broker DOWN, retry {}", attempt + 1), styles.bad())
        }
    };
    let worker = match state.worker_age() {
        None => Span::styled("worker not seen", styles.warn()),
        Some(age) if state.worker_alive() => Span::styled(
            format!("worker last heard {}s ago", age / 1000),
            styles.good(),
        ),
        Some(age) => Span::styled(
            format!(
                "worker SILENT, last heard {} ago",
                duration(u64::try_from(age / 1000).unwrap_or(0))
            ),
            styles.bad(),
        ),
    };
    let live = if state.paused {
        (
            0,
            Span::styled(format!("PAUSED ({} held)", state.held.len()), styles.warn()),
        )
    } else {
        (2, Span::styled("LIVE", styles.good()))
    };
    let dropped = if state.dropped > 0 {
        (
            0,
            Span::styled(format!("dropped {}", state.dropped), styles.bad()),
        )
    } else {
        (3, Span::styled("dropped 0", styles.dim()))
    };
    let mut parts = vec![
        (4, Span::styled("mmt-tui", styles.title())),
        (0, link),
        (0, worker),
        live,
        dropped,
        (
            1,
            Span::styled(format!("ns {}", state.namespace), styles.dim()),
        ),
    ];
    if let Some(worker) = &state.worker {
        parts.push((
            0,
            match worker.identity {
                IdentityMode::Open => Span::styled("OPEN mode", styles.warn()),
                IdentityMode::Strict => Span::styled("strict mode", styles.good()),
            },
        ));
    }
    parts
}

/// The header in `width` cells: every part that fits, the least needed
/// left out first.
fn header_line(state: &State, styles: Styles, width: u16) -> Line<'static> {
    let mut parts = header_parts(state, styles);
    let sep = " │ ";
    let len = |parts: &[(u8, Span<'static>)]| {
        1 + parts.iter().map(|(_, s)| s.width()).sum::<usize>()
            + sep.chars().count() * parts.len().saturating_sub(1)
    };
    for give_way in 1..=4 {
        if len(&parts) <= usize::from(width) {
            break;
        }
        parts.retain(|(order, _)| *order != give_way);
    }
    let mut spans = vec![Span::raw(" ")];
    for (i, (_, span)) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(sep, styles.dim()));
        }
        spans.push(span);
    }
    Line::from(spans)
}

fn draw_tabs(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let titles: Vec<String> = Screen::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {}", i + 1, s.title()))
        .collect();
    let tabs_width: usize = titles.iter().map(|t| t.chars().count() + 3).sum();
    let [tabs_area, notice_area] = Layout::horizontal([
        Constraint::Length(u16::try_from(tabs_width).unwrap_or(u16::MAX)),
        Constraint::Min(0),
    ])
    .areas(area);
    let selected = Screen::ALL.iter().position(|s| *s == state.screen);
    let tabs = Tabs::new(titles)
        .select(selected)
        .highlight_style(styles.active_tab())
        .divider("│");
    frame.render_widget(tabs, tabs_area);
    if let Some(notice) = &state.notice {
        frame.render_widget(
            Paragraph::new(Span::styled(notice.clone(), styles.dim())).right_aligned(),
            notice_area,
        );
    }
}

fn footer_line(screen: Screen, styles: Styles) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for (key, hint) in input::footer(screen) {
        spans.push(Span::styled(key, styles.key()));
        spans.push(Span::raw(format!(" {hint}  ")));
    }
    Line::from(spans)
}

#[cfg(test)]
mod captures;
#[cfg(test)]
#[macro_use]
mod tests;
#[cfg(test)]
mod first_hour_tests;
#[cfg(test)]
mod keys_tests;
#[cfg(test)]
mod refresh_tests;
