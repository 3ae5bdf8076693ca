//! What the worker counts: counters and latency samples that the edges
//! update and the observers read. One place counts; `worker.stats` (and
//! anything else that shows figures) reads from here. No I/O.
//!
//! - [`queue`]: per consumer: received, acknowledged, dead-lettered, latency;
//! - [`latency`]: latency samples and their percentiles.

pub mod latency;
pub mod queue;
