//! One test per kind of bad input (CONTRACT.md §6): the body goes to NS.dead
//! unchanged with `x-mmt-error` and `x-mmt-queue`, the sender gets an error
//! reply, a `message.dead_lettered` event says so, and the worker keeps
//! serving.

use lapin::types::AMQPValue;
use mmt_worker::fixtures::Step;
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
