//! A generic scrolling table that builds only the rows it shows, so a long
//! list costs no more to draw than a short one. Columns whose visible cells
//! are narrower than their width lend the difference to columns whose cells
//! are cut, so an id is shortened only when the width really lacks room. A
//! cell too long for its column ends in `…` (or, in an id column cut in the
//! middle, holds it between its two ends): a cut id never passes for a whole
//! one, and two cut ids that differ only at the end still look different.

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
    /// The columns cut in the middle (ids alike at the start, such as
    /// message ids), by index.
    pub cut_middle: &'a [usize],
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

/// `text` cut to `width` characters by keeping its two ends around a `…`.
pub fn fit_middle(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        return text.to_owned();
    }
    if width < 3 {
        return fit(text, width);
    }
    let tail = (width - 1) / 2;
    let head = width - 1 - tail;
    let mut cut: String = text.chars().take(head).collect();
    cut.push('…');
    cut.extend(text.chars().skip(len - tail));
    cut
}

/// `widths` with the room that columns do not use (their widest cell in
/// `need` is narrower) lent to the columns whose widest cell is cut, first
/// come first served; a column never shrinks below what it shows.
pub fn lend(widths: &[u16], need: &[u16]) -> Vec<u16> {
    let mut widths = widths.to_vec();
    let spare: u16 = widths
        .iter()
        .zip(need)
        .map(|(w, n)| w.saturating_sub(*n))
        .sum();
    let mut given = 0u16;
    for (w, n) in widths.iter_mut().zip(need) {
        let more = n.saturating_sub(*w).min(spare - given);
        *w += more;
        given += more;
    }
    for (w, n) in widths.iter_mut().zip(need) {
        if given == 0 {
            break;
        }
        // A widened column has no room left over: it lends nothing.
        let less = w.saturating_sub(*n).min(given);
        *w -= less;
        given -= less;
    }
    widths
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
    let visible: Vec<(usize, Vec<String>, Style)> = (first..view.len.min(first + height))
        .map(|i| {
            let (cells, style) = (view.row)(i);
            (i, cells, style)
        })
        .collect();
    let mut need: Vec<u16> = view
        .columns
        .iter()
        .map(|(name, _)| u16::try_from(name.chars().count()).unwrap_or(u16::MAX))
        .collect();
    for (_, cells, _) in &visible {
        for (n, text) in need.iter_mut().zip(cells) {
            *n = (*n).max(u16::try_from(text.chars().count()).unwrap_or(u16::MAX));
        }
    }
    let widths = lend(&widths, &need);
    let rows: Vec<Row<'_>> = visible
        .into_iter()
        .map(|(i, cells, mut style)| {
            if view.selected == Some(i) {
                style = style.patch(styles.selected());
            }
            let cells = cells
                .into_iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (text, w))| {
                    Cell::from(if view.cut_middle.contains(&column) {
                        fit_middle(&text, usize::from(*w))
                    } else {
                        fit(&text, usize::from(*w))
                    })
                });
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

    #[test]
    fn a_cut_in_the_middle_keeps_both_ends() {
        assert_eq!(fit_middle("fx-bad-empty-body", 11), "fx-ba…-body");
        assert_eq!(fit_middle("fx-bad-empty-client-id", 11), "fx-ba…nt-id");
        assert_eq!(fit_middle("short", 11), "short");
        assert_eq!(fit_middle("abcdef", 2), "a…");
    }

    #[test]
    fn unused_room_goes_to_the_cut_columns_and_no_further() {
        // The id needs 36 and has 27; the state column shows 6 of 15.
        assert_eq!(lend(&[27, 15, 10], &[36, 6, 10]), [36, 6, 10]);
        // Not enough spare: the id takes what there is.
        assert_eq!(lend(&[27, 8, 10], &[36, 6, 10]), [29, 6, 10]);
        // Nothing cut: nothing moves.
        assert_eq!(lend(&[27, 15, 10], &[20, 6, 10]), [27, 15, 10]);
    }
}
