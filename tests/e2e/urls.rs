//! Issue 8 item 4: the broker password never reaches stderr or a log line,
//! whatever the URL looks like, through every binary.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::util::{repo_root, worker_binary};

const SECRET: &str = "hunter2-SECRET";

/// URLs lapin cannot parse (one it quotes whole in its error) or cannot reach.
fn urls() -> Vec<String> {
    vec![
        format!("amqp:guest:{SECRET}@127.0.0.1:5672/%2f"),
        format!("amqp://guest:{SECRET}@127.0.0.1:notaport/%2f"),
        format!("amqp://guest:{SECRET}@127.0.0.1:5672/%2f?heartbeat=soon"),
        format!("amqp://guest:{SECRET}@127.0.0.1:1/%2f"),
    ]
}

fn tui_binary() -> PathBuf {
    let binary = worker_binary().with_file_name("mmt-tui");
    assert!(
        binary.exists(),
        "{} is missing: run the suite with `cargo test --workspace`",
        binary.display()
    );
    binary
}

async fn stderr_of(binary: &PathBuf, args: &[&str], url: &str) -> (Option<i32>, String) {
    let child = tokio::process::Command::new(binary)
        .args(args)
        .env("MMT_AMQP_URL", url)
        .env("MMT_LOG", "debug")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the binary gives up on a bad broker URL by itself")
        .expect("output");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_password_is_never_printed_by_any_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = dir.path().join("mmt.key");
    let worker = worker_binary();
    let bench_binary = crate::util::bench_binary();
    let tui = tui_binary();
    let run: Vec<&str> = vec![
        "run",
        "--namespace",
        "t-url-redaction",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--key-file",
        key.to_str().expect("utf-8"),
    ];
    let publish = vec!["publish", "fixtures/messages/resolve-unknown.json"];
    let bench = vec!["--quick"];
    let dump = vec!["--dump", "--timeout-secs", "2"];
    for url in urls() {
        for (binary, args) in [
            (&worker, &run),
            (&worker, &publish),
            (&bench_binary, &bench),
            (&tui, &dump),
        ] {
            let (code, text) = stderr_of(binary, args, &url).await;
            assert_ne!(code, Some(0), "{args:?} with {url}: {text}");
            assert!(
                !text.contains(SECRET),
                "{} {args:?} printed the password:\n{text}",
                binary.display()
            );
            assert!(
                text.contains("guest:***@") || text.contains("not a valid AMQP URL"),
                "{args:?} with {url} does not say what is wrong: {text}"
            );
        }
    }
}
