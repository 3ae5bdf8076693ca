//! `/metrics`: the series of CONTRACT.md §13 (binding names), read from the
//! same counters as `worker.stats` at each scrape and encoded by
//! `prometheus-client` (OpenMetrics text, which Prometheus reads).
//!
//! Every label value comes from a closed set the worker defines (queue
//! kinds, outcomes, error codes, token states, the engine): never a tokenId,
//! a clientId, a secret or a URL. Series of a closed set are shown at zero
//! too, so a `rate()` has a series before the first event.

use std::fmt;

use mmt_shared::console::{KeysStats, PurgeStats};
use mmt_shared::wire::{ErrorCode, MessageKind, TokenState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::counters::histogram::Reading;
use crate::counters::queue::Outcome;
use crate::counters::refusals::Refusals;
use crate::observe::stats::Stats;
use crate::refresh::Refresher;
use crate::service::Service;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One inbound queue's figures.
#[derive(Debug)]
struct QueueFigures {
    /// The queue's kind (`token.resolve`): the same in every namespace, so a
    /// dashboard works for all of them.
    kind: &'static str,
    outcomes: [(Outcome, u64); Outcome::ALL.len()],
    durations: Reading,
}

/// Everything one scrape shows, read before it is encoded.
#[derive(Debug)]
pub struct Scrape {
    queues: Vec<QueueFigures>,
    rejections: Vec<(ErrorCode, u64)>,
    tokens: Vec<(TokenState, u64)>,
    refreshed: u64,
    refresh_failed: u64,
    refresh_in_flight: u64,
    flushes: Reading,
    store_bytes: Option<u64>,
    reconnects: u64,
    up: bool,
    engine: &'static str,
    keys: KeysStats,
    purge: Option<PurgeStats>,
}

/// What the app tells a scrape besides the counters.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Sessions rebuilt after a link failure.
    pub reconnects: u64,
    /// Whether the worker consumes (broker link up, store answering).
    pub up: bool,
    /// The store's size on disk, when it answered.
    pub store_bytes: Option<u64>,
}

impl Scrape {
    /// Reads the counters now.
    pub fn read(stats: &Stats, service: &Service, refresher: &Refresher, link: Link) -> Self {
        let queues = MessageKind::ALL
            .iter()
            .zip(stats.queues())
            .map(|(kind, (_, counters))| QueueFigures {
                kind: kind.routing_key(),
                outcomes: counters.outcomes(),
                durations: counters.durations(),
            })
            .collect();
        let health = refresher.health();
        let store = service.store();
        Self {
            queues,
            rejections: every_code(stats.refusals()),
            tokens: tokens_by_state(service),
            refreshed: health.refreshed,
            refresh_failed: health.failed,
            refresh_in_flight: health.in_flight,
            flushes: store.flush_times().read(),
            store_bytes: link.store_bytes,
            reconnects: link.reconnects,
            up: link.up,
            engine: store.engine_name(),
            keys: store.key_counters().snapshot(),
            purge: store
                .deletions()
                .map(|d| crate::observe::stats::purge_stats(d.status())),
        }
    }

    /// The scrape as OpenMetrics text.
    pub fn encode(self) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

fn every_code(refusals: &Refusals) -> Vec<(ErrorCode, u64)> {
    let counted = refusals.by_code();
    ErrorCode::ALL
        .iter()
        .map(|code| {
            let n = counted
                .iter()
                .find(|(c, _)| c == code)
                .map_or(0, |(_, n)| *n);
            (*code, n)
        })
        .collect()
}

/// The store's token counts summed by state (from memory: no read).
fn tokens_by_state(service: &Service) -> Vec<(TokenState, u64)> {
    let counts = service.store().counts().unwrap_or_default();
    [
        TokenState::Active,
        TokenState::ReauthRequired,
        TokenState::Revoked,
    ]
    .into_iter()
    .map(|state| {
        let n = counts
            .iter()
            .filter(|(key, _)| key.state == state)
            .map(|(_, n)| n)
            .sum();
        (state, n)
    })
    .collect()
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], u64)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        if labels.is_empty() {
            return ConstCounter::new(*value).encode(metric);
        }
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], i64)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        if labels.is_empty() {
            return ConstGauge::new(*value).encode(metric);
        }
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], &Reading)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, reading) in series {
        if labels.is_empty() {
            return metric.encode_histogram::<NoLabelSet>(
                reading.sum,
                reading.count,
                &reading.buckets,
                None,
            );
        }
        metric
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(reading.sum, reading.count, &reading.buckets, None)?;
    }
    Ok(())
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut messages = Vec::new();
        for queue in &self.queues {
            for (outcome, n) in &queue.outcomes {
                messages.push(([("queue", queue.kind), ("outcome", outcome.as_str())], *n));
            }
        }
        let messages: Vec<(&[(&str, &str)], u64)> =
            messages.iter().map(|(l, n)| (&l[..], *n)).collect();
        counter(
            &mut encoder,
            "mmt_messages",
            "Deliveries by queue and outcome (applied, replayed, rejected, dead_lettered, requeued).",
            &messages,
        )?;
        let codes: Vec<([(&str, &str); 1], u64)> = self
            .rejections
            .iter()
            .map(|(code, n)| ([("code", code.as_str())], *n))
            .collect();
        let codes: Vec<(&[(&str, &str)], u64)> = codes.iter().map(|(l, n)| (&l[..], *n)).collect();
        counter(
            &mut encoder,
            "mmt_rejections",
            "Answers with an error code, by code (dead-lettered bad input included).",
            &codes,
        )?;
        let labels: Vec<[(&str, &str); 1]> =
            self.queues.iter().map(|q| [("queue", q.kind)]).collect();
        let durations: Vec<(&[(&str, &str)], &Reading)> = labels
            .iter()
            .zip(&self.queues)
            .map(|(l, q)| (&l[..], &q.durations))
            .collect();
        histogram(
            &mut encoder,
            "mmt_request_duration_seconds",
            "Seconds from a delivery being taken to its reply being sent.",
            &durations,
        )?;
        let states: Vec<([(&str, &str); 1], i64)> = self
            .tokens
            .iter()
            .map(|(state, n)| ([("state", state.as_str())], signed(*n)))
            .collect();
        let states: Vec<(&[(&str, &str)], i64)> =
            states.iter().map(|(l, n)| (&l[..], *n)).collect();
        gauge(
            &mut encoder,
            "mmt_tokens",
            "Tokens in the store by state.",
            &states,
        )?;
        counter(
            &mut encoder,
            "mmt_refresh",
            "Refresh requests answered, by outcome (refreshed, failed).",
            &[
                (&[("outcome", "refreshed")], self.refreshed),
                (&[("outcome", "failed")], self.refresh_failed),
            ],
        )?;
        gauge(
            &mut encoder,
            "mmt_refresh_in_flight",
            "Refresh requests in flight now.",
            &[(&[], signed(self.refresh_in_flight))],
        )?;
        histogram(
            &mut encoder,
            "mmt_store_flush_duration_seconds",
            "Seconds each store flush (one journal fsync) took.",
            &[(&[], &self.flushes)],
        )?;
        if let Some(bytes) = self.store_bytes {
            gauge(
                &mut encoder,
                "mmt_store_bytes",
                "Bytes the store takes on disk.",
                &[(&[], signed(bytes))],
            )?;
        }
        counter(
            &mut encoder,
            "mmt_broker_reconnects",
            "Broker sessions rebuilt after a link failure.",
            &[(&[], self.reconnects)],
        )?;
        gauge(
            &mut encoder,
            "mmt_up",
            "1 while the worker consumes (broker link up, store answering), else 0.",
            &[(&[], i64::from(self.up))],
        )?;
        self.encode_keys(&mut encoder)?;
        self.encode_purge(&mut encoder)?;
        gauge(
            &mut encoder,
            "mmt_build_info",
            "Always 1: the worker's version and store engine as labels.",
            &[(
                &[
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("engine", self.engine),
                ],
                1,
            )],
        )
    }
}

impl Scrape {
    /// The key ring (CONTRACT.md §11): the active key, the data keys each
    /// key wraps (a key at 0 may be deleted from the key file), the rewrap.
    fn encode_keys(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let keys = &self.keys;
        if let Ok(active) = keys.active.parse::<i64>() {
            gauge(
                encoder,
                "mmt_key_active",
                "The id of the key that wraps new data keys.",
                &[(&[], active)],
            )?;
        }
        let wrapped: Vec<([(&str, &str); 1], i64)> = keys
            .wrapped
            .iter()
            .map(|(id, n)| ([("key", id.as_str())], signed(*n)))
            .collect();
        let wrapped: Vec<(&[(&str, &str)], i64)> =
            wrapped.iter().map(|(l, n)| (&l[..], *n)).collect();
        gauge(
            encoder,
            "mmt_key_wrapped",
            "Data keys (live tokens, upstream jobs) by the id of the key that wraps them, as last counted.",
            &wrapped,
        )?;
        counter(
            encoder,
            "mmt_key_rewrapped",
            "Data keys this worker rewrapped under the active key since it started.",
            &[(&[], keys.rewrap.rewrapped_total)],
        )?;
        gauge(
            encoder,
            "mmt_key_rewrap_running",
            "1 while a rewrap pass runs, else 0.",
            &[(&[], i64::from(keys.rewrap.running))],
        )
    }

    /// The embedded store's purges (CONTRACT.md §13, physical deletion).
    fn encode_purge(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let Some(purge) = &self.purge else {
            return Ok(());
        };
        counter(
            encoder,
            "mmt_purges",
            "Purges of deleted secrets from the store's files, by outcome (done, failed).",
            &[
                (&[("outcome", "done")], purge.runs),
                (&[("outcome", "failed")], purge.failed),
            ],
        )?;
        gauge(
            encoder,
            "mmt_purge_pending",
            "1 while a deletion waits for its purge, else 0.",
            &[(&[], i64::from(purge.pending))],
        )?;
        gauge(
            encoder,
            "mmt_purge_last_lag_milliseconds",
            "From the oldest deletion the last purge covered to its end (bound: --purge-within-secs).",
            &[(&[], signed(purge.last_lag_ms.unwrap_or(0)))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Scrape {
        Scrape {
            queues: vec![QueueFigures {
                kind: "token.resolve",
                outcomes: Outcome::ALL.map(|o| (o, 0)),
                durations: Reading {
                    sum: 0.5,
                    count: 2,
                    buckets: vec![(0.1, 1), (1.0, 1), (f64::MAX, 0)],
                },
            }],
            rejections: vec![(ErrorCode::NotFound, 3)],
            tokens: vec![(TokenState::Active, 7)],
            refreshed: 1,
            refresh_failed: 2,
            refresh_in_flight: 0,
            flushes: Reading {
                sum: 0.0,
                count: 0,
                buckets: vec![(f64::MAX, 0)],
            },
            store_bytes: Some(4096),
            reconnects: 0,
            up: true,
            engine: "fjall",
            keys: KeysStats {
                active: "1".to_owned(),
                wrapped: [("0".to_owned(), 5), ("1".to_owned(), 9)].into(),
                ..KeysStats::default()
            },
            purge: Some(PurgeStats {
                runs: 2,
                last_lag_ms: Some(31_000),
                ..PurgeStats::default()
            }),
        }
    }

    #[test]
    fn the_binding_series_names_are_encoded() {
        let text = empty().encode().unwrap();
        for line in [
            "mmt_messages_total{queue=\"token.resolve\",outcome=\"applied\"} 0",
            "mmt_rejections_total{code=\"not_found\"} 3",
            "mmt_request_duration_seconds_bucket{le=\"1.0\",queue=\"token.resolve\"} 2",
            "mmt_request_duration_seconds_count{queue=\"token.resolve\"} 2",
            "mmt_tokens{state=\"active\"} 7",
            "mmt_refresh_total{outcome=\"failed\"} 2",
            "mmt_refresh_in_flight 0",
            "mmt_store_flush_duration_seconds_count 0",
            "mmt_store_flush_duration_seconds_bucket{le=\"+Inf\"} 0",
            "mmt_store_bytes 4096",
            "mmt_broker_reconnects_total 0",
            "mmt_up 1",
            "mmt_build_info{version=\"0.1.0\",engine=\"fjall\"} 1",
            "mmt_key_active 1",
            "mmt_key_wrapped{key=\"0\"} 5",
            "mmt_key_wrapped{key=\"1\"} 9",
            "mmt_key_rewrapped_total 0",
            "mmt_key_rewrap_running 0",
            "mmt_purges_total{outcome=\"done\"} 2",
            "mmt_purge_pending 0",
            "mmt_purge_last_lag_milliseconds 31000",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
