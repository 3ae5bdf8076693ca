//! The key ring's line on the health screen (CONTRACT.md §11): the active
//! key, the data keys each key wraps and the rewrap's progress; once every
//! data key is under the active key, that the other keys may go from the
//! key file; a failing rewrap, or workers naming different active keys, as
//! warnings. A worker that reports no key ring gets no line.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::styles::Styles;
use super::tokens::thousands;
use crate::state::KeyRing;

const LABEL: &str = " keys: ";

/// Key ids as `0, 1`.
fn ids(ids: &[&str]) -> String {
    ids.join(", ")
}

/// The rewrap while it runs: `41% (40,210/98,310) at 2,000/s`, rounded but
/// never 100% before it is done; ` on 2 workers` when several share it.
fn progress(ring: &KeyRing) -> String {
    let r = &ring.rewrap;
    let percent = r
        .done
        .saturating_mul(100)
        .saturating_add(r.total / 2)
        .checked_div(r.total)
        .map(|p| p.min(if r.done < r.total { 99 } else { 100 }));
    let done = match percent {
        Some(percent) => format!("{percent}% ({}/{})", thousands(r.done), thousands(r.total)),
        None => format!("{} done", thousands(r.done)),
    };
    let on = if r.workers > 1 {
        format!(" on {} workers", r.workers)
    } else {
        String::new()
    };
    format!("rewrap {done} at {}/s{on}", thousands(u64::from(r.per_sec)))
}

/// What the line says, part by part, each in its style.
fn parts(ring: &KeyRing, styles: Styles) -> Vec<(String, Style)> {
    let plain = Style::default();
    let mut parts = vec![(format!("active {}", ring.active), plain)];
    let others: Vec<&str> = ring
        .wrapped
        .iter()
        .filter(|(id, _)| *id != ring.active)
        .map(|(id, _)| id.as_str())
        .collect();
    if ring.settled() {
        parts.push((
            format!(
                "all {} data keys under key {}",
                thousands(ring.under_active()),
                ring.active
            ),
            styles.good(),
        ));
        // Keys that wrap nothing are not counted, so the ids known here are
        // those a count still named (at 0).
        parts.push((
            if others.is_empty() {
                "no other key is needed".to_owned()
            } else {
                format!("key {} may be deleted from the key file", ids(&others))
            },
            plain,
        ));
        return parts;
    }
    if ring.counted {
        let counts: Vec<String> = ring
            .wrapped
            .iter()
            .map(|(id, n)| format!("{id}:{}", thousands(*n)))
            .collect();
        parts.push((format!("wrapped {}", counts.join(" ")), plain));
    } else {
        parts.push(("data keys not counted yet".to_owned(), styles.dim()));
    }
    let r = &ring.rewrap;
    let older_left = ring
        .wrapped
        .iter()
        .any(|(id, n)| *id != ring.active && *n > 0);
    if r.running {
        parts.push((progress(ring), plain));
    } else if older_left && r.last_error.is_none() {
        parts.push(("rewrap not running".to_owned(), styles.warn()));
    }
    if let Some(error) = &r.last_error {
        parts.push((
            format!("rewrap failed: {error}, trying again"),
            styles.warn(),
        ));
    }
    let disagree = ring.other_actives();
    if !disagree.is_empty() {
        parts.push((
            format!(
                "another worker has key {} active: SIGHUP every worker",
                ids(&disagree)
            ),
            styles.warn(),
        ));
    }
    parts
}

/// The line as plain text, parts joined by ` · ` (`--dump`).
pub fn text(ring: &KeyRing) -> String {
    let parts: Vec<String> = parts(ring, Styles::new(false))
        .into_iter()
        .map(|(text, _)| text)
        .collect();
    parts.join(" · ")
}

/// The line in `width` cells, on as many rows as it takes: a part that
/// does not fit goes whole to the next row (indented under the first), a
/// part wider than a row word by word; nothing is cut.
pub fn lines(ring: &KeyRing, width: u16, styles: Styles) -> Vec<Line<'static>> {
    let width = usize::from(width);
    let label = Span::styled(LABEL, styles.dim());
    let indent = label.width();
    let mut rows = Vec::new();
    let mut spans = vec![label];
    let mut used = indent;
    for (text, style) in parts(ring, styles) {
        let pieces: Vec<String> = if indent + Span::raw(text.as_str()).width() <= width {
            vec![text]
        } else {
            text.split(' ').map(str::to_owned).collect()
        };
        for (i, piece) in pieces.into_iter().enumerate() {
            let sep = if i == 0 {
                Span::styled(" · ", styles.dim())
            } else {
                Span::styled(" ", style)
            };
            let piece = Span::styled(piece, style);
            if used > indent && used + sep.width() + piece.width() > width {
                rows.push(Line::from(std::mem::take(&mut spans)));
                spans.push(Span::raw(" ".repeat(indent)));
                used = indent;
            }
            if used > indent {
                used += sep.width();
                spans.push(sep);
            }
            used += piece.width();
            spans.push(piece);
        }
    }
    rows.push(Line::from(spans));
    rows
}
