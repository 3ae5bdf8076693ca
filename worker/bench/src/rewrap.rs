//! Key rotation (CONTRACT.md §11): every data key of a store loaded with
//! `rewrap_tokens` tokens wrapped again under a new master key, in process
//! and by the worker child while it serves.
//!
//! Per run, over the same store (embedded, or with `--store-url` a
//! PostgreSQL database of its own), each step with a key of its own
//! appended to the key file (`keyfile::rotate`; the ids grow run after run):
//! - in process ([`in_process`]): the store opened with the ring it had,
//!   made to adopt the new one (`<prefix>_adopt_ms`), then every data key
//!   rewrapped as fast as the store goes: pages of [`PAGE`], each flushed,
//!   as the worker's pass does but without its rate bound
//!   (`<prefix>_per_s`); then `count_wrapped` must show every data key under
//!   the new key;
//! - on the worker child ([`on_worker`]) at `--rewrap-per-sec`: on an idle
//!   worker, the time from SIGHUP until `worker.stats` shows the pass over
//!   and every data key under the new key (`<prefix>_pass_s`, an upper
//!   bound: stats come once a second) and the child's CPU seconds over it
//!   (`<prefix>_cpu_s`); closed-loop resolve of every token at the headline
//!   concurrency without a pass (`<prefix>_resolve_idle_*`) and over a
//!   second pass (`<prefix>_resolve_during_*`, with the longest request;
//!   the SIGHUP at the end of the warm-up, the window as long as the rate
//!   bound makes the pass at least, so the whole window is inside it; that
//!   pass's own time `<prefix>_pass_during_s`); the resolves that failed in
//!   either window, warm-ups included (`<prefix>_resolve_failed`: must be
//!   0).
//!
//! The prefix is `rewrap` on the embedded store and `pg_rewrap` on
//! PostgreSQL.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::Connection;
use mmt_shared::config::Namespace;
use mmt_shared::console::KeysStats;
use mmt_worker::store::Store;
use mmt_worker::store::crypto::{KeyId, KeyRing, keyfile};
use mmt_worker::store::postgres::PgConfig;

use super::child::WorkerChild;
use super::report::{HEADLINE_CONCURRENCY, RunFigures};
use super::resolve::closed_loop_counting;
use super::stats::StatsTap;
use super::tokens::Preloaded;
use super::{BenchConfig, BenchError, PATIENCE};

/// Tokens per rewrap page, as the worker's pass takes them
/// (worker/src/app/keys.rs).
pub const PAGE: usize = 200;

/// Upstream jobs one rewrap looks at, as the worker's pass does.
const JOBS: usize = 10_000;

/// Measures one run over `store`, recording `<prefix>_*`.
pub async fn measure(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    (store, prefix): (&Preloaded, &str),
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    in_process(store, prefix, figures).await?;
    on_worker(config, connection, ns, store, prefix, figures).await?;
    let figure = |name: &str| figures.get(&format!("{prefix}_{name}")).unwrap_or(f64::NAN);
    eprintln!(
        "bench: run {}/{} {prefix} at {} tokens: {:.0} data keys/s in process; worker at {}/s: pass {:.1} s, CPU {:.2} s; resolve p99 {:.2} ms idle, {:.2} ms during a pass (max {:.0} ms); failed resolves {}",
        run + 1,
        config.runs,
        store.tokens,
        figure("per_s"),
        config.rewrap_per_sec,
        figure("pass_s"),
        figure("cpu_s"),
        figure("resolve_idle_p99_ms"),
        figure("resolve_during_p99_ms"),
        figure("resolve_during_max_ms"),
        figure("resolve_failed"),
    );
    Ok(())
}

/// Rotates the key file; the new (active) key's id.
async fn rotate(key_file: &std::path::Path) -> Result<KeyId, BenchError> {
    let key_file = key_file.to_owned();
    Ok(tokio::task::spawn_blocking(move || keyfile::rotate(&key_file)).await??)
}

/// The store opened with the key file's ring, a new key appended to the
/// file, and the store made to adopt it: the store, the new key's id, and
/// how long the adoption took.
fn open_and_adopt(
    data_dir: PathBuf,
    key_file: PathBuf,
    url: Option<String>,
) -> Result<(Store, KeyId, Duration), BenchError> {
    let ring = KeyRing::read(&key_file)?;
    let store = match url {
        None => Store::open(&data_dir, ring)?,
        Some(url) => Store::connect(&PgConfig::new(url), ring)?,
    };
    let active = keyfile::rotate(&key_file)?;
    let ring = Arc::new(KeyRing::read(&key_file)?);
    let adopting = Instant::now();
    store.adopt_ring(ring)?;
    Ok((store, active, adopting.elapsed()))
}

/// Rewraps every data key of `store` under a new key in process, timed.
async fn in_process(
    store: &Preloaded,
    prefix: &str,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    let (data_dir, key_file, url) = (
        store.data_dir.clone(),
        store.key_file.clone(),
        store.store_url.clone(),
    );
    let (opened, active, adopt) =
        tokio::task::spawn_blocking(move || open_and_adopt(data_dir, key_file, url)).await??;
    let opened = Arc::new(opened);
    let outcome = rewrap_all(&opened, active, store.tokens as u64).await;
    // The PostgreSQL engine's runtime may not be dropped on a runtime
    // thread.
    tokio::task::spawn_blocking(move || drop(opened)).await?;
    let (rewrapped, took) = outcome?;
    figures.set(&format!("{prefix}_adopt_ms"), adopt.as_secs_f64() * 1000.0);
    figures.set(
        &format!("{prefix}_per_s"),
        rewrapped as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE),
    );
    Ok(())
}

/// Runs `f` on the store on a blocking thread.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, mmt_worker::store::StoreError> + Send + 'static,
) -> Result<T, BenchError> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
}

/// Every data key under an older key than `active` rewrapped, page by page,
/// each page flushed; checks that all `tokens` data keys were under older
/// keys before and are under `active` after. The data keys rewrapped and
/// the time it took (the counts before and after not included).
async fn rewrap_all(
    store: &Arc<Store>,
    active: KeyId,
    tokens: u64,
) -> Result<(u64, Duration), BenchError> {
    let before = blocking(store, Store::count_wrapped).await?;
    let older: u64 = before
        .iter()
        .filter(|&(&id, _)| id != active)
        .map(|(_, n)| n)
        .sum();
    if older != tokens {
        return Err(mismatch(format!(
            "{older} of {tokens} data keys under older keys than {active} before the rewrap: {before:?}"
        )));
    }
    let started = Instant::now();
    let (mut rewrapped, mut unreadable) = (0, 0);
    let mut after: Option<String> = None;
    loop {
        let from = after.take();
        let page = blocking(store, move |s| s.rewrap_page(from.as_deref(), PAGE)).await?;
        if page.rewrapped > 0 {
            store.flush().await?;
        }
        rewrapped += page.rewrapped;
        unreadable += page.unreadable;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let jobs = blocking(store, |s| s.rewrap_jobs(JOBS)).await?;
    if jobs > 0 {
        store.flush().await?;
    }
    let took = started.elapsed();
    let counts = blocking(store, Store::count_wrapped).await?;
    let all_under_active = counts.iter().all(|(&id, &n)| id == active || n == 0)
        && counts.get(&active) == Some(&tokens);
    if !all_under_active || unreadable > 0 || rewrapped + jobs != older {
        return Err(mismatch(format!(
            "after rewrapping {rewrapped} tokens and {jobs} jobs ({unreadable} unreadable), data keys by key {counts:?}, not all {tokens} under key {active}"
        )));
    }
    Ok((rewrapped + jobs, took))
}

fn mismatch(what: String) -> BenchError {
    BenchError::Failed {
        phase: "rewrap",
        reply: what,
    }
}

/// Whether `keys` shows the pass over and all `tokens` data keys under
/// `active`.
fn settled(keys: &KeysStats, active: KeyId, tokens: u64) -> bool {
    let active = active.to_string();
    keys.active == active
        && !keys.rewrap.running
        && keys.wrapped.get(&active) == Some(&tokens)
        && keys.wrapped.iter().all(|(id, &n)| *id == active || n == 0)
}

/// Waits until the worker's `worker.stats` shows the pass over and all
/// `tokens` data keys under `active`.
async fn until_settled(
    stats: &mut StatsTap,
    worker: &mut WorkerChild,
    patience: Duration,
    (active, tokens): (KeyId, u64),
) -> Result<(), BenchError> {
    let what = format!("every data key under key {active}");
    stats
        .until(worker, patience, &what, |s| {
            s.keys
                .as_ref()
                .filter(|k| settled(k, active, tokens))
                .map(|_| ())
        })
        .await
}

/// The worker child over `store`: a pass on the idle worker, resolve
/// without a pass, and resolve over a second pass.
async fn on_worker(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    store: &Preloaded,
    prefix: &str,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    super::refresh::declare(connection, ns).await?;
    let mut stats = StatsTap::bind(connection, ns, "mmt-bench-rewrap-stats").await?;
    let per_sec = config.rewrap_per_sec.to_string();
    let mut extra: Vec<&OsStr> = vec![OsStr::new("--rewrap-per-sec"), OsStr::new(&per_sec)];
    if let Some(url) = &store.store_url {
        extra.extend([OsStr::new("--store-url"), OsStr::new(url)]);
    }
    let mut worker = WorkerChild::spawn(
        config,
        ns,
        (&store.data_dir, &store.key_file),
        prefix,
        &extra,
        &[],
    )?;
    let tokens = store.tokens as u64;
    // The bounded pass takes at least this long.
    let bound = Duration::from_secs_f64(tokens as f64 / f64::from(config.rewrap_per_sec.max(1)));
    let patience = bound + PATIENCE;
    let key_file = &store.key_file;
    let current = {
        let key_file = key_file.clone();
        tokio::task::spawn_blocking(move || KeyRing::read(&key_file))
            .await??
            .active()
    };
    until_settled(&mut stats, &mut worker, patience, (current, tokens)).await?;

    let active = rotate(key_file).await?;
    let cpu_before = worker.cpu_secs()?;
    let hangup = Instant::now();
    worker.hangup().await?;
    until_settled(&mut stats, &mut worker, patience, (active, tokens)).await?;
    figures.set(&format!("{prefix}_pass_s"), hangup.elapsed().as_secs_f64());
    figures.set(&format!("{prefix}_cpu_s"), worker.cpu_secs()? - cpu_before);

    let idle = closed_loop_counting(
        connection,
        ns,
        store.tokens,
        HEADLINE_CONCURRENCY,
        config.warmup,
        config.resolve_time,
    )
    .await?;
    idle.record(figures, &format!("{prefix}_resolve_idle"));
    figures.set(&format!("{prefix}_resolve_idle_max_ms"), idle.max_ms);

    let active = rotate(key_file).await?;
    let loaded = closed_loop_counting(
        connection,
        ns,
        store.tokens,
        HEADLINE_CONCURRENCY,
        config.warmup,
        bound,
    );
    let passed = async {
        tokio::time::sleep(config.warmup).await;
        let hangup = Instant::now();
        worker.hangup().await?;
        until_settled(&mut stats, &mut worker, patience, (active, tokens)).await?;
        Ok::<_, BenchError>(hangup.elapsed())
    };
    let (during, passed) = tokio::join!(loaded, passed);
    let (during, passed) = (during?, passed?);
    during.record(figures, &format!("{prefix}_resolve_during"));
    figures.set(&format!("{prefix}_resolve_during_max_ms"), during.max_ms);
    figures.set(&format!("{prefix}_pass_during_s"), passed.as_secs_f64());
    figures.set(
        &format!("{prefix}_resolve_failed"),
        (idle.failed + during.failed) as f64,
    );
    stats.close().await?;
    worker.stop().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(active: &str, running: bool, wrapped: &[(&str, u64)]) -> KeysStats {
        let mut keys = KeysStats {
            active: active.to_owned(),
            wrapped: wrapped.iter().map(|&(id, n)| (id.to_owned(), n)).collect(),
            ..KeysStats::default()
        };
        keys.rewrap.running = running;
        keys
    }

    #[test]
    fn settled_needs_the_pass_over_and_every_data_key_under_the_active_key() {
        assert!(settled(&keys("3", false, &[("3", 10)]), 3, 10));
        assert!(settled(&keys("3", false, &[("2", 0), ("3", 10)]), 3, 10));
        assert!(!settled(&keys("3", true, &[("3", 10)]), 3, 10));
        assert!(!settled(&keys("3", false, &[("2", 1), ("3", 9)]), 3, 10));
        assert!(!settled(&keys("2", false, &[("2", 10)]), 3, 10));
        assert!(!settled(&keys("3", false, &[("3", 9)]), 3, 10));
    }
}
