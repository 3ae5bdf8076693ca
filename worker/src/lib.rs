//! The mmt managed-token worker as a library: the binary `mmt-worker` is glue
//! over it, and the end-to-end tests run it in process.
//!
//! Overview of the modules:
//! - [`lifecycle`]: the pure rules of CONTRACT.md §2;
//! - [`crypto`]: the master key and envelope encryption;
//! - [`store`]: the embedded store (fjall) and its indexes;
//! - [`service`]: what each message does (decode, rules, store);
//! - `decode`: bodies into messages, and reasons for those that do not
//!   decode, built from structure only;
//! - [`identity`], [`clients_file`], [`clients_reload`]: who may act for
//!   which client (CONTRACT.md §10), the clients file and its SIGHUP reload;
//! - [`topology`], [`consumer`], [`rpc`], [`events`]: the AMQP edges;
//! - [`stats`], [`health`], [`console`], [`console_query`]: counters and
//!   health figures, `worker.stats`, the console's requests and token
//!   search;
//! - [`worker`]: a running worker assembled from the above;
//! - [`fixtures`]: fixture files and their replay;
//! - [`bench`]: `mmt-worker bench`, the performance harness;
//! - [`brokersetup`]: `mmt-worker broker-setup`, least-privilege users;
//! - [`integrations`], [`oauth`]: the integrations file and the OAuth client
//!   of the refresh engine;
//! - [`refresh`]: the refresh engine (scheduler, rules, store steps);
//! - [`cli`]: the command line.
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod bench;
pub mod brokersetup;
pub mod cli;
pub mod clients_file;
pub mod clients_reload;
pub mod console;
pub mod console_query;
pub mod consumer;
pub mod crypto;
mod decode;
pub mod events;
pub mod fixtures;
pub mod health;
pub mod identity;
pub mod integrations;
pub mod lifecycle;
pub mod oauth;
pub mod refresh;
pub mod rpc;
pub mod service;
pub mod stats;
pub mod store;
pub mod topology;
pub mod worker;

pub use worker::{Worker, WorkerConfig, WorkerError};
