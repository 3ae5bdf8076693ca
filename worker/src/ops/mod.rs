//! Operator commands besides `run`: they use the layers below but no running
//! worker.
//!
//! - [`broker_setup`]: `mmt-worker broker-setup`, least-privilege users;
//! - [`fixtures`]: fixture files and `mmt-worker publish`, their replay.

pub mod broker_setup;
pub mod fixtures;
