//! The shared store's audit log: an append-only table (`audit`, a trigger
//! refuses updates and deletes) holding one chain per writer slot of each
//! worker. A transaction takes a chain from its worker's pool at its first
//! audited change and gives it back when it ends: moved on when it
//! committed, as it was when it rolled back cleanly, and not at all when
//! its end is unknown (a failed statement or commit: a new chain begins
//! rather than risk a `seq` used twice).
//!
//! Why not one global chain: its head would be one row that every commit of
//! every worker updates, so the workers' commits would queue on its lock.
//! Chains per writer slot never wait for each other, and each verifies on
//! its own.

use std::sync::Mutex;

use mmt_shared::time_fmt::{now_millis, rfc3339};

use super::Txn;
use crate::rules::audit::{AuditKey, Event, Head};

/// One chain: its id and where it is.
pub(super) struct Chain {
    id: String,
    head: Head,
    /// Where it was when the transaction took it.
    start: Head,
}

/// A transaction's audit rows: all on its one chain, their `seq`s and
/// lines column by column, as one `unnest` takes them.
#[derive(Default)]
pub(super) struct AuditLines {
    pub(super) chain: String,
    pub(super) seqs: Vec<i64>,
    pub(super) lines: Vec<String>,
}

/// A worker's chains not in use.
pub(super) struct Chains {
    key: AuditKey,
    idle: Mutex<Vec<Chain>>,
}

impl Chains {
    pub(super) fn new(key: AuditKey) -> Self {
        Self {
            key,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle chain, or a new one.
    fn take(&self) -> Chain {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| {
                let head = Head::genesis(&self.key);
                Chain {
                    id: uuid::Uuid::new_v4().simple().to_string(),
                    start: head.clone(),
                    head,
                }
            })
    }

    /// Gives `chain` back, at `head`.
    fn put(&self, mut chain: Chain, committed: bool) {
        if committed {
            chain.start = chain.head.clone();
        } else {
            chain.head = chain.start.clone();
        }
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(chain);
    }
}

impl Txn<'_> {
    /// Appends `events` to the transaction's chain; their rows are written
    /// at the commit ([`super::apply::add_audit`]).
    pub(super) fn audit_lines(&self, events: Vec<Event>) {
        let chains = &self.engine.chains;
        let mut slot = self.chain.borrow_mut();
        let chain = slot.get_or_insert_with(|| chains.take());
        let mut lines = self.audit.borrow_mut();
        lines.chain.clone_from(&chain.id);
        for event in events {
            let seq = chain.head.seq;
            let (line, next) = chain.head.append(&chains.key, rfc3339(now_millis()), event);
            chain.head = next;
            lines.seqs.push(i64::try_from(seq).unwrap_or(i64::MAX));
            lines
                .lines
                .push(String::from_utf8_lossy(&line).into_owned());
        }
    }

    /// Gives the transaction's chain back as it ended: `committed`, or
    /// rolled back; a transaction whose end is unknown keeps it from reuse.
    pub(super) fn end_chain(&self, committed: bool) {
        let chain = self.chain.borrow_mut().take();
        if let Some(chain) = chain.filter(|_| committed || self.failed().is_none()) {
            self.engine.chains.put(chain, committed);
        }
    }
}
