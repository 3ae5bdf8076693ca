//! The `?` popup: the key table, as the bindings define it; scrolled with
//! the arrows (and PgUp/PgDn, Home/End) when the terminal is too short for
//! all of it, the title saying which rows are shown.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Block, Borders, Cell, Clear, Row, Table};

use super::styles::Styles;
use crate::input::{BINDINGS, Context};

fn context(context: Context) -> &'static str {
    match context {
        Context::Global => "everywhere",
        Context::Lists => "every table",
        Context::On(screen) => screen.title(),
    }
}

/// The key table as text rows: (keys, what, where).
pub fn rows() -> impl Iterator<Item = [&'static str; 3]> {
    BINDINGS
        .iter()
        .map(|b| [b.label, b.help, context(b.context)])
}

/// Draws the popup over `area`, centred, from key row `scroll` (clamped so
/// that the last screenful shows the last row).
pub fn draw(frame: &mut Frame<'_>, area: Rect, styles: Styles, scroll: usize) {
    let total = BINDINGS.len();
    let height = u16::try_from(total + 3)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let shown = usize::from(height.saturating_sub(3));
    let first = scroll.min(total.saturating_sub(shown));
    let title = if shown >= total {
        " Keys (Esc or ? closes) ".to_owned()
    } else {
        format!(
            " Keys {}-{} of {total} (↑↓ scroll · Esc or ? closes) ",
            first + 1,
            (first + shown).min(total)
        )
    };
    // Room for the longest line; at 80 columns a long one ends in `…`.
    let width = 90.min(area.width);
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, popup, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width),
        Constraint::Fill(1),
    ])
    .areas(middle);
    let table = Table::new(
        rows()
            .skip(first)
            .take(shown)
            .map(|r| Row::new(r.map(Cell::from))),
        [
            Constraint::Length(8),
            Constraint::Min(30),
            Constraint::Length(11),
        ],
    )
    .header(Row::new(["keys", "what", "where"]).style(styles.title()))
    .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(Clear, popup);
    frame.render_widget(table, popup);
}
