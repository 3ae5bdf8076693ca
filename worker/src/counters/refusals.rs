//! What the worker refused: answers with an error code (a
//! `request.rejected`, or bad input dead-lettered with the code its sender
//! was told) by code, and every dead letter. Counted from the events the
//! worker publishes (see `observe::stats`), read by `worker.stats` and
//! `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mmt_shared::wire::ErrorCode;

/// Refusals by code and dead letters, since start.
#[derive(Debug, Default)]
pub struct Refusals {
    by_code: Mutex<BTreeMap<ErrorCode, u64>>,
    dead_lettered: AtomicU64,
}

impl Refusals {
    /// One answer with `code`.
    pub fn refused(&self, code: ErrorCode) {
        *self
            .by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// One message dead-lettered.
    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals by code, in code order (codes never refused are absent).
    pub fn by_code(&self) -> Vec<(ErrorCode, u64)> {
        self.by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(code, n)| (*code, *n))
            .collect()
    }

    /// Dead letters so far.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}
