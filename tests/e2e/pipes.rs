//! The command-line tools into a closed pipe (`mmt-worker publish ... |
//! head`, `mmt-tui --dump | head`): a reader that has gone is a normal end,
//! exit 0, no panic, as ripgrep does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{TestWorker, amqp_url, repo_root, worker_binary};

/// The `mmt-tui` binary that `cargo test --workspace` builds beside this test.
fn tui_binary() -> PathBuf {
    let binary = worker_binary().with_file_name("mmt-tui");
    assert!(
        binary.exists(),
        "{} is missing: run the suite with `cargo test --workspace`",
        binary.display()
    );
    binary
}

/// Runs `command` with its stdout on a pipe whose reading end is already
/// closed.
fn into_a_closed_pipe(mut command: Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    command.stdout(writer).output().expect("the binary runs")
}

fn assert_normal_end(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

fn fixture(name: &str) -> PathBuf {
    let path = repo_root().join("fixtures").join("scenarios").join(name);
    assert!(Path::new(&path).exists(), "{}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_into_a_closed_pipe_ends_with_exit_0() {
    let w = TestWorker::start("pipe-publish").await;
    let mut command = Command::new(worker_binary());
    command
        .args(["publish", "--namespace", w.ns.as_str()])
        .arg(fixture("coinbase-lifecycle.json"))
        .env("MMT_AMQP_URL", amqp_url());
    let output = tokio::task::spawn_blocking(move || into_a_closed_pipe(command))
        .await
        .expect("joined");
    assert_normal_end(&output);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_into_a_closed_pipe_ends_with_exit_0() {
    let w = TestWorker::start("pipe-dump").await;
    for json in [false, true] {
        let mut command = Command::new(tui_binary());
        command
            .args([
                "--dump",
                "--timeout-secs",
                "10",
                "--namespace",
                w.ns.as_str(),
            ])
            .args(json.then_some("--json"))
            .env("MMT_AMQP_URL", amqp_url());
        let output = tokio::task::spawn_blocking(move || into_a_closed_pipe(command))
            .await
            .expect("joined");
        assert_normal_end(&output);
    }
    w.finish().await;
}
