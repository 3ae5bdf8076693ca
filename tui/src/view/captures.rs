//! The screen captures in README.md and docs/console.md are drawn here, by
//! the console's own drawing code, from a fixed model shaped like what
//! `.ci/up` shows after replaying the fixtures (fixed ids and clock, so the
//! text is the same on every run). A test compares every capture block with
//! what the console draws now, so the docs cannot drift;
//! `MMT_UPDATE_CAPTURES=1 cargo test -p mmt-tui captures` rewrites them.
//!
//! A block is a fenced `text` block right after a `<!-- capture NAME -->`
//! line; the key table after a `<!-- keys -->` line is the key table of
//! `input.rs`.

use std::path::{Path, PathBuf};

use mmt_shared::console::{
    ClientCount, CodeCount, CountRow, DeadLetterRow, IntegrationHealth, KeysStats, QueueStats,
    ReasonCount, RefreshStats, RewrapStats, SnapshotReply, TokenRefresh, TokenRow as WireRow,
    TokensReply, TokensRequest, WorkerStats,
};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::{ErrorCode, Operation, Scope, TokenState};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::draw;
use super::styles::Styles;
use crate::state::{Action, Command, FilterKey, Link, Msg, Screen, State};

/// 2026-12-01 22:11:08 UTC.
pub(super) const NOW: UnixMillis = 1_796_163_068_000;

/// A tokenId shaped like the worker's, fixed by `n`.
pub(super) fn id(n: u32) -> String {
    let mut x = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    let mut hex = String::new();
    while hex.len() < 32 {
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hex.push_str(&format!("{:016x}", x));
    }
    format!("tok_{}", &hex[..32])
}

pub(super) fn at(offset_ms: i64) -> String {
    rfc3339(NOW + offset_ms)
}

fn event(kind: EventKind, token: u32, client: &str, broker: &str, scope: Scope) -> Event {
    let mut event = Event::new(kind, at(-4_000));
    event.token_id = Some(id(token));
    event.client_id = Some(client.into());
    event.broker_type = Some(broker.into());
    event.scope = Some(scope);
    event
}

fn refused(token: u32, client: &str, operation: Option<Operation>, code: ErrorCode) -> Event {
    let mut event = Event::new(EventKind::RequestRejected, at(-3_000));
    event.token_id = Some(id(token));
    event.client_id = Some(client.into());
    event.operation = operation;
    event.code = Some(code);
    event.queue = Some(
        if operation.is_some() {
            "token.resolve"
        } else {
            "connection.removed"
        }
        .into(),
    );
    if code == ErrorCode::ScopeMismatch {
        event.scope = Some(Scope::Read);
    }
    event
}

fn stats() -> WorkerStats {
    let queue = |name: &str, received| QueueStats {
        queue: format!("mmt.{name}"),
        received,
        acked: received,
        rate: 0.0,
        depth: Some(0),
        consumers: Some(1),
        unacked: 0,
        latency_p50_ms: Some(1.5),
        latency_p99_ms: Some(8.0),
    };
    WorkerStats {
        at: at(0),
        worker: None,
        uptime_seconds: 530,
        queues: vec![
            queue("integration.connected", 24),
            queue("connection.removed", 5),
            queue("token.resolve", 14),
            queue("link.access_tokens", 2),
        ],
        rejections: [
            (ErrorCode::ScopeMismatch, 3),
            (ErrorCode::NotFound, 5),
            (ErrorCode::Revoked, 2),
            (ErrorCode::ReauthRequired, 1),
            (ErrorCode::InvalidMessage, 4),
            (ErrorCode::InvalidRequest, 1),
        ]
        .into_iter()
        .map(|(code, count)| CodeCount { code, count })
        .collect(),
        dead_lettered: 5,
        dead_depth: Some(5),
        store_bytes: 58 << 10,
        store_engine: None,
        cpu_percent: Some(12.5),
        rss_bytes: Some(54 << 20),
        identity: mmt_shared::console::IdentityMode::Strict,
        purge: None,
        // A v1 key file (key 0) after the count at start.
        keys: Some(KeysStats {
            active: "0".into(),
            wrapped: [("0".to_owned(), 18)].into(),
            counted_at: Some(at(-60_000)),
            rewrap: RewrapStats {
                per_sec: 2_000,
                ..RewrapStats::default()
            },
        }),
        refresh: RefreshStats {
            concurrency: 16,
            in_flight: 1,
            due_soon: 2,
            refreshed: 18,
            failed: 1,
            refresh_pending: 0,
            skipped_records: 0,
            integrations: vec![IntegrationHealth {
                broker_type: "coinbase".into(),
                failing: 1,
                last_error: Some("timeout".into()),
                unhealthy: false,
            }],
        },
        rejections_by_client: vec![
            ClientCount {
                client_id: "acme".into(),
                count: 9,
            },
            ClientCount {
                client_id: "globex".into(),
                count: 2,
            },
        ],
    }
}

fn dead(n: i64, queue: &str, reason: &str, code: ErrorCode, size: u64) -> DeadLetterRow {
    DeadLetterRow {
        at: at(-5_000 + n),
        queue: format!("mmt.{queue}"),
        reason: reason.into(),
        code: Some(code),
        message_id: Some(
            [
                "fx-bad-not-json",
                "fx-bad-missing-field",
                "fx-bad-no-accounts",
                "fx-bad-unknown-operation",
                "fx-bad-empty-body",
            ]
            .get(usize::try_from(n - 1).unwrap_or(0))
            .map_or_else(|| format!("fx-bad-{n}"), |id| (*id).to_owned()),
        ),
        size,
        broker_user: None,
        client_id: None,
    }
}

fn snapshot() -> SnapshotReply {
    let count = |state, scope, broker_type: &str, count| CountRow {
        state,
        scope,
        broker_type: broker_type.into(),
        count,
    };
    SnapshotReply {
        ok: true,
        at: at(0),
        counts: vec![
            count(TokenState::Active, Scope::Read, "coinbase", 5),
            count(TokenState::Revoked, Scope::Read, "coinbase", 2),
            count(TokenState::Active, Scope::Write, "coinbase", 5),
            count(TokenState::Active, Scope::Read, "binance", 2),
            count(TokenState::Active, Scope::Read, "bitvavo", 2),
            count(TokenState::Active, Scope::Write, "kraken", 2),
            count(TokenState::Active, Scope::Write, "binance", 1),
            count(TokenState::Active, Scope::Read, "uphold", 1),
        ],
        recent_rejections: Vec::new(),
        recent_lifecycle: Vec::new(),
        stats: WorkerStats::default(),
        recent_dead_letters: vec![
            dead(
                1,
                "integration.connected",
                "body is not valid JSON: line 1, column 2",
                ErrorCode::InvalidMessage,
                9,
            ),
            dead(
                2,
                "integration.connected",
                "body does not match integration.connected: missing field `clientId` at line 1 column 88",
                ErrorCode::InvalidMessage,
                88,
            ),
            dead(
                3,
                "integration.connected",
                "accessToken.accountTokens is empty: nothing to store",
                ErrorCode::InvalidRequest,
                97,
            ),
            dead(
                4,
                "token.resolve",
                "body does not match token.resolve: unknown variant `admin`, expected `read` or `write` at line 1 column 64",
                ErrorCode::InvalidMessage,
                66,
            ),
            dead(
                5,
                "connection.removed",
                "body is not valid JSON: EOF while parsing at line 1 column 0",
                ErrorCode::InvalidMessage,
                0,
            ),
        ],
        dead_by_reason: vec![
            ReasonCount {
                reason: "body is not valid JSON".into(),
                count: 2,
            },
            ReasonCount {
                reason: "accessToken.accountTokens is empty".into(),
                count: 1,
            },
            ReasonCount {
                reason: "body does not match integration.connected".into(),
                count: 1,
            },
            ReasonCount {
                reason: "body does not match token.resolve".into(),
                count: 1,
            },
        ],
    }
}

fn row(n: u32, client: &str, broker: &str, scope: Scope, state: TokenState) -> WireRow {
    let live = state != TokenState::Revoked;
    WireRow {
        token_id: id(n),
        client_id: client.into(),
        broker_type: broker.into(),
        scope,
        state,
        expires_at: (broker == "binance").then(|| at(7_200_000)),
        updated_at: at(-4_000),
        end_user_id: live.then(|| format!("user-{}", 40 + n)),
        account_id: live.then(|| format!("{broker}-{n}")),
        created_at: live.then(|| at(-4_000)),
        refresh: (live && broker == "coinbase").then(|| TokenRefresh {
            next_at: at(if n == 2 { 4_000 } else { 1_740_000 }),
            last_refreshed_at: Some(at(-60_000)),
            attempts: u32::from(n == 2),
            last_error: (n == 2).then(|| "timeout".into()),
            in_flight: false,
            pending: false,
        }),
    }
}

/// The console after the fixtures' replay, on the overview.
pub(super) fn demo() -> State {
    let mut state = State::new("mmt", NOW);
    state.update(Msg::Link(Link::Up), NOW);
    state.update(Msg::Stats(stats()), NOW);
    state.update(Msg::Snapshot(snapshot()), NOW);
    use EventKind::{TokenIssued as Issued, TokenRevoked as Revoked};
    let lifecycle = [
        (Issued, 1, "acme", "coinbase", Scope::Read),
        (Issued, 2, "acme", "coinbase", Scope::Write),
        (Issued, 3, "acme", "coinbase", Scope::Write),
        (Issued, 4, "acme", "bitvavo", Scope::Read),
        (Issued, 5, "acme", "uphold", Scope::Read),
        (Issued, 6, "acme", "coinbase", Scope::Read),
        (Issued, 7, "globex", "binance", Scope::Write),
        (Revoked, 6, "acme", "coinbase", Scope::Read),
    ];
    for (kind, token, client, broker, scope) in lifecycle {
        let mut e = event(kind, token, client, broker, scope);
        if kind == Revoked {
            e.state = Some(TokenState::Revoked);
        }
        state.update(Msg::Event(e), NOW);
    }
    let refusals = [
        refused(8, "acme", Some(Operation::Read), ErrorCode::ReauthRequired),
        refused(9, "globex", Some(Operation::Read), ErrorCode::NotFound),
        refused(9, "globex", None, ErrorCode::NotFound),
        refused(1, "acme", Some(Operation::Write), ErrorCode::ScopeMismatch),
        refused(6, "acme", Some(Operation::Read), ErrorCode::Revoked),
        refused(6, "acme", Some(Operation::Write), ErrorCode::ScopeMismatch),
    ];
    for e in refusals {
        state.update(Msg::Event(e), NOW);
    }
    let mut bad = Event::new(EventKind::MessageDeadLettered, at(-2_000));
    bad.queue = Some("mmt.integration.connected".into());
    bad.reason = Some("body is not valid JSON: line 1, column 2".into());
    bad.code = Some(ErrorCode::InvalidMessage);
    state.update(Msg::Event(bad), NOW);
    let asked = vec![Command::Tokens(state.tokens.reload())];
    serve(&mut state, asked);
    state.update(Msg::Snapshot(snapshot()), NOW);
    state
}

/// The worker's answer to a listing request: the demo's rows that match.
pub(super) fn answer(request: &TokensRequest) -> TokensReply {
    let rows = vec![
        row(1, "acme", "coinbase", Scope::Read, TokenState::Active),
        row(2, "acme", "coinbase", Scope::Write, TokenState::Active),
        row(4, "acme", "bitvavo", Scope::Read, TokenState::Active),
        row(6, "acme", "coinbase", Scope::Read, TokenState::Revoked),
        row(7, "globex", "binance", Scope::Write, TokenState::Active),
        row(
            8,
            "acme",
            "binance",
            Scope::Read,
            TokenState::ReauthRequired,
        ),
    ];
    if request.by_client {
        return TokensReply {
            ok: true,
            tokens: Vec::new(),
            next_after: None,
            scanned: 24,
            total: Some(24),
            next_offset: None,
            by_client: vec![
                ClientCount {
                    client_id: "acme".into(),
                    count: 17,
                },
                ClientCount {
                    client_id: "globex".into(),
                    count: 7,
                },
            ],
        };
    }
    let searched = request.filter.is_some();
    let tokens: Vec<WireRow> = rows
        .into_iter()
        .filter(|r| !searched || (r.client_id == "acme" && r.state == TokenState::Active))
        .collect();
    TokensReply {
        ok: true,
        total: searched.then_some(tokens.len() as u64),
        scanned: 24,
        tokens,
        next_after: None,
        next_offset: None,
        by_client: Vec::new(),
    }
}

/// Carries out `commands` as the worker would answer the listing requests.
pub(super) fn serve(state: &mut State, commands: Vec<Command>) {
    for command in commands {
        if let Command::Tokens(request) = command {
            let reply = answer(&request);
            state.update(Msg::Tokens(request, reply), NOW);
        }
    }
}

/// What the console draws for the capture `name`, lines without trailing
/// blanks.
fn capture(name: &str) -> Option<String> {
    let mut state = demo();
    match name {
        "overview" => {}
        "tokens" => {
            let asked = state.act(Action::Jump(Screen::Tokens));
            serve(&mut state, asked);
        }
        "search" => {
            let asked = state.act(Action::Jump(Screen::Tokens));
            serve(&mut state, asked);
            state.act(Action::Filter);
            for c in "client:acme state:active".chars() {
                state.type_filter(FilterKey::Char(c));
            }
            let asked = state.type_filter(FilterKey::Enter);
            serve(&mut state, asked);
        }
        "detail" => {
            let asked = state.act(Action::Jump(Screen::Tokens));
            serve(&mut state, asked);
            state.act(Action::Open);
        }
        "rejections" => {
            state.act(Action::Jump(Screen::Rejections));
        }
        "dead-letters" => {
            state.act(Action::Jump(Screen::DeadLetters));
        }
        "health" => {
            let asked = state.act(Action::Jump(Screen::Health));
            serve(&mut state, asked);
        }
        _ => return None,
    }
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).ok()?;
    terminal
        .draw(|frame| draw(frame, &state, Styles::new(false)))
        .ok()?;
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Some(out)
}

const MARK: &str = "<!-- capture ";
const KEYS: &str = "<!-- keys -->";

/// The key table as Markdown rows, from the bindings.
fn key_rows() -> String {
    super::help::rows()
        .map(|[keys, what, place]| format!("| `{keys}` | {what} | {place} |\n"))
        .collect()
}

/// `doc` with every capture block replaced by what the console draws; the
/// names it found.
fn render_doc(doc: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut names = Vec::new();
    let mut lines = doc.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        if line.trim() == KEYS {
            for _ in 0..2 {
                out.push_str(lines.next().unwrap_or_default());
            }
            while lines.peek().is_some_and(|l| l.starts_with('|')) {
                lines.next();
            }
            out.push_str(&key_rows());
            names.push("keys".to_owned());
            continue;
        }
        let Some(name) = line
            .trim()
            .strip_prefix(MARK)
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(str::trim)
        else {
            continue;
        };
        if lines.peek().map(|l| l.trim()) != Some("```text") {
            continue;
        }
        out.push_str(lines.next().unwrap_or_default());
        for skipped in lines.by_ref() {
            if skipped.trim() == "```" {
                break;
            }
        }
        out.push_str(&capture(name).unwrap_or_else(|| format!("unknown capture {name}\n")));
        out.push_str("```\n");
        names.push(name.to_owned());
    }
    (out, names)
}

fn doc_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[test]
fn the_docs_captures_are_what_the_console_draws() {
    let update = std::env::var_os("MMT_UPDATE_CAPTURES").is_some_and(|v| v == "1");
    for (doc, expected) in [
        ("README.md", &["overview"][..]),
        (
            "docs/console.md",
            &[
                "overview",
                "tokens",
                "search",
                "detail",
                "rejections",
                "dead-letters",
                "health",
                "keys",
            ][..],
        ),
    ] {
        let path = doc_path(doc);
        let text = std::fs::read_to_string(&path).expect("the doc is readable");
        let (rendered, names) = render_doc(&text);
        assert_eq!(names, expected, "capture blocks of {doc}");
        if update {
            std::fs::write(&path, &rendered).expect("the doc is writable");
        } else {
            assert!(
                rendered == text,
                "{doc}: a capture differs from what the console draws; \
                 run MMT_UPDATE_CAPTURES=1 cargo test -p mmt-tui captures"
            );
        }
    }
}

#[test]
fn a_capture_block_is_replaced_and_the_rest_kept() {
    let doc = "intro\n<!-- capture overview -->\n```text\nSTALE-CAPTURE\n```\nafter\n";
    let (rendered, names) = render_doc(doc);
    assert_eq!(names, ["overview"]);
    assert!(rendered.starts_with("intro\n<!-- capture overview -->\n```text\n mmt-tui"));
    assert!(rendered.ends_with("```\nafter\n"));
    assert!(!rendered.contains("STALE-CAPTURE"));
}
