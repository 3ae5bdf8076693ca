//! What the model keeps of the worker's figures: token counts per
//! integration and scope, the queues and the process, and the per-second
//! series behind the sparklines.

use std::collections::VecDeque;

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::TokenState;

use super::HISTORY;

/// One integration and scope, with its count per state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountLine {
    /// Tokens per state: active, reauth_required, revoked.
    pub by_state: [u64; 3],
}

impl CountLine {
    /// Every token of the line, revoked included.
    pub fn total(&self) -> u64 {
        self.by_state.iter().sum()
    }
}

pub(super) fn state_index(state: TokenState) -> usize {
    match state {
        TokenState::Active => 0,
        TokenState::ReauthRequired => 1,
        TokenState::Revoked => 2,
    }
}

/// One queue of the worker.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueLine {
    /// The queue's name without the namespace.
    pub name: String,
    /// Deliveries per second.
    pub rate: f64,
    /// Ready messages, when known.
    pub depth: Option<u64>,
    /// Consumers, when known.
    pub consumers: Option<u32>,
    /// Deliveries the worker holds unacknowledged.
    pub unacked: u64,
    /// Processing latency p50 and p99 (ms) over the last second.
    pub latency_ms: (Option<f64>, Option<f64>),
}

/// What the last `worker.stats` said, merged over the workers heard
/// lately (`fleet.rs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerView {
    /// When the console received it (console clock).
    pub seen_at: UnixMillis,
    /// The workers whose reports it merges (those heard within 3 s).
    pub reporting: usize,
    /// The worker's uptime.
    pub uptime_seconds: u64,
    /// Its queues.
    pub queues: Vec<QueueLine>,
    /// Messages in `NS.dead`.
    pub dead_depth: Option<u64>,
    /// Messages dead-lettered since the worker started.
    pub dead_lettered: u64,
    /// The store's size on disk.
    pub store_bytes: u64,
    /// The store's engine (`fjall`, `postgres`), when the worker says.
    pub store_engine: Option<String>,
    /// Whether the worker checks who publishes (CONTRACT.md §10).
    pub identity: mmt_shared::console::IdentityMode,
    /// The worker's CPU use, percent of one core.
    pub cpu_percent: Option<f64>,
    /// The worker's resident memory.
    pub rss_bytes: Option<u64>,
    /// The refresh engine's health.
    pub refresh: super::RefreshHealth,
    /// The key ring, when the worker reports it (workers before CONTRACT.md
    /// §11 do not).
    pub keys: Option<super::KeyRing>,
}

/// Per-second series for the sparklines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series(VecDeque<u64>);

impl Series {
    pub(super) fn push(&mut self, value: u64) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(value);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<u64> {
        self.0.iter().copied().collect()
    }

    /// The latest sample.
    pub fn last(&self) -> u64 {
        self.0.back().copied().unwrap_or(0)
    }
}

/// The rates of the overview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// `integration.connected` deliveries per second.
    pub ingest: Series,
    /// `token.resolve` deliveries per second.
    pub resolves: Series,
    /// Rejections per second.
    pub rejections: Series,
}
