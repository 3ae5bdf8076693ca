//! One test per row of CONTRACT.md §2.

use serde_json::json;

use crate::util::{TestWorker, code, connected, token_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_identity_connecting_again_keeps_the_token_id_replaces_the_raw_token_and_is_active() {
    let mut w = TestWorker::start("same-identity").await;
    let first = w
        .connect(connected(
            "acme",
            "u1",
            "read",
            "coinbase",
            "cb-1",
            "raw-first",
        ))
        .await;
    assert_eq!(first["tokens"][0]["created"], true);
    let id = token_id(&first);
    let again = w
        .connect(connected(
            "acme",
            "u1",
            "read",
            "coinbase",
            "cb-1",
            "raw-second",
        ))
        .await;
    assert_eq!(token_id(&again), id);
    assert_eq!(again["tokens"][0]["created"], false);
    let rotated = w.event("token.rotated").await;
    assert_eq!(rotated["tokenId"], id.as_str());
    assert_eq!(rotated["state"], "active");
    let resolved = w.resolve("acme", &id, "read").await;
    assert_eq!(resolved["accessToken"], "raw-second");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_raw_token_connecting_again_is_reconnected_not_rotated() {
    let mut w = TestWorker::start("same-raw-token").await;
    let first = w
        .connect(connected(
            "acme", "u1", "read", "coinbase", "cb-1", "raw-same",
        ))
        .await;
    let id = token_id(&first);
    assert_eq!(w.event("token.issued").await["tokenId"], id.as_str());
    let again = w
        .connect(connected(
            "acme", "u1", "read", "coinbase", "cb-1", "raw-same",
        ))
        .await;
    assert_eq!(token_id(&again), id);
    assert_eq!(again["tokens"][0]["created"], false);
    let reconnected = w.event("token.reconnected").await;
    assert_eq!(reconnected["tokenId"], id.as_str());
    assert_eq!(reconnected["state"], "active");
    w.connect(connected(
        "acme", "u1", "read", "coinbase", "cb-1", "raw-new",
    ))
    .await;
    let next: Vec<String> = w
        .events_until("token.rotated")
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .filter(|kind| kind.starts_with("token."))
        .collect();
    assert_eq!(
        next,
        ["token.rotated"],
        "a changed raw token is a rotation, and the reconnection published nothing else"
    );
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-new"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_end_user_on_the_same_integration_gets_a_new_token_id() {
    let mut w = TestWorker::start("other-user").await;
    let a = w
        .issue("acme", "u1", "read", "coinbase", "cb-1", "raw-a")
        .await;
    let b = w
        .issue("acme", "u2", "read", "coinbase", "cb-1", "raw-b")
        .await;
    assert_ne!(a, b);
    assert_eq!(w.resolve("acme", &a, "read").await["accessToken"], "raw-a");
    assert_eq!(w.resolve("acme", &b, "read").await["accessToken"], "raw-b");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_gets_a_distinct_token_id_per_scope() {
    let mut w = TestWorker::start("per-scope").await;
    let read = w
        .issue("acme", "u1", "read", "coinbase", "cb-1", "raw-r")
        .await;
    let write = w
        .issue("acme", "u1", "write", "coinbase", "cb-1", "raw-w")
        .await;
    assert_ne!(read, write);
    assert_eq!(w.resolve("acme", &read, "read").await["scope"], "read");
    assert_eq!(w.resolve("acme", &write, "read").await["scope"], "write");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_and_integration_under_another_client_shares_nothing() {
    let mut w = TestWorker::start("per-client").await;
    let acme = w
        .issue("acme", "u1", "read", "coinbase", "cb-1", "raw-acme")
        .await;
    let globex = w
        .connect(connected(
            "globex",
            "u1",
            "read",
            "coinbase",
            "cb-1",
            "raw-globex",
        ))
        .await;
    assert_eq!(globex["tokens"][0]["created"], true);
    let globex = token_id(&globex);
    assert_ne!(acme, globex);
    assert_eq!(
        w.resolve("acme", &acme, "read").await["accessToken"],
        "raw-acme"
    );
    assert_eq!(
        w.resolve("globex", &globex, "read").await["accessToken"],
        "raw-globex"
    );
    let acme_links = w.link("acme", "u1").await;
    assert_eq!(
        acme_links["accessTokens"],
        json!([{"accessToken": acme, "brokerType": "coinbase", "brokerName": "", "accountId": "", "accountName": ""}])
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_a_read_token_is_scope_mismatch_and_a_request_rejected_event() {
    let mut w = TestWorker::start("scope-mismatch").await;
    let id = w
        .issue("acme", "u1", "read", "coinbase", "cb-1", "raw-r")
        .await;
    let reply = w.resolve("acme", &id, "write").await;
    assert_eq!(code(&reply), "scope_mismatch");
    let event = w.event("request.rejected").await;
    assert_eq!(event["tokenId"], id.as_str());
    assert_eq!(event["clientId"], "acme");
    assert_eq!(event["operation"], "write");
    assert_eq!(event["scope"], "read");
    assert_eq!(event["code"], "scope_mismatch");
    assert_eq!(event["brokerType"], "coinbase");
    assert!(
        event["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{event}"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_on_a_write_token_is_allowed() {
    let mut w = TestWorker::start("write-includes-read").await;
    let id = w
        .issue("acme", "u1", "write", "coinbase", "cb-1", "raw-w")
        .await;
    let reply = w.resolve("acme", &id, "read").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["accessToken"], "raw-w");
    assert_eq!(w.resolve("acme", &id, "write").await["ok"], true);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_gone_for_good_and_its_identity_later_gets_a_new_token_id() {
    let mut w = TestWorker::start("revoked").await;
    let id = w
        .issue("acme", "u1", "read", "coinbase", "cb-1", "raw-doomed")
        .await;
    assert_eq!(
        w.revoke("acme", &id).await,
        json!({"ok": true, "revoked": true})
    );
    let event = w.event("token.revoked").await;
    assert_eq!(event["tokenId"], id.as_str());
    assert_eq!(event["state"], "revoked");
    assert_eq!(code(&w.resolve("acme", &id, "read").await), "revoked");
    assert_eq!(
        w.revoke("acme", &id).await,
        json!({"ok": true, "revoked": false})
    );
    assert_eq!(w.link("acme", "u1").await["accessTokens"], json!([]));
    let later = w
        .connect(connected(
            "acme", "u1", "read", "coinbase", "cb-1", "raw-new",
        ))
        .await;
    assert_eq!(later["tokens"][0]["created"], true);
    assert_ne!(token_id(&later), id);
    assert_eq!(code(&w.resolve("acme", &id, "read").await), "revoked");
    w.stop_worker().await;
    let leftovers = crate::util::files_under(&w.data_dir());
    assert!(
        !leftovers
            .iter()
            .any(|(_, bytes)| crate::util::holds(bytes, b"raw-doomed")),
        "the revoked raw token is on disk in plain form"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_without_refresh_needs_reauth_after_expiry_and_reconnecting_keeps_the_token_id()
 {
    let mut w = TestWorker::start("expiry").await;
    let mut body = connected("acme", "u1", "read", "binance", "bn-1", "raw-binance-old");
    body["accessToken"]["expiresInSeconds"] = json!(3600);
    let mut step = mmt_worker::ops::fixtures::Step::new("integration.connected", body);
    step.message_id = Some("binance-1".into());
    step.age_seconds = Some(7200);
    let id = token_id(&w.send(step).await);
    let expired = w.event("token.expired").await;
    assert_eq!(expired["tokenId"], id.as_str());
    assert_eq!(expired["state"], "reauth_required");
    assert_eq!(
        code(&w.resolve("acme", &id, "read").await),
        "reauth_required"
    );
    assert_eq!(
        w.link("acme", "u1").await["accessTokens"][0]["accessToken"],
        id.as_str()
    );
    let mut fresh = connected("acme", "u1", "read", "binance", "bn-1", "raw-binance-new");
    fresh["accessToken"]["expiresInSeconds"] = json!(3600);
    let again = w.connect(fresh).await;
    assert_eq!(token_id(&again), id);
    assert_eq!(again["tokens"][0]["created"], false);
    let resolved = w.resolve("acme", &id, "read").await;
    assert_eq!(resolved["accessToken"], "raw-binance-new");
    assert!(resolved["expiresAt"].as_str().is_some(), "{resolved}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_token_stays_active_indefinitely() {
    let mut w = TestWorker::start("long-lived").await;
    let mut step = mmt_worker::ops::fixtures::Step::new(
        "integration.connected",
        connected("acme", "u1", "read", "coinbase", "cb-1", "raw-forever"),
    );
    step.message_id = Some("coinbase-old".into());
    step.age_seconds = Some(10 * 365 * 24 * 3600);
    let id = token_id(&w.send(step).await);
    let reply = w.resolve("acme", &id, "read").await;
    assert_eq!(reply["accessToken"], "raw-forever");
    assert_eq!(reply["expiresAt"], json!(null));
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_broker_type_is_stored_like_any_other() {
    let mut w = TestWorker::start("unknown-broker").await;
    let reply = w
        .connect(connected(
            "acme",
            "u1",
            "read",
            "brandNewExchange2027",
            "nx-1",
            "raw-nx",
        ))
        .await;
    assert_eq!(reply["brokerType"], "brandNewExchange2027");
    let id = token_id(&reply);
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-nx"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_custody_wallet_is_acknowledged_with_nothing_stored_and_no_token_id() {
    let mut w = TestWorker::start("wallets").await;
    for wallet in [
        "deFiWallet",
        "cryptocurrencyWallet",
        "cryptocurrencyAddress",
        "ledgerLive",
    ] {
        let reply = w
            .connect(connected(
                "acme",
                "u1",
                "read",
                wallet,
                "0xabc",
                "wallet-session-secret",
            ))
            .await;
        assert_eq!(
            reply,
            json!({"ok": true, "brokerType": wallet, "scope": "read", "tokens": [], "accessTokens": [], "wallet": true})
        );
    }
    assert_eq!(w.link("acme", "u1").await["accessTokens"], json!([]));
    let events = w.drain_events().await;
    assert!(
        events.iter().all(|(kind, _)| !kind.starts_with("token.")),
        "{events:?}"
    );
    w.stop_worker().await;
    let files = crate::util::files_under(&w.data_dir());
    assert!(
        !files
            .iter()
            .any(|(_, b)| crate::util::holds(b, b"wallet-session"))
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_token_id_is_not_found_for_resolve_and_revoke_and_nothing_changes() {
    let mut w = TestWorker::start("isolation").await;
    let id = w
        .issue("acme", "u1", "write", "coinbase", "cb-1", "raw-acme")
        .await;
    let never = "tok_0123456789abcdef0123456789abcdef";
    for token in [id.as_str(), never] {
        let foreign = w.resolve("globex", token, "read").await;
        let missing = w.resolve("acme", never, "read").await;
        assert_eq!(
            foreign["error"], missing["error"],
            "a foreign token must look exactly like a missing one"
        );
        assert_eq!(code(&w.revoke("globex", token).await), "not_found");
    }
    assert_eq!(
        w.resolve("acme", &id, "write").await["accessToken"],
        "raw-acme"
    );
    w.revoke("acme", &id).await;
    let foreign = w.resolve("globex", &id, "read").await;
    assert_eq!(code(&foreign), "not_found");
    assert_eq!(code(&w.revoke("globex", &id).await), "not_found");
    w.finish().await;
}
