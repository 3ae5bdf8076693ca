//! What the model keeps of the key ring (CONTRACT.md §11): the key that
//! wraps new data keys, the data keys each key wraps as last counted, and
//! the background rewrap's progress, merged over the `worker.stats` of
//! every worker that reports them.
//!
//! How reports are merged. The console tells no worker from another (a
//! report names none) and keeps the last `worker.stats` whole: uptime,
//! queues and `store_bytes` are the newest report's, never a sum. The key
//! ring follows, with two refinements:
//! - The counts describe the store, which every worker of a shared store
//!   counts on its own (at start, after a reload or a pass, every minute):
//!   a sum would count each data key once per worker, and the newest
//!   report's counts may be a minute older than another worker's. The
//!   counts kept are those with the newest `countedAt`, whoever sent them.
//! - The active key is the newest report's. Each worker reports its own
//!   pass (`done` is its share) with its id: the passes of the workers
//!   that reported within [`ALIVE_WITHIN_MS`] and rewrap under the active
//!   key (`to`) are one rotation, shown as one: their `done` added up,
//!   the largest `total` (the first to start counted the most), their
//!   rates added up. A worker that names no id or no `to` (an older one)
//!   is shown as its report says. But two workers naming different active keys
//!   within [`ALIVE_WITHIN_MS`] are remembered: one of them has not
//!   reloaded its key file, keeps wrapping new data keys under its key, and
//!   no key may be deleted until it has. One worker's rotation (key 1 until
//!   its SIGHUP, key 2 after) is no disagreement: a key id counts against
//!   the active one only when it was named again after the active one was
//!   first named, which two workers reporting every second do at once.

use std::collections::BTreeMap;

use mmt_shared::console::{KeysStats, RewrapStats};
use mmt_shared::time_fmt::{UnixMillis, parse_rfc3339};

use super::ALIVE_WITHIN_MS;

/// The rewrap of older data keys under the active key, as the newest
/// report said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrap {
    /// Whether a pass runs now.
    pub running: bool,
    /// Data keys the reporting worker rewrapped in this (or the last) pass.
    pub done: u64,
    /// Data keys older keys wrapped when the pass began.
    pub total: u64,
    /// The rate bound, data keys a second.
    pub per_sec: u32,
    /// Why the last pass (or count) failed; it is tried again.
    pub last_error: Option<String>,
    /// The workers whose passes these are (1 for a worker alone).
    pub workers: usize,
}

impl Rewrap {
    /// One worker's pass, as it reported it.
    fn of_one(r: &RewrapStats) -> Self {
        Self {
            running: r.running,
            done: r.done,
            total: r.total,
            per_sec: r.per_sec,
            last_error: r.last_error.clone(),
            workers: 1,
        }
    }

    /// The rotation to `active` as the workers' `passes` tell it, or `own`
    /// (the newest report's pass) when fewer than two workers report one.
    fn of_rotation<'a>(
        passes: impl Iterator<Item = &'a RewrapStats>,
        active: &str,
        own: &RewrapStats,
    ) -> Self {
        let same: Vec<&RewrapStats> = passes.filter(|r| r.to.as_deref() == Some(active)).collect();
        if same.len() < 2 {
            return Self::of_one(own);
        }
        let running: Vec<&&RewrapStats> = same.iter().filter(|r| r.running).collect();
        Self {
            running: !running.is_empty(),
            done: same.iter().map(|r| r.done).sum(),
            total: same.iter().map(|r| r.total).max().unwrap_or(0),
            per_sec: if running.is_empty() {
                own.per_sec
            } else {
                running
                    .iter()
                    .fold(0u32, |sum, r| sum.saturating_add(r.per_sec))
            },
            last_error: own
                .last_error
                .clone()
                .or_else(|| same.iter().find_map(|r| r.last_error.clone())),
            workers: same.len(),
        }
    }
}

/// The key ring as the console shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRing {
    /// The id of the key that wraps new data keys.
    pub active: String,
    /// Data keys by the id of the key that wraps them, in key order (ids
    /// compared as numbers); empty before the first count.
    pub wrapped: Vec<(String, u64)>,
    /// Whether the data keys were ever counted.
    pub counted: bool,
    /// The rewrap's progress.
    pub rewrap: Rewrap,
    /// When `wrapped` was counted (worker clock).
    counted_at: Option<UnixMillis>,
    /// Each active key id reported lately: (first, last) seen, console
    /// clock, over one unbroken stretch of reports.
    actives: BTreeMap<String, (UnixMillis, UnixMillis)>,
    /// Each worker's pass as it last reported it, and when (console
    /// clock), by worker id (`""` for a worker that names none).
    passes: BTreeMap<String, (UnixMillis, RewrapStats)>,
}

/// Key ids in numeric order (`10` after `2`); ids that are not numbers
/// after them, in text order.
fn key_order(id: &str) -> (u64, &str) {
    (id.parse().unwrap_or(u64::MAX), id)
}

impl KeyRing {
    /// `previous` (what the console held) merged with `report` of the
    /// worker `worker` (its id, if it names one), received at `now`.
    pub(super) fn merged(
        previous: Option<&KeyRing>,
        report: &KeysStats,
        worker: Option<&str>,
        now: UnixMillis,
    ) -> Self {
        let reported_at = report.counted_at.as_deref().and_then(parse_rfc3339);
        let keep_previous =
            previous.filter(|p| p.counted && (reported_at.is_none() || p.counted_at > reported_at));
        let (wrapped, counted, counted_at) = match keep_previous {
            Some(p) => (p.wrapped.clone(), p.counted, p.counted_at),
            None => {
                let mut wrapped: Vec<(String, u64)> = report
                    .wrapped
                    .iter()
                    .map(|(id, n)| (id.clone(), *n))
                    .collect();
                wrapped.sort_by(|a, b| key_order(&a.0).cmp(&key_order(&b.0)));
                (wrapped, report.counted_at.is_some(), reported_at)
            }
        };
        let mut actives = previous.map(|p| p.actives.clone()).unwrap_or_default();
        actives.retain(|_, (_, last)| now.saturating_sub(*last) < ALIVE_WITHIN_MS);
        actives.entry(report.active.clone()).or_insert((now, now)).1 = now;
        let mut passes = previous.map(|p| p.passes.clone()).unwrap_or_default();
        passes.retain(|_, (seen, _)| now.saturating_sub(*seen) < ALIVE_WITHIN_MS);
        passes.insert(
            worker.unwrap_or_default().to_owned(),
            (now, report.rewrap.clone()),
        );
        let rewrap = Rewrap::of_rotation(
            passes.values().map(|(_, r)| r),
            &report.active,
            &report.rewrap,
        );
        Self {
            active: report.active.clone(),
            wrapped,
            counted,
            rewrap,
            counted_at,
            actives,
            passes,
        }
    }

    /// The key ring as one report says, merged with nothing (`--dump`).
    pub fn reported(report: &KeysStats) -> Self {
        Self::merged(None, report, None, 0)
    }

    /// The other active key ids some worker reported while the active one
    /// was reported too: workers that disagree on the active key.
    pub fn other_actives(&self) -> Vec<&str> {
        let Some((since, _)) = self.actives.get(&self.active) else {
            return Vec::new();
        };
        self.actives
            .iter()
            .filter(|(id, (_, last))| **id != self.active && last > since)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Data keys under the active key, as last counted.
    pub fn under_active(&self) -> u64 {
        self.wrapped
            .iter()
            .filter(|(id, _)| *id == self.active)
            .map(|(_, n)| n)
            .sum()
    }

    /// Whether the older keys are done with: every data key was counted
    /// under the active key, no pass runs or failed, and no worker names
    /// another active key. Their lines may then go from the key file.
    pub fn settled(&self) -> bool {
        self.counted
            && !self.rewrap.running
            && self.rewrap.last_error.is_none()
            && self.other_actives().is_empty()
            && self
                .wrapped
                .iter()
                .all(|(id, n)| *id == self.active || *n == 0)
    }
}
