//! Console search at scale: the latency of a `console.tokens` search over
//! every token of the running worker child, asked as the console asks it
//! (`NS.in`, routing key `console.tokens`, direct reply-to), one request at
//! a time.
//!
//! Two queries per point: a filtered search sorted by end user (the `/`
//! search of the token screen) and a sort of every token with no filter
//! (the `s` key). Each is asked once right after the worker's resolve load
//! (`first`: its caches hold what resolve read, not the scan's order) and
//! then [`WARM_ROUNDS`] times more (the median of those: `warm`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection};
use mmt_shared::config::Namespace;
use mmt_shared::console::{TOKENS_ROUTING_KEY, TokensReply};
use serde_json::json;

use super::BenchError;
use super::report::RunFigures;
use mmt_worker::ops::fixtures::DIRECT_REPLY_TO;

/// Warm requests after the first, per query.
const WARM_ROUNDS: usize = 3;

/// The longest a search may take before the bench gives up on it.
const SEARCH_PATIENCE: Duration = Duration::from_secs(120);

/// The queries: (figure name, request body). The filter matches
/// `user-4242`, `user-42420`..`user-42429` and so on: 111 of 1,000,000.
fn queries() -> [(&'static str, serde_json::Value); 2] {
    [
        (
            "console_search",
            json!({"filter": "user:user-4242", "sort": "endUserId", "descending": true, "limit": 200}),
        ),
        ("console_sort", json!({"sort": "clientId", "limit": 200})),
    ]
}

/// Records `<query>_first_ms_<point>` and `<query>_ms_<point>` (warm
/// median) for each query against the worker serving `ns`.
pub async fn measure(
    connection: &Connection,
    ns: &Namespace,
    point: &str,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    let channel = connection.create_channel().await?;
    let mut replies = mmt_worker::amqp::rpc::direct_replies(&channel).await?;
    for (name, body) in queries() {
        let body = body.to_string();
        let mut times = Vec::with_capacity(WARM_ROUNDS + 1);
        for round in 0..=WARM_ROUNDS {
            let correlation = format!("{name}-{round}");
            let sent = Instant::now();
            channel
                .basic_publish(
                    ns.inbound_exchange().into(),
                    TOKENS_ROUTING_KEY.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default()
                        .with_content_type("application/json".into())
                        .with_reply_to(DIRECT_REPLY_TO.into())
                        .with_correlation_id(correlation.as_str().into()),
                )
                .await?;
            let delivery = match tokio::time::timeout(SEARCH_PATIENCE, replies.next()).await {
                Ok(Some(delivery)) => delivery?,
                Ok(None) | Err(_) => {
                    return Err(BenchError::Timeout {
                        phase: "console search",
                        done: round,
                        expected: WARM_ROUNDS + 1,
                    });
                }
            };
            let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
            let answered = serde_json::from_slice::<TokensReply>(&delivery.data)
                .ok()
                .filter(|reply| reply.ok && reply.total.is_some());
            if answered.is_none() {
                return Err(BenchError::Failed {
                    phase: "console search",
                    reply: String::from_utf8_lossy(&delivery.data).into_owned(),
                });
            }
            times.push(elapsed);
        }
        let first = times.remove(0);
        times.sort_by(f64::total_cmp);
        let warm = times.get(times.len() / 2).copied().unwrap_or(first);
        figures.set(&format!("{name}_first_ms_{point}"), first);
        figures.set(&format!("{name}_ms_{point}"), warm);
    }
    channel.close(200, "searched".into()).await?;
    Ok(())
}
