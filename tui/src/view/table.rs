//! A generic scrolling table that builds only the rows it shows, so a long
//! list costs no more to draw than a short one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
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

/// Draws `view` in `area`.
pub fn render(frame: &mut Frame<'_>, area: Rect, styles: Styles, view: &TableView<'_>) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(view.title.clone());
    let height = usize::from(area.height.saturating_sub(3));
    let first = first_visible(view.selected.unwrap_or(0), height);
    let visible = first..view.len.min(first + height);
    let rows: Vec<Row<'_>> = visible
        .map(|i| {
            let (cells, mut style) = (view.row)(i);
            if view.selected == Some(i) {
                style = style.patch(styles.selected());
            }
            Row::new(cells.into_iter().map(Cell::from)).style(style)
        })
        .collect();
    let header =
        Row::new(view.columns.iter().map(|(name, _)| Cell::from(*name))).style(styles.title());
    let table = Table::new(rows, view.columns.iter().map(|(_, width)| *width))
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
}
