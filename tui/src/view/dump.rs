//! `mmt-tui --dump`: a snapshot as plain text, for scripts and incident
//! notes.

use std::fmt::Write;

use mmt_shared::console::SnapshotReply;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::wire::TokenState;

use super::keys;
use crate::state::{KeyRing, Rejection};
use crate::timefmt::stamp_millis;

fn opt<T: AsRef<str>>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.as_ref().to_owned())
}

/// One event: fixed-width time with date and zone, the kind, the token and
/// what applies to the kind; a refusal names what was asked as the screen
/// does (`revoke` for a refused removal).
fn event_line(out: &mut String, event: &Event) {
    let _ = write!(
        out,
        "  {}  {:<21} {:<36} client={} integration={} scope={} state={}",
        stamp_millis(&event.at),
        event.kind.routing_key(),
        opt(event.token_id.as_deref()),
        opt(event.client_id.as_deref()),
        opt(event.broker_type.as_deref()),
        opt(event.scope.map(|s| s.as_str())),
        opt(event.state.map(|s| s.as_str())),
    );
    if matches!(
        event.kind,
        EventKind::RequestRejected | EventKind::MessageDeadLettered
    ) {
        let asked = Rejection::from(event.clone()).asked();
        let _ = write!(
            out,
            " asked={asked} code={}",
            opt(event.code.map(|c| c.as_str()))
        );
    }
    let _ = writeln!(out);
}

/// The snapshot as text.
pub fn text(snapshot: &SnapshotReply, namespace: &str) -> String {
    let mut out = String::new();
    let stats = &snapshot.stats;
    let _ = writeln!(
        out,
        "mmt snapshot  namespace={namespace}  at={}",
        stamp_millis(&snapshot.at)
    );
    let _ = writeln!(
        out,
        "worker  uptime={}s  store_bytes={}  dead_lettered={}  dead_depth={}",
        stats.uptime_seconds,
        stats.store_bytes,
        stats.dead_lettered,
        opt(stats.dead_depth.map(|d| d.to_string())),
    );
    if let Some(ring) = &stats.keys {
        let _ = writeln!(out, "keys  {}", keys::text(&KeyRing::reported(ring)));
    }
    let _ = writeln!(out, "\ntokens by state");
    for state in [
        TokenState::Active,
        TokenState::ReauthRequired,
        TokenState::Revoked,
    ] {
        let total: u64 = snapshot
            .counts
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.count)
            .sum();
        let _ = writeln!(out, "  {:<16} {total}", state.as_str());
    }
    let _ = writeln!(out, "\ntokens by integration, scope and state");
    for row in snapshot.counts.iter().filter(|c| c.count > 0) {
        let _ = writeln!(
            out,
            "  {:<20} {:<6} {:<16} {}",
            row.broker_type,
            row.scope.as_str(),
            row.state.as_str(),
            row.count
        );
    }
    let _ = writeln!(out, "\nqueues");
    for queue in &stats.queues {
        let _ = writeln!(
            out,
            "  {:<40} received={} acked={} rate={:.1}/s depth={}",
            queue.queue,
            queue.received,
            queue.acked,
            queue.rate,
            opt(queue.depth.map(|d| d.to_string())),
        );
    }
    let _ = writeln!(out, "\nrejections by code");
    for code in &stats.rejections {
        let _ = writeln!(out, "  {:<16} {}", code.code.as_str(), code.count);
    }
    let _ = writeln!(out, "\nrecent rejections (oldest first)");
    for event in &snapshot.recent_rejections {
        event_line(&mut out, event);
    }
    let _ = writeln!(out, "\nrecent lifecycle events (oldest first)");
    for event in &snapshot.recent_lifecycle {
        event_line(&mut out, event);
    }
    let _ = writeln!(out, "\ndead letters by reason");
    for reason in &snapshot.dead_by_reason {
        let _ = writeln!(out, "  {:<40} {}", reason.reason, reason.count);
    }
    let _ = writeln!(out, "\nrecent dead letters (oldest first; never the body)");
    for dead in &snapshot.recent_dead_letters {
        let _ = writeln!(
            out,
            "  {}  queue={} code={} size={} message_id={} reason={}",
            stamp_millis(&dead.at),
            dead.queue,
            opt(dead.code.map(|c| c.as_str())),
            dead.size,
            opt(dead.message_id.as_deref()),
            dead.reason,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use mmt_shared::console::{CodeCount, CountRow, KeysStats, RewrapStats, WorkerStats};
    use mmt_shared::events::EventKind;
    use mmt_shared::wire::{ErrorCode, Operation, Scope};

    use super::super::tests::empty_snapshot;
    use super::*;

    #[test]
    fn the_text_dump_has_totals_groups_codes_and_events() {
        let mut rejected = Event::new(EventKind::RequestRejected, "2026-11-24T12:00:00Z".into());
        rejected.token_id = Some("tok_1".into());
        rejected.operation = Some(Operation::Write);
        rejected.code = Some(ErrorCode::ScopeMismatch);
        let snapshot = SnapshotReply {
            ok: true,
            at: "2026-11-24T12:00:01Z".into(),
            counts: vec![
                CountRow {
                    state: TokenState::Active,
                    scope: Scope::Read,
                    broker_type: "coinbase".into(),
                    count: 3,
                },
                CountRow {
                    state: TokenState::Revoked,
                    scope: Scope::Read,
                    broker_type: "coinbase".into(),
                    count: 1,
                },
            ],
            recent_rejections: vec![rejected],
            recent_lifecycle: Vec::new(),
            recent_dead_letters: Vec::new(),
            dead_by_reason: Vec::new(),
            stats: WorkerStats {
                rejections: vec![CodeCount {
                    code: ErrorCode::ScopeMismatch,
                    count: 1,
                }],
                ..WorkerStats::default()
            },
        };
        let text = text(&snapshot, "mmt");
        for line in [
            "mmt snapshot  namespace=mmt  at=2026-11-24 12:00:01.000 UTC",
            "  active           3",
            "  revoked          1",
            "  coinbase             read   revoked          1",
            "  scope_mismatch   1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
        assert!(text.contains("asked=write code=scope_mismatch"), "{text}");
        assert!(
            text.contains("  2026-11-24 12:00:00.000 UTC  request.rejected"),
            "{text}"
        );
    }

    #[test]
    fn lifecycle_lines_carry_no_operation_and_a_refused_removal_reads_revoke() {
        let mut issued = Event::new(EventKind::TokenIssued, "2026-11-24T12:00:00.5Z".into());
        issued.token_id = Some("tok_1".into());
        let mut refused = Event::new(EventKind::RequestRejected, "2026-11-24T12:00:01Z".into());
        refused.code = Some(ErrorCode::NotFound);
        refused.queue = Some("connection.removed".into());
        let snapshot = SnapshotReply {
            recent_rejections: vec![refused],
            recent_lifecycle: vec![issued],
            ..empty_snapshot()
        };
        let text = text(&snapshot, "mmt");
        let issued = text
            .lines()
            .find(|l| l.contains("token.issued"))
            .expect("issued line");
        assert!(
            !issued.contains("op=") && !issued.contains("code="),
            "{issued}"
        );
        assert!(
            issued.starts_with("  2026-11-24 12:00:00.500 UTC  "),
            "{issued}"
        );
        assert!(text.contains("asked=revoke code=not_found"), "{text}");
    }

    #[test]
    fn the_dump_prints_the_key_ring_as_the_console_line_does_and_none_when_unreported() {
        let mut snapshot = empty_snapshot();
        assert!(
            !text(&snapshot, "mmt").contains("keys"),
            "no ring reported, no line"
        );
        snapshot.stats.keys = Some(KeysStats {
            active: "1".into(),
            wrapped: [("0".to_owned(), 1_204), ("1".to_owned(), 40_210)].into(),
            counted_at: Some("2026-12-06T12:00:00Z".into()),
            rewrap: RewrapStats {
                running: true,
                done: 400,
                total: 1_604,
                per_sec: 2_000,
                ..RewrapStats::default()
            },
        });
        let running = text(&snapshot, "mmt");
        assert!(
            running.lines().any(|l| l
                == "keys  active 1 · wrapped 0:1,204 1:40,210 · rewrap 25% (400/1,604) at 2,000/s"),
            "{running}"
        );
        let keys = snapshot.stats.keys.as_mut().expect("set above");
        keys.wrapped = [("0".to_owned(), 0), ("1".to_owned(), 41_414)].into();
        keys.rewrap.running = false;
        keys.rewrap.done = 1_604;
        let settled = text(&snapshot, "mmt");
        assert!(
            settled.lines().any(|l| l
                == "keys  active 1 · all 41,414 data keys under key 1 · key 0 may be deleted from the key file"),
            "{settled}"
        );
    }
}
