//! The AMQP edges: thin, and the only layer besides `app` and `observe`
//! that speaks to the broker.
//!
//! - [`topology`]: exchanges, queues and bindings of a namespace;
//! - [`consumer`]: one receive loop per queue: delivery in, the service's
//!   outcome carried out (reply, dead letter, events), then the ack;
//! - [`rpc`]: replies to `reply_to`, and direct reply-to for callers;
//! - [`events`]: the publisher of `NS.events`.

pub mod consumer;
pub mod events;
pub mod rpc;
pub mod topology;
