//! The dead letters: what the worker moved to `NS.dead` and why, newest
//! first, with the counts by reason; never a body.

use mmt_shared::time_fmt::parse_rfc3339;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::styles::Styles;
use super::table::{self, TableView};
use super::{count_lines, duration};
use crate::state::State;

/// `37s` since `at`, or `?` when `at` is not a time.
fn age(state: &State, at: &str) -> String {
    parse_rfc3339(at).map_or_else(
        || "?".to_owned(),
        |t| duration(u64::try_from((state.now - t).max(0) / 1000).unwrap_or(0)),
    )
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".to_owned(),
        Some(n) if n < 10 * 1024 => format!("{n} B"),
        Some(n) => format!("{} KiB", n / 1024),
    }
}

/// Draws the dead letters in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let reasons: Vec<(String, u64, Style)> = state
        .dead_by_reason
        .iter()
        .map(|(reason, count)| (reason.clone(), *count, styles.bad()))
        .collect();
    let reasons = count_lines(" by reason: ", &reasons, area.width, 2, styles);
    let [counts, list] = Layout::vertical([
        Constraint::Length(u16::try_from(reasons.len()).unwrap_or(1)),
        Constraint::Min(3),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(reasons), counts);
    // Room for the longest message id held (up to a uuid's), as far as the
    // other columns and the reason's minimum leave it.
    let longest = state
        .dead_letters
        .iter()
        .filter_map(|d| d.message_id.as_deref())
        .map(|id| id.chars().count())
        .max()
        .unwrap_or(0);
    // The other columns (borders and spaces included) take 67 cells.
    let room = usize::from(area.width.saturating_sub(67)).max(9);
    let id_width = u16::try_from(longest.clamp(9, 36).min(room)).unwrap_or(9);
    let columns = [
        ("age", Constraint::Length(6)),
        ("queue", Constraint::Length(21)),
        ("code", Constraint::Length(15)),
        ("size", Constraint::Length(6)),
        ("messageId", Constraint::Length(id_width)),
        ("reason (x-mmt-error)", Constraint::Min(10)),
    ];
    let len = state.dead_letters.len();
    let row = |i: usize| {
        let Some(d) = len
            .checked_sub(i + 1)
            .and_then(|at| state.dead_letters.get(at))
        else {
            return (Vec::new(), Style::default());
        };
        (
            vec![
                age(state, &d.at),
                d.queue.clone(),
                d.code.map_or("-", |c| c.as_str()).to_owned(),
                size(d.size),
                d.message_id.clone().unwrap_or_else(|| "-".into()),
                d.reason.clone(),
            ],
            Style::default(),
        )
    };
    let depth = state
        .worker
        .as_ref()
        .and_then(|w| w.dead_depth)
        .map_or_else(|| "?".to_owned(), |d| d.to_string());
    let total = state.worker.as_ref().map_or(0, |w| w.dead_lettered);
    let title = Line::from(format!(
        " Dead letters, newest first: {len} of {total} since worker start · {depth} in {}.dead ",
        state.namespace
    ));
    table::render(
        frame,
        list,
        styles,
        &TableView {
            title,
            columns: &columns,
            len,
            selected: (len > 0).then_some(state.dead_selected),
            row: &row,
            empty: "nothing dead-lettered since the worker started",
            cut_middle: &[4],
        },
    );
}
