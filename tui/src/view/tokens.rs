//! The token listing: one page from the worker, in the store's order or
//! searched and sorted over every token, with the filter line above it.

use mmt_shared::wire::TokenState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::styles::Styles;
use super::table::{self, TableView};
use crate::state::{Column, State, TokenRow};
use crate::timefmt::short;

fn width(column: Column, wide: bool) -> Constraint {
    match (column, wide) {
        (Column::TokenId, false) => Constraint::Min(14),
        (Column::TokenId, true) => Constraint::Length(36),
        (Column::Client, false) => Constraint::Length(8),
        (Column::Client | Column::User, true) => Constraint::Min(10),
        (Column::User, false) => Constraint::Length(10),
        (Column::Integration, _) => Constraint::Length(11),
        (Column::Scope, _) => Constraint::Length(5),
        (Column::State, _) => Constraint::Length(15),
        (Column::Expires | Column::Changed, _) => Constraint::Length(12),
    }
}

/// The columns shown in `width` cells: the least needed go first when the
/// terminal is narrow (the detail pane shows every field).
fn shown(width: u16) -> Vec<Column> {
    let drop: &[Column] = match width {
        w if w >= 120 => &[],
        w if w >= 100 => &[Column::Changed],
        _ => &[Column::Changed, Column::User],
    };
    Column::ALL
        .into_iter()
        .filter(|c| !drop.contains(c))
        .collect()
}

fn cell(column: Column, t: &TokenRow) -> String {
    match column {
        Column::TokenId => t.token_id.clone(),
        Column::Client => t.client_id.clone(),
        Column::User => t.end_user_id.clone().unwrap_or_else(|| "-".into()),
        Column::Integration => t.broker_type.clone(),
        Column::Scope => t.scope.as_str().to_owned(),
        Column::State => t.state.as_str().to_owned(),
        Column::Expires => match (&t.expires_at, t.state) {
            (_, TokenState::Revoked) => "-".to_owned(),
            (Some(at), _) => short(at),
            (None, _) => "never".to_owned(),
        },
        Column::Changed => short(&t.updated_at),
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn status_line(state: &State, styles: Styles) -> Line<'static> {
    let tokens = &state.tokens;
    if let Some(edit) = &tokens.editing {
        let text = if edit.selected {
            Span::styled(edit.text.clone(), styles.selected())
        } else {
            Span::raw(edit.text.clone())
        };
        return Line::from(vec![
            Span::styled(" search> ", styles.key()),
            text,
            Span::styled("█", styles.key()),
            Span::styled(
                "  Enter apply · Esc cancel · C-u clear · client: user: state: scope: expires:",
                styles.dim(),
            ),
        ]);
    }
    let filter = if tokens.filter.is_empty() {
        "none".to_owned()
    } else {
        tokens.filter.clone()
    };
    let (column, ascending) = tokens.sort;
    let mut spans = vec![
        Span::styled(" search ", styles.dim()),
        Span::raw(filter),
        Span::styled(" · page ", styles.dim()),
        Span::raw((tokens.page + 1).to_string()),
        Span::raw(if tokens.more { "+" } else { " (last)" }),
        Span::styled(" · sort ", styles.dim()),
        Span::raw(format!(
            "{} {}",
            column.title(),
            if ascending { "↑" } else { "↓" }
        )),
        Span::styled(
            if tokens.is_search() {
                " · over all tokens"
            } else {
                " · store order"
            },
            styles.dim(),
        ),
    ];
    if tokens.loading {
        spans.push(Span::styled(
            if tokens.is_search() {
                " · searching…"
            } else {
                " · loading…"
            },
            styles.warn(),
        ));
    }
    Line::from(spans)
}

/// ` Tokens 1-200 of 1,234,567 `: the rows on screen and how many match.
fn title(state: &State) -> String {
    let tokens = &state.tokens;
    let first = tokens.page * crate::state::PAGE_SIZE as usize;
    let total = tokens.total.or_else(|| {
        (!tokens.is_search() && !state.counts.is_empty()).then(|| state.totals().iter().sum())
    });
    let of = match total {
        Some(total) => format!("of {}", thousands(total)),
        None if tokens.is_search() => format!("of ? ({} scanned)", thousands(tokens.scanned)),
        None => "of ?".to_owned(),
    };
    if tokens.rows.is_empty() {
        return format!(" Tokens 0 {of} ");
    }
    format!(
        " Tokens {}-{} {of} ",
        thousands(first as u64 + 1),
        thousands((first + tokens.rows.len()) as u64)
    )
}

/// Draws the listing in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let tokens = &state.tokens;
    let [status, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
    frame.render_widget(Paragraph::new(status_line(state, styles)), status);
    let (sorted, ascending) = tokens.sort;
    let columns_shown = shown(list.width);
    let titles: Vec<String> = columns_shown
        .iter()
        .map(|c| {
            if *c == sorted {
                format!("{}{}", c.title(), if ascending { "↑" } else { "↓" })
            } else {
                c.title().to_owned()
            }
        })
        .collect();
    let columns: Vec<(&str, Constraint)> = columns_shown
        .iter()
        .zip(&titles)
        .map(|(c, t)| (t.as_str(), width(*c, list.width >= 140)))
        .collect();
    let row = |i: usize| {
        let Some(t) = tokens.rows.get(i) else {
            return (Vec::new(), Style::default());
        };
        let style = match t.state {
            TokenState::Active => Style::default(),
            TokenState::ReauthRequired => styles.warn(),
            TokenState::Revoked => styles.dim(),
        };
        (columns_shown.iter().map(|c| cell(*c, t)).collect(), style)
    };
    table::render(
        frame,
        list,
        styles,
        &TableView {
            title: Line::from(title(state)),
            columns: &columns,
            len: tokens.rows.len(),
            selected: Some(tokens.selected),
            row: &row,
            empty: if tokens.has_loaded() {
                "no token matches"
            } else {
                "waiting for the worker…"
            },
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
