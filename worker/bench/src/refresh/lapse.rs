//! Lapses at scale: N tokens with 1-hour expiries, time compressed by a
//! factor F (the hour lasts 3600/F s, the refresh-ahead window 300/F s, as
//! 300 s is to an hour), the expiries spread evenly over one compressed
//! hour starting a little after the load, and a healthy provider.
//!
//! A lapse is a token whose `expiresAt` passed while the store still held
//! that expired access token. The worker replaces it by committing the
//! refreshed one, then flushes, then publishes `token.refreshed`, which the
//! bench receives last: so a `token.refreshed` received at or before the
//! token's `expiresAt` (which the bench wrote, so knows) proves there was no
//! lapse, and every other token (event late, event missing, `token.expired`)
//! is counted as one, whatever happened. The provider gives refreshed tokens
//! two compressed hours, so that each token is refreshed exactly once in the
//! measured hour (the refresh rate in it is N per compressed hour, as with
//! 1-hour tokens in steady state) and its one event decides. After the run
//! the store is read back: a token not active with a later expiry there
//! counts as a lapse too (an event without the write would be a harness
//! defect, not a pass).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lapin::Connection;
use mmt_shared::config::Namespace;
use mmt_shared::time_fmt::{UnixMillis, now_millis};
use mmt_shared::wire::TokenState;

use super::super::report::{RunFigures, percentile};
use super::super::tokens::token_id;
use super::super::{BenchConfig, BenchError};
use super::load::{self, Loaded, Schedule};
use super::watch::{Seen, Watch};
use super::{Fixture, Setup, declare, next_event};
use mmt_worker::store::crypto::KeyRing;
use mmt_worker::store::{Found, Store};

/// The compressed time of a lapse measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compressed {
    /// The compressed hour, in seconds.
    pub hour_secs: u64,
    /// The refresh-ahead window, in seconds (at least 1).
    pub ahead_secs: u64,
}

impl Compressed {
    /// An hour compressed `factor` times; `None` unless it lasts a whole
    /// number of seconds, at least 2.
    pub fn new(factor: u64) -> Option<Self> {
        let hour_secs = 3600u64.checked_div(factor)?;
        if hour_secs < 2 || 3600 % factor != 0 {
            return None;
        }
        let ahead_secs = ((300.0 / factor as f64).round() as u64).clamp(1, hour_secs / 2);
        Some(Self {
            hour_secs,
            ahead_secs,
        })
    }
}

/// What the bench saw of each token.
struct Tally {
    expires_at: Vec<UnixMillis>,
    refreshed_in_time: Vec<bool>,
    seen: Vec<bool>,
    margins_ms: Vec<f64>,
    late: u64,
    extra: u64,
    errors: u64,
}

impl Tally {
    fn observe(&mut self, index: usize, at: UnixMillis) {
        if std::mem::replace(&mut self.seen[index], true) {
            self.extra += 1;
            return;
        }
        let margin = self.expires_at[index] - at;
        self.margins_ms.push(margin as f64);
        if margin >= 0 {
            self.refreshed_in_time[index] = true;
        } else {
            self.late += 1;
        }
    }
}

/// Runs one lapse measurement; `load_rate` (tokens/s of an earlier load)
/// plans how long before the first expiry the load must start.
pub async fn measure(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    root: &Path,
    load_rate: f64,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    let tokens = config.lapse_tokens.max(1);
    let time = Compressed::new(config.compression).ok_or_else(|| BenchError::Failed {
        phase: "refresh",
        reply: format!(
            "compression {} does not leave a compressed hour of whole seconds",
            config.compression
        ),
    })?;
    let hour_ms = time.hour_secs as UnixMillis * 1000;
    let ahead_ms = time.ahead_secs as UnixMillis * 1000;
    // The first due time (expiry - 1.1 x ahead at most) comes after the
    // load (planned at half the earlier rate) and the start (3 s).
    let load_ms = tokens as f64 / load_rate.max(1_000.0) * 2_000.0;
    let lead_ms = ahead_ms * 22 / 10 + load_ms as UnixMillis + 3_000;
    let dir = root.join(format!("refresh-lapse-{}", now_millis()));
    let fixture = Fixture::start(
        &dir,
        Setup {
            concurrency: config.lapse_concurrency,
            ahead_secs: time.ahead_secs,
            expires_in: 2 * time.hour_secs,
            latency: config.provider_latency,
        },
    )
    .await?;
    let schedule = Schedule::Spread {
        base: now_millis() + lead_ms,
        span: hour_ms,
    };
    let store = load::load(&dir, fixture.plan(tokens, schedule)).await?;
    let mut tally = Tally {
        expires_at: (0..tokens)
            .map(|i| schedule.expires_at(i, tokens))
            .collect(),
        refreshed_in_time: vec![false; tokens],
        seen: vec![false; tokens],
        margins_ms: Vec::with_capacity(tokens),
        late: 0,
        extra: 0,
        errors: 0,
    };
    let index: HashMap<String, usize> = (0..tokens).map(|i| (token_id(i as u64), i)).collect();
    declare(connection, ns).await?;
    let mut watch = Watch::bind(connection, ns).await?;
    let mut worker = fixture.worker(config, ns, &store, "refresh-lapse")?;
    let watched = async {
        let ready = loop {
            match next_event(&mut watch, &mut worker, 0, tokens).await? {
                (at, Seen::Stats) => break at,
                (at, Seen::Refreshed(id)) => {
                    if let Some(&i) = index.get(&id) {
                        tally.observe(i, at);
                    }
                    break at;
                }
                _ => tally.errors += 1,
            }
        };
        let first_due = tally.expires_at[0] - ahead_ms * 11 / 10;
        if ready > first_due {
            return Err(BenchError::Failed {
                phase: "refresh",
                reply: format!(
                    "the worker was up {} ms after the first due time: the load of {tokens} tokens was slower than planned",
                    ready - first_due
                ),
            });
        }
        figures.set("refresh_lapse_start_slack_ms", (first_due - ready) as f64);
        let cpu_start = worker.cpu_secs()?;
        let end = tally.expires_at[tokens - 1] + ahead_ms.max(2_000);
        let until = Instant::now() + Duration::from_millis((end - now_millis()).max(0) as u64);
        let mut refreshed = tally.margins_ms.len();
        while refreshed < tokens {
            let Some((at, seen)) = watch.next(until).await? else {
                break;
            };
            match seen {
                Seen::Refreshed(id) => match index.get(&id) {
                    Some(&i) => tally.observe(i, at),
                    None => tally.errors += 1,
                },
                Seen::Expired(_) | Seen::Failed(_) => tally.errors += 1,
                Seen::Stats => {}
            }
            refreshed = tally.margins_ms.len();
        }
        let cpu = worker.cpu_secs()? - cpu_start;
        Ok::<f64, BenchError>(cpu * 1e6 / (refreshed.max(1) as f64))
    }
    .await;
    let stopped = worker.stop().await;
    watch.close().await?;
    let cpu_us = watched?;
    stopped?;
    let unrefreshed = read_back(&store, &tally)?;
    let lapses = (0..tokens)
        .filter(|&i| !tally.refreshed_in_time[i] || unrefreshed[i])
        .count();
    tally.margins_ms.sort_by(f64::total_cmp);
    figures.set("refresh_lapses", lapses as f64);
    figures.set("refresh_lapse_late", tally.late as f64);
    figures.set(
        "refresh_lapse_unrefreshed",
        unrefreshed.iter().filter(|u| **u).count() as f64,
    );
    figures.set("refresh_lapse_extra", tally.extra as f64);
    figures.set(
        "refresh_lapse_min_margin_ms",
        tally.margins_ms.first().copied().unwrap_or(f64::NAN),
    );
    figures.set(
        "refresh_lapse_p50_margin_ms",
        percentile(&tally.margins_ms, 0.5),
    );
    figures.set(
        "refresh_lapse_needed_per_s",
        tokens as f64 / time.hour_secs as f64,
    );
    figures.set("refresh_lapse_cpu_us", cpu_us);
    let peak = fixture
        .provider
        .counters()
        .max_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    figures.set("refresh_lapse_peak_in_flight", peak as f64);
    fixture.count(figures, tally.errors);
    std::fs::remove_dir_all(&dir)
        .map_err(BenchError::io(format!("cannot remove {}", dir.display())))?;
    Ok(())
}

/// Per token, whether the store does not hold it active with an expiry
/// later than the one the bench loaded (it was not refreshed).
fn read_back(store: &Loaded, tally: &Tally) -> Result<Vec<bool>, BenchError> {
    let (key, _) = KeyRing::load_or_create(&store.key_file)?;
    let opened = Store::open(&store.data_dir, key)?;
    tally
        .expires_at
        .iter()
        .enumerate()
        .map(|(i, &loaded)| {
            Ok(match opened.find(&token_id(i as u64))? {
                Found::Live { meta, .. } => {
                    meta.state != TokenState::Active
                        || meta.expires_at.is_none_or(|at| at <= loaded)
                }
                _ => true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_and_the_window_scale_together_in_whole_seconds() {
        let sixty = Compressed::new(60).expect("valid");
        assert_eq!((sixty.hour_secs, sixty.ahead_secs), (60, 5));
        let ten = Compressed::new(10).expect("valid");
        assert_eq!((ten.hour_secs, ten.ahead_secs), (360, 30));
        let quick = Compressed::new(900).expect("valid");
        assert_eq!((quick.hour_secs, quick.ahead_secs), (4, 1));
        assert_eq!(Compressed::new(7), None, "3600 / 7 is not whole");
        assert_eq!(Compressed::new(3600), None, "a 1 s hour");
        assert_eq!(Compressed::new(0), None);
    }

    #[test]
    fn a_late_or_repeated_refresh_is_not_one_in_time() {
        let mut tally = Tally {
            expires_at: vec![1_000, 2_000],
            refreshed_in_time: vec![false; 2],
            seen: vec![false; 2],
            margins_ms: Vec::new(),
            late: 0,
            extra: 0,
            errors: 0,
        };
        tally.observe(0, 1_000);
        tally.observe(1, 2_001);
        tally.observe(1, 1_500);
        assert_eq!(tally.refreshed_in_time, vec![true, false]);
        assert_eq!((tally.late, tally.extra), (1, 1));
        assert_eq!(tally.margins_ms, vec![0.0, -1.0]);
    }
}
