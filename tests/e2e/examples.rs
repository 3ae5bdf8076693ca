//! The README's publisher examples (`docs/examples`), run for real: against
//! a worker, open or strict (as a broker user the clients file lists, which
//! is what `.ci/up` leaves in `mmt-demo.env`), they print the tokenId and
//! `scope_mismatch`; as a user the file does not list they print the error
//! reply's code and message and exit 1, without a traceback or a stack
//! trace; with no worker they say so within their timeout and leave nothing
//! for a later worker; and the README shows them verbatim, so the two cannot
//! drift.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lapin::types::AMQPValue;

use crate::brokeruser::BrokerUser;
use crate::util::{TestWorker, amqp_url, repo_root};

/// The examples wait this long for an answer.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(5);

/// (file, interpreter, the README's code fence).
const EXAMPLES: [(&str, &str, &str); 2] = [
    ("publish.py", "python3", "```python\n"),
    ("publish.js", "node", "```js\n"),
];

fn example(file: &str) -> PathBuf {
    repo_root().join("docs").join("examples").join(file)
}

/// Runs one example against `w`'s namespace as the broker user of `url`; a
/// run that does not end by itself fails the test.
async fn run_as(
    url: &str,
    w: &TestWorker,
    file: &str,
    interpreter: &str,
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let child = tokio::process::Command::new(interpreter)
        .arg(example(file))
        .env("MMT_AMQP_URL", url)
        .env("MMT_NAMESPACE", w.ns.as_str())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(EXAMPLE_TIMEOUT * 4, child)
        .await
        .unwrap_or_else(|_| panic!("{file} did not end within {:?}", EXAMPLE_TIMEOUT * 4))
        .unwrap_or_else(|error| {
            panic!("{interpreter} {file} cannot run ({error}); `bash .ci/run` installs what the examples need")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named") && !stderr.contains("Cannot find module"),
        "{file} lacks its client library ({stderr}); `bash .ci/run` installs it from docs/examples"
    );
    for trace in ["Traceback", "    at "] {
        assert!(
            !stderr.contains(trace),
            "{file} must fail with one line, not a trace: {stderr}"
        );
    }
    (output, started.elapsed())
}

/// Runs one example as the test broker's default user.
async fn run(w: &TestWorker, file: &str, interpreter: &str) -> (std::process::Output, Duration) {
    run_as(&amqp_url(), w, file, interpreter).await
}

fn assert_token_and_scope_mismatch(file: &str, output: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{file}: {stdout}{stderr}");
    assert!(stdout.contains("tokenId: tok_"), "{file}: {stdout}");
    assert!(
        stdout.contains("write with a read token: scope_mismatch"),
        "{file}: {stdout}"
    );
}

/// A strict worker whose clients file gives `acme` (the examples' client) to
/// `listed` only.
async fn strict_worker(test: &str, listed: &BrokerUser) -> TestWorker {
    let mut w = TestWorker::start_idle(test).await;
    let file = w.dir.path().join("clients.toml");
    std::fs::write(
        &file,
        format!("[clients.acme]\nbroker_users = [{:?}]\n", listed.name),
    )
    .expect("clients file");
    w.clients = Some(file);
    w.start_worker().await;
    w
}

#[test]
fn the_readme_shows_the_publisher_examples_verbatim() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    for (file, _, fence) in EXAMPLES {
        let code = std::fs::read_to_string(example(file)).expect("the example");
        assert!(
            readme.contains(&format!("{fence}{code}```\n")),
            "README.md must show docs/examples/{file} verbatim in a {fence:?} block"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_examples_print_the_token_id_and_scope_mismatch() {
    let w = TestWorker::start("examples").await;
    for (file, interpreter, _) in EXAMPLES {
        let (output, _) = run(&w, file, interpreter).await;
        assert_token_and_scope_mismatch(file, &output);
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_a_listed_broker_user_runs_the_examples_as_in_open_mode() {
    let listed = BrokerUser::create("example");
    let w = strict_worker("examples-strict", &listed).await;
    for (file, interpreter, _) in EXAMPLES {
        let (output, _) = run_as(&listed.url(), &w, file, interpreter).await;
        assert_token_and_scope_mismatch(file, &output);
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_an_unlisted_broker_user_gets_the_code_and_message_and_exit_1() {
    let listed = BrokerUser::create("example");
    let unlisted = BrokerUser::create("stranger");
    let w = strict_worker("examples-unlisted", &listed).await;
    for (file, interpreter, _) in EXAMPLES {
        let (output, _) = run_as(&unlisted.url(), &w, file, interpreter).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{file}: {stdout}{stderr}");
        assert!(!stdout.contains("tokenId"), "{file}: {stdout}");
        // One line: the example, the call, the code, then the worker's
        // message.
        let line = stderr.trim_end();
        let message = line
            .strip_prefix(&format!(
                "{file}: integration.connected refused: forbidden: "
            ))
            .unwrap_or_else(|| panic!("{file}: the code first: {stderr}"));
        assert!(
            message.contains("may not act for the clientId") && !line.contains('\n'),
            "{file}: one line with the code and the message: {stderr}"
        );
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_worker_the_examples_time_out_and_leave_nothing_for_a_later_worker() {
    let mut w = TestWorker::start("examples-down").await;
    w.stop_worker().await;
    for (file, interpreter, _) in EXAMPLES {
        let (output, took) = run(&w, file, interpreter).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr
                .contains("no answer to integration.connected within 5 s: is mmt-worker running?"),
            "{file}: {stderr}"
        );
        assert!(
            took >= EXAMPLE_TIMEOUT && took < EXAMPLE_TIMEOUT * 3,
            "{file} gave up after {took:?}"
        );
        let dead = w.dead_letter().await;
        let headers = dead.properties.headers().clone().unwrap_or_default();
        assert!(
            matches!(
                headers.inner().get("x-first-death-reason"),
                Some(AMQPValue::LongString(reason)) if reason.as_bytes() == b"expired"
            ),
            "{file}'s message must expire in the queue: {headers:?}"
        );
    }
    w.start_worker().await;
    w.issue("acme", "later", "read", "coinbase", "cb-1", "raw-later")
        .await;
    let links = w.link("acme", "user-42").await;
    assert_eq!(
        links["accessTokens"],
        serde_json::json!([]),
        "a later worker applied a message its caller gave up on"
    );
    w.finish().await;
}
