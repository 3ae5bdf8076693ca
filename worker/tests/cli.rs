//! The `mmt-worker` command line, run as a process: help and usage errors.
//! (This file also makes `cargo test --workspace` build the binary that the
//! end-to-end tests in the top-level `tests/` run.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn help_lists_the_subcommands_and_the_contract_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_mmt-worker"))
        .args(["run", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for option in [
        "--amqp-url",
        "MMT_AMQP_URL",
        "--namespace",
        "MMT_NAMESPACE",
        "--data-dir",
        "MMT_DATA_DIR",
        "--key-file",
        "MMT_KEY_FILE",
        "--queue-type",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn a_bad_namespace_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_mmt-worker"))
        .args(["run", "--namespace", "no spaces please"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("namespace"));
}

/// Runs `mmt-worker run` against a port where no broker answers, with a new
/// key: it logs one warning ("created a new master key") and exits 5.
fn run_without_broker(extra: &[&str]) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_mmt-worker"))
        .args(extra)
        .args(["run", "--amqp-url", "amqp://127.0.0.1:1/%2f", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(dir.path().join("mmt.key"))
        .env_remove("MMT_LOG")
        .env_remove("MMT_LOG_FORMAT")
        .output()
        .expect("runs");
    (
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code(),
    )
}

#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let (stderr, code) = run_without_broker(&[]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("created a new master key"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in: {stderr:?}");
}

#[test]
fn log_format_json_writes_one_json_object_per_log_line() {
    let (stderr, code) = run_without_broker(&["--log-format", "json"]);
    assert_eq!(code, Some(5), "{stderr}");
    let mut lines = stderr.lines().collect::<Vec<_>>();
    let last = lines.pop().expect("the error line");
    assert!(
        last.starts_with("mmt-worker: cannot connect to the broker at amqp://127.0.0.1:1/"),
        "{last}"
    );
    assert_eq!(last.matches("Connection refused").count(), 1, "{last}");
    assert!(!lines.is_empty(), "{stderr}");
    for line in lines {
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert_eq!(record["level"], "WARN", "{line}");
        assert_eq!(
            record["fields"]["message"],
            "created a new master key: back it up, the data is unreadable without it",
            "{line}"
        );
    }
}

#[test]
fn a_refused_integrations_file_exits_2_naming_file_line_and_key_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("integrations.toml");
    std::fs::write(
        &file,
        "[integrations.x]\ntoken_url = \"http://evil.example/t?secret=hunter2\"\nclient_id = \"c\"\nclient_secret_env = \"PATH\"\n",
    )
    .expect("writes");
    let output = Command::new(env!("CARGO_BIN_EXE_mmt-worker"))
        .args(["run", "--amqp-url", "amqp://127.0.0.1:1/%2f", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(dir.path().join("mmt.key"))
        .arg("--integrations")
        .arg(&file)
        .env_remove("MMT_LOG")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("integrations.toml:2: key `integrations.x.token_url`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("evil"),
        "{stderr}"
    );
    assert!(!dir.path().join("mmt.key").exists() && !dir.path().join("data").exists());
}

#[test]
fn the_bench_is_a_binary_of_its_own() {
    let output = Command::new(env!("CARGO_BIN_EXE_mmt-worker"))
        .arg("bench")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
}
