//! The goals the bench's figures are held to (issues 4, 9, 11, 12): each a
//! figure's median against a target, met or missed by how much.

/// How a goal compares its figure with its target.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// The figure must be at least the target.
    AtLeast,
    /// The figure must be at most the target.
    AtMost,
}

/// One goal.
#[derive(Clone, Debug)]
pub struct Goal {
    /// What it says.
    pub text: &'static str,
    /// The figure it is about.
    pub figure: &'static str,
    /// The target.
    pub target: f64,
    /// How the figure compares with the target.
    pub bound: Bound,
    /// The figure's median, if measured.
    pub value: Option<f64>,
}

impl Goal {
    /// Whether the goal is met; `None` when its figure was not measured.
    pub fn met(&self) -> Option<bool> {
        let value = self.value.filter(|v| v.is_finite())?;
        Some(match self.bound {
            Bound::AtLeast => value >= self.target,
            Bound::AtMost => value <= self.target,
        })
    }

    /// How far inside (positive) or outside (negative) the target the figure
    /// is, as a fraction of the target; `None` for a target of 0 (a count
    /// that must be none), which has no fraction.
    pub fn margin(&self) -> Option<f64> {
        let value = self.value.filter(|v| v.is_finite())?;
        if self.target == 0.0 {
            return None;
        }
        Some(match self.bound {
            Bound::AtLeast => value / self.target - 1.0,
            Bound::AtMost => 1.0 - value / self.target,
        })
    }
}

/// The goals: (text, figure, target, bound).
pub const GOALS: [(&str, &str, f64, Bound); 18] = [
    (
        "ingest >= 0.5x the ceiling, quorum queues (issue 11)",
        "ingest_ratio",
        0.5,
        Bound::AtLeast,
    ),
    (
        "ingest >= 0.5x the ceiling, classic queues (issue 11)",
        "classic_ingest_ratio",
        0.5,
        Bound::AtLeast,
    ),
    (
        "ingest >= 0.85x the ceiling, quorum queues",
        "ingest_ratio",
        0.85,
        Bound::AtLeast,
    ),
    (
        "ingest >= 0.85x the ceiling, classic queues",
        "classic_ingest_ratio",
        0.85,
        Bound::AtLeast,
    ),
    (
        "resolve throughput at concurrency 4 >= 0.8x the echo",
        "resolve_throughput_ratio",
        0.8,
        Bound::AtLeast,
    ),
    (
        "resolve p99 at concurrency 4 <= 1.25x the echo's p99",
        "resolve_p99_ratio",
        1.25,
        Bound::AtMost,
    ),
    (
        "strict-mode resolve throughput at concurrency 4 >= 0.95x open mode",
        "strict_throughput_ratio",
        0.95,
        Bound::AtLeast,
    ),
    (
        "strict-mode resolve p99 at concurrency 4 <= 1.05x open mode",
        "strict_p99_ratio",
        1.05,
        Bound::AtMost,
    ),
    (
        "resolve p99 at the large store <= 1.2x the figure at 1k tokens",
        "resolve_p99_ratio_1m",
        1.2,
        Bound::AtMost,
    ),
    (
        "worker start over the large store < 2000 ms",
        "start_ms_1m",
        2000.0,
        Bound::AtMost,
    ),
    (
        "worker start over the large store, page cache dropped < 2000 ms",
        "cold_start_ms_1m",
        2000.0,
        Bound::AtMost,
    ),
    (
        "first start after loading the large store (journal replay) < 2000 ms",
        "first_start_ms_1m",
        2000.0,
        Bound::AtMost,
    ),
    (
        "worker RSS over the large store <= 200 MB (issue 11)",
        "rss_mb_1m",
        200.0,
        Bound::AtMost,
    ),
    (
        "disk per token at the large store <= 1000 bytes (issue 11)",
        "disk_bytes_per_token_1m",
        1000.0,
        Bound::AtMost,
    ),
    (
        "disk per token through the broker <= 1000 bytes (issue 11)",
        "broker_disk_bytes_per_token",
        1000.0,
        Bound::AtMost,
    ),
    (
        "console frame time, heaviest screen, at the large store < 16 ms",
        "console_frame_ms_1m",
        16.0,
        Bound::AtMost,
    ),
    (
        "refresh-token reuses seen by the provider = 0",
        "refresh_reuses",
        0.0,
        Bound::AtMost,
    ),
    (
        "tokens lapsed at 100,000 tokens, 1-hour expiries compressed, healthy provider = 0",
        "refresh_lapses",
        0.0,
        Bound::AtMost,
    ),
];
