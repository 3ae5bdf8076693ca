//! One test per kind of bad input (CONTRACT.md §6): the body goes to NS.dead
//! unchanged with `x-mmt-error` and `x-mmt-queue`, the sender gets an error
//! reply, a `message.dead_lettered` event says so, and the worker keeps
//! serving.

use lapin::types::AMQPValue;
use mmt_worker::ops::fixtures::Step;
use serde_json::json;

use crate::util::{TestWorker, code, connected, token_id};

fn header(delivery: &lapin::message::Delivery, name: &str) -> String {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    match headers.inner().get(name) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("header {name} missing or odd: {other:?}"),
    }
}

/// Sends `body` raw on `routing_key`; checks the whole §6 path; returns the
/// `x-mmt-error` reason.
async fn assert_dead_lettered(
    test: &str,
    routing_key: &str,
    body: Vec<u8>,
    expected_code: &str,
) -> String {
    let mut w = TestWorker::start(test).await;
    let mut step = Step::new(routing_key, json!(null));
    step.body = None;
    step.raw_body = Some(String::from_utf8(body.clone()).expect("test bodies are UTF-8"));
    step.message_id = Some(format!("bad-{test}"));
    let reply = w.send(step).await;
    assert_eq!(code(&reply), expected_code, "{reply}");
    let dead = w.dead_letter().await;
    assert_eq!(
        dead.data, body,
        "the dead letter must carry the body unchanged"
    );
    assert_eq!(
        header(&dead, "x-mmt-queue"),
        format!("{}.{routing_key}", w.ns)
    );
    let reason = header(&dead, "x-mmt-error");
    assert!(!reason.is_empty());
    assert_eq!(
        dead.properties.message_id().as_ref().map(|m| m.as_str()),
        Some(format!("bad-{test}").as_str())
    );
    let event = w.event("message.dead_lettered").await;
    assert_eq!(event["reason"], reason.as_str());
    assert_eq!(event["queue"], format!("{}.{routing_key}", w.ns));
    let still = w
        .connect(connected(
            "acme",
            "u",
            "read",
            "coinbase",
            "cb-1",
            "raw-after-bad",
        ))
        .await;
    let id = token_id(&still);
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-after-bad"
    );
    w.finish().await;
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json() {
    let reason = assert_dead_lettered(
        "not-json",
        "integration.connected",
        b"clientId=acme&x=1".to_vec(),
        "invalid_message",
    )
    .await;
    assert!(reason.contains("not valid JSON"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body() {
    let reason =
        assert_dead_lettered("empty", "connection.removed", Vec::new(), "invalid_message").await;
    assert!(reason.contains("empty"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_field() {
    let body =
        br#"{"clientId":"acme","scope":"read","accessToken":{"brokerType":"coinbase"}}"#.to_vec();
    let reason = assert_dead_lettered(
        "missing-field",
        "integration.connected",
        body,
        "invalid_message",
    )
    .await;
    assert!(reason.contains("missing field `endUserId`"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_with_neither_access_token_nor_delayed_auth() {
    let body = br#"{"clientId":"acme","endUserId":"u","scope":"read"}"#.to_vec();
    let reason = assert_dead_lettered(
        "no-payload",
        "integration.connected",
        body,
        "invalid_message",
    )
    .await;
    assert_eq!(reason, "missing field `accessToken` (or `delayedAuth`)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_without_account_tokens() {
    let body =
        br#"{"clientId":"acme","endUserId":"u","scope":"read","accessToken":{"brokerType":"coinbase"}}"#
            .to_vec();
    let reason = assert_dead_lettered(
        "no-account-tokens",
        "integration.connected",
        body,
        "invalid_message",
    )
    .await;
    assert_eq!(reason, "missing field `accessToken.accountTokens`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_of_the_wrong_type() {
    let body = br#"{"clientId":"acme","tokenId":12345}"#.to_vec();
    let reason =
        assert_dead_lettered("wrong-type", "connection.removed", body, "invalid_message").await;
    assert!(reason.contains("invalid type"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_scope() {
    let body = serde_json::to_vec(&connected(
        "acme",
        "u",
        "admin",
        "coinbase",
        "cb-1",
        "raw-admin",
    ))
    .expect("json");
    let reason = assert_dead_lettered(
        "unknown-scope",
        "integration.connected",
        body,
        "invalid_message",
    )
    .await;
    assert!(reason.contains("unknown variant"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_operation() {
    let body = br#"{"clientId":"acme","tokenId":"tok_x","operation":"withdraw"}"#.to_vec();
    assert_dead_lettered(
        "unknown-operation",
        "token.resolve",
        body,
        "invalid_message",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_an_object() {
    let body = br#"["acme","user-42"]"#.to_vec();
    let reason =
        assert_dead_lettered("not-object", "link.access_tokens", body, "invalid_message").await;
    assert!(reason.contains("object"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body() {
    let filler = "x".repeat(mmt_shared::wire::MAX_BODY_BYTES);
    let body = format!(r#"{{"clientId":"acme","endUserId":"u","pad":"{filler}"}}"#).into_bytes();
    let reason =
        assert_dead_lettered("oversized", "link.access_tokens", body, "invalid_message").await;
    assert!(reason.contains("larger than"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_values_that_break_a_rule() {
    let body = serde_json::to_vec(&json!({
        "clientId": "acme", "endUserId": "u", "scope": "read",
        "accessToken": {"brokerType": "coinbase", "accountTokens": [
            {"account": {"accountId": "cb-1"}, "accessToken": "a"},
            {"account": {"accountId": "cb-1"}, "accessToken": "b"}
        ]}
    }))
    .expect("json");
    let reason = assert_dead_lettered(
        "duplicate-account",
        "integration.connected",
        body,
        "invalid_request",
    )
    .await;
    assert!(reason.contains("listed twice"), "{reason}");
    assert!(!reason.contains("cb-1"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_without_reply_to_is_still_dead_lettered() {
    let mut w = TestWorker::start("bad-no-reply").await;
    let mut step = Step::new("integration.connected", json!(null));
    step.body = None;
    step.raw_body = Some("{broken".into());
    step.reply = Some(false);
    w.send_no_reply(step).await;
    let dead = w.dead_letter().await;
    assert_eq!(dead.data, b"{broken");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_token_in_the_wrong_place_never_reaches_the_reason_or_the_event() {
    let body = br#"{"clientId":"acme","endUserId":"u","scope":"read","accessToken":{"brokerType":"coinbase","accountTokens":[{"account":"raw-misplaced-secret","accessToken":"x"}]}}"#.to_vec();
    let reason = assert_dead_lettered(
        "misplaced-secret",
        "integration.connected",
        body,
        "invalid_message",
    )
    .await;
    assert!(!reason.contains("raw-misplaced-secret"), "{reason}");
}

/// What a field holds, so that only values it refuses are sent to it.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    OptionalText,
    Choice,
    OptionalChoice,
    Object,
    List,
    OptionalCount,
}

impl Kind {
    /// Whether the worker takes `value` here (then it is no bad input).
    fn takes(self, value: &serde_json::Value) -> bool {
        let choice = |v: &serde_json::Value| v == "read" || v == "write";
        match self {
            Kind::Text => value.is_string(),
            Kind::OptionalText => value.is_string() || value.is_null(),
            Kind::Choice => choice(value),
            Kind::OptionalChoice => choice(value) || value.is_null(),
            Kind::Object => value.is_object(),
            Kind::List => value.is_array(),
            Kind::OptionalCount => value.is_u64() || value.is_null(),
        }
    }
}

/// What no reply, header, event or log line may ever hold: the visible part
/// of every hostile value below.
const MARKERS: [&str; 3] = ["CRET-MARK", "98765432123456789", "1234.5678"];

/// Stands for a value written with unicode escapes, which serde_json's
/// serializer would never produce.
const ESCAPED: &str = "ESCAPED-PLACEHOLDER";

/// Values of every JSON kind carrying a marker: quotes, backslashes, unicode
/// escapes, control characters, numbers.
fn hostile_values() -> Vec<serde_json::Value> {
    vec![
        json!("raw\"SECRET-MARK-XYZ"),
        json!("raw\\\"SECRET-MARK\\"),
        json!(ESCAPED),
        json!("\u{1}\u{1f}\n\tSECRET-MARK\u{7f}"),
        json!("é\u{2028}`SECRET-MARK`'"),
        json!(98765432123456789u64),
        json!(-98765432123456789i64),
        json!(1234.5678),
        json!(true),
        json!(null),
        json!(["raw\"SECRET-MARK", 98765432123456789u64]),
        json!({"k": "raw\\SECRET-MARK"}),
    ]
}

/// Every field of every message kind: (routing key, a good body, the field's
/// JSON pointer, what it holds).
fn every_field() -> Vec<(&'static str, serde_json::Value, String, Kind)> {
    let mut connected = connected("acme", "u", "read", "coinbase", "cb-1", "raw-ok");
    connected["accessToken"]["expiresInSeconds"] = json!(60);
    connected["accessToken"]["refreshTokenExpiresInSeconds"] = json!(600);
    connected["accessToken"]["accountTokens"][0]["refreshToken"] = json!("raw-refresh");
    let removed = json!({"clientId": "acme", "tokenId": "tok_x"});
    let resolve = json!({"clientId": "acme", "tokenId": "tok_x", "operation": "read"});
    let link = json!({"clientId": "acme", "endUserId": "u", "scope": "read"});
    let ic = "integration.connected";
    let account = "/accessToken/accountTokens/0";
    let mut out = vec![
        (ic, "/clientId", Kind::Text),
        (ic, "/endUserId", Kind::Text),
        (ic, "/scope", Kind::Choice),
        (ic, "/accessToken", Kind::Object),
        (ic, "/accessToken/brokerType", Kind::Text),
        (ic, "/accessToken/brokerName", Kind::OptionalText),
        (ic, "/accessToken/accountTokens", Kind::List),
        (ic, account, Kind::Object),
        (ic, "/accessToken/expiresInSeconds", Kind::OptionalCount),
        (
            ic,
            "/accessToken/refreshTokenExpiresInSeconds",
            Kind::OptionalCount,
        ),
    ]
    .into_iter()
    .map(|(rk, pointer, kind)| (rk, connected.clone(), pointer.to_owned(), kind))
    .collect::<Vec<_>>();
    for (suffix, kind) in [
        ("/account", Kind::Object),
        ("/account/accountId", Kind::Text),
        ("/account/accountName", Kind::OptionalText),
        ("/accessToken", Kind::Text),
        ("/refreshToken", Kind::OptionalText),
    ] {
        out.push((ic, connected.clone(), format!("{account}{suffix}"), kind));
    }
    for (pointer, kind) in [("/clientId", Kind::Text), ("/tokenId", Kind::Text)] {
        out.push((
            "connection.removed",
            removed.clone(),
            pointer.to_owned(),
            kind,
        ));
    }
    for (pointer, kind) in [
        ("/clientId", Kind::Text),
        ("/tokenId", Kind::Text),
        ("/operation", Kind::Choice),
    ] {
        out.push(("token.resolve", resolve.clone(), pointer.to_owned(), kind));
    }
    for (pointer, kind) in [
        ("/clientId", Kind::Text),
        ("/endUserId", Kind::Text),
        ("/scope", Kind::OptionalChoice),
    ] {
        out.push(("link.access_tokens", link.clone(), pointer.to_owned(), kind));
    }
    out
}

fn assert_no_marker(what: &str, text: &str) {
    for marker in MARKERS {
        assert!(
            !text.contains(marker),
            "{marker} leaked into {what}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_token_in_a_mistyped_field_never_reaches_the_reply_the_header_the_event_or_the_log() {
    use std::process::Stdio;
    let mut w = TestWorker::start_idle("leak").await;
    let log_path = w.dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = w
        .run_command()
        .env_remove("MMT_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("mmt-worker starts");
    let deadline = tokio::time::Instant::now() + crate::util::PATIENCE;
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("worker ready")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not get ready: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut sent = 0usize;
    for (routing_key, good, pointer, kind) in every_field() {
        for value in hostile_values() {
            if kind.takes(&value) {
                continue;
            }
            let mut body = good.clone();
            *body.pointer_mut(&pointer).expect("the field exists") = value;
            let text = body.to_string().replace(
                &format!("\"{ESCAPED}\""),
                r#""raw\u0022\u005c\u0053\u0045CRET-MARK\u0000""#,
            );
            let mut step = Step::new(routing_key, json!(null));
            step.body = None;
            step.raw_body = Some(text.clone());
            step.message_id = Some(format!("leak-{sent}"));
            let reply = w.send(step).await;
            assert_eq!(reply["ok"], false, "{text} -> {reply}");
            assert_eq!(code(&reply), "invalid_message", "{text} -> {reply}");
            assert_no_marker("the reply", &reply.to_string());
            let dead = w.dead_letter().await;
            assert_eq!(dead.data, text.as_bytes());
            let reason = header(&dead, "x-mmt-error");
            assert_no_marker("x-mmt-error", &reason);
            assert_no_marker(
                "the dead letter's headers",
                &format!("{:?}", dead.properties.headers()),
            );
            let event = w.event("message.dead_lettered").await;
            assert_no_marker("message.dead_lettered", &event.to_string());
            sent += 1;
        }
    }
    assert!(sent > 100, "only {sent} hostile messages");
    child.start_kill().expect("worker stopped");
    child.wait().await.expect("reaped");
    let logged = std::fs::read_to_string(&log_path).expect("log");
    assert!(logged.contains("message.dead_lettered"), "{logged}");
    assert_no_marker("the worker's log", &logged);
    w.finish().await;
}
