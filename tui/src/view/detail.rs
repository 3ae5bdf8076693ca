//! The detail pane over any screen: every field of one token, its tokenId in
//! full, times with date and zone, its refresh state, and the recent events
//! and refusals the console holds for it; or every field of one dead letter, its reason in
//! full.

use mmt_shared::time_fmt::{UnixMillis, parse_rfc3339};
use mmt_shared::wire::TokenState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::duration;
use super::styles::Styles;
use crate::state::{DeadLetter, Detail, RefreshMark, State, TokenRow};
use crate::timefmt::stamp;

/// How many events and refusals the pane lists.
const EVENTS_SHOWN: usize = 8;

fn field(name: &str, value: String, styles: Styles) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" {name:<13}"), styles.dim()),
        Span::raw(value),
    ])
}

/// `2026-12-01 22:00:00 UTC (in 3m05s)` or `(... ago)`.
fn stamp_from_now(at: &str, now: UnixMillis) -> String {
    let Some(ms) = parse_rfc3339(at) else {
        return stamp(at);
    };
    let seconds = |ms: UnixMillis| duration(u64::try_from(ms / 1000).unwrap_or(0));
    let delta = ms - now;
    if delta >= 0 {
        format!("{} (in {})", stamp(at), seconds(delta))
    } else {
        format!("{} ({} ago)", stamp(at), seconds(-delta))
    }
}

/// The refresh engine's part: when the token was refreshed and will be, and
/// why it is failing.
fn refresh_fields(row: &TokenRow, now: UnixMillis, styles: Styles) -> Vec<Line<'static>> {
    let Some(refresh) = &row.refresh else {
        let why = match row.state {
            TokenState::Active => {
                "not refreshed by the worker (no refresh token, or its integration is not configured)"
            }
            TokenState::ReauthRequired => "none: the end user must connect again",
            TokenState::Revoked => "-",
        };
        return vec![field("refresh", why.to_owned(), styles)];
    };
    let mut lines = vec![
        field(
            "refreshed",
            refresh.last_refreshed_at.as_deref().map_or_else(
                || "never by this store".to_owned(),
                |at| stamp_from_now(at, now),
            ),
            styles,
        ),
        field(
            "next refresh",
            stamp_from_now(&refresh.next_at, now),
            styles,
        ),
    ];
    let news = match refresh.mark(now) {
        RefreshMark::Pending => Some((
            "PENDING: past expiresAt; resolve answers refresh_pending",
            styles.bad(),
        )),
        RefreshMark::InFlight => Some(("a refresh request is in flight now", styles.good())),
        RefreshMark::Failing(_) | RefreshMark::Next(_) => None,
    };
    if let Some((text, style)) = news {
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<13}", "refresh"), styles.dim()),
            Span::styled(text.to_owned(), style),
        ]));
    }
    if refresh.attempts > 0 {
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<13}", "failing"), styles.dim()),
            Span::styled(
                format!(
                    "{} attempt{} since the last success, last error {}",
                    refresh.attempts,
                    if refresh.attempts == 1 { "" } else { "s" },
                    refresh.last_error.as_deref().unwrap_or("?")
                ),
                styles.warn(),
            ),
        ]));
    }
    lines
}

fn fields(detail: &Detail, now: UnixMillis, styles: Styles) -> Vec<Line<'static>> {
    let mut lines = vec![field("tokenId", detail.token_id.clone(), styles)];
    let Some(row) = &detail.row else {
        let why = if detail.loading {
            "asking the worker…"
        } else if detail.missing {
            "the worker holds no such token (never issued, or another namespace)"
        } else {
            "the worker did not answer: Esc, then Enter to ask again"
        };
        lines.push(Line::from(Span::styled(format!(" {why}"), styles.warn())));
        return lines;
    };
    let gone = || "- (not kept after revocation)".to_owned();
    let state_style = match row.state {
        TokenState::Active => styles.good(),
        TokenState::ReauthRequired => styles.warn(),
        TokenState::Revoked => styles.dim(),
    };
    lines.extend([
        field("clientId", row.client_id.clone(), styles),
        field(
            "endUserId",
            row.end_user_id.clone().unwrap_or_else(gone),
            styles,
        ),
        field(
            "accountId",
            row.account_id.clone().unwrap_or_else(gone),
            styles,
        ),
        field("integration", row.broker_type.clone(), styles),
        field("scope", row.scope.as_str().to_owned(), styles),
        Line::from(vec![
            Span::styled(format!(" {:<13}", "state"), styles.dim()),
            Span::styled(row.state.as_str().to_owned(), state_style),
        ]),
        field(
            "created",
            row.created_at.as_deref().map(stamp).unwrap_or_else(gone),
            styles,
        ),
        field(
            if row.state == TokenState::Revoked {
                "revoked"
            } else {
                "last change"
            },
            stamp(&row.updated_at),
            styles,
        ),
        field(
            "expiresAt",
            match (&row.expires_at, row.state) {
                (_, TokenState::Revoked) => "-".to_owned(),
                (Some(at), _) => stamp(at),
                (None, _) => "never".to_owned(),
            },
            styles,
        ),
    ]);
    lines.extend(refresh_fields(row, now, styles));
    lines
}

/// The recent lifecycle events and refusals of the token, newest first.
fn history(state: &State, token_id: &str, styles: Styles) -> Vec<Line<'static>> {
    let mut items: Vec<(String, Line<'static>)> = state
        .lifecycle
        .iter()
        .filter(|e| e.token_id == token_id)
        .map(|e| {
            (
                e.at.clone(),
                Line::from(vec![
                    Span::raw(format!(" {} ", stamp(&e.at))),
                    Span::raw(e.what.to_owned()),
                ]),
            )
        })
        .chain(
            state
                .rejections
                .iter()
                .filter(|r| r.token_id == token_id)
                .map(|r| {
                    let code = r.code.map_or("?", |c| c.as_str());
                    let style = if r.is_scope_mismatch() {
                        styles.bad()
                    } else {
                        styles.warn()
                    };
                    (
                        r.at.clone(),
                        Line::from(vec![
                            Span::raw(format!(" {} ", stamp(&r.at))),
                            Span::styled(
                                format!("refused {} {} by {}", r.asked(), code, r.client_id),
                                style,
                            ),
                        ]),
                    )
                }),
        )
        .collect();
    // By the time itself: RFC 3339 texts with and without a fraction of a
    // second do not sort as text.
    items.sort_by_key(|(at, _)| std::cmp::Reverse(parse_rfc3339(at)));
    let mut lines = vec![Line::from(Span::styled(
        " recent events and refusals (newest first)",
        styles.title(),
    ))];
    if items.is_empty() {
        lines.push(Line::from(Span::styled(
            " none seen by this console",
            styles.dim(),
        )));
    }
    lines.extend(items.into_iter().take(EVENTS_SHOWN).map(|(_, line)| line));
    lines
}

/// The fields of a dead letter, its reason in full.
fn dead_letter(dead: &DeadLetter, namespace: &str, styles: Styles) -> Vec<Line<'static>> {
    vec![
        field("when", stamp(&dead.at), styles),
        field("queue", dead.queue.clone(), styles),
        field(
            "code",
            dead.code.map_or("-", |c| c.as_str()).to_owned(),
            styles,
        ),
        field(
            "messageId",
            dead.message_id.clone().unwrap_or_else(|| "-".into()),
            styles,
        ),
        field(
            "published by",
            dead.broker_user.clone().map_or_else(
                || "- (no user_id, or not in the worker's list)".to_owned(),
                |user| format!("broker user {user}"),
            ),
            styles,
        ),
        field(
            "clientId",
            dead.client_id.clone().map_or_else(
                || "- (not known to this console)".to_owned(),
                |client| format!("{client} (claimed by the body)"),
            ),
            styles,
        ),
        field(
            "size",
            dead.size
                .map_or_else(|| "-".to_owned(), |n| format!("{n} bytes")),
            styles,
        ),
        field("reason", dead.reason.clone(), styles),
        Line::raw(""),
        Line::from(Span::styled(
            format!(" the body stays in {namespace}.dead, unchanged; the console never reads it"),
            styles.dim(),
        )),
    ]
}

/// Draws the pane over `area` when one is open.
pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, styles: Styles) {
    let (lines, title) = match (&state.detail, &state.dead_open) {
        (Some(detail), _) => {
            let mut lines = fields(detail, state.now, styles);
            lines.push(Line::raw(""));
            lines.extend(history(state, &detail.token_id, styles));
            (lines, " Token (y copies the tokenId · Esc closes) ")
        }
        (None, Some(dead)) => (
            dead_letter(dead, &state.namespace, styles),
            " Dead letter (Esc closes) ",
        ),
        (None, None) => return,
    };
    let width = area.width.min(96);
    let height = area.height.min(26);
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, pane, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width),
        Constraint::Fill(1),
    ])
    .areas(middle);
    let block = Block::default().borders(Borders::ALL).title(title);
    frame.render_widget(Clear, pane);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        pane,
    );
}
