//! A fuzz test of the consumer's decoding path: the message fixtures under
//! `fixtures/` (every step of every file), mutated byte by byte and field by
//! field, and fed to [`Service::handle`] (the function each consumer calls)
//! over a real embedded store in a temporary directory, on the fixture's own
//! queue or another one.
//!
//! For every input it asserts: no panic; the outcome is a reply (`ok` true,
//! or one of the lifecycle refusals) or CONTRACT.md §6 bad input
//! (`invalid_message` / `invalid_request`, a reason that is short, not
//! empty, and quotes no raw token); for bad input, nothing is stored (token
//! counts and the message's idempotency record unchanged); a state change
//! that is answered `ok` is recorded under its message id; no event carries
//! a raw token.
//!
//! In CI it runs a bounded number of inputs (5,000: two to three seconds
//! unoptimized); for a longer run:
//!
//! ```text
//! MMT_FUZZ_ITERATIONS=1000000 cargo test --release -p mmt-worker --test fuzz_fixtures -- --nocapture
//! ```
//!
//! `MMT_FUZZ_SEED` picks another sequence of inputs (default 21); a failure
//! prints the seed, the iteration, the queue and the body (hex), so it can be
//! run again. It prints the executions per second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mmt_shared::time_fmt::now_millis;
use mmt_shared::tomlfile::TomlFile;
use mmt_shared::wire::{ErrorCode, MessageKind};
use mmt_worker::config::integrations::Integrations;
use mmt_worker::ops::fixtures;
use mmt_worker::service::{Inbound, Outcome, Service, message_key};
use mmt_worker::store::Store;
use mmt_worker::store::crypto::KeyRing;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// Inputs in a default run (CI).
const DEFAULT_ITERATIONS: u64 = 5_000;
/// The default seed.
const DEFAULT_SEED: u64 = 21;
/// The longest reason a dead letter may carry.
const MAX_REASON: usize = 300;

/// One input to mutate: a queue and a body.
#[derive(Clone)]
struct Seed {
    kind: MessageKind,
    body: Vec<u8>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
        Err(_) => default,
    }
}

fn kind_of(routing_key: &str) -> MessageKind {
    MessageKind::ALL
        .into_iter()
        .find(|k| k.routing_key() == routing_key)
        .unwrap_or_else(|| panic!("a fixture names an unknown routing key {routing_key}"))
}

fn fixture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            fixture_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Every step of every message and scenario fixture, and the raw tokens
/// they carry (8 characters or more).
fn corpus() -> (Vec<Seed>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut files = Vec::new();
    for dir in ["messages", "scenarios"] {
        fixture_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut seeds = Vec::new();
    let mut secrets = Vec::new();
    for path in &files {
        let scenario = fixtures::load(path).expect("fixture loads");
        for step in scenario.steps {
            let body = match (&step.body, &step.raw_body) {
                (Some(body), _) => {
                    raw_tokens(body, false, &mut secrets);
                    serde_json::to_vec(body).expect("json")
                }
                (None, Some(raw)) => raw.clone().into_bytes(),
                (None, None) => Vec::new(),
            };
            seeds.push(Seed {
                kind: kind_of(&step.routing_key),
                body,
            });
        }
    }
    secrets.retain(|s| s.len() >= 8);
    assert!(seeds.len() >= 30, "fixtures missing: {} steps", seeds.len());
    assert!(secrets.len() >= 10, "{secrets:?}");
    (seeds, secrets)
}

/// The `accessToken` / `refreshToken` strings inside `accountTokens` and
/// `delayedAuth`.
fn raw_tokens(value: &Value, inside: bool, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("accessToken" | "refreshToken", Value::String(s)) if inside => {
                        out.push(s.clone())
                    }
                    ("accountTokens" | "delayedAuth", _) => raw_tokens(v, true, out),
                    _ => raw_tokens(v, inside, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| raw_tokens(v, inside, out)),
        _ => {}
    }
}

/// Byte strings that decoders trip on.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "-1",
    "0",
    "1e309",
    "-0.0",
    "18446744073709551616",
    "\"\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "{}",
    "[]",
    "\"read\"",
    "\"write\"",
    "\"deFiWallet\"",
    "\"tok_00000000000000000000000000000000\"",
    "\"clientId\":",
    "\"accessToken\":",
    ",",
    ":",
    "\"",
    "\\",
    "\u{feff}",
    "\u{2028}",
];

/// The messages' field names, for fields added by a mutation.
const FIELDS: &[&str] = &[
    "clientId",
    "endUserId",
    "scope",
    "accessToken",
    "delayedAuth",
    "brokerType",
    "brokerName",
    "accountTokens",
    "account",
    "accountId",
    "accountName",
    "refreshToken",
    "expiresInSeconds",
    "refreshTokenExpiresInSeconds",
    "tokenId",
    "authToken",
    "operation",
];

/// A JSON value a mutation puts somewhere.
fn any_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..14) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random::<u64>()),
        3 => json!(-rng.random_range(1..i64::MAX)),
        4 => json!(rng.random::<f64>() * 1e6),
        5 => json!(""),
        6 => json!("x".repeat(rng.random_range(500..600))),
        7 => json!("t".repeat(rng.random_range(16_000..17_000))),
        8 => json!(["read", 1, null]),
        9 => json!({"accountId": "cb-1"}),
        10 => json!(FIELDS[rng.random_range(0..FIELDS.len())]),
        11 => json!("\u{0}\u{1f}\"\\é\u{2028}"),
        12 => json!(["deFiWallet", "read", "write", "coinbase"][rng.random_range(0..4)]),
        _ => json!(format!("tok_{:032x}", rng.random::<u128>())),
    }
}

/// Every place in `value` (JSON pointers, the root included).
fn places(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                places(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                places(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A field-level change, when `body` is JSON.
fn mutate_json(rng: &mut StdRng, body: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut all = Vec::new();
    places(&value, String::new(), &mut all);
    let at = all[rng.random_range(0..all.len())].clone();
    match rng.random_range(0..10) {
        // Another value of the same kind: the body keeps its shape, its
        // values change (empty, over-long, another wallet or tokenId, ...).
        5..=9 => {
            let place = value.pointer_mut(&at)?;
            *place = match place {
                Value::String(_) => match rng.random_range(0..8) {
                    0 => json!(""),
                    1 => json!("i".repeat(513)),
                    2 => json!("t".repeat(16_385)),
                    3 => json!("\u{0}é\u{2028}\"`"),
                    4 => json!(["read", "write", "admin"][rng.random_range(0..3)]),
                    5 => json!(
                        ["deFiWallet", "ledgerLive", "coinbase", "demoOAuth", "newX"]
                            [rng.random_range(0..5)]
                    ),
                    6 => json!(format!("tok_{:032x}", rng.random::<u128>())),
                    _ => json!(format!("v-{}", rng.random_range(0..4))),
                },
                Value::Number(_) => match rng.random_range(0..4) {
                    0 => json!(0),
                    1 => json!(u64::MAX),
                    2 => json!(rng.random_range(0..10_000)),
                    _ => json!(-1),
                },
                Value::Array(items) if !items.is_empty() => {
                    let item = items[rng.random_range(0..items.len())].clone();
                    items.push(item);
                    return serde_json::to_vec(&value).ok();
                }
                _ => return None,
            };
        }
        // Remove a field or an item.
        0 => {
            let (parent, last) = at.rsplit_once('/')?;
            match value.pointer_mut(parent)? {
                Value::Object(map) => {
                    map.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(items) => {
                    let i: usize = last.parse().ok()?;
                    if i < items.len() {
                        items.remove(i);
                    }
                }
                _ => return None,
            }
        }
        // Replace a value.
        1 => *value.pointer_mut(&at)? = any_value(rng),
        // Add a field (or replace one of the same name).
        2 => {
            let name = FIELDS[rng.random_range(0..FIELDS.len())];
            let new = any_value(rng);
            match value.pointer_mut(&at)? {
                Value::Object(map) => {
                    map.insert(name.to_owned(), new);
                }
                other => *other = Value::Object(Map::from_iter([(name.to_owned(), new)])),
            }
        }
        // Wrap a value in an array or an object.
        3 => {
            let place = value.pointer_mut(&at)?;
            let inner = place.take();
            *place = if rng.random() {
                json!([inner])
            } else {
                json!({ "value": inner })
            };
        }
        // Give a field twice (serde refuses a duplicate; the last wins in a
        // `Value`).
        _ => {
            let text = serde_json::to_string(&value).ok()?;
            let name = FIELDS[rng.random_range(0..FIELDS.len())];
            let needle = format!("\"{name}\":");
            let pos = text.find(&needle)?;
            let mut out = text.into_bytes();
            let extra = format!("{needle}{},", any_value(rng));
            out.splice(pos..pos, extra.into_bytes());
            return Some(out);
        }
    }
    serde_json::to_vec(&value).ok()
}

/// A byte-level change.
fn mutate_bytes(rng: &mut StdRng, body: &mut Vec<u8>, corpus: &[Seed]) {
    let len = body.len();
    let pick = |rng: &mut StdRng, n: usize| if n == 0 { 0 } else { rng.random_range(0..n) };
    match rng.random_range(0..8) {
        0 if len > 0 => {
            let at = pick(rng, len);
            body[at] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let at = pick(rng, len);
            body[at] = *[0x00, 0xff, b'"', b'\\', b'{', b'}', b'[', b']', 0x80, 0xc3]
                .get(rng.random_range(0..10))
                .unwrap_or(&0);
        }
        2 => {
            let at = pick(rng, len + 1);
            let n = rng.random_range(1..9);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            body.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let from = pick(rng, len);
            let to = (from + rng.random_range(1..32)).min(len);
            body.drain(from..to);
        }
        4 if len > 0 => {
            let from = pick(rng, len);
            let to = (from + rng.random_range(1..64)).min(len);
            let chunk = body[from..to].to_vec();
            let at = pick(rng, len + 1);
            body.splice(at..at, chunk);
        }
        5 => body.truncate(pick(rng, len + 1)),
        6 => {
            let other = &corpus[rng.random_range(0..corpus.len())].body;
            let keep = pick(rng, len + 1);
            let from = pick(rng, other.len() + 1);
            body.truncate(keep);
            body.extend_from_slice(&other[from..]);
        }
        _ => {
            let at = pick(rng, len + 1);
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            body.splice(at..at, token.bytes());
        }
    }
}

/// A mutated input: one to three changes of a fixture, sometimes on another
/// queue; now and then deeply nested.
fn next_input(rng: &mut StdRng, corpus: &[Seed]) -> Seed {
    let mut input = corpus[rng.random_range(0..corpus.len())].clone();
    if rng.random_bool(0.01) {
        let depth = rng.random_range(100..5_000);
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        input.body = if rng.random() {
            nested.into_bytes()
        } else {
            format!(r#"{{"clientId":"acme","endUserId":"u","deep":{nested}}}"#).into_bytes()
        };
        return input;
    }
    // Mostly field-level changes, which keep the body JSON and so reach
    // the rules behind the decoder; byte-level ones for the decoder itself.
    let bytes = rng.random_bool(0.25);
    // One change most often, up to three.
    let changes = 1 + usize::from(rng.random_bool(0.4)) + usize::from(rng.random_bool(0.2));
    for _ in 0..changes {
        // A field-level change may not apply where it lands (removing the
        // root, say): a few tries before a byte-level one.
        let changed = (!bytes)
            .then(|| (0..4).find_map(|_| mutate_json(rng, &input.body)))
            .flatten();
        match changed {
            Some(body) => input.body = body,
            None => mutate_bytes(rng, &mut input.body, corpus),
        }
    }
    if rng.random_bool(0.1) {
        input.kind = MessageKind::ALL[rng.random_range(0..MessageKind::ALL.len())];
    }
    input
}

/// A service over a real embedded store, with two integrations configured
/// (so refreshable tokens take the refresh engine's path) and one extra
/// wallet type.
fn service(dir: &Path) -> Service {
    let store = Store::open(dir, KeyRing::generate().expect("key")).expect("store opens");
    let text = r#"
[integrations.coinbase]
token_url = "http://127.0.0.1:9/token"
client_id = "mmt"
client_secret_env = "FUZZ_SECRET"

[integrations.demoOAuth]
token_url = "http://127.0.0.1:9/token"
client_id = "mmt"
client_secret_env = "FUZZ_SECRET"
revoke_url = "http://127.0.0.1:9/revoke"
"#;
    let file = TomlFile::from_text(Path::new("integrations.toml"), text.to_owned());
    let integrations =
        Integrations::from_file(&file, &|_| Some("fuzz-client-secret".to_owned())).expect("valid");
    Service::new(store, vec!["ledgerLive".to_owned()]).with_integrations(integrations)
}

/// What a failure prints to run the input again.
fn describe(seed: u64, iteration: u64, input: &Seed) -> String {
    format!(
        "seed {seed}, iteration {iteration}, queue {}, body (hex) {}",
        input.kind.routing_key(),
        hex::encode(&input.body)
    )
}

#[test]
fn mutated_fixtures_through_the_consumers_path_never_panic_and_store_nothing_when_bad() {
    let iterations = env_u64("MMT_FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
    let seed = env_u64("MMT_FUZZ_SEED", DEFAULT_SEED);
    let (corpus, secrets) = corpus();
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = [0u64; 4];
    let started = Instant::now();
    for iteration in 0..iterations {
        let input = next_input(&mut rng, &corpus);
        let message_id = match rng.random_range(0..10) {
            0 => None,
            1 => Some(String::new()),
            2 => Some(format!("fz-{}", rng.random_range(0..iteration.max(1)))),
            _ => Some(format!("fz-{iteration}")),
        };
        let timestamp = match rng.random_range(0..4) {
            0 => Some(rng.random()),
            1 => Some(now_millis().max(0) as u64 / 1000 - rng.random_range(0..100_000)),
            _ => None,
        };
        let key = message_key(input.kind, message_id.as_deref(), &input.body);
        let store = service.store();
        let counts_before = store.counts().expect("counts");
        let recorded_before = store.processed(input.kind, &key).expect("reads");
        let inbound = Inbound {
            kind: input.kind,
            body: &input.body,
            message_id: message_id.as_deref(),
            timestamp,
            received_at: now_millis(),
            user_id: None,
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| service.handle(&inbound)))
            .unwrap_or_else(|_| panic!("panicked: {}", describe(seed, iteration, &input)))
            .unwrap_or_else(|e| {
                panic!("store failure {e:#}: {}", describe(seed, iteration, &input))
            });
        let recorded_after = store.processed(input.kind, &key).expect("reads");
        let at = || describe(seed, iteration, &input);
        match outcome {
            Outcome::Done { reply, events, .. } => {
                let reply: Value = serde_json::from_slice(&reply)
                    .unwrap_or_else(|_| panic!("a reply that is not JSON: {}", at()));
                match (&reply["ok"], reply["error"]["code"].as_str()) {
                    (Value::Bool(true), _) => {
                        tally[0] += 1;
                        let stateless = reply["wallet"] == true;
                        if input.kind.mutates() && !stateless {
                            assert!(
                                recorded_after.is_some(),
                                "a state change not recorded: {}",
                                at()
                            );
                        }
                    }
                    (
                        Value::Bool(false),
                        Some(
                            "not_found" | "revoked" | "scope_mismatch" | "reauth_required"
                            | "refresh_pending",
                        ),
                    ) => tally[1] += 1,
                    _ => panic!("reply {reply}: {}", at()),
                }
                for event in &events {
                    let text = serde_json::to_string(event).expect("event json");
                    for secret in &secrets {
                        assert!(!text.contains(secret.as_str()), "event {text}: {}", at());
                    }
                }
            }
            Outcome::Invalid { code, reason, .. } => {
                assert!(
                    matches!(code, ErrorCode::InvalidMessage | ErrorCode::InvalidRequest),
                    "{code}: {}",
                    at()
                );
                tally[if code == ErrorCode::InvalidMessage {
                    2
                } else {
                    3
                }] += 1;
                assert!(
                    !reason.is_empty() && reason.len() <= MAX_REASON,
                    "reason {reason:?}: {}",
                    at()
                );
                for secret in &secrets {
                    assert!(!reason.contains(secret.as_str()), "{reason}: {}", at());
                }
                assert_eq!(
                    store.counts().expect("counts"),
                    counts_before,
                    "bad input changed the tokens: {}",
                    at()
                );
                assert_eq!(
                    recorded_after,
                    recorded_before,
                    "bad input recorded: {}",
                    at()
                );
            }
            Outcome::Refused { .. } => panic!("open mode refuses nothing: {}", at()),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fuzz: {iterations} executions in {elapsed:.2} s, {:.0} exec/s (seed {seed}); ok {}, refusals {}, invalid_message {}, invalid_request {}",
        iterations as f64 / elapsed.max(f64::EPSILON),
        tally[0],
        tally[1],
        tally[2],
        tally[3]
    );
    // The mutations reach every kind of outcome: a fuzz that only ever saw
    // JSON errors would prove little.
    if iterations >= DEFAULT_ITERATIONS {
        assert!(tally.iter().all(|n| *n > 0), "{tally:?}");
    }
}
