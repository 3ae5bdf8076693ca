//! The store's rules, written once and run on every engine (the way
//! object_store's backends share one suite): each function takes an open,
//! empty store; [`engine_suite`] runs them all on the embedded engine and
//! on PostgreSQL.

use mmt_shared::wire::{MessageKind, Scope, TokenState};

use super::testing::{meta, secrets};
use super::*;
use crate::rules::audit::{Event as AuditEvent, Verifier};

pub(super) fn put_find_revoke_round_trip_with_counts_and_expiry_index(store: &Store) {
    let m = meta("acme", "u1", Scope::Read);
    store
        .write(|change| {
            change.put_token("tok_1", &m, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let Found::Live {
        meta: got,
        sealed,
        wrapped,
    } = store.find("tok_1").expect("reads")
    else {
        panic!("expected a live token");
    };
    assert_eq!(got, m);
    let opened = store
        .open_secrets("tok_1", &got, &sealed, &wrapped)
        .expect("opens");
    assert_eq!(opened.access_token.expose(), "raw-access");
    assert_eq!(
        store.due_expiries(60_999, 10).expect("scans"),
        Vec::<String>::new()
    );
    assert_eq!(
        store.due_expiries(61_000, 10).expect("scans"),
        vec!["tok_1".to_owned()]
    );
    assert_eq!(store.tokens_of_user("acme", "u1").expect("scans").len(), 1);

    store
        .write(|change| {
            change.revoke("tok_1", &m, 2_000)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert!(matches!(
        store.find("tok_1").expect("reads"),
        Found::Revoked(_)
    ));
    assert!(store.due_expiries(i64::MAX, 10).expect("scans").is_empty());
    assert!(
        store
            .tokens_of_user("acme", "u1")
            .expect("scans")
            .is_empty()
    );
    let counts = store.counts().expect("counts");
    assert_eq!(
        counts,
        vec![
            (
                CountKey {
                    state: TokenState::Active,
                    scope: Scope::Read,
                    broker_type: "coinbase".into()
                },
                0
            ),
            (
                CountKey {
                    state: TokenState::Revoked,
                    scope: Scope::Read,
                    broker_type: "coinbase".into()
                },
                1
            ),
        ]
    );
}

pub(super) fn list_tokens_merges_live_and_revoked_in_token_id_order_page_by_page(store: &Store) {
    store
        .write(|change| {
            for (i, user) in ["u1", "u2", "u3", "u4", "u5"].iter().enumerate() {
                change.put_token(
                    &format!("tok_{i}"),
                    &meta("acme", user, Scope::Read),
                    None,
                    &secrets(),
                )?;
            }
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    store
        .write(|change| {
            change.revoke("tok_2", &meta("acme", "u3", Scope::Read), 2_000)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let all = |_: &str, _: &Listed| true;
    let first = store.list_tokens(None, 3, 100, &all).expect("lists");
    let ids: Vec<_> = first.tokens.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["tok_0", "tok_1", "tok_2"]);
    assert!(matches!(first.tokens[2].1, Listed::Revoked(_)));
    assert_eq!(first.next_after.as_deref(), Some("tok_2"));
    let second = store
        .list_tokens(first.next_after.as_deref(), 3, 100, &all)
        .expect("lists");
    let ids: Vec<_> = second.tokens.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["tok_3", "tok_4"]);
    assert_eq!(second.next_after, None);
    let revoked_only = |_: &str, l: &Listed| matches!(l, Listed::Revoked(_));
    let bounded = store
        .list_tokens(None, 10, 2, &revoked_only)
        .expect("lists");
    assert!(bounded.tokens.is_empty());
    assert_eq!(
        (bounded.scanned, bounded.next_after.as_deref()),
        (2, Some("tok_1"))
    );
}

pub(super) fn the_due_index_follows_the_record_and_releases_back_to_the_expiry_index(
    store: &Store,
) {
    let mut m = meta("acme", "u1", Scope::Read);
    m.expires_at = Some(9_000);
    store
        .write(|change| {
            change.put_token("tok_1", &m, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert_eq!(
        store.due_expiries(9_000, 10).expect("scans"),
        vec!["tok_1".to_owned()]
    );
    let first = RefreshRecord {
        due_at: 5_000,
        ..RefreshRecord::default()
    };
    store
        .write(|change| {
            change.put_refresh("tok_1", None, &first, Some(9_000))?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert!(store.due_expiries(9_000, 10).expect("scans").is_empty());
    assert_eq!(store.due_refreshes(4_999, 10).expect("scans"), vec![]);
    assert_eq!(
        store.due_refreshes(5_000, 10).expect("scans"),
        vec![(5_000, "tok_1".to_owned())]
    );
    let later = RefreshRecord {
        due_at: 7_000,
        attempts: 1,
        ..first.clone()
    };
    store
        .write(|change| {
            change.put_refresh("tok_1", Some(&first), &later, None)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert_eq!(store.due_refreshes(6_000, 10).expect("scans"), vec![]);
    assert_eq!(
        store.refresh_record("tok_1").expect("reads"),
        Some(later.clone())
    );
    assert_eq!(store.due_count(i64::MAX, 10).expect("counts"), 1);
    assert_eq!(
        store.failing_refreshes(10).expect("scans"),
        vec![("tok_1".to_owned(), later.clone())]
    );
    store
        .write(|change| {
            change.drop_refresh("tok_1", &later, Some(9_000));
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert_eq!(store.refresh_record("tok_1").expect("reads"), None);
    assert_eq!(store.due_count(i64::MAX, 10).expect("counts"), 0);
    assert_eq!(
        store.due_expiries(9_000, 10).expect("scans"),
        vec!["tok_1".to_owned()]
    );
}

pub(super) fn one_live_token_per_identity_and_a_revoked_one_frees_it(store: &Store) {
    let m = meta("acme", "u1", Scope::Read);
    let identity = embedded::identity_of(&m);
    assert_eq!(store.token_of(&identity).expect("reads"), None);
    store
        .write(|change| {
            change.put_token("tok_a", &m, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert_eq!(
        store.token_of(&identity).expect("reads").as_deref(),
        Some("tok_a")
    );
    store
        .write(|change| {
            change.revoke("tok_a", &m, 2_000)?;
            change.put_token("tok_b", &m, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert_eq!(
        store.token_of(&identity).expect("reads").as_deref(),
        Some("tok_b")
    );
    assert!(matches!(
        store.find("tok_a").expect("reads"),
        Found::Revoked(_)
    ));
}

pub(super) fn a_processed_reply_comes_back_byte_for_byte_and_only_for_its_kind(store: &Store) {
    let reply = br#"{"ok":true,"revoked":true}"#;
    store
        .write(|tx| {
            assert_eq!(tx.processed(MessageKind::ConnectionRemoved, "m-1")?, None);
            tx.record_processed(MessageKind::ConnectionRemoved, "m-1", reply)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert_eq!(
        store
            .processed(MessageKind::ConnectionRemoved, "m-1")
            .expect("reads")
            .as_deref(),
        Some(&reply[..])
    );
    assert_eq!(
        store
            .processed(MessageKind::IntegrationConnected, "m-1")
            .expect("reads"),
        None
    );
}

pub(super) fn a_discarded_decision_writes_nothing_and_reads_its_own_store(store: &Store) {
    let m = meta("acme", "u1", Scope::Read);
    let seen = store
        .write(|tx| {
            tx.put_token("tok_1", &m, None, &secrets())?;
            Ok(Decision::Discard(matches!(
                tx.find("tok_1")?,
                Found::Missing
            )))
        })
        .expect("discards");
    assert!(
        seen,
        "a decision's own writes are not visible before its commit"
    );
    assert!(matches!(
        store.find("tok_1").expect("reads"),
        Found::Missing
    ));
    assert!(store.counts().expect("counts").iter().all(|(_, n)| *n == 0));
}

pub(super) fn an_upstream_job_round_trips_sealed_and_ends(store: &Store) {
    let m = meta("acme", "u1", Scope::Read);
    store
        .write(|tx| {
            tx.start_upstream_job("tok_1", &m, &secrets(), 5_000)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let jobs = store.upstream_jobs(10).expect("reads");
    assert_eq!(jobs.len(), 1);
    let (token_id, job) = &jobs[0];
    let job = job.as_ref().expect("decodes");
    assert_eq!(
        (token_id.as_str(), job.due_at, job.attempts),
        ("tok_1", 5_000, 0)
    );
    let opened = store.open_job(token_id, job).expect("opens");
    assert_eq!(
        opened.refresh_token.as_ref().map(Secret::expose),
        Some("raw-refresh")
    );
    let later = job.rescheduled(9_000, 2);
    store
        .write(|tx| {
            tx.update_upstream_job("tok_1", &later)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let again = store.upstream_jobs(10).expect("reads");
    assert_eq!(again[0].1.as_ref().expect("decodes"), &later);
    store
        .write(|tx| {
            tx.end_upstream_job("tok_1");
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert!(store.upstream_jobs(10).expect("reads").is_empty());
}

pub(super) fn the_users_tokens_come_in_identity_order(store: &Store) {
    let mut short = meta("acme", "u1", Scope::Write);
    short.broker_type = "kraken".into();
    let long = meta("acme", "u1", Scope::Read);
    let other_user = meta("acme", "u2", Scope::Read);
    store
        .write(|tx| {
            tx.put_token("tok_long", &long, None, &secrets())?;
            tx.put_token("tok_short", &short, None, &secrets())?;
            tx.put_token("tok_other", &other_user, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let ids: Vec<String> = store
        .tokens_of_user("acme", "u1")
        .expect("reads")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    // Identity keys sort each part by its length first: "kraken" (6)
    // before "coinbase" (8).
    assert_eq!(ids, ["tok_short", "tok_long"]);
}

/// A read of a token racing a writer of the same token (issue 8, defect 3):
/// every read opens, whichever version it sees.
pub(super) fn find_and_open_never_fail_while_the_same_token_is_replaced(store: &Store) {
    use std::sync::atomic::{AtomicBool, Ordering};
    // A PostgreSQL write is a transaction of its own (about 2 ms here).
    let writes = if store.engine_name() == "fjall" {
        5_000
    } else {
        300
    };
    let m = meta("acme", "u1", Scope::Read);
    let put = |raw: &str, previous: Option<&crate::rules::lifecycle::TokenMeta>| {
        store
            .write(|change| {
                let secrets = TokenSecrets {
                    access_token: Secret::new(raw.to_owned()),
                    refresh_token: None,
                };
                change.put_token("tok_1", &m, previous, &secrets)?;
                Ok(Decision::Commit(()))
            })
            .expect("commits");
    };
    put("raw-0", None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Found::Live {
                    meta,
                    sealed,
                    wrapped,
                } = store.find("tok_1").expect("reads")
                else {
                    panic!("the token must stay live");
                };
                let opened = store.open_secrets("tok_1", &meta, &sealed, &wrapped);
                assert!(opened.is_ok(), "read {reads} did not open");
                reads += 1;
            }
            reads
        });
        for i in 1..writes {
            put(&format!("raw-{i}"), Some(&m));
        }
        stop.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("the reader never failed");
        assert!(reads > 0);
    });
}

pub(super) fn a_record_moved_onto_another_token_id_does_not_open(store: &Store) {
    let m = meta("acme", "u1", Scope::Read);
    store
        .write(|change| {
            change.put_token("tok_1", &m, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let Found::Live {
        sealed, wrapped, ..
    } = store.find("tok_1").expect("reads")
    else {
        panic!("expected a live token");
    };
    assert!(store.open_secrets("tok_2", &m, &sealed, &wrapped).is_err());
    let other_client = meta("evil", "u1", Scope::Read);
    assert!(
        store
            .open_secrets("tok_1", &other_client, &sealed, &wrapped)
            .is_err()
    );
}

pub(super) fn a_group_commits_its_decisions_each_seeing_the_ones_before(store: &Store) {
    let m = meta("acme", "u1", Scope::Read);
    let identity = embedded::identity_of(&m);
    let seen = store.group(|group| {
        let first = group.write(|tx| {
            assert_eq!(tx.token_of(&identity)?, None);
            tx.put_token("tok_a", &m, None, &secrets())?;
            tx.record_processed(MessageKind::IntegrationConnected, "m-1", b"first")?;
            Ok(Decision::Commit(()))
        });
        let second = group.write(|tx| {
            let token = tx.token_of(&identity)?;
            let reply = tx.processed(MessageKind::IntegrationConnected, "m-1")?;
            Ok(Decision::Discard((token, reply)))
        });
        (first, second)
    });
    seen.0.expect("the first decision commits");
    assert_eq!(
        seen.1.expect("the second decision reads"),
        (Some("tok_a".to_owned()), Some(b"first".to_vec()))
    );
    assert_eq!(
        store.token_of(&identity).expect("reads").as_deref(),
        Some("tok_a")
    );
    let active: u64 = store
        .counts()
        .expect("counts")
        .iter()
        .filter(|(key, _)| key.state == TokenState::Active)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(active, 1);
}

pub(super) fn a_group_whose_read_failed_loses_none_of_its_other_writes(store: &Store) {
    store.group(|group| {
        // A write with no count to add: nothing else runs before the
        // group's commit.
        group
            .write(|tx| {
                tx.record_processed(MessageKind::ConnectionRemoved, "m-1", b"kept")?;
                Ok(Decision::Commit(()))
            })
            .expect("the first decision commits");
        // A read that fails on PostgreSQL (no NUL in text), set aside by
        // its decision: the group's transaction is lost with it, and the
        // batch runs again, one transaction per decision.
        group
            .write(|tx| {
                let _set_aside = tx.find("tok\0b");
                Ok(Decision::Discard(()))
            })
            .expect("the second decision discards");
    });
    assert_eq!(
        store
            .processed(MessageKind::ConnectionRemoved, "m-1")
            .expect("reads")
            .as_deref(),
        Some(&b"kept"[..]),
        "the first decision's write is kept"
    );
}

pub(super) fn groups_racing_on_the_same_identities_mint_one_token_each(store: &Store) {
    const USERS: usize = 20;
    std::thread::scope(|scope| {
        for worker in 0..4 {
            scope.spawn(move || {
                let decided = store.group(|group| {
                    (0..USERS)
                        .map(|i| {
                            // Each worker takes the identities in another order.
                            let user = format!("u{}", (i * 7 + worker * 5) % USERS);
                            let m = meta("acme", &user, Scope::Read);
                            let identity = embedded::identity_of(&m);
                            group.write(|tx| {
                                if tx.token_of(&identity)?.is_some() {
                                    return Ok(Decision::Discard(()));
                                }
                                let token_id = format!("tok_{user}_{worker}");
                                tx.put_token(&token_id, &m, None, &secrets())?;
                                Ok(Decision::Commit(()))
                            })
                        })
                        .collect::<Result<Vec<()>, StoreError>>()
                });
                decided.expect("every decision of the last run commits");
            });
        }
    });
    for i in 0..USERS {
        let m = meta("acme", &format!("u{i}"), Scope::Read);
        assert!(
            store
                .token_of(&embedded::identity_of(&m))
                .expect("reads")
                .is_some()
        );
    }
    let active: u64 = store
        .counts()
        .expect("counts")
        .iter()
        .filter(|(key, _)| key.state == TokenState::Active)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        active, USERS as u64,
        "one live token per identity, counted once"
    );
}

/// A rotation (CONTRACT.md §11): data keys are counted by key; a ring that
/// lacks a key records need is refused naming it and the count; every
/// token opens before, during and after the rewrap, which takes each data
/// key once (tokens and upstream jobs); then the old key may go, and a ring
/// without the newest key is refused.
pub(super) fn a_rotation_rewraps_every_data_key_once_and_every_token_opens_throughout(
    store: &Store,
) {
    use crate::store::crypto::KeyId;
    use std::collections::BTreeMap;
    let ids: Vec<String> = (0..5).map(|n| format!("tok_{n}")).collect();
    let metas: Vec<TokenMeta> = (0..5)
        .map(|n| meta("acme", &format!("u{n}"), Scope::Read))
        .collect();
    store
        .write(|tx| {
            for (id, m) in ids.iter().zip(&metas) {
                tx.put_token(id, m, None, &secrets())?;
            }
            Ok(Decision::Commit(()))
        })
        .expect("writes");
    store
        .write(|tx| {
            tx.revoke(&ids[4], &metas[4], 2_000)?;
            tx.start_upstream_job(&ids[4], &metas[4], &secrets(), 2_000)?;
            Ok(Decision::Commit(()))
        })
        .expect("revokes with an upstream job");
    let opens_all = |store: &Store| {
        for (id, m) in ids.iter().zip(&metas).take(4) {
            let Found::Live {
                meta,
                sealed,
                wrapped,
                ..
            } = store.find(id).expect("reads")
            else {
                panic!("{id} is live");
            };
            assert_eq!(&meta, m);
            let opened = store
                .open_secrets(id, &meta, &sealed, &wrapped)
                .expect("opens");
            assert_eq!(opened.access_token.expose(), "raw-access");
        }
        let jobs = store.upstream_jobs(10).expect("jobs");
        let (id, job) = jobs.first().expect("one job");
        store
            .open_job(id, job.as_ref().expect("decodes"))
            .expect("the job opens");
    };
    let counts = |pairs: &[(KeyId, u64)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();
    assert_eq!(store.count_wrapped().expect("counts"), counts(&[(0, 5)]));

    let old = store.ring();
    let rotated = Arc::new(old.rotated());
    store
        .adopt_ring(rotated.clone())
        .expect("adopts the rotated ring");
    let m = meta("acme", "u9", Scope::Read);
    store
        .write(|tx| {
            tx.put_token("tok_9", &m, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("writes under the new key");
    assert_eq!(
        store.count_wrapped().expect("counts"),
        counts(&[(0, 5), (1, 1)])
    );
    opens_all(store);
    assert!(matches!(
        store.adopt_ring(Arc::new(rotated.without(0))),
        Err(StoreError::MissingKey { id: 0, records: 5 })
    ));
    assert_eq!(
        store.ring().active(),
        1,
        "a refused ring leaves the one in use"
    );

    let mut rewrapped = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store.rewrap_page(after.as_deref(), 2).expect("a page");
        rewrapped += page.rewrapped;
        opens_all(store);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(rewrapped, 4);
    assert_eq!(store.rewrap_jobs(10).expect("jobs"), 1);
    assert_eq!(
        store.rewrap_page(None, 100).expect("a page").rewrapped,
        0,
        "each once"
    );
    assert_eq!(store.rewrap_jobs(10).expect("jobs"), 0);
    assert_eq!(store.count_wrapped().expect("counts"), counts(&[(1, 6)]));

    store
        .adopt_ring(Arc::new(rotated.without(0)))
        .expect("key 0 wraps nothing: its line may go");
    opens_all(store);
    assert!(matches!(
        store.adopt_ring(old),
        Err(StoreError::MacsKeyMissing { id: 1 })
    ));
}

/// Every audit line on its chain, each chain checked from its first line;
/// the outcomes chain by chain.
fn audit_outcomes(store: &Store) -> Vec<Vec<String>> {
    let mut chains: Vec<(String, Verifier<'_>, Vec<String>)> = Vec::new();
    for (chain, line) in store.audit_lines_for_tests() {
        if chains.last().is_none_or(|(id, _, _)| *id != chain) {
            chains.push((chain.clone(), Verifier::new(store.audit_key()), Vec::new()));
        }
        let (_, verifier, outcomes) = chains.last_mut().expect("pushed above");
        let line = verifier.next(line.as_bytes()).expect("the chain verifies");
        outcomes.push(line.event.outcome);
    }
    chains.into_iter().map(|(_, _, o)| o).collect()
}

/// A decision of a group that connects `token` and writes its audit line.
fn connect_audited(group: &mut Group<'_>, token: &str, user: &str) {
    group
        .write(|tx| {
            tx.put_token(token, &meta("acme", user, Scope::Read), None, &secrets())?;
            let event = AuditEvent {
                kind: "integration.connected".into(),
                outcome: token.into(),
                ..AuditEvent::default()
            };
            tx.audit(event, Some(token))?;
            Ok(Decision::Commit(()))
        })
        .expect("the decision commits");
}

/// A group's audit lines are written with its decisions, in their order
/// on one chain; a group whose shared transaction is lost and runs again
/// writes each line once, from the run that committed; every chain
/// verifies.
pub(super) fn a_groups_audit_lines_commit_with_it_in_order_and_a_lost_run_leaves_none(
    store: &Store,
) {
    store.group(|group| {
        for (token, user) in [("tok_a", "u1"), ("tok_b", "u2"), ("tok_c", "u3")] {
            connect_audited(group, token, user);
        }
    });
    assert_eq!(audit_outcomes(store), [["tok_a", "tok_b", "tok_c"]]);

    let mut runs = 0;
    store.group(|group| {
        runs += 1;
        connect_audited(group, "tok_d", "u4");
        // A read that fails on PostgreSQL (no NUL in text): the group's
        // transaction is lost, and the batch runs again alone.
        group
            .write(|tx| {
                let _set_aside = tx.find("tok\0x");
                Ok(Decision::Discard(()))
            })
            .expect("the read is set aside");
    });
    let mut chains = audit_outcomes(store);
    chains.sort();
    if store.engine_name() == "postgres" {
        assert_eq!(runs, 2, "the lost group ran again");
        // The lost run's chain is not used again (its end was unknown):
        // the line that committed begins a chain of its own.
        assert_eq!(chains, [vec!["tok_a", "tok_b", "tok_c"], vec!["tok_d"]]);
    } else {
        // One log, one chain; the embedded engine reads NUL like any byte.
        assert_eq!(runs, 1);
        assert_eq!(chains, [vec!["tok_a", "tok_b", "tok_c", "tok_d"]]);
    }
}

/// One test per rule above, on the engine `$open` opens (it gives the
/// store and what must live as long as it, or `None` to skip).
macro_rules! engine_suite {
    ($engine:ident, $open:expr) => {
        mod $engine {
            use super::*;

            engine_suite!(@tests $open;
                put_find_revoke_round_trip_with_counts_and_expiry_index,
                list_tokens_merges_live_and_revoked_in_token_id_order_page_by_page,
                the_due_index_follows_the_record_and_releases_back_to_the_expiry_index,
                one_live_token_per_identity_and_a_revoked_one_frees_it,
                a_processed_reply_comes_back_byte_for_byte_and_only_for_its_kind,
                a_discarded_decision_writes_nothing_and_reads_its_own_store,
                an_upstream_job_round_trips_sealed_and_ends,
                the_users_tokens_come_in_identity_order,
                find_and_open_never_fail_while_the_same_token_is_replaced,
                a_record_moved_onto_another_token_id_does_not_open,
                a_group_commits_its_decisions_each_seeing_the_ones_before,
                a_group_whose_read_failed_loses_none_of_its_other_writes,
                groups_racing_on_the_same_identities_mint_one_token_each,
                a_rotation_rewraps_every_data_key_once_and_every_token_opens_throughout,
                a_groups_audit_lines_commit_with_it_in_order_and_a_lost_run_leaves_none
            );
        }
    };
    (@tests $open:expr; $($rule:ident),*) => {
        $(
            #[test]
            fn $rule() {
                let open: fn(&str) -> Option<(Store, Box<dyn std::any::Any>)> = $open;
                if let Some((store, _keep)) = open(stringify!($rule)) {
                    super::super::$rule(&store);
                }
            }
        )*
    };
}

mod engines {
    use super::*;
    use crate::store::crypto::KeyRing;

    engine_suite!(embedded, |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(dir.path(), KeyRing::generate().expect("random key")).expect("opens");
        Some((store, Box::new(dir)))
    });

    engine_suite!(postgres, |label| {
        let db = mmt_pg_fixture::TestDatabase::create(label)?;
        let config = crate::store::postgres::PgConfig::new(db.url.clone());
        let store =
            Store::connect(&config, KeyRing::generate().expect("random key")).expect("connects");
        Some((store, Box::new(db)))
    });
}
