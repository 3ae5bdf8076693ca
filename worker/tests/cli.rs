//! The `mmt-worker` command line, run as a process: help and usage errors.
//! (This file also makes `cargo test --workspace` build the binary that the
//! end-to-end tests in the top-level `tests/` run.)

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
