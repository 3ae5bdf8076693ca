//! The console's view of the refresh engine through the real worker, the
//! real broker and a real token server: the detail lookup (`console.tokens`
//! by tokenId) carries the token's refresh record, and `worker.stats` the
//! engine's health, while the provider fails and once it recovers. Never a
//! secret in either.

use mmt_oauth_fixture::{Mode, Options};
use serde_json::{Value, json};

use crate::refresh::{BROKER, Setup, oauth_connected, start};
use crate::util::token_id;

/// The next `worker.stats` whose refresh health satisfies `check` (the
/// engine's figures are read once a second).
async fn stats_until(
    w: &mut crate::util::TestWorker,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..30 {
        let stats = w.event("worker.stats").await;
        if check(&stats["refresh"]) {
            return stats;
        }
    }
    panic!("no worker.stats with {what} in 30 of them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sees_a_failing_refresh_its_error_code_and_its_recovery() {
    let (mut w, p) = start("refresh-console", Options::default(), Setup::default()).await;
    p.set_mode(Mode::Status(503));
    let refresh = p.issue_refresh_token();
    let id = token_id(
        &w.connect(oauth_connected("u1", "raw-a1", &refresh, 3, None))
            .await,
    );
    let failed = w.event("token.refresh_failed").await;
    assert_eq!(failed["tokenId"], id.as_str());

    let detail = w
        .request("console.tokens", json!({"tokenId": id, "limit": 1}))
        .await;
    let seen = &detail["tokens"][0]["refresh"];
    assert_eq!(seen["pending"], true, "past expiresAt: {detail}");
    assert_eq!(seen["lastError"], "http_503", "{detail}");
    assert!(
        seen["attempts"].as_u64().is_some_and(|n| n >= 1),
        "{detail}"
    );
    assert!(
        seen["nextAt"]
            .as_str()
            .and_then(mmt_shared::time_fmt::parse_rfc3339)
            .is_some(),
        "{detail}"
    );
    assert!(seen.get("lastRefreshedAt").is_none(), "never refreshed yet");

    let stats = stats_until(&mut w, "refreshPending 1", |r| r["refreshPending"] == 1).await;
    let failing = stats["refresh"]["integrations"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["brokerType"] == BROKER).cloned())
        .unwrap_or_default();
    assert_eq!(failing["lastError"], "http_503", "{stats}");
    assert_eq!(failing["failing"], 1, "{stats}");
    assert!(stats["refresh"]["failed"].as_u64().is_some_and(|n| n >= 1));

    p.set_mode(Mode::Normal);
    assert_eq!(w.event("token.refreshed").await["tokenId"], id.as_str());
    let detail = w
        .request("console.tokens", json!({"tokenId": id, "limit": 1}))
        .await;
    let seen = &detail["tokens"][0]["refresh"];
    assert_eq!(seen["attempts"], 0, "{detail}");
    assert!(seen.get("lastError").is_none(), "{detail}");
    assert!(seen.get("pending").is_none(), "{detail}");
    let last = seen["lastRefreshedAt"]
        .as_str()
        .and_then(mmt_shared::time_fmt::parse_rfc3339)
        .expect("refreshed: a time");
    let next = seen["nextAt"]
        .as_str()
        .and_then(mmt_shared::time_fmt::parse_rfc3339)
        .expect("a next refresh");
    assert!(next > last, "{detail}");
    let stats = stats_until(&mut w, "one refresh", |r| r["refreshed"] == 1).await;
    assert_eq!(stats["refresh"]["refreshPending"], 0, "{stats}");

    for text in [detail.to_string(), stats.to_string()] {
        assert!(!text.contains("raw-a1"), "no access token: {text}");
        assert!(!text.contains(&refresh), "no refresh token: {text}");
        assert!(!text.contains("fxat_"), "no refreshed access token: {text}");
        assert!(!text.contains(&p.client_secret()), "no client secret");
    }
    w.finish().await;
}
