//! Operator commands besides `run`: they use the layers below but no running
//! worker.
//!
//! - [`audit`]: `mmt-worker audit verify` and `audit query`;
//! - [`broker_setup`]: `mmt-worker broker-setup`, least-privilege users;
//! - [`fixtures`]: fixture files and `mmt-worker publish`, their replay;
//! - [`store_copy`]: `mmt-worker store copy`, between the embedded store and
//!   PostgreSQL.

pub mod audit;
pub mod broker_setup;
pub mod fixtures;
pub mod store_copy;
