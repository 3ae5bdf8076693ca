//! `mmt-engine-bench`: loads the store v2 workload into sled, redb and fjall,
//! each in a child process of its own, and reports size, speed and memory
//! per engine (issue 11: is sled what stops the footprint targets?).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Serialize;

mod engines;
mod measure;
mod report;
mod run;
mod workload;

use engines::Kind;

/// Loads the store v2 workload into each engine and reports the figures.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Tokens to load.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: u64,
    /// 20,000 tokens (what the test runs).
    #[arg(long)]
    quick: bool,
    /// Cache bound for redb and fjall, MiB (sled keeps the worker's config).
    #[arg(long, default_value_t = 64)]
    cache_mib: u64,
    /// Where the temporary directories go (default: the system's).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Drop the page cache before each reopen (root only: a true cold start).
    #[arg(long)]
    drop_caches: bool,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    json: bool,
    /// Child mode: measure this engine only.
    #[arg(long, value_enum, hide = true, requires = "dir")]
    engine: Option<Kind>,
    /// Child mode: reopen what a load child left.
    #[arg(long, hide = true)]
    reopen: bool,
    /// Child mode: the engine's directory.
    #[arg(long, hide = true)]
    dir: Option<PathBuf>,
}

/// One engine's figures.
#[derive(Serialize)]
struct EngineFigures {
    engine: Kind,
    load: run::LoadFigures,
    open: run::OpenFigures,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tokens = if args.quick { 20_000 } else { args.tokens };
    let cache = args.cache_mib * 1024 * 1024;
    if let (Some(kind), Some(dir)) = (args.engine, &args.dir) {
        let out = if args.reopen {
            serde_json::to_string(&run::reopen(kind, dir, tokens, cache)?)?
        } else {
            serde_json::to_string(&run::load(kind, dir, tokens, cache)?)?
        };
        println!("{out}");
        return Ok(());
    }
    let root = match &args.root {
        Some(root) => tempfile::tempdir_in(root),
        None => tempfile::tempdir(),
    }
    .context("create the temporary directory")?;
    let mut figures = Vec::new();
    for kind in engines::ALL {
        let dir = root.path().join(kind.name());
        let load = serde_json::from_slice(&child(kind, &dir, tokens, &args, false)?)?;
        if args.drop_caches {
            drop_page_cache()?;
        }
        let open = serde_json::from_slice(&child(kind, &dir, tokens, &args, true)?)?;
        std::fs::remove_dir_all(&dir).context("remove the engine's directory")?;
        figures.push(EngineFigures {
            engine: kind,
            load,
            open,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print!("{}", report::table(&figures));
    }
    Ok(())
}

/// Runs this binary again as a child measuring `kind`; returns its stdout.
fn child(
    kind: Kind,
    dir: &Path,
    tokens: u64,
    args: &Args,
    reopen: bool,
) -> anyhow::Result<Vec<u8>> {
    let exe = std::env::current_exe().context("find this binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--engine")
        .arg(kind.name())
        .arg("--dir")
        .arg(dir)
        .arg("--tokens")
        .arg(tokens.to_string())
        .arg("--cache-mib")
        .arg(args.cache_mib.to_string());
    if reopen {
        cmd.arg("--reopen");
    }
    let out = cmd.output().context("run the child")?;
    if !out.status.success() {
        bail!(
            "the {kind:?} child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Writes dirty pages back, then drops the page cache (needs root).
fn drop_page_cache() -> anyhow::Result<()> {
    let status = Command::new("sync").status().context("run sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop the page cache (root only)")
}
