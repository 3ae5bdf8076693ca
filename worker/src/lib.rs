//! The mmt managed-token worker as a library: the binary `mmt-worker` is glue
//! over it, and the end-to-end tests and `mmt-bench` run it in process.
//!
//! One folder per layer; a module imports only from layers below its own
//! (docs/architecture.md draws the same picture):
//!
//! | layer | what it holds | may use |
//! |---|---|---|
//! | [`ops`] | operator commands: `broker-setup`, fixture replay, `store copy`, `backup`, `restore`, `store release` | `app` (a backup asks the running worker), `amqp`, `store`, `config`, `rules` |
//! | [`app`] | a running worker, assembled: start, signals, stop, its backup socket | everything below |
//! | [`observe`] | `worker.stats`, `/metrics` and the probes, the console's request server, token search, process figures | `refresh` and below |
//! | [`refresh`] | the refresh engine, its OAuth client, upstream revocation | `amqp` and below |
//! | [`amqp`] | the AMQP edges: topology, consumers, replies, the events publisher | `service` and below |
//! | [`service`] | what each message does: parse, gate, rules, one store change | `store`, `config`, `rules`, `counters` |
//! | [`store`] | the store and its engine, crypto beside it | `rules` |
//! | [`config`] | the clients and integrations files, the clients file's reload | `rules` |
//! | [`counters`] | what the edges count, read by the observers | nothing of ours |
//! | [`rules`] | pure rules: lifecycle, decoding, the identity gate, refresh timing | nothing of ours; no I/O |
//!
//! [`cli`] is the command line of the binary, above them all.
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod amqp;
pub mod app;
pub mod cli;
pub mod config;
pub mod counters;
pub mod observe;
pub mod ops;
pub mod refresh;
pub mod rules;
pub mod service;
pub mod store;

pub use app::{FleetConfig, Worker, WorkerConfig, WorkerError};
