//! Key rotation in the store (CONTRACT.md §11), the same for every engine:
//! adopting a key ring ([`Store::adopt_ring`]: at open and on reload),
//! counting data keys by the key that wraps them ([`Store::count_wrapped`]),
//! and rewrapping them under the active key one page at a time
//! ([`Store::rewrap_page`], [`Store::rewrap_jobs`]), each page one decision
//! with its audit line: a crash loses at most the page in hand, and the
//! next pass finds what is left (a rewrapped record no longer matches).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{self, Record};
use super::ring;
use super::{Decision, Engine, Store, StoreError, TOKEN, keycheck};
use crate::rules::audit::Event as AuditEvent;
use crate::store::crypto::{CryptoError, KeyId, KeyRing, wrapped_key_id};

/// What one page of a rewrap did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewrapPage {
    /// Data keys wrapped again under the active key.
    pub rewrapped: u64,
    /// Records that could not be read (left as they are, and logged).
    pub unreadable: u64,
    /// The tokenId to go on after; `None` at the end of the tokens.
    pub next: Option<String>,
}

/// How often at most the key file is read again for a missing key.
const RELOAD_PAUSE: Duration = Duration::from_secs(1);

/// The key file a store reads again when a record names a key its ring
/// lacks.
pub(super) struct KeyFileReload {
    path: PathBuf,
    last: Option<Instant>,
}

impl Store {
    /// Names the key file the ring came from: a record wrapped under a key
    /// the ring lacks (a worker of the same shared store rotated first)
    /// makes the store read it again, at most once a second, and adopt it
    /// when it holds that key.
    pub fn set_key_file(&self, path: PathBuf) {
        *self.key_file.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(KeyFileReload { path, last: None });
    }

    /// Reads the key file again for key `id`; whether the ring now holds it.
    pub(super) fn reload_for(&self, id: KeyId) -> bool {
        let path = {
            let mut reload = self.key_file.lock().unwrap_or_else(|e| e.into_inner());
            let Some(reload) = reload.as_mut() else {
                return false;
            };
            if reload
                .last
                .is_some_and(|last| last.elapsed() < RELOAD_PAUSE)
            {
                return false;
            }
            reload.last = Some(Instant::now());
            reload.path.clone()
        };
        let adopted = KeyRing::read(&path)
            .map_err(StoreError::from)
            .and_then(|ring| {
                if !ring.has(id) {
                    return Ok(false);
                }
                self.adopt_ring(Arc::new(ring)).map(|()| true)
            });
        match adopted {
            Ok(has) => {
                if !has {
                    tracing::warn!(id, "a record needs key {id}, which the key file lacks too");
                }
                has
            }
            Err(error) => {
                tracing::warn!(
                    id,
                    error = &error as &dyn std::error::Error,
                    "a record needs key {id}: reading the key file again failed"
                );
                false
            }
        }
    }

    /// `open` with the ring in use; when the ring lacks the key a record
    /// names, once more after reading the key file again ([`Store::reload_for`]).
    pub(super) fn with_ring<T>(
        &self,
        open: impl Fn(&KeyRing) -> Result<T, CryptoError>,
    ) -> Result<T, StoreError> {
        match open(&self.ring()) {
            Err(CryptoError::MissingKey { id }) if self.reload_for(id) => Ok(open(&self.ring())?),
            opened => Ok(opened?),
        }
    }

    /// The key ring's figures (`worker.stats`).
    pub fn key_counters(&self) -> &crate::counters::keys::KeyCounters {
        &self.key_counters
    }

    /// Adopts `ring`: checks it against the store (a key the store knows
    /// must be the same key), refuses it while a key it lacks still wraps
    /// records ([`StoreError::MissingKey`]), learns its new keys, seals the
    /// store's own keys under its active key, and from then on seals with
    /// it. A ring that is refused leaves the one in use in place.
    pub fn adopt_ring(&self, ring: Arc<KeyRing>) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Embedded(e) => {
                let _writer = e.lock();
                let state =
                    keycheck::read_state(&e.dir)?.ok_or_else(|| StoreError::MissingKeyCheck {
                        path: e.dir.clone(),
                    })?;
                ring::open_macs(&state, &ring, |_| StoreError::WrongKey {
                    path: e.dir.clone(),
                })?;
                let next = ring::settle(&state, &ring, &self.macs, |_| self.count_wrapped())?;
                if let Some(next) = next {
                    keycheck::write_state(&e.dir, &next)?;
                }
            }
            Engine::Postgres(pg) => pg.adopt_ring(&ring, &self.macs)?,
        }
        let active = ring.active();
        let previous = std::mem::replace(
            &mut *self.keys.write().unwrap_or_else(|e| e.into_inner()),
            ring,
        )
        .active();
        self.key_counters.set_active(active);
        if previous != active {
            tracing::info!(active, previous, "key ring adopted: a new active key");
        } else {
            tracing::debug!(active, "key ring adopted");
        }
        Ok(())
    }

    /// What the store knows of the key ring now (a copy or a backup takes
    /// it along: [`Store::open_seeded`]).
    pub fn ring_state(&self) -> Result<ring::RingState, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => {
                keycheck::read_state(&e.dir)?.ok_or_else(|| StoreError::MissingKeyCheck {
                    path: e.dir.clone(),
                })
            }
            Engine::Postgres(pg) => pg.ring_state(),
        }
    }

    /// Live tokens and upstream jobs by the key that wraps their data key
    /// (a scan of the tokens: see docs/security.md for its cost).
    pub fn count_wrapped(&self) -> Result<BTreeMap<KeyId, u64>, StoreError> {
        let counts = self.count_wrapped_now()?;
        self.key_counters.counted(&counts);
        Ok(counts)
    }

    fn count_wrapped_now(&self) -> Result<BTreeMap<KeyId, u64>, StoreError> {
        let e = match &self.engine {
            Engine::Embedded(e) => e,
            Engine::Postgres(pg) => return pg.count_wrapped(),
        };
        let mut counts = BTreeMap::new();
        for entry in e.kv.scan_prefix([TOKEN]) {
            let (_, value) = entry?;
            if let Some(id) = record::wrapped_key_of(&value) {
                *counts.entry(id).or_default() += 1;
            }
        }
        for (_, job) in e.upstream_jobs(usize::MAX)? {
            if let Ok(job) = job {
                *counts.entry(job.wrapped_key_id()?).or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// Wraps again under the active key the data keys of up to `max` live
    /// tokens after `after` that an older key wraps, in one decision with
    /// one audit line.
    pub fn rewrap_page(&self, after: Option<&str>, max: usize) -> Result<RewrapPage, StoreError> {
        let ring = self.ring();
        let active = ring.active();
        self.write(|tx| {
            let (rows, next) = tx.rewrap_candidates(after, max, active)?;
            let mut page = RewrapPage {
                next,
                ..RewrapPage::default()
            };
            for (token_id, bytes) in rows {
                let decoded = record::decode(&self.macs, &token_id, &bytes).and_then(|record| {
                    let Record::Live {
                        meta,
                        wrapped,
                        sealed,
                    } = record
                    else {
                        return Ok(None);
                    };
                    Ok(ring
                        .rewrap(&token_id, &wrapped)?
                        .map(|rewrapped| (meta, rewrapped, sealed)))
                });
                match decoded {
                    Ok(Some((meta, rewrapped, sealed))) => {
                        tx.rewrap(&token_id, &meta, &rewrapped, &sealed)?;
                        page.rewrapped += 1;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "a token record cannot be rewrapped: it does not open; left as it is"
                        );
                        page.unreadable += 1;
                    }
                }
            }
            if page.rewrapped == 0 {
                return Ok(Decision::Discard(page));
            }
            tx.audit(rewrap_line(page.rewrapped, active, "tokens"), None)?;
            Ok(Decision::Commit(page))
        })
    }

    /// Wraps again under the active key the data keys of the upstream
    /// revocation jobs an older key wraps (up to `max` jobs: they are few
    /// and short-lived), in one decision; returns how many.
    pub fn rewrap_jobs(&self, max: usize) -> Result<u64, StoreError> {
        let ring = self.ring();
        let active = ring.active();
        self.write(|tx| {
            let mut n = 0;
            for (token_id, job) in tx.upstream_jobs(max)? {
                let Ok(job) = job else { continue };
                if let Some(job) = job.rewrapped(&ring, &token_id)? {
                    tx.update_upstream_job(&token_id, &job)?;
                    n += 1;
                }
            }
            if n == 0 {
                return Ok(Decision::Discard(0));
            }
            tx.audit(rewrap_line(n, active, "upstream jobs"), None)?;
            Ok(Decision::Commit(n))
        })
    }
}

/// The audit line of a rewrap's page.
fn rewrap_line(n: u64, active: KeyId, what: &str) -> AuditEvent {
    AuditEvent {
        kind: "rewrap".to_owned(),
        outcome: "rewrapped".to_owned(),
        detail: Some(format!("{n} {what} to key {active}")),
        ..AuditEvent::default()
    }
}

impl super::UpstreamJob {
    /// The id of the key that wraps the job's data key.
    pub(super) fn wrapped_key_id(&self) -> Result<KeyId, StoreError> {
        Ok(wrapped_key_id(&self.wrapped)?)
    }
}
