//! The token listing: one page from the worker, sorted here, with the filter
//! line above it.

use mmt_shared::wire::TokenState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::styles::Styles;
use super::table::{self, TableView};
use crate::state::{Column, State};

fn width(column: Column) -> Constraint {
    match column {
        Column::TokenId => Constraint::Min(13),
        Column::Client => Constraint::Length(8),
        Column::Integration => Constraint::Length(9),
        Column::Scope => Constraint::Length(5),
        Column::State => Constraint::Length(15),
        Column::Expires | Column::Changed => Constraint::Length(11),
    }
}

/// `MM-DD HH:MM` of a `YYYY-MM-DD HH:MM...` time.
fn month_day_time(at: &str) -> String {
    at.get(5..16).unwrap_or(at).to_owned()
}

/// Draws the listing in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let tokens = &state.tokens;
    let [status, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
    let status_line = match &tokens.editing {
        Some(text) => Line::from(vec![
            Span::styled(" filter> ", styles.key()),
            Span::raw(text.clone()),
            Span::styled("█", styles.key()),
            Span::styled("  Enter apply · Esc cancel", styles.dim()),
        ]),
        None => {
            let filter = if tokens.filter.is_empty() {
                "none".to_owned()
            } else {
                tokens.filter.clone()
            };
            let (column, ascending) = tokens.sort;
            let mut spans = vec![
                Span::styled(" filter ", styles.dim()),
                Span::raw(filter),
                Span::styled(" · page ", styles.dim()),
                Span::raw((tokens.page + 1).to_string()),
                Span::raw(if tokens.more { "+" } else { "" }),
                Span::styled(" · sort ", styles.dim()),
                Span::raw(format!(
                    "{} {}",
                    column.title(),
                    if ascending { "↑" } else { "↓" }
                )),
                Span::styled(format!(" · scanned {}", tokens.scanned), styles.dim()),
            ];
            if tokens.loading {
                spans.push(Span::styled(" · loading…", styles.warn()));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(status_line), status);
    let (sorted, ascending) = tokens.sort;
    let titles: Vec<String> = Column::ALL
        .iter()
        .map(|c| {
            if *c == sorted {
                format!("{}{}", c.title(), if ascending { "↑" } else { "↓" })
            } else {
                c.title().to_owned()
            }
        })
        .collect();
    let columns: Vec<(&str, Constraint)> = Column::ALL
        .iter()
        .zip(&titles)
        .map(|(c, t)| (t.as_str(), width(*c)))
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
        (
            vec![
                t.token_id.clone(),
                t.client_id.clone(),
                t.broker_type.clone(),
                t.scope.as_str().to_owned(),
                t.state.as_str().to_owned(),
                month_day_time(&t.expires),
                month_day_time(&t.changed),
            ],
            style,
        )
    };
    let title = Line::from(format!(" Tokens ({} on this page) ", tokens.rows.len()));
    table::render(
        frame,
        list,
        styles,
        &TableView {
            title,
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
