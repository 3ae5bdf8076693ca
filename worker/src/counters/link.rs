//! The broker link as the worker lives it: sessions rebuilt after a failure
//! (counted), and whether the worker consumes now or why not (readiness).
//! The app sets them; the console, the logs and `/readyz` read them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the broker link, for logs, the console and `/metrics`.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Sessions rebuilt after a link failure.
    pub recoveries: AtomicU64,
    /// Milliseconds the last recovery took, from failure to consuming again.
    pub last_recovery_ms: AtomicU64,
}

impl LinkStats {
    /// Sessions rebuilt so far.
    pub fn recoveries_total(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }
}

/// Whether the worker consumes: `None` while a session serves every queue,
/// else the one-line reason it does not (never a URL: the reasons are
/// written by the app from the kind of failure, not from a library's text).
#[derive(Debug)]
pub struct Readiness(Mutex<Option<String>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Mutex::new(Some("broker: connecting".to_owned())))
    }
}

impl Readiness {
    /// A session serves every queue.
    pub fn consuming(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The worker does not consume, because of `reason`.
    pub fn not_consuming(&self, reason: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
    }

    /// Why the worker does not consume; `None` when it does.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_not_ready_until_told_it_consumes() {
        let readiness = Readiness::default();
        assert_eq!(readiness.reason().as_deref(), Some("broker: connecting"));
        readiness.consuming();
        assert_eq!(readiness.reason(), None);
        readiness.not_consuming("broker: link lost; reconnecting");
        assert_eq!(
            readiness.reason().as_deref(),
            Some("broker: link lost; reconnecting")
        );
    }
}
