//! One test per error code of CONTRACT.md §4 and §6, each checking the reply
//! envelope `{"ok": false, "error": {"code", "message"}}`.

use serde_json::{Value, json};

use crate::util::{TestWorker, code, connected, token_id};

fn assert_envelope(reply: &Value, expected: &str) {
    assert_eq!(code(reply), expected);
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty(),
        "an error needs a message for people: {reply}"
    );
    assert_eq!(reply.as_object().map(|o| o.len()), Some(2), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_scope_mismatch() {
    let mut w = TestWorker::start("code-scope-mismatch").await;
    let id = w.issue("acme", "u", "read", "uphold", "up-1", "raw").await;
    assert_envelope(&w.resolve("acme", &id, "write").await, "scope_mismatch");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_not_found() {
    let mut w = TestWorker::start("code-not-found").await;
    assert_envelope(&w.resolve("acme", "tok_nope", "read").await, "not_found");
    assert_envelope(&w.revoke("acme", "tok_nope").await, "not_found");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_revoked() {
    let mut w = TestWorker::start("code-revoked").await;
    let id = w.issue("acme", "u", "read", "uphold", "up-1", "raw").await;
    w.revoke("acme", &id).await;
    assert_envelope(&w.resolve("acme", &id, "read").await, "revoked");
    let event = w.event("request.rejected").await;
    assert_eq!(event["code"], "revoked");
    assert_eq!(event["state"], "revoked");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_reauth_required() {
    let mut w = TestWorker::start("code-reauth").await;
    let mut body = connected("acme", "u", "read", "binance", "bn-1", "raw");
    body["accessToken"]["expiresInSeconds"] = json!(60);
    let mut step = mmt_worker::ops::fixtures::Step::new("integration.connected", body);
    step.age_seconds = Some(120);
    let id = token_id(&w.send(step).await);
    assert_envelope(&w.resolve("acme", &id, "read").await, "reauth_required");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_invalid_request() {
    let mut w = TestWorker::start("code-invalid-request").await;
    let reply = w
        .request(
            "token.resolve",
            json!({"clientId": "", "tokenId": "tok_x", "operation": "read"}),
        )
        .await;
    assert_envelope(&reply, "invalid_request");
    let long = "x".repeat(mmt_shared::wire::MAX_ID_BYTES + 1);
    let reply = w.link("acme", &long).await;
    assert_envelope(&reply, "invalid_request");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_invalid_message() {
    let mut w = TestWorker::start("code-invalid-message").await;
    let reply = w
        .request("link.access_tokens", json!({"clientId": "acme"}))
        .await;
    assert_envelope(&reply, "invalid_message");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("endUserId"),
        "{reply}"
    );
    w.finish().await;
}
