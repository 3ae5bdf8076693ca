//! The key ring's figures (CONTRACT.md §11): the active key, the data keys
//! each key wraps as last counted, the background rewrap's progress. The
//! rewrap task writes them; `worker.stats` and `/metrics` read them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use mmt_shared::console::KeysStats;
use mmt_shared::time_fmt::{now_millis, rfc3339};

/// The key ring's figures, shared by the rewrap task and the observers.
#[derive(Debug, Default)]
pub struct KeyCounters {
    inner: Mutex<KeysStats>,
}

impl KeyCounters {
    fn with<T>(&self, f: impl FnOnce(&mut KeysStats) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The figures now.
    pub fn snapshot(&self) -> KeysStats {
        self.with(|k| k.clone())
    }

    /// The active key.
    pub fn set_active(&self, active: u32) {
        self.with(|k| k.active = active.to_string());
    }

    /// The rewrap's rate bound.
    pub fn set_rate(&self, per_sec: u32) {
        self.with(|k| k.rewrap.per_sec = per_sec);
    }

    /// A count of data keys by key id.
    pub fn counted(&self, counts: &BTreeMap<u32, u64>) {
        self.with(|k| {
            k.wrapped = counts.iter().map(|(id, n)| (id.to_string(), *n)).collect();
            k.counted_at = Some(rfc3339(now_millis()));
        });
    }

    /// A pass begins, with `total` data keys under older keys, rewrapping
    /// them under the active key.
    pub fn pass_started(&self, total: u64) {
        self.with(|k| {
            k.rewrap.running = true;
            k.rewrap.done = 0;
            k.rewrap.total = total;
            k.rewrap.to = Some(k.active.clone());
        });
    }

    /// `n` more data keys rewrapped.
    pub fn rewrapped(&self, n: u64) {
        self.with(|k| {
            k.rewrap.done += n;
            k.rewrap.rewrapped_total += n;
        });
    }

    /// The pass ended: `error` when it failed.
    pub fn pass_ended(&self, error: Option<String>) {
        self.with(|k| {
            k.rewrap.running = false;
            k.rewrap.last_error = error;
        });
    }

    /// Data keys under keys older than the active one, as last counted.
    pub fn older(&self) -> u64 {
        self.with(|k| {
            let active: u32 = k.active.parse().unwrap_or(0);
            k.wrapped
                .iter()
                .filter(|(id, _)| id.parse::<u32>().is_ok_and(|id| id < active))
                .map(|(_, n)| n)
                .sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_moves_counts_and_progress_as_stats_show_them() {
        let keys = KeyCounters::default();
        keys.set_active(2);
        keys.set_rate(500);
        keys.counted(&BTreeMap::from([(0, 3), (1, 4), (2, 10)]));
        assert_eq!(keys.older(), 7);
        keys.pass_started(7);
        keys.rewrapped(5);
        let seen = keys.snapshot();
        assert_eq!(
            (
                seen.active.as_str(),
                seen.rewrap.running,
                seen.rewrap.done,
                seen.rewrap.total,
                seen.rewrap.to.as_deref()
            ),
            ("2", true, 5, 7, Some("2"))
        );
        keys.pass_ended(Some("store I/O".to_owned()));
        keys.counted(&BTreeMap::from([(2, 17)]));
        let seen = keys.snapshot();
        assert_eq!(seen.wrapped, BTreeMap::from([("2".to_owned(), 17)]));
        assert_eq!(seen.rewrap.rewrapped_total, 5);
        assert_eq!(seen.rewrap.last_error.as_deref(), Some("store I/O"));
        assert_eq!(keys.older(), 0);
        let json = serde_json::to_value(&seen).expect("json");
        assert_eq!(json["active"], "2");
        assert_eq!(json["wrapped"]["2"], 17);
    }
}
