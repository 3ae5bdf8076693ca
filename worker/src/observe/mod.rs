//! What the operators see: the figures of `worker.stats` (built from the
//! [`crate::counters`] the edges keep and from the store), the console's
//! request server and token search, and this process's CPU and memory.
//!
//! - [`stats`]: `worker.stats`, once a second;
//! - [`server`]: the console's requests (search, detail, health);
//! - [`query`]: the token search behind it;
//! - [`process`]: CPU time and resident memory from `/proc`.

pub mod process;
pub mod query;
pub mod server;
pub mod stats;
