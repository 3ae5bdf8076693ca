//! The audit log (CONTRACT.md §12) through the real broker and the real
//! `mmt-worker audit` commands, on both store engines: a scripted run's
//! changes and refusals are in the log in order, the chain verifies while
//! the worker runs, and an edited, deleted or moved line is found.

use std::path::Path;
use std::process::Output;

use mmt_pg_fixture::TestDatabase;
use serde_json::{Value, json};

use crate::util::{TestWorker, code, connected, token_id, worker_binary};

/// The script: a token issued, rotated (connected again with a new raw token) and revoked, another issued, and
/// a message refused as bad input. Returns the first token's id.
async fn script(w: &mut TestWorker) -> String {
    let first = w
        .connect(connected(
            "acme",
            "u1",
            "read",
            "coinbase",
            "cb-1",
            "raw-AUDIT-1",
        ))
        .await;
    let a = token_id(&first);
    w.connect(connected(
        "acme",
        "u1",
        "read",
        "coinbase",
        "cb-1",
        "raw-AUDIT-2",
    ))
    .await;
    w.connect(connected(
        "acme",
        "u2",
        "read",
        "coinbase",
        "cb-1",
        "raw-AUDIT-3",
    ))
    .await;
    assert_eq!(w.revoke("acme", &a).await["revoked"], true);
    let refused = w
        .request("integration.connected", json!({"clientId": "acme"}))
        .await;
    assert_eq!(code(&refused), "invalid_message");
    a
}

/// The outcomes the script leaves in the log, in order.
const OUTCOMES: [&str; 5] = [
    "token.issued",
    "token.rotated",
    "token.issued",
    "token.revoked",
    "invalid_message",
];

fn audit(args: &[&str], w: &TestWorker) -> Output {
    std::process::Command::new(worker_binary())
        .arg("audit")
        .args(args)
        .arg("--key-file")
        .arg(w.key_file())
        .env_remove("MMT_STORE_URL")
        .output()
        .expect("mmt-worker audit runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("audit.jsonl")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `audit verify` over `lines` written as the only log of a directory,
/// beside the worker's key ring (where the audit key is kept).
fn verify_lines(w: &TestWorker, lines: &[String]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(w.data_dir().join("keyring"), dir.path().join("keyring")).expect("copies");
    std::fs::write(dir.path().join("audit.jsonl"), lines.join("\n") + "\n").expect("writes");
    let out = audit(
        &["verify", "--data-dir", &dir.path().display().to_string()],
        w,
    );
    drop(dir);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_log_holds_every_change_and_refusal_in_order_and_finds_tampering() {
    let mut w = TestWorker::start("audit-embedded").await;
    let a = script(&mut w).await;
    let data = w.data_dir().display().to_string();

    // While the worker runs.
    let verified = audit(&["verify", "--data-dir", &data], &w);
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        stdout(&verified).contains("5 lines in 1 chain"),
        "{}",
        stdout(&verified)
    );

    let lines = lines_of(&w.data_dir().join("audit.jsonl"));
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let outcomes: Vec<&str> = parsed
        .iter()
        .map(|l| l["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, OUTCOMES);
    for (i, line) in parsed.iter().enumerate() {
        assert_eq!(line["seq"], i as u64 + 1);
        assert_eq!(line["clientId"], "acme", "{line}");
    }
    let text = lines.join("\n");
    assert!(!text.contains(&a), "a tokenId in clear");
    assert!(!text.contains("raw-AUDIT"), "a raw token");

    let query = audit(&["query", "--data-dir", &data, "--token-id", &a], &w);
    assert!(query.status.success(), "{query:?}");
    let found: Vec<String> = stdout(&query).lines().map(str::to_owned).collect();
    assert_eq!(
        found,
        vec![lines[0].clone(), lines[1].clone(), lines[3].clone()]
    );

    // Edited, deleted, moved: each found, named by its line.
    let mut edited = lines.clone();
    edited[1] = edited[1].replace("token.rotated", "token.issued");
    let mut deleted = lines.clone();
    deleted.remove(2);
    let mut moved = lines.clone();
    moved.swap(3, 4);
    for (what, tampered, line) in [
        ("edited", edited, 3),
        ("deleted", deleted, 3),
        ("moved", moved, 4),
    ] {
        let out = verify_lines(&w, &tampered);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        assert!(
            stdout(&out).contains(&format!("audit.jsonl line {line}:")),
            "{what}: {}",
            stdout(&out)
        );
    }
    assert!(verify_lines(&w, &lines).status.success());
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_stores_log_is_an_append_only_table_whose_chains_verify() {
    let Some(db) = TestDatabase::create("audit-pg") else {
        return;
    };
    let mut w = TestWorker::start_idle("audit-pg").await;
    w.store_url = Some(db.url.clone());
    w.start_worker().await;
    let a = script(&mut w).await;

    let verify = |w: &TestWorker| audit(&["verify", "--store-url", &db.url], w);
    let verified = verify(&w);
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        stdout(&verified).contains("5 lines in"),
        "{}",
        stdout(&verified)
    );

    let query = audit(&["query", "--store-url", &db.url, "--token-id", &a], &w);
    let outcomes: Vec<String> = stdout(&query)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["outcome"]
                .as_str()
                .expect("outcome")
                .to_owned()
        })
        .collect();
    assert_eq!(outcomes, ["token.issued", "token.rotated", "token.revoked"]);
    assert!(
        !db.query_texts("SELECT string_agg(line, '') FROM audit")[0]
            .clone()
            .unwrap_or_default()
            .contains(&a)
    );

    // Append-only: an update or a delete is refused by the table itself.
    for statement in ["UPDATE audit SET line = 'x'", "DELETE FROM audit"] {
        let refused = std::process::Command::new("psql")
            .args([db.url.as_str(), "-v", "ON_ERROR_STOP=1", "-c", statement])
            .output()
            .expect("psql runs");
        assert!(!refused.status.success(), "{statement} was allowed");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("append-only"),
            "{refused:?}"
        );
    }
    // An owner who switches the guard off and edits, deletes or moves a
    // line is still found; the table is put back between the three.
    db.execute(
        "CREATE TABLE audit_kept AS SELECT * FROM audit;
         ALTER TABLE audit DISABLE TRIGGER USER;",
    );
    let tampering = [
        (
            "edited",
            r#"UPDATE audit SET line = replace(line, '"clientId":"acme"', '"clientId":"evil"')
                   WHERE seq = 1"#,
        ),
        ("deleted", "DELETE FROM audit WHERE seq = 2"),
        (
            "moved",
            "UPDATE audit a SET line = b.line FROM audit_kept b
                 WHERE a.chain = b.chain AND a.seq IN (2, 3) AND b.seq = 5 - a.seq",
        ),
    ];
    for (what, statement) in tampering {
        db.execute(statement);
        let broken = verify(&w);
        assert_eq!(broken.status.code(), Some(1), "{what}: {broken:?}");
        assert!(
            stdout(&broken).contains("does not follow"),
            "{what}: {}",
            stdout(&broken)
        );
        db.execute("DELETE FROM audit; INSERT INTO audit SELECT * FROM audit_kept;");
        assert!(verify(&w).status.success(), "put back after {what}");
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_read_is_on_disk_before_its_answer_and_a_good_read_flushes_nothing() {
    let mut w = TestWorker::start("audit-read-flush").await;
    let id = token_id(
        &w.connect(connected(
            "acme", "u1", "read", "coinbase", "cb-1", "raw-READ",
        ))
        .await,
    );
    let flushes = |w: &TestWorker| w.worker().service().store().flush_times().read().count;
    let before = flushes(&w);
    assert_eq!(w.resolve("acme", &id, "read").await["ok"], true);
    assert_eq!(flushes(&w), before, "a resolve changes nothing");
    let refused = w
        .request("token.resolve", json!({"clientId": "acme"}))
        .await;
    assert_eq!(code(&refused), "invalid_message");
    // Its audit line was synced before the reply was sent.
    assert!(flushes(&w) > before, "no flush before the refusal's answer");
    let log = std::fs::read_to_string(w.data_dir().join("audit.jsonl")).expect("audit log");
    let last: Value = serde_json::from_str(log.lines().last().expect("a line")).expect("json");
    assert_eq!(
        (last["kind"].as_str(), last["outcome"].as_str()),
        (Some("token.resolve"), Some("invalid_message"))
    );
    w.finish().await;
}
