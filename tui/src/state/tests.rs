//! The model without a terminal: events in, numbers out.

use mmt_shared::console::{
    CodeCount, CountRow, KeysStats, QueueStats, RewrapStats, SnapshotReply, SortBy,
    TokenRow as WireRow, TokensReply,
};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::wire::{ErrorCode, Operation, Scope, TokenState};

use super::*;

const T0: UnixMillis = 1_795_003_200_000;

fn rejection(code: ErrorCode, token: &str) -> Event {
    let mut event = Event::new(EventKind::RequestRejected, "2026-11-18T12:00:01Z".into());
    event.code = Some(code);
    event.token_id = Some(token.into());
    event.client_id = Some("acme".into());
    event.operation = Some(Operation::Write);
    event.scope = Some(Scope::Read);
    event.queue = Some("token.resolve".into());
    event
}

fn lifecycle(kind: EventKind, token: &str) -> Event {
    let mut event = Event::new(kind, "2026-11-18T12:00:02Z".into());
    event.token_id = Some(token.into());
    event.client_id = Some("acme".into());
    event.broker_type = Some("coinbase".into());
    event.scope = Some(Scope::Read);
    event
}

fn count(state: TokenState, scope: Scope, broker_type: &str, count: u64) -> CountRow {
    CountRow {
        state,
        scope,
        broker_type: broker_type.into(),
        count,
    }
}

fn stats(ns: &str, resolves: f64, rejections: &[(ErrorCode, u64)]) -> WorkerStats {
    WorkerStats {
        at: "2026-11-18T12:00:00Z".into(),
        worker: None,
        uptime_seconds: 61,
        queues: vec![
            QueueStats {
                queue: format!("{ns}.integration.connected"),
                received: 10,
                acked: 10,
                rate: 2.0,
                depth: Some(0),
                consumers: Some(1),
                unacked: 0,
                latency_p50_ms: Some(1.5),
                latency_p99_ms: Some(8.0),
            },
            QueueStats {
                queue: format!("{ns}.token.resolve"),
                received: 100,
                acked: 100,
                rate: resolves,
                depth: Some(3),
                consumers: Some(1),
                unacked: 0,
                latency_p50_ms: Some(1.5),
                latency_p99_ms: Some(8.0),
            },
        ],
        rejections: rejections
            .iter()
            .map(|(code, count)| CodeCount {
                code: *code,
                count: *count,
            })
            .collect(),
        dead_lettered: 0,
        dead_depth: Some(0),
        store_bytes: 4096,
        store_engine: None,
        identity: Default::default(),
        cpu_percent: Some(12.5),
        rss_bytes: Some(54 << 20),
        rejections_by_client: Vec::new(),
        refresh: Default::default(),
        purge: None,
        keys: None,
    }
}

fn snapshot(counts: Vec<CountRow>) -> SnapshotReply {
    SnapshotReply {
        ok: true,
        at: "2026-11-18T12:00:00Z".into(),
        counts,
        recent_rejections: Vec::new(),
        recent_lifecycle: Vec::new(),
        stats: WorkerStats::default(),
        recent_dead_letters: Vec::new(),
        dead_by_reason: Vec::new(),
    }
}

fn connected() -> State {
    let mut state = State::new("mmt", T0);
    state.update(Msg::Link(Link::Up), T0);
    state
}

#[test]
fn the_link_coming_up_asks_for_a_snapshot_and_the_first_page() {
    let mut state = State::new("mmt", T0);
    let commands = state.update(Msg::Link(Link::Up), T0);
    assert_eq!(commands.first(), Some(&Command::Snapshot));
    assert!(matches!(commands.get(1), Some(Command::Tokens(r)) if r.after.is_none()));
}

#[test]
fn a_lost_link_is_counted_and_its_return_resyncs() {
    let mut state = connected();
    state.update(
        Msg::Link(Link::Connecting {
            attempt: 1,
            error: Some("gone".into()),
        }),
        T0,
    );
    assert_eq!(state.reconnects, 1);
    assert!(
        state
            .update(Msg::Link(Link::Up), T0)
            .contains(&Command::Snapshot)
    );
    assert_eq!(state.link, Link::Up);
}

#[test]
fn worker_liveness_is_the_age_of_the_last_stats() {
    let mut state = connected();
    assert!(!state.worker_alive());
    let commands = state.update(Msg::Stats(stats("mmt", 0.0, &[])), T0);
    assert_eq!(
        commands.first(),
        Some(&Command::Snapshot),
        "a worker that appears is asked for a snapshot"
    );
    assert!(state.worker_alive());
    state.update(Msg::Tick, T0 + ALIVE_WITHIN_MS + 1);
    assert!(!state.worker_alive());
    assert_eq!(state.worker_age(), Some(ALIVE_WITHIN_MS + 1));
}

#[test]
fn counts_come_per_state_integration_and_scope_with_revoked_included() {
    let mut state = connected();
    let rows = vec![
        count(TokenState::Active, Scope::Read, "coinbase", 5),
        count(TokenState::Revoked, Scope::Read, "coinbase", 2),
        count(TokenState::ReauthRequired, Scope::Write, "binance", 1),
        count(TokenState::Active, Scope::Write, "kraken", 0),
    ];
    state.update(Msg::Snapshot(snapshot(rows)), T0);
    assert_eq!(state.totals(), [5, 1, 2]);
    assert_eq!(state.counts.len(), 2, "empty groups are not shown");
    assert_eq!(
        state
            .counts
            .get(&("coinbase".to_owned(), Scope::Read))
            .map(|l| l.by_state),
        Some([5, 0, 2])
    );
}

#[test]
fn rates_feed_the_sparklines_and_rejections_are_per_second_deltas() {
    let mut state = connected();
    state.update(
        Msg::Stats(stats("mmt", 7.4, &[(ErrorCode::NotFound, 3)])),
        T0,
    );
    state.update(
        Msg::Stats(stats(
            "mmt",
            9.0,
            &[(ErrorCode::NotFound, 4), (ErrorCode::ScopeMismatch, 2)],
        )),
        T0 + 1000,
    );
    assert_eq!(state.rates.resolves.samples(), vec![7, 9]);
    assert_eq!(state.rates.ingest.samples(), vec![2, 2]);
    assert_eq!(state.rates.rejections.samples(), vec![0, 3]);
    assert_eq!(
        state.rejection_counts.get(&ErrorCode::ScopeMismatch),
        Some(&2)
    );
    let worker = state.worker.as_ref().expect("seen");
    assert_eq!(worker.queues[1].name, "token.resolve");
    assert_eq!(worker.queues[1].depth, Some(3));
}

#[test]
fn rejections_and_lifecycle_events_land_in_their_feeds() {
    let mut state = connected();
    state.update(Msg::Event(rejection(ErrorCode::ScopeMismatch, "tok_a")), T0);
    state.update(Msg::Event(lifecycle(EventKind::TokenRevoked, "tok_b")), T0);
    state.update(
        Msg::Event(Event::new(EventKind::MessageDeadLettered, "x".into())),
        T0,
    );
    assert_eq!(state.rejections.len(), 1);
    let r = &state.rejections[0];
    assert!(r.is_scope_mismatch());
    assert_eq!(
        (r.time.as_str(), r.token_id.as_str(), r.operation, r.scope),
        (
            "12:00:01",
            "tok_a",
            Some(Operation::Write),
            Some(Scope::Read)
        )
    );
    assert_eq!(state.lifecycle.len(), 1);
    assert_eq!(state.lifecycle[0].what, "revoked");
}

#[test]
fn pausing_holds_events_and_resuming_loses_none() {
    let mut state = connected();
    state.act(Action::Pause);
    for i in 0..5 {
        state.update(
            Msg::Event(rejection(ErrorCode::NotFound, &format!("tok_{i}"))),
            T0,
        );
    }
    assert!(state.rejections.is_empty(), "the feed is frozen");
    assert_eq!(state.held.len(), 5);
    state.act(Action::Pause);
    assert!(!state.paused);
    let ids: Vec<_> = state
        .rejections
        .iter()
        .map(|r| r.token_id.as_str())
        .collect();
    assert_eq!(ids, ["tok_0", "tok_1", "tok_2", "tok_3", "tok_4"]);
    assert_eq!(state.dropped, 0);
}

#[test]
fn the_feed_keeps_a_bounded_window_and_drops_are_reported() {
    let mut state = connected();
    for i in 0..(REJECTIONS_KEPT + 10) {
        state.update(
            Msg::Event(rejection(ErrorCode::NotFound, &format!("tok_{i}"))),
            T0,
        );
    }
    assert_eq!(state.rejections.len(), REJECTIONS_KEPT);
    state.update(Msg::Dropped(7), T0);
    assert_eq!(state.dropped, 7);
}

#[test]
fn a_snapshot_fills_the_feeds() {
    let mut state = connected();
    state.update(
        Msg::Snapshot(SnapshotReply {
            ok: true,
            at: "2026-11-18T12:00:00Z".into(),
            counts: vec![count(TokenState::Active, Scope::Read, "coinbase", 1)],
            recent_rejections: vec![rejection(ErrorCode::Revoked, "tok_r")],
            recent_lifecycle: vec![lifecycle(EventKind::TokenIssued, "tok_i")],
            stats: WorkerStats::default(),
            recent_dead_letters: Vec::new(),
            dead_by_reason: Vec::new(),
        }),
        T0,
    );
    assert_eq!(state.totals(), [1, 0, 0]);
    assert_eq!(state.rejections.len(), 1);
    assert_eq!(state.lifecycle[0].what, "issued");
}

fn wire_row(id: &str, client: &str, state: TokenState) -> WireRow {
    WireRow {
        token_id: id.into(),
        client_id: client.into(),
        broker_type: "coinbase".into(),
        scope: Scope::Read,
        state,
        expires_at: None,
        updated_at: "2026-11-18T12:00:00Z".into(),
        end_user_id: Some("user-42".into()),
        account_id: Some("cb-1".into()),
        created_at: Some("2026-11-18T11:00:00Z".into()),
        refresh: None,
    }
}

fn page(tokens: Vec<WireRow>, next_after: Option<&str>) -> TokensReply {
    TokensReply {
        ok: true,
        scanned: tokens.len() as u64,
        tokens,
        next_after: next_after.map(str::to_owned),
        total: None,
        next_offset: None,
        by_client: Vec::new(),
    }
}

#[test]
fn token_pages_page_through_cursors_in_the_store_order() {
    let mut state = connected();
    state.act(Action::Jump(Screen::Tokens));
    let first = state.tokens.reload();
    assert_eq!(first.sort, None, "the store's order needs no search");
    state.update(
        Msg::Tokens(
            first,
            page(
                vec![
                    wire_row("tok_a", "zeta", TokenState::Active),
                    wire_row("tok_b", "acme", TokenState::Revoked),
                ],
                Some("tok_b"),
            ),
        ),
        T0,
    );
    assert_eq!(state.tokens.rows[0].token_id, "tok_a");
    let next = state.act(Action::NextPage);
    assert!(matches!(next.as_slice(), [Command::Tokens(r)] if r.after.as_deref() == Some("tok_b")));
    assert!(
        state.act(Action::NextPage).is_empty(),
        "one request at a time"
    );
}

#[test]
fn sorting_and_filtering_search_every_token_at_the_worker() {
    let mut state = connected();
    state.act(Action::Jump(Screen::Tokens));
    let first = state.tokens.reload();
    state.update(Msg::Tokens(first, page(Vec::new(), None)), T0);
    let sorted = state.act(Action::Sort);
    assert_eq!(state.tokens.sort, (Column::Client, true));
    assert!(
        matches!(sorted.as_slice(), [Command::Tokens(r)] if r.sort == Some(SortBy::ClientId) && !r.descending && r.offset == Some(0))
    );
    let Command::Tokens(request) = &sorted[0] else {
        unreachable!()
    };
    let mut reply = page(vec![wire_row("tok_b", "acme", TokenState::Active)], None);
    reply.total = Some(401);
    reply.next_offset = Some(200);
    state.update(Msg::Tokens(request.clone(), reply), T0);
    assert_eq!(state.tokens.total, Some(401));
    let next = state.act(Action::NextPage);
    assert!(
        matches!(next.as_slice(), [Command::Tokens(r)] if r.offset == Some(PAGE_SIZE) && r.after.is_none())
    );
    let Command::Tokens(request) = &next[0] else {
        unreachable!()
    };
    state.update(Msg::Tokens(request.clone(), page(Vec::new(), None)), T0);
    let reversed = state.act(Action::Reverse);
    assert!(
        matches!(reversed.as_slice(), [Command::Tokens(r)] if r.descending && r.offset == Some(0))
    );
    let Command::Tokens(request) = &reversed[0] else {
        unreachable!()
    };
    state.update(Msg::Tokens(request.clone(), page(Vec::new(), None)), T0);
    state.act(Action::Filter);
    for c in "write".chars() {
        state.type_filter(FilterKey::Char(c));
    }
    let applied = state.type_filter(FilterKey::Enter);
    assert!(
        matches!(applied.as_slice(), [Command::Tokens(r)] if r.filter.as_deref() == Some("write") && r.sort.is_some())
    );
    assert_eq!(state.tokens.page, 0);
}

#[test]
fn the_filter_reopens_selected_esc_cancels_and_ctrl_u_clears() {
    let mut state = connected();
    state.act(Action::Jump(Screen::Tokens));
    state.act(Action::Filter);
    for c in "acme".chars() {
        state.type_filter(FilterKey::Char(c));
    }
    state.type_filter(FilterKey::Enter);
    state.act(Action::Filter);
    let edit = state.tokens.editing.clone().expect("editing");
    assert_eq!((edit.text.as_str(), edit.selected), ("acme", true));
    state.type_filter(FilterKey::Char('g'));
    assert_eq!(
        state.tokens.editing.as_ref().map(|e| e.text.as_str()),
        Some("g"),
        "typing replaces the selected text instead of appending"
    );
    state.type_filter(FilterKey::Escape);
    assert!(!state.tokens.is_editing());
    assert_eq!(
        state.tokens.filter, "acme",
        "Esc leaves the filter as it was"
    );
    state.act(Action::Filter);
    state.type_filter(FilterKey::Deselect);
    state.type_filter(FilterKey::Char('!'));
    assert_eq!(
        state.tokens.editing.as_ref().map(|e| e.text.as_str()),
        Some("acme!")
    );
    state.type_filter(FilterKey::Clear);
    assert_eq!(
        state.tokens.editing.as_ref().map(|e| e.text.as_str()),
        Some("")
    );
    let applied = state.type_filter(FilterKey::Enter);
    assert!(matches!(applied.as_slice(), [Command::Tokens(r)] if r.filter.is_none()));
}

#[test]
fn next_page_on_the_last_page_says_so() {
    let mut state = connected();
    state.act(Action::Jump(Screen::Tokens));
    let first = state.tokens.reload();
    state.update(Msg::Tokens(first, page(Vec::new(), None)), T0);
    assert!(state.act(Action::NextPage).is_empty());
    assert!(
        state
            .notice
            .as_deref()
            .is_some_and(|n| n.starts_with("last page")),
        "{:?}",
        state.notice
    );
}

#[test]
fn enter_opens_the_token_of_any_table_and_y_copies_its_id() {
    let mut state = connected();
    state.act(Action::Jump(Screen::Tokens));
    let first = state.tokens.reload();
    state.update(
        Msg::Tokens(
            first,
            page(vec![wire_row("tok_a", "acme", TokenState::Active)], None),
        ),
        T0,
    );
    assert!(
        state.act(Action::Open).is_empty(),
        "a row on the page needs no request"
    );
    let detail = state.detail.clone().expect("open");
    assert_eq!(
        detail.row.and_then(|r| r.end_user_id).as_deref(),
        Some("user-42")
    );
    assert_eq!(state.act(Action::Copy), vec![Command::Copy("tok_a".into())]);
    state.act(Action::Close);
    assert!(state.detail.is_none());
    state.update(
        Msg::Event(rejection(ErrorCode::ScopeMismatch, "tok_far")),
        T0,
    );
    state.act(Action::Jump(Screen::Rejections));
    let asked = state.act(Action::Open);
    let [Command::Tokens(request)] = asked.as_slice() else {
        panic!("a token not on the page is asked for: {asked:?}");
    };
    assert_eq!(request.token_id.as_deref(), Some("tok_far"));
    state.update(Msg::Tokens(request.clone(), page(Vec::new(), None)), T0);
    assert!(state.detail.as_ref().is_some_and(|d| d.missing));
    assert!(state.tokens.rows.len() == 1, "the page is untouched");
    state.act(Action::Close);
    state.update(Msg::Event(lifecycle(EventKind::TokenIssued, "tok_new")), T0);
    state.act(Action::Jump(Screen::Overview));
    let asked = state.act(Action::Open);
    assert!(
        matches!(asked.as_slice(), [Command::Tokens(r)] if r.token_id.as_deref() == Some("tok_new"))
    );
}

#[test]
fn bad_input_is_a_refusal_and_a_dead_letter() {
    let mut state = connected();
    let mut bad = Event::new(
        EventKind::MessageDeadLettered,
        "2026-11-18T12:00:03Z".into(),
    );
    bad.queue = Some("mmt.integration.connected".into());
    bad.reason = Some("body is not valid JSON: line 1, column 2".into());
    bad.code = Some(ErrorCode::InvalidMessage);
    state.update(Msg::Event(bad), T0);
    assert_eq!(state.rejections.len(), 1);
    assert_eq!(state.rejections[0].asked(), "connect");
    assert_eq!(state.dead_letters.len(), 1);
    assert_eq!(state.dead_letters[0].queue, "integration.connected");
    assert_eq!(
        state.dead_by_reason,
        vec![("body is not valid JSON".to_owned(), 1)]
    );
}

#[test]
fn a_stale_page_is_ignored() {
    let mut state = connected();
    let old = state.tokens.reload();
    let _new = state.tokens.reload();
    let mut stale = old;
    stale.filter = Some("x".into());
    state.update(
        Msg::Tokens(
            stale,
            TokensReply {
                ok: true,
                tokens: vec![wire_row("tok_z", "acme", TokenState::Active)],
                next_after: None,
                scanned: 1,
                total: None,
                next_offset: None,
                by_client: Vec::new(),
            },
        ),
        T0,
    );
    assert!(state.tokens.rows.is_empty());
}

#[test]
fn a_lifecycle_event_updates_the_row_on_screen() {
    let mut state = connected();
    let request = state.tokens.reload();
    state.update(
        Msg::Tokens(
            request,
            TokensReply {
                ok: true,
                tokens: vec![wire_row("tok_b", "acme", TokenState::Active)],
                next_after: None,
                scanned: 1,
                total: None,
                next_offset: None,
                by_client: Vec::new(),
            },
        ),
        T0,
    );
    let mut revoked = lifecycle(EventKind::TokenRevoked, "tok_b");
    revoked.state = Some(TokenState::Revoked);
    state.update(Msg::Event(revoked), T0);
    assert_eq!(state.tokens.rows[0].state, TokenState::Revoked);
}

#[test]
fn tab_cycles_the_screens_and_help_swallows_other_keys() {
    let mut state = connected();
    state.act(Action::NextScreen);
    assert_eq!(state.screen, Screen::Tokens);
    state.act(Action::PrevScreen);
    state.act(Action::PrevScreen);
    assert_eq!(state.screen, Screen::Health);
    state.act(Action::Help);
    state.act(Action::NextScreen);
    assert_eq!(state.screen, Screen::Health);
    state.act(Action::Close);
    assert!(!state.help);
    assert_eq!(state.act(Action::Quit), vec![Command::Quit]);
}

#[test]
fn the_token_page_is_asked_again_when_tokens_changed_and_it_is_shown() {
    let mut state = connected();
    let first = state.tokens.reload();
    state.update(
        Msg::Tokens(
            first,
            TokensReply {
                ok: true,
                tokens: Vec::new(),
                next_after: None,
                scanned: 0,
                total: None,
                next_offset: None,
                by_client: Vec::new(),
            },
        ),
        T0,
    );
    state.update(Msg::Event(lifecycle(EventKind::TokenIssued, "tok_new")), T0);
    assert!(
        state.update(Msg::Tick, T0).is_empty(),
        "not on the tokens screen"
    );
    let on_entry = state.act(Action::Jump(Screen::Tokens));
    assert!(
        matches!(on_entry.as_slice(), [Command::Tokens(_)]),
        "entering the screen refreshes it"
    );
    assert!(
        state.update(Msg::Tick, T0).is_empty(),
        "one request at a time"
    );
}

#[test]
fn a_failed_snapshot_does_not_cancel_the_page_being_loaded() {
    let mut state = connected();
    let request = state.tokens.reload();
    state.update(Msg::RequestFailed(None, "no snapshot".into()), T0);
    assert!(state.tokens.loading);
    assert_eq!(state.notice.as_deref(), Some("no snapshot"));
    state.update(Msg::RequestFailed(Some(request), "no page".into()), T0);
    assert!(!state.tokens.loading, "another page may be asked for");
}

#[test]
fn a_refused_revocation_reads_as_revoke() {
    let mut state = connected();
    let mut refused = rejection(ErrorCode::NotFound, "tok_x");
    refused.operation = None;
    refused.queue = Some("connection.removed".into());
    state.update(Msg::Event(refused), T0);
    state.update(Msg::Event(rejection(ErrorCode::ScopeMismatch, "tok_y")), T0);
    let asked: Vec<_> = state.rejections.iter().map(Rejection::asked).collect();
    assert_eq!(asked, ["revoke", "write"]);
}

#[test]
fn counts_are_asked_again_once_a_second_at_most_after_tokens_changed() {
    let mut state = connected();
    state.update(Msg::Stats(stats("mmt", 0.0, &[])), T0);
    state.update(Msg::Snapshot(snapshot(Vec::new())), T0);
    assert!(state.update(Msg::Tick, T0).is_empty(), "nothing changed");
    state.update(Msg::Event(lifecycle(EventKind::TokenIssued, "tok_a")), T0);
    state.update(Msg::Event(lifecycle(EventKind::TokenIssued, "tok_b")), T0);
    assert_eq!(state.update(Msg::Tick, T0), vec![Command::Counts]);
    state.update(Msg::Event(lifecycle(EventKind::TokenRevoked, "tok_a")), T0);
    assert!(
        state.update(Msg::Tick, T0).is_empty(),
        "one request in flight"
    );
    state.update(
        Msg::Snapshot(snapshot(vec![count(
            TokenState::Active,
            Scope::Read,
            "coinbase",
            2,
        )])),
        T0,
    );
    assert_eq!(state.totals(), [2, 0, 0]);
    assert_eq!(
        state.update(Msg::Tick, T0),
        vec![Command::Counts],
        "the revocation is still to count"
    );
}

/// A worker's stats with a key ring: `active`, the counts taken at
/// `counted_at`, and a rewrap `done` of `total`.
fn keyed(active: &str, wrapped: &[(&str, u64)], counted_at: &str, done: u64) -> WorkerStats {
    WorkerStats {
        keys: Some(KeysStats {
            active: active.into(),
            wrapped: wrapped.iter().map(|(id, n)| ((*id).into(), *n)).collect(),
            counted_at: Some(counted_at.into()),
            rewrap: RewrapStats {
                running: done < 98_310,
                done,
                total: 98_310,
                to: Some(active.into()),
                per_sec: 2_000,
                rewrapped_total: done,
                last_error: None,
            },
        }),
        ..stats("mmt", 0.0, &[])
    }
}

fn ring(state: &State) -> &KeyRing {
    state
        .worker
        .as_ref()
        .and_then(|w| w.keys.as_ref())
        .expect("a key ring")
}

#[test]
fn key_counts_are_the_newest_count_never_a_sum_and_the_rewrap_the_newest_report() {
    let mut state = connected();
    let a = keyed(
        "2",
        &[("0", 1_204), ("1", 0), ("2", 98_310)],
        "2026-11-18T12:00:00Z",
        40_210,
    );
    state.update(Msg::Stats(a), T0);
    // A second worker of the shared store, whose own count is a minute
    // older: its progress is shown, its counts are not (nor added).
    let b = keyed(
        "2",
        &[("0", 9_000), ("2", 90_514)],
        "2026-11-18T11:59:00Z",
        1_000,
    );
    state.update(Msg::Stats(b), T0 + 500);
    let seen = ring(&state);
    assert_eq!(
        seen.wrapped,
        [
            ("0".to_owned(), 1_204),
            ("1".to_owned(), 0),
            ("2".to_owned(), 98_310)
        ]
    );
    assert_eq!((seen.rewrap.done, seen.rewrap.running), (1_000, true));
    assert!(!seen.settled());
    // Its next count is the newest: it replaces the counts whole.
    let b = keyed("2", &[("2", 99_514)], "2026-11-18T12:01:00Z", 98_310);
    state.update(Msg::Stats(b), T0 + 1_000);
    let seen = ring(&state);
    assert_eq!(seen.wrapped, [("2".to_owned(), 99_514)]);
    assert_eq!(seen.under_active(), 99_514);
    assert!(seen.settled(), "{seen:?}");
    // A worker that reports no key ring (an older one) shows none.
    state.update(Msg::Stats(stats("mmt", 0.0, &[])), T0 + 1_500);
    assert_eq!(state.worker.as_ref().and_then(|w| w.keys.as_ref()), None);
}

#[test]
fn workers_naming_different_active_keys_hold_back_the_deletion_a_rotation_does_not() {
    let mut state = connected();
    let counted = "2026-11-18T12:00:00Z";
    // One worker rotated: key 1, then key 2 after its SIGHUP.
    state.update(Msg::Stats(keyed("1", &[("1", 5)], counted, 98_310)), T0);
    for t in [1_000, 2_000] {
        state.update(Msg::Stats(keyed("2", &[("2", 5)], counted, 98_310)), T0 + t);
    }
    assert!(ring(&state).other_actives().is_empty());
    assert!(ring(&state).settled());
    // Another worker still has key 1 active, whichever reported last.
    state.update(
        Msg::Stats(keyed("1", &[("2", 5)], counted, 98_310)),
        T0 + 2_500,
    );
    assert_eq!(ring(&state).other_actives(), ["2"]);
    state.update(
        Msg::Stats(keyed("2", &[("2", 5)], counted, 98_310)),
        T0 + 3_000,
    );
    assert_eq!(ring(&state).other_actives(), ["1"]);
    assert!(!ring(&state).settled());
    // It reloaded: once key 1 has not been named for 3 s, all agree.
    for t in [4_000, 5_000, 5_600] {
        state.update(Msg::Stats(keyed("2", &[("2", 5)], counted, 98_310)), T0 + t);
    }
    assert!(ring(&state).other_actives().is_empty());
    assert!(ring(&state).settled());
}

#[test]
fn key_ids_are_in_numeric_order_and_a_count_not_taken_yet_is_not_a_count() {
    let mut state = connected();
    let mut report = keyed(
        "10",
        &[("10", 1), ("9", 2), ("2", 3)],
        "2026-11-18T12:00:00Z",
        0,
    );
    state.update(Msg::Stats(report.clone()), T0);
    let order: Vec<&str> = ring(&state)
        .wrapped
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(order, ["2", "9", "10"]);
    if let Some(keys) = report.keys.as_mut() {
        keys.counted_at = None;
        keys.wrapped.clear();
    }
    state.update(Msg::Stats(report), T0 + 1_000);
    assert_eq!(ring(&state).wrapped.len(), 3, "the last count stays");
}

/// [`keyed`] from the worker `id`, its pass rewrapping under `to`, of
/// `total` data keys.
fn pass_of(id: &str, to: &str, done: u64, total: u64, running: bool) -> WorkerStats {
    let mut report = keyed(
        "2",
        &[("1", 60_000), ("2", 38_310)],
        "2026-11-18T12:00:00Z",
        done,
    );
    report.worker = Some(id.into());
    if let Some(keys) = report.keys.as_mut() {
        keys.rewrap.to = Some(to.into());
        keys.rewrap.total = total;
        keys.rewrap.running = running;
    }
    report
}

#[test]
fn the_passes_of_several_workers_on_one_rotation_add_up_and_a_silent_worker_drops_out() {
    let mut state = connected();
    state.update(Msg::Stats(pass_of("a", "2", 30_000, 98_310, true)), T0);
    assert_eq!(
        (ring(&state).rewrap.done, ring(&state).rewrap.workers),
        (30_000, 1),
        "one worker alone: its own pass"
    );
    // The second worker began a moment later and counted fewer.
    state.update(
        Msg::Stats(pass_of("b", "2", 20_000, 90_000, true)),
        T0 + 300,
    );
    // A third worker's last pass was of an earlier rotation: not this one.
    state.update(Msg::Stats(pass_of("c", "1", 5_000, 5_000, false)), T0 + 600);
    let r = &ring(&state).rewrap;
    assert_eq!(
        (r.running, r.done, r.total, r.per_sec, r.workers),
        (true, 50_000, 98_310, 4_000, 2)
    );
    // b finished its share; a still runs.
    state.update(
        Msg::Stats(pass_of("b", "2", 50_000, 90_000, false)),
        T0 + 1_000,
    );
    let r = &ring(&state).rewrap;
    assert_eq!(
        (r.running, r.done, r.per_sec, r.workers),
        (true, 80_000, 2_000, 2)
    );
    // b and c fall silent: past 3 s, a's pass is its own again.
    state.update(
        Msg::Stats(pass_of("a", "2", 48_310, 98_310, false)),
        T0 + 4_500,
    );
    let r = &ring(&state).rewrap;
    assert_eq!((r.running, r.done, r.workers), (false, 48_310, 1));
}

/// [`stats`] of the worker `id`, `resolves` a second, `refused` refusals
/// since it started `uptime` seconds ago.
fn worker_report(id: &str, resolves: f64, refused: u64, uptime: u64) -> WorkerStats {
    WorkerStats {
        worker: Some(id.into()),
        uptime_seconds: uptime,
        ..stats("mmt", resolves, &[(ErrorCode::ScopeMismatch, refused)])
    }
}

#[test]
fn several_workers_are_one_fleet_sampled_once_a_second_and_a_silent_one_drops_out() {
    let mut state = connected();
    // Second 1: three workers report, each at its own moment.
    state.update(Msg::Stats(worker_report("a", 100.0, 5, 61)), T0);
    state.update(Msg::Stats(worker_report("b", 200.0, 7, 30)), T0 + 300);
    state.update(Msg::Stats(worker_report("c", 300.0, 1, 1)), T0 + 600);
    // Second 2: b and c refused 2 and 3 more; a (the leader, smallest id)
    // closes the second.
    state.update(Msg::Stats(worker_report("b", 200.0, 9, 31)), T0 + 1_300);
    state.update(Msg::Stats(worker_report("c", 300.0, 4, 2)), T0 + 1_600);
    state.update(Msg::Stats(worker_report("a", 100.0, 5, 62)), T0 + 2_000);
    // One sample a second, at the leader's report: the first alone (only
    // a was heard), then the three together. Refusals counted before a
    // worker was first seen are not the second's (a's and b's), unless it
    // started within 2 s (c's first one); then each worker's new ones.
    assert_eq!(state.rates.resolves.samples(), vec![100, 600]);
    assert_eq!(state.rates.ingest.samples(), vec![2, 6]);
    assert_eq!(state.rates.rejections.samples(), vec![0, 1 + 2 + 3]);
    let w = state.worker.as_ref().expect("a worker view");
    assert_eq!(w.reporting, 3);
    let resolve = w
        .queues
        .iter()
        .find(|q| q.name == "token.resolve")
        .expect("resolve");
    assert_eq!(
        (resolve.rate, resolve.depth, resolve.unacked),
        (600.0, Some(3), 0)
    );
    assert_eq!(w.cpu_percent, Some(37.5));
    assert_eq!(w.rss_bytes, Some(3 * (54 << 20)));
    assert_eq!(w.uptime_seconds, 62, "the longest");
    assert_eq!(
        state.rejection_counts.get(&ErrorCode::ScopeMismatch),
        Some(&(5 + 9 + 4))
    );
    // a falls silent: past 3 s b leads, and a's share is gone.
    for t in [3_300, 4_300, 5_300] {
        state.update(Msg::Stats(worker_report("b", 200.0, 9, 33)), T0 + t);
        state.update(Msg::Stats(worker_report("c", 300.0, 4, 3)), T0 + t + 300);
    }
    assert_eq!(state.rates.resolves.last(), 500);
    assert_eq!(state.worker.as_ref().map(|w| w.reporting), Some(2));
}
