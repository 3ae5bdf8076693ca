//! A generic scrolling table that builds only the rows it shows, so a long
//! list costs no more to draw than a short one. A cell too long for its
//! column ends in `…`: a cut id never passes for a whole one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use super::styles::Styles;

/// A table to draw.
pub struct TableView<'a> {
    /// The block title.
    pub title: Line<'a>,
    /// Column headers and widths.
    pub columns: &'a [(&'a str, Constraint)],
    /// How many rows there are in all.
    pub len: usize,
    /// The selected row, if any.
    pub selected: Option<usize>,
    /// The cells and style of row `i` (called only for visible rows).
    pub row: &'a dyn Fn(usize) -> (Vec<String>, Style),
    /// What to show when there are no rows.
    pub empty: &'a str,
}

/// The first visible row, so that `selected` is on screen in a window of
/// `height` rows.
pub fn first_visible(selected: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        selected.saturating_sub(height - 1)
    }
}

/// `text` cut to `width` characters, its last one `…` when it was cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// The widths of `columns` in `width` cells, one cell between columns.
pub fn widths(columns: &[Constraint], width: u16) -> Vec<u16> {
    let area = Rect {
        x: 0,
        y: 0,
        width,
        height: 1,
    };
    Layout::horizontal(columns.iter().copied())
        .spacing(1)
        .split(area)
        .iter()
        .map(|r| r.width)
        .collect()
}

/// Draws `view` in `area`.
pub fn render(frame: &mut Frame<'_>, area: Rect, styles: Styles, view: &TableView<'_>) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(view.title.clone());
    let constraints: Vec<Constraint> = view.columns.iter().map(|(_, c)| *c).collect();
    let widths = widths(&constraints, area.width.saturating_sub(2));
    let height = usize::from(area.height.saturating_sub(3));
    let first = first_visible(view.selected.unwrap_or(0), height);
    let visible = first..view.len.min(first + height);
    let rows: Vec<Row<'_>> = visible
        .map(|i| {
            let (cells, mut style) = (view.row)(i);
            if view.selected == Some(i) {
                style = style.patch(styles.selected());
            }
            let cells = cells
                .into_iter()
                .zip(&widths)
                .map(|(text, w)| Cell::from(fit(&text, usize::from(*w))));
            Row::new(cells).style(style)
        })
        .collect();
    let header = Row::new(
        view.columns
            .iter()
            .zip(&widths)
            .map(|((name, _), w)| Cell::from(fit(name, usize::from(*w)))),
    )
    .style(styles.title());
    let table = Table::new(rows, widths.iter().map(|w| Constraint::Length(*w)))
        .header(header)
        .block(block)
        .column_spacing(1);
    frame.render_widget(table, area);
    if view.len == 0 && area.height > 3 && area.width > 2 {
        let line = Rect {
            x: area.x + 1,
            y: area.y + 2,
            width: area.width - 2,
            height: 1,
        };
        frame.render_widget(Paragraph::new(view.empty).style(styles.dim()), line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_stays_in_the_window() {
        assert_eq!(first_visible(0, 10), 0);
        assert_eq!(first_visible(9, 10), 0);
        assert_eq!(first_visible(10, 10), 1);
        assert_eq!(first_visible(999_999, 20), 999_980);
        assert_eq!(first_visible(5, 0), 0);
    }

    #[test]
    fn a_cut_cell_ends_in_an_ellipsis() {
        assert_eq!(fit("tok_0123456789", 8), "tok_012…");
        assert_eq!(fit("tok_01", 8), "tok_01");
        assert_eq!(fit("tok_0123", 8), "tok_0123");
        assert_eq!(fit("abc", 0), "");
    }
}
