//! Drawing: the frame every screen shares (header, tabs, footer, help) and
//! one module per screen. Views read the [`State`] and never change it.

mod dead;
mod detail;
pub mod dump;
mod health;
mod help;
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
    frame.render_widget(Paragraph::new(header_line(state, styles)), header);
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
        help::draw(frame, frame.area(), styles);
    }
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

fn header_line(state: &State, styles: Styles) -> Line<'static> {
    let sep = || Span::styled(" │ ", styles.dim());
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
        Some(age) if state.worker_alive() => {
            Span::styled(format!("worker alive {}s", age / 1000), styles.good())
        }
        Some(age) => Span::styled(
            format!(
                "worker SILENT {}",
                duration(u64::try_from(age / 1000).unwrap_or(0))
            ),
            styles.bad(),
        ),
    };
    let live = if state.paused {
        Span::styled(format!("PAUSED ({} held)", state.held.len()), styles.warn())
    } else {
        Span::styled("LIVE", styles.good())
    };
    let dropped_style = if state.dropped > 0 {
        styles.bad()
    } else {
        styles.dim()
    };
    let mut spans = vec![
        Span::styled(" mmt-tui", styles.title()),
        sep(),
        link,
        sep(),
        worker,
        sep(),
        live,
        sep(),
        Span::styled(format!("dropped {}", state.dropped), dropped_style),
    ];
    spans.push(sep());
    spans.push(Span::styled(
        format!("ns {}", state.namespace),
        styles.dim(),
    ));
    if let Some(worker) = &state.worker {
        spans.push(sep());
        spans.push(match worker.identity {
            IdentityMode::Open => Span::styled("OPEN mode", styles.warn()),
            IdentityMode::Strict => Span::styled("strict mode", styles.good()),
        });
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
mod refresh_tests;
