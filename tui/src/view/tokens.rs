//! The token listing: one page from the worker, in the store's order or
//! searched and sorted over every token, with the filter line above it.

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::TokenState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::duration;
use super::styles::Styles;
use super::table::{self, TableView};
use crate::state::{Column, RefreshMark, State, TokenRow};
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

/// A column of the table: one of the listing's (sortable by the worker),
/// or the refresh state (from each row's refresh record, not sortable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    Listing(Column),
    Refresh,
}

/// From this width the refresh state has a column of its own; below it, the
/// state column carries it.
const REFRESH_COLUMN_FROM: u16 = 120;

/// From this width every column is shown with whole tokenIds; below it the
/// last change (in the detail pane) gives way to them.
const ALL_COLUMNS_FROM: u16 = 130;

/// The columns shown in `width` cells: the least needed go first when the
/// terminal is narrow (the detail pane shows every field).
fn shown(width: u16) -> Vec<Shown> {
    let drop: &[Column] = match width {
        w if w >= ALL_COLUMNS_FROM => &[],
        w if w >= 100 => &[Column::Changed],
        _ => &[Column::Changed, Column::User],
    };
    let mut columns = Vec::new();
    for column in Column::ALL.into_iter().filter(|c| !drop.contains(c)) {
        columns.push(Shown::Listing(column));
        if column == Column::State && width >= REFRESH_COLUMN_FROM {
            columns.push(Shown::Refresh);
        }
    }
    columns
}

/// From this width the refresh column also names the last error.
const REFRESH_ERROR_FROM: u16 = 140;

/// The refresh column: what the engine is doing with the token, most
/// urgent first, with the last error code when `with_error`; `-` when the
/// engine does not own the token.
fn refresh_cell(t: &TokenRow, now: UnixMillis, with_error: bool) -> String {
    let Some(refresh) = &t.refresh else {
        return "-".to_owned();
    };
    let text = match refresh.mark(now) {
        RefreshMark::Pending => "PENDING".to_owned(),
        RefreshMark::Failing(n) => format!("failed {n}×"),
        RefreshMark::InFlight => "in flight".to_owned(),
        RefreshMark::Next(0) => "due now".to_owned(),
        RefreshMark::Next(ms) => {
            format!("in {}", duration(u64::try_from(ms / 1000).unwrap_or(0)))
        }
    };
    match (&refresh.last_error, with_error) {
        (Some(code), true) => format!("{text} {code}"),
        _ => text,
    }
}

/// The state column when there is no refresh column: the state, or what
/// resolve answers when the refresh engine is the news.
fn state_cell(t: &TokenRow, now: UnixMillis, folded: bool) -> String {
    let mark = t.refresh.as_ref().map(|r| r.mark(now));
    match mark {
        Some(RefreshMark::Pending) if folded => "refresh_pending".to_owned(),
        Some(RefreshMark::Failing(_)) if folded => format!("{}·failing", t.state.as_str()),
        Some(RefreshMark::InFlight) if folded => format!("{}·refresh", t.state.as_str()),
        Some(mark) if folded && mark.is_soon() => format!("{}·due<1m", t.state.as_str()),
        _ => t.state.as_str().to_owned(),
    }
}

/// How the cells of a row are written at the table's width.
#[derive(Clone, Copy)]
struct Cells {
    now: UnixMillis,
    /// No refresh column: the state column carries the refresh news.
    folded: bool,
    /// The refresh column names the last error.
    with_error: bool,
}

fn cell(column: Shown, t: &TokenRow, how: Cells) -> String {
    let Shown::Listing(column) = column else {
        return refresh_cell(t, how.now, how.with_error);
    };
    let (now, folded) = (how.now, how.folded);
    match column {
        Column::TokenId => t.token_id.clone(),
        Column::Client => t.client_id.clone(),
        Column::User => t.end_user_id.clone().unwrap_or_else(|| "-".into()),
        Column::Integration => t.broker_type.clone(),
        Column::Scope => t.scope.as_str().to_owned(),
        Column::State => state_cell(t, now, folded),
        Column::Expires => match (&t.expires_at, t.state) {
            (_, TokenState::Revoked) => "-".to_owned(),
            (Some(at), _) => short(at),
            (None, _) => "never".to_owned(),
        },
        Column::Changed => short(&t.updated_at),
    }
}

/// The row's style: its state's, or the refresh engine's news when worse.
fn row_style(t: &TokenRow, now: UnixMillis, styles: Styles) -> Style {
    match (t.state, t.refresh.as_ref().map(|r| r.mark(now))) {
        (_, Some(RefreshMark::Pending)) => styles.bad(),
        (TokenState::ReauthRequired, _) | (_, Some(RefreshMark::Failing(_))) => styles.warn(),
        (TokenState::Revoked, _) => styles.dim(),
        (TokenState::Active, _) => Style::default(),
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
    let how = Cells {
        now: state.now,
        folded: !columns_shown.contains(&Shown::Refresh),
        with_error: list.width >= REFRESH_ERROR_FROM,
    };
    let titles: Vec<String> = columns_shown
        .iter()
        .map(|c| match c {
            Shown::Listing(c) if *c == sorted => {
                format!("{}{}", c.title(), if ascending { "↑" } else { "↓" })
            }
            Shown::Listing(c) => c.title().to_owned(),
            Shown::Refresh => "refresh".to_owned(),
        })
        .collect();
    let columns: Vec<(&str, Constraint)> = columns_shown
        .iter()
        .zip(&titles)
        .map(|(c, t)| {
            let width = match c {
                Shown::Listing(c) => width(*c, list.width >= 140),
                Shown::Refresh if how.with_error => Constraint::Length(26),
                Shown::Refresh => Constraint::Length(10),
            };
            (t.as_str(), width)
        })
        .collect();
    let row = |i: usize| {
        let Some(t) = tokens.rows.get(i) else {
            return (Vec::new(), Style::default());
        };
        (
            columns_shown.iter().map(|c| cell(*c, t, how)).collect(),
            row_style(t, how.now, styles),
        )
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
            cut_middle: &[],
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
