//! Operator commands besides `run`: they use the layers below but no running
//! worker (a backup asks the running one through its backup socket).
//!
//! - [`audit`]: `mmt-worker audit verify` and `audit query`;
//! - [`broker_setup`]: `mmt-worker broker-setup`, least-privilege users;
//! - [`fixtures`]: fixture files and `mmt-worker publish`, their replay;
//! - [`store_copy`]: `mmt-worker store copy`, between the embedded store and
//!   PostgreSQL;
//! - [`backup`]: `mmt-worker backup`, a backup file of the embedded store;
//! - [`restore`]: `mmt-worker restore`, a backup file into a data directory;
//! - [`release`]: `mmt-worker store release`, the revocations since a
//!   restored backup, applied before the store may serve again;
//! - [`progress`]: the progress line they share.

pub mod audit;
pub mod backup;
pub mod broker_setup;
pub mod fixtures;
pub mod progress;
pub mod release;
pub mod restore;
pub mod store_copy;
