//! What the worker counts: counters and latency samples that the edges
//! update and the observers read. One place counts; `worker.stats` and
//! `/metrics` (and anything else that shows figures) read from here. No I/O.
//!
//! - [`queue`]: per consumer: received, acknowledged, outcomes, dead letters,
//!   latency;
//! - [`refusals`]: refusals by code, dead letters;
//! - [`link`]: the broker link's recoveries, and whether the worker consumes;
//! - [`latency`]: latency samples and their percentiles;
//! - [`histogram`]: cumulative durations in fixed buckets;
//! - [`keys`]: the key ring: data keys by key, the rewrap's progress.

pub mod histogram;
pub mod keys;
pub mod latency;
pub mod link;
pub mod queue;
pub mod refusals;
