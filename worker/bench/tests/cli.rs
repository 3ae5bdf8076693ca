//! The `mmt-bench` command line, run as a process: help and usage errors.
//! (This file also makes `cargo test --workspace` build the binary that
//! `tests/e2e/bench.rs` runs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn help_lists_the_phases_and_the_broker_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_mmt-bench"))
        .arg("--help")
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for option in [
        "--quick",
        "--phases",
        "--json",
        "--amqp-url",
        "MMT_AMQP_URL",
        "--namespace",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn an_unknown_phase_is_a_usage_error_naming_the_known_ones() {
    let output = Command::new(env!("CARGO_BIN_EXE_mmt-bench"))
        .args(["--phases", "ingest,warp"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("warp"), "{stderr}");
    assert!(
        stderr.contains("refresh"),
        "the known phases are listed: {stderr}"
    );
}
