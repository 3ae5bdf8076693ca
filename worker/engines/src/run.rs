//! One engine's measurement, run in a child process of its own: load, read,
//! rotate, revoke (`load`), and, in a second child, a cold open (`reopen`).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};

use crate::engines::{self, Kind, Kv};
use crate::measure::{disk_bytes, quantile, rss};
use crate::workload::{self, Write};

/// Tokens per atomic, durable batch (the worker's consumer batch).
pub const BATCH: u64 = 128;

/// What the load child reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadFigures {
    /// Tokens loaded.
    pub tokens: u64,
    /// Logical bytes (keys + values) per token after the load.
    pub logical_per_token: f64,
    /// Tokens per second of the load.
    pub load_tokens_per_s: f64,
    /// Bytes on disk per token after the load (apparent sizes).
    pub disk_per_token_load: f64,
    /// The same, blocks allocated.
    pub alloc_per_token_load: f64,
    /// Resident bytes right after the load.
    pub rss_after_load: u64,
    /// Peak resident bytes over the whole child.
    pub rss_peak: u64,
    /// Random token-record reads: median, microseconds.
    pub read_p50_us: f64,
    /// Random token-record reads: 99th percentile, microseconds.
    pub read_p99_us: f64,
    /// Tokens per second of the rotation pass.
    pub rotate_tokens_per_s: f64,
    /// Bytes allocated on disk per token after rewriting 20% of the records.
    pub disk_per_token_rotated: f64,
    /// Bytes allocated on disk per token after revoking 10% of the tokens.
    pub disk_per_token_revoked: f64,
}

/// What the reopen child reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct OpenFigures {
    /// Milliseconds from open to the first token record read.
    pub open_ms: f64,
    /// Resident bytes after the open and the read.
    pub rss_after_open: u64,
    /// Bytes allocated on disk per token after the engine closed and reopened.
    pub disk_per_token_reopened: f64,
}

fn per_token(dir: &Path, tokens: u64) -> anyhow::Result<(f64, f64)> {
    let (len, alloc) = disk_bytes(dir).context("measure the directory")?;
    Ok((len as f64 / tokens as f64, alloc as f64 / tokens as f64))
}

/// Applies `writes_of` to every index of `indices`, `BATCH` tokens a batch;
/// returns tokens per second.
fn pass<I, W>(kv: &dyn Kv, indices: I, writes_of: impl Fn(u64) -> W) -> anyhow::Result<f64>
where
    I: Iterator<Item = u64>,
    W: IntoIterator<Item = Write>,
{
    let started = Instant::now();
    let mut batch = Vec::new();
    let (mut in_batch, mut done) = (0, 0u64);
    for index in indices {
        batch.extend(writes_of(index));
        in_batch += 1;
        done += 1;
        if in_batch == BATCH {
            kv.apply(&batch)?;
            batch.clear();
            in_batch = 0;
        }
    }
    if !batch.is_empty() {
        kv.apply(&batch)?;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
}

/// Times `reads` random token-record reads; returns (p50, p99) in µs.
fn reads(kv: &dyn Kv, tokens: u64, reads: u64) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::with_capacity(reads as usize);
    for n in 0..reads {
        let index = workload::mix(n ^ 0xDEAD_BEEF) % tokens;
        let key = workload::token_key(index);
        let started = Instant::now();
        let value = kv.get(&key)?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        ensure!(
            value.is_some_and(|v| v.len() + key.len() == workload::TOKEN_ENTRY),
            "token {index} did not read back"
        );
    }
    samples.sort_by(f64::total_cmp);
    Ok((quantile(&samples, 0.5), quantile(&samples, 0.99)))
}

/// The load child: a fresh `dir`, then every pass.
pub fn load(kind: Kind, dir: &Path, tokens: u64, cache: u64) -> anyhow::Result<LoadFigures> {
    let kv = engines::open(kind, dir, cache)?;
    let load_tokens_per_s = pass(&*kv, 0..tokens, workload::connect)?;
    let (disk_per_token_load, alloc_per_token_load) = per_token(dir, tokens)?;
    let (rss_after_load, _) = rss()?;
    let (read_p50_us, read_p99_us) = reads(&*kv, tokens, tokens.min(20_000))?;
    let rotate_tokens_per_s = pass(&*kv, (0..tokens).filter(|i| i % 5 == 0), |i| {
        [(workload::token_key(i), Some(workload::token_value(i, 1)))]
    })?;
    let (_, disk_per_token_rotated) = per_token(dir, tokens)?;
    pass(&*kv, (0..tokens).filter(|i| i % 10 == 1), workload::revoke)?;
    let (_, disk_per_token_revoked) = per_token(dir, tokens)?;
    let (_, rss_peak) = rss()?;
    let logical: usize = (0..tokens.min(10_000)).map(workload::logical_bytes).sum();
    Ok(LoadFigures {
        tokens,
        logical_per_token: logical as f64 / tokens.min(10_000) as f64,
        load_tokens_per_s,
        disk_per_token_load,
        alloc_per_token_load,
        rss_after_load,
        rss_peak,
        read_p50_us,
        read_p99_us,
        rotate_tokens_per_s,
        disk_per_token_rotated,
        disk_per_token_revoked,
    })
}

/// The reopen child: open what `load` left and read one token record.
pub fn reopen(kind: Kind, dir: &Path, tokens: u64, cache: u64) -> anyhow::Result<OpenFigures> {
    let started = Instant::now();
    let kv = engines::open(kind, dir, cache)?;
    let first = workload::token_key(tokens / 2 + 3);
    ensure!(kv.get(&first)?.is_some(), "no token record after reopen");
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let (rss_after_open, _) = rss()?;
    drop(kv);
    let (_, disk_per_token_reopened) = per_token(dir, tokens)?;
    Ok(OpenFigures {
        open_ms,
        rss_after_open,
        disk_per_token_reopened,
    })
}
