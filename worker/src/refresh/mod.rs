//! The refresh engine (CONTRACT.md §9): keeps refreshable tokens valid by
//! themselves, and keeps the v1 expiry of the others.
//!
//! - [`rules`]: the pure rules (due times, decisions, outcomes);
//! - [`pass`]: the store steps, one atomic change each;
//! - [`engine`]: the scheduler and the requests ([`Refresher`]);
//! - [`health`]: what the engine tells the console;
//! - [`upstream`]: upstream revocation jobs (RFC 7009);
//! - [`reload`]: the integrations file reloaded on SIGHUP.

pub mod engine;
pub mod health;
pub mod pass;
pub mod reload;
pub mod rules;
pub mod upstream;

pub use engine::Refresher;
