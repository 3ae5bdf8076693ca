//! `mmt-tui --dump`: a snapshot as plain text, for scripts and incident
//! notes.

use std::fmt::Write;

use mmt_shared::console::SnapshotReply;
use mmt_shared::events::Event;
use mmt_shared::wire::TokenState;

fn opt<T: AsRef<str>>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.as_ref().to_owned())
}

fn event_line(out: &mut String, event: &Event) {
    let _ = writeln!(
        out,
        "  {}  {:<17} {:<38} client={} integration={} scope={} state={} op={} code={}",
        event.at,
        event.kind.routing_key(),
        opt(event.token_id.as_deref()),
        opt(event.client_id.as_deref()),
        opt(event.broker_type.as_deref()),
        opt(event.scope.map(|s| s.as_str())),
        opt(event.state.map(|s| s.as_str())),
        opt(event.operation.map(|o| o.as_str())),
        opt(event.code.map(|c| c.as_str())),
    );
}

/// The snapshot as text.
pub fn text(snapshot: &SnapshotReply, namespace: &str) -> String {
    let mut out = String::new();
    let stats = &snapshot.stats;
    let _ = writeln!(
        out,
        "mmt snapshot  namespace={namespace}  at={}",
        snapshot.at
    );
    let _ = writeln!(
        out,
        "worker  uptime={}s  store_bytes={}  dead_lettered={}  dead_depth={}",
        stats.uptime_seconds,
        stats.store_bytes,
        stats.dead_lettered,
        opt(stats.dead_depth.map(|d| d.to_string())),
    );
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
    out
}

#[cfg(test)]
mod tests {
    use mmt_shared::console::{CodeCount, CountRow, WorkerStats};
    use mmt_shared::events::EventKind;
    use mmt_shared::wire::{ErrorCode, Operation, Scope};

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
            "mmt snapshot  namespace=mmt  at=2026-11-24T12:00:01Z",
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
        assert!(text.contains("op=write code=scope_mismatch"), "{text}");
    }
}
