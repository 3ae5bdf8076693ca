//! Key rotation in a running worker (CONTRACT.md §11). On SIGHUP the key
//! file is read again and the store adopts it (a file that does not read,
//! or that lacks a key records still need, is refused and the ring in use
//! stays). The data keys are counted by key at start, after every reload
//! and pass, and every minute; whenever an older key than the active one
//! wraps any, a pass rewraps them under the active key at
//! `--rewrap-per-sec`, a page at a time on a blocking thread, while the
//! worker serves. Each page is flushed before it is counted as done, so a
//! key that `worker.stats` shows at 0 wraps nothing on disk either: its
//! line may be deleted. A pass killed half-way is resumed by the next start:
//! a rewrapped record no longer matches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mmt_shared::backoff::Backoff;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::service::Service;
use crate::store::StoreError;
use crate::store::crypto::KeyRing;

/// The rewrap's rate bound when nothing else is asked for (data keys a
/// second).
pub const DEFAULT_REWRAP_PER_SEC: u32 = 2_000;

/// Records a rewrap page looks at.
const PAGE: usize = 200;

/// Upstream jobs one rewrap looks at (they are few and short-lived).
const JOBS: usize = 10_000;

/// How often the data keys are counted again while nothing happens.
const RECOUNT: Duration = Duration::from_secs(60);

/// A failed count or pass is tried again after 1 s, doubling up to 60 s.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// Listens for SIGHUP (the handler is in place when this returns) and
/// starts the key task, which ends with `shutdown`.
pub(super) fn start(
    service: Arc<Service>,
    key_file: PathBuf,
    per_sec: u32,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let hangups = signal(SignalKind::hangup())?;
    service.store().set_key_file(key_file.clone());
    service.store().key_counters().set_rate(per_sec);
    Ok(tokio::spawn(run(
        service, key_file, per_sec, hangups, shutdown,
    )))
}

/// What woke the task.
enum Wake {
    Stop,
    Hangup,
    Timer,
}

async fn run(
    service: Arc<Service>,
    key_file: PathBuf,
    per_sec: u32,
    mut hangups: Signal,
    shutdown: CancellationToken,
) {
    let mut failures: u32 = 0;
    let mut wake = Wake::Timer;
    loop {
        if matches!(wake, Wake::Hangup) {
            reload(&service, &key_file).await;
        }
        let outcome = match blocking(&service, |s| s.store().count_wrapped()).await {
            Ok(_) if service.store().key_counters().older() == 0 => Ok(None),
            Ok(_) => pass(&service, per_sec, &mut hangups, &shutdown).await,
            Err(error) => Err(error),
        };
        let pause = match outcome {
            Ok(Some(Wake::Stop)) => return,
            Ok(Some(Wake::Hangup)) => {
                wake = Wake::Hangup;
                continue;
            }
            Ok(_) => {
                failures = 0;
                RECOUNT
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    failures,
                    error = &error as &dyn std::error::Error,
                    "counting or rewrapping data keys failed; trying again"
                );
                service
                    .store()
                    .key_counters()
                    .pass_ended(Some(error.to_string()));
                RETRY.delay(failures - 1)
            }
        };
        wake = tokio::select! {
            biased;
            () = shutdown.cancelled() => Wake::Stop,
            received = hangups.recv() => match received {
                Some(()) => Wake::Hangup,
                None => Wake::Timer,
            },
            () = tokio::time::sleep(pause) => Wake::Timer,
        };
        if matches!(wake, Wake::Stop) {
            return;
        }
    }
}

/// Reads the key file and has the store adopt it; a file that is refused
/// leaves the ring in use.
async fn reload(service: &Arc<Service>, key_file: &std::path::Path) {
    let ring = match KeyRing::read(key_file) {
        Ok(ring) => Arc::new(ring),
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "SIGHUP: the key file cannot be used; the key ring in use stays"
            );
            return;
        }
    };
    let active = ring.active();
    match blocking(service, move |s| s.store().adopt_ring(ring)).await {
        Ok(()) => tracing::info!(active, "SIGHUP: key file reloaded"),
        Err(error) => tracing::error!(
            error = &error as &dyn std::error::Error,
            "SIGHUP: the key file is refused; the key ring in use stays"
        ),
    }
}

/// Rewraps every data key an older key wraps, page by page at `per_sec`;
/// stops early (saying why) at shutdown or SIGHUP.
async fn pass(
    service: &Arc<Service>,
    per_sec: u32,
    hangups: &mut Signal,
    shutdown: &CancellationToken,
) -> Result<Option<Wake>, StoreError> {
    let counters = service.store().key_counters();
    counters.pass_started(counters.older());
    let started = tokio::time::Instant::now();
    let mut done: u64 = 0;
    let mut after: Option<String> = None;
    let active = service.store().ring().active();
    tracing::info!(
        active,
        older = counters.older(),
        per_sec,
        "rewrapping data keys under the active key"
    );
    loop {
        let from = after.clone();
        let page = blocking(service, move |s| {
            s.store().rewrap_page(from.as_deref(), PAGE)
        })
        .await?;
        if page.rewrapped > 0 {
            service.store().flush().await?;
            counters.rewrapped(page.rewrapped);
            done += page.rewrapped;
        }
        let due = started + Duration::from_secs_f64(done as f64 / f64::from(per_sec.max(1)));
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                counters.pass_ended(None);
                return Ok(Some(Wake::Stop));
            }
            Some(()) = hangups.recv() => {
                counters.pass_ended(None);
                return Ok(Some(Wake::Hangup));
            }
            () = tokio::time::sleep_until(due) => {}
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let jobs = blocking(service, |s| s.store().rewrap_jobs(JOBS)).await?;
    if jobs > 0 {
        service.store().flush().await?;
        counters.rewrapped(jobs);
        done += jobs;
    }
    counters.pass_ended(None);
    blocking(service, |s| s.store().count_wrapped()).await?;
    tracing::info!(
        active,
        rewrapped = done,
        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        left = counters.older(),
        "rewrap pass done"
    );
    Ok(None)
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    service: &Arc<Service>,
    f: impl FnOnce(&Service) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let service = service.clone();
    tokio::task::spawn_blocking(move || f(&service))
        .await
        .map_err(|join| StoreError::Io(fjall::Error::Io(std::io::Error::other(join))))?
}
