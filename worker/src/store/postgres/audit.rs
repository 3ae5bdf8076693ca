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

/// A transaction's audit rows, column by column, as one `unnest` takes
/// them.
#[derive(Default)]
pub(super) struct AuditLines {
    pub(super) chains: Vec<String>,
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
        for event in events {
            let seq = chain.head.seq;
            let (line, next) = chain.head.append(&chains.key, rfc3339(now_millis()), event);
            chain.head = next;
            lines.chains.push(chain.id.clone());
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

#[cfg(test)]
mod tests {
    use mmt_shared::wire::Scope;

    use crate::rules::audit::{Event, Verifier};
    use crate::store::crypto::KeyRing;
    use crate::store::testing::{meta, secrets};
    use crate::store::{Decision, PgConfig, Store};

    /// Every line of the store's table, chain by chain, each chain checked
    /// from its first line; the outcomes in the order written.
    fn outcomes(store: &Store) -> Vec<Vec<String>> {
        let rows = store.audit_page(None, 1_000).expect("reads the log");
        let mut chains: Vec<(String, Verifier<'_>, Vec<String>)> = Vec::new();
        for (chain, _, line) in &rows {
            if chains.last().is_none_or(|(id, _, _)| id != chain) {
                chains.push((chain.clone(), Verifier::new(store.audit_key()), Vec::new()));
            }
            let (_, verifier, outcomes) = chains.last_mut().expect("pushed above");
            let line = verifier.next(line.as_bytes()).expect("the chain verifies");
            outcomes.push(line.event.outcome);
        }
        chains.into_iter().map(|(_, _, o)| o).collect()
    }

    fn connect(group: &mut crate::store::Group<'_>, token: &str, user: &str) {
        group
            .write(|tx| {
                tx.put_token(token, &meta("acme", user, Scope::Read), None, &secrets())?;
                let event = Event {
                    kind: "integration.connected".into(),
                    outcome: token.into(),
                    ..Event::default()
                };
                tx.audit(event, Some(token))?;
                Ok(Decision::Commit(()))
            })
            .expect("the decision commits");
    }

    /// A group writes its decisions' lines with its commit, in order on one
    /// chain; a group whose transaction is lost and runs again writes each
    /// line once, from the run that committed, and every chain verifies.
    #[test]
    fn a_groups_lines_commit_with_it_in_order_and_a_lost_run_leaves_none() {
        let Some(db) = mmt_pg_fixture::TestDatabase::create("audit-group") else {
            return;
        };
        let config = PgConfig::new(db.url.clone());
        let store =
            Store::connect(&config, KeyRing::generate().expect("random key")).expect("connects");
        store.group(|group| {
            for (token, user) in [("tok_a", "u1"), ("tok_b", "u2"), ("tok_c", "u3")] {
                connect(group, token, user);
            }
        });
        assert_eq!(outcomes(&store), [["tok_a", "tok_b", "tok_c"]]);

        let mut runs = 0;
        store.group(|group| {
            runs += 1;
            connect(group, "tok_d", "u4");
            // A read that fails on PostgreSQL (no NUL in text): the group's
            // transaction is lost, and the batch runs again alone.
            group
                .write(|tx| {
                    let _set_aside = tx.find("tok\0x");
                    Ok(Decision::Discard(()))
                })
                .expect("the read is set aside");
        });
        assert_eq!(runs, 2, "the lost group ran again");
        // The lost run's chain is not used again (its end was unknown): the
        // line that committed begins a chain of its own.
        let mut chains = outcomes(&store);
        chains.sort();
        assert_eq!(chains, [vec!["tok_a", "tok_b", "tok_c"], vec!["tok_d"]]);
    }
}
