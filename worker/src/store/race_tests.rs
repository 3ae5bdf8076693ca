//! A read of a token racing a writer of the same token (issue 8, defect 3):
//! every read must open, whichever version it sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mmt_shared::wire::Scope;

use super::testing::meta;
use super::*;

#[test]
fn find_and_open_never_fail_while_the_same_token_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open(dir.path(), MasterKey::generate().expect("random key")).expect("opens"),
    );
    let m = meta("acme", "u1", Scope::Read);
    let put = |store: &Store, raw: &str| {
        store
            .write(|change| {
                let secrets = TokenSecrets {
                    access_token: raw.to_owned(),
                    refresh_token: None,
                };
                change.put_token("tok_1", &m, Some(&m), &secrets)?;
                Ok(Decision::Commit(()))
            })
            .expect("commits");
    };
    put(&store, "raw-0");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
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
        })
    };
    for i in 1..5_000 {
        put(&store, &format!("raw-{i}"));
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader never failed");
    assert!(reads > 0);
}
