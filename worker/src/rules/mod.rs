//! The pure rules: functions of their inputs, no I/O, no clock, no broker,
//! no store. The layers above feed them what they read and carry out what
//! they decide; each is tested exhaustively without a broker.
//!
//! - [`audit`]: the audit log's lines and their HMAC chain (CONTRACT.md
//!   §12);
//! - [`lifecycle`]: CONTRACT.md §2, what a message does to a token;
//! - [`decode`]: a body into its message, once, with a reason built from
//!   structure when it does not decode, and the claim the identity gate reads;
//! - [`identity`]: who may act for which client (CONTRACT.md §10);
//! - [`refresh`]: when a token is due, and what a refresh's answer changes
//!   (CONTRACT.md §9).

pub mod audit;
pub mod decode;
pub mod identity;
pub mod lifecycle;
pub mod refresh;
