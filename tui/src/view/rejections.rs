//! The live feed of refused requests (bad input included), newest first,
//! with the counts per error code and per client; scope mismatches stand
//! out (in colour and with a `!`).

use mmt_shared::wire::ErrorCode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::count_lines;
use ratatui::widgets::Paragraph;

use super::styles::Styles;
use super::table::{self, TableView};
use crate::state::State;

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// Draws the feed in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let codes: Vec<(String, u64, Style)> = state
        .rejection_counts
        .iter()
        .map(|(code, count)| {
            let style = if *code == ErrorCode::ScopeMismatch {
                styles.bad()
            } else {
                Style::default()
            };
            (code.as_str().to_owned(), *count, style)
        })
        .collect();
    let clients: Vec<(String, u64, Style)> = state
        .rejections_by_client
        .iter()
        .map(|(client, count)| (client.clone(), *count, Style::default()))
        .collect();
    let codes = count_lines(" by code: ", &codes, area.width, 2, styles);
    let clients = count_lines(" by client: ", &clients, area.width, 1, styles);
    let [codes_area, clients_area, list] = Layout::vertical([
        Constraint::Length(u16::try_from(codes.len()).unwrap_or(1)),
        Constraint::Length(1),
        Constraint::Min(3),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(codes), codes_area);
    frame.render_widget(Paragraph::new(clients), clients_area);
    let columns = [
        ("UTC time", Constraint::Length(8)),
        ("client", Constraint::Length(10)),
        ("tokenId or reason", Constraint::Min(12)),
        ("asked", Constraint::Length(7)),
        ("scope", Constraint::Length(5)),
        ("code", Constraint::Length(17)),
    ];
    let len = state.rejections.len();
    let row = |i: usize| {
        let Some(r) = len
            .checked_sub(i + 1)
            .and_then(|at| state.rejections.get(at))
        else {
            return (Vec::new(), Style::default());
        };
        let code = r.code.map(|c| c.as_str()).unwrap_or("?");
        let (code, style) = if r.is_scope_mismatch() {
            (format!("! {code}"), styles.bad())
        } else {
            (format!("  {code}"), Style::default())
        };
        (
            vec![
                r.time.clone(),
                dash(&r.client_id),
                // Bad input names no token: its reason says what was wrong.
                match (&r.reason, r.token_id.is_empty()) {
                    (Some(reason), true) => reason.clone(),
                    _ => dash(&r.token_id),
                },
                r.asked().to_owned(),
                r.scope.map_or("-", |s| s.as_str()).to_owned(),
                code,
            ],
            style,
        )
    };
    let total: u64 = state.rejection_counts.values().sum();
    let title = Line::from(vec![
        Span::raw(format!(
            " Refused requests, newest first: {len} of {total} "
        )),
        if state.paused {
            Span::styled(format!("PAUSED, {} held ", state.held.len()), styles.warn())
        } else {
            Span::styled("LIVE ", styles.good())
        },
    ]);
    table::render(
        frame,
        list,
        styles,
        &TableView {
            title,
            columns: &columns,
            len,
            selected: (len > 0).then_some(state.rejection_selected),
            row: &row,
            empty: "no refused request yet",
            cut_middle: &[],
        },
    );
}
