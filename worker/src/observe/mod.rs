//! What the operators see: the figures of `worker.stats` and of `/metrics`
//! (both built from the [`crate::counters`] the edges keep and from the
//! store), the health probes, the console's request server and token search,
//! and this process's CPU and memory.
//!
//! - [`stats`]: `worker.stats`, once a second;
//! - [`metrics`]: the same counters as Prometheus series (`/metrics`);
//! - [`probes`]: the HTTP edge of `--metrics-addr`: `/metrics`, `/healthz`,
//!   `/readyz`;
//! - [`server`]: the console's requests (search, detail, health);
//! - [`query`]: the token search behind it;
//! - [`process`]: CPU time and resident memory from `/proc`.

pub mod metrics;
pub mod probes;
pub mod process;
pub mod query;
pub mod server;
pub mod stats;
