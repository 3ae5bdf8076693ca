//! End-to-end tests of mmt through the real RabbitMQ and the real sled store.
//!
//! Each test runs a worker in its own namespace, data directory and key, so
//! tests run in parallel on one broker. The modules read like the contract:
//! `contract` has one test per row of CONTRACT.md §2, `errors` one per error
//! code, `bad_input` one per kind of bad input (§6), `durability` the
//! promises of §7, `topology` §3, `scenarios` replays the fixtures,
//! `examples` runs the README's publisher examples, `deletion` reads the
//! data directory's raw files after a revocation (§13), `up` the README's
//! first command where it can run without its build, `pipes` runs the
//! command-line tools into a closed pipe, `refresh` has one test per row of
//! §9, `metrics` the probes and series of §13, `backup` a backup under
//! load restored into a new worker, `bench` runs the benchmark harness in
//! its quick form, `audit` the audit log of §12, and `keys` the key
//! rotation of §11.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod backup;
mod bad_input;
mod bench;
mod brokeruser;
mod consistency;
mod contract;
mod deletion;
mod durability;
mod errors;
mod examples;
mod faults;
mod identity;
mod keys;
mod metrics;
mod pipes;
mod privileges;
mod proxy;
mod refresh;
mod refresh_console;
mod refresh_faults;
mod scenarios;
mod shared_store;
mod tls;
mod topology;
mod up;
mod urls;
mod util;
