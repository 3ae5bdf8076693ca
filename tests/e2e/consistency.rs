//! Reads that must stay consistent while writers change the same token
//! (issue 8, defect 3: resolve read the record and the wrapped key in two
//! reads, so a reconnection between them made the seal fail to open and the
//! request was lost).

use std::collections::HashSet;
use std::time::Duration;

use crate::util::{Bulk, TestWorker, connected};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_racing_reconnections_of_the_same_identity_always_answers() {
    const ROUNDS: usize = 3_000;
    const RESOLVES: usize = 2;
    let mut w = TestWorker::start("resolve-race").await;
    let id = w
        .issue("acme", "u1", "read", "coinbase", "cb-1", "raw-race-start")
        .await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let mut raws: HashSet<String> = HashSet::from(["raw-race-start".to_owned()]);
    let mut messages = Vec::with_capacity((1 + RESOLVES) * ROUNDS);
    for i in 0..ROUNDS {
        let raw = format!("raw-race-{i}");
        messages.push((
            "integration.connected",
            format!("race-connect-{i}"),
            connected("acme", "u1", "read", "coinbase", "cb-1", &raw),
        ));
        raws.insert(raw);
        for j in 0..RESOLVES {
            messages.push((
                "token.resolve",
                format!("race-resolve-{i}-{j}"),
                serde_json::json!({"clientId": "acme", "tokenId": id, "operation": "read"}),
            ));
        }
    }
    bulk.publish(&messages).await;
    bulk.wait_answered(2 * ROUNDS, Duration::from_secs(120))
        .await;
    for (message_id, replies) in bulk.replies() {
        let reply = &replies[0];
        assert_eq!(reply["ok"], true, "{message_id}: {reply}");
        if message_id.starts_with("race-resolve-") {
            let raw = reply["accessToken"].as_str().unwrap_or_default();
            assert!(raws.contains(raw), "{message_id}: {reply}");
        } else {
            assert_eq!(reply["tokens"][0]["tokenId"], id.as_str(), "{reply}");
        }
    }
    let dead: Vec<_> = w
        .drain_events()
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "message.dead_lettered")
        .collect();
    assert!(dead.is_empty(), "{dead:?}");
    w.finish().await;
}
