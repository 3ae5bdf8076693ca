//! The `?` popup: the key table, as the bindings define it.

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

/// Draws the popup over `area`, centred.
pub fn draw(frame: &mut Frame<'_>, area: Rect, styles: Styles) {
    let height = u16::try_from(BINDINGS.len() + 3)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let width = 72.min(area.width);
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
        rows().map(|r| Row::new(r.map(Cell::from))),
        [
            Constraint::Length(8),
            Constraint::Min(30),
            Constraint::Length(10),
        ],
    )
    .header(Row::new(["keys", "what", "where"]).style(styles.title()))
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" Keys (Esc or ? closes) "),
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(table, popup);
}
