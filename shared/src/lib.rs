//! The mmt wire contract shared by `mmt-worker` and `mmt-tui`.
//!
//! Overview of the main types:
//! - [`wire`]: the four messages of CONTRACT.md §4, their replies and the
//!   [`wire::ErrorCode`]s;
//! - [`events`]: what the worker publishes on `NS.events`;
//! - [`console`]: the snapshot, token listing and `worker.stats` bodies the
//!   console reads;
//! - [`broker`]: connecting to the broker (URL redacted, TLS);
//! - [`config`]: the broker connection options and the topology names derived
//!   from a namespace;
//! - [`secret::Secret`]: a raw exchange token that zeroizes on drop and never
//!   prints.
//!
//! Nothing here needs the master key or the store.
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod backoff;
pub mod broker;
pub mod config;
pub mod console;
pub mod events;
pub mod secret;
pub mod time_fmt;
pub mod tomlfile;
pub mod wire;
