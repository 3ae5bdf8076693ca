//! The refresh engine (CONTRACT.md §9): keeps refreshable tokens valid by
//! themselves, and keeps the v1 expiry of the others.
//!
//! Its pure rules (due times, decisions, outcomes) are
//! [`crate::rules::refresh`].
//!
//! - [`oauth`]: the client of the providers' token and revocation endpoints;
//! - [`pass`]: the store steps, one atomic change each;
//! - [`engine`]: the scheduler and the requests ([`Refresher`]);
//! - [`health`]: what the engine tells the console;
//! - [`upstream`]: upstream revocation jobs (RFC 7009);
//! - [`reload`]: the integrations file reloaded on SIGHUP.

pub mod engine;
pub mod health;
pub mod oauth;
pub mod pass;
pub mod reload;
pub mod upstream;

pub use engine::Refresher;
