//! `mmt-engine-bench --quick` runs and reports every figure, sane, for every
//! engine (never a speed threshold: the figures are for BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

#[test]
fn quick_run_reports_every_figure_for_every_engine() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_mmt-engine-bench"))
        .args(["--quick", "--json", "--root"])
        .arg(root.path())
        .output()
        .expect("run the bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let engines: Vec<&str> = figures
        .iter()
        .map(|f| f["engine"].as_str().expect("engine"))
        .collect();
    assert_eq!(engines, ["sled", "redb", "fjall", "fjall-raw"]);
    for f in &figures {
        let (load, open) = (&f["load"], &f["open"]);
        let num = |v: &Value, name: &str| -> f64 {
            let n = v[name].as_f64().unwrap_or_else(|| panic!("{name} missing"));
            assert!(n.is_finite() && n > 0.0, "{name} = {n}");
            n
        };
        assert_eq!(num(load, "tokens"), 20_000.0);
        let logical = num(load, "logical_per_token");
        assert!((800.0..860.0).contains(&logical), "logical {logical}");
        for name in [
            "disk_per_token_load",
            "alloc_per_token_load",
            "disk_per_token_rotated",
            "disk_per_token_revoked",
        ] {
            let per_token = num(load, name);
            assert!(
                (100.0..100_000.0).contains(&per_token),
                "{name} = {per_token}"
            );
        }
        let per_token = num(open, "disk_per_token_reopened");
        assert!(
            (100.0..100_000.0).contains(&per_token),
            "reopened = {per_token}"
        );
        num(load, "load_tokens_per_s");
        num(load, "rotate_tokens_per_s");
        num(open, "open_ms");
        let (p50, p99) = (num(load, "read_p50_us"), num(load, "read_p99_us"));
        assert!(p50 <= p99, "p50 {p50} > p99 {p99}");
        let (rss, peak) = (num(load, "rss_after_load"), num(load, "rss_peak"));
        assert!(rss <= peak && peak < 8e9, "rss {rss} peak {peak}");
        num(open, "rss_after_open");
    }
    assert!(
        std::fs::read_dir(root.path()).expect("root").count() == 0,
        "the engines' directories were not removed"
    );
}
