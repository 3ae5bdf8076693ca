//! Reaching the shared store: the URL (its password hidden whenever it is
//! shown), TLS over rustls with the operator's CA or the system's roots, the
//! pool, the schema's migrations and the key check, in that order, before
//! the store serves anything.
//!
//! TLS: with `--store-ca` it is required and the server's certificate must
//! chain to that CA; with `sslmode=require` (or `prefer`) in the URL it is
//! used with the system's roots; with neither the link is plain and the
//! worker warns at start. rustls always checks the certificate and the host
//! name: there is no mode that takes any certificate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use zeroize::Zeroizing;

use super::schema::{MIGRATION_LOCK, MIGRATIONS};
use super::{Postgres, millis};
use crate::store::StoreError;
use crate::store::crypto::{KeyRing, Macs};
use crate::store::ring::{self, RingState};

/// The key check's name in `mmt_meta`.
const KEY_CHECK: &str = "key_check";
/// The `mmt_meta` row of what the store knows of the key ring.
const KEY_RING: &str = "keyring";

/// Where the shared store is and how to reach it.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=...]`.
    pub url: String,
    /// The password, when it is not in the URL (from the environment or a
    /// file).
    pub password: Option<Zeroizing<String>>,
    /// A CA certificate file (PEM) that the server's certificate must chain
    /// to; TLS is then required. Without it, the system's roots, and TLS as
    /// the URL's `sslmode` says (`prefer` by default).
    pub ca: Option<PathBuf>,
    /// Connections per worker.
    pub pool_size: usize,
    /// The longest any statement may run, and any wait for a connection.
    pub statement_timeout: Duration,
}

/// The URL, never its password.
impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact(&self.url))
            .field("ca", &self.ca)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    /// A configuration for `url` with the defaults: 8 connections, 5 s per
    /// statement.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            ca: None,
            pool_size: 8,
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// `url` with its password (if any, in the user part or as a `password`
/// parameter) replaced by `***`; a URL that does not parse is not shown at
/// all. Several hosts (`postgres://u@h1:5432,h2:5432/db`, for failover)
/// are shown as written.
pub fn redact(url: &str) -> String {
    const UNSHOWN: &str = "(a store URL that does not parse)";
    let Some((scheme, rest)) = url
        .split_once("://")
        .filter(|_| url.parse::<tokio_postgres::Config>().is_ok())
    else {
        return UNSHOWN.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Connects, migrates and checks the key; returns the engine and the
/// store's own keys.
pub(super) fn open(
    config: &PgConfig,
    key: &KeyRing,
    seed: Option<&RingState>,
) -> Result<(Postgres, Macs), StoreError> {
    let shown = redact(&config.url);
    if !config.url.starts_with("postgres://") && !config.url.starts_with("postgresql://") {
        return Err(StoreError::BadUrl {
            detail: "it must start with postgres:// (or postgresql://)".to_owned(),
        });
    }
    let mut pg: tokio_postgres::Config = config.url.parse().map_err(|_| StoreError::BadUrl {
        detail: "it does not parse as a PostgreSQL URL".to_owned(),
    })?;
    if let Some(password) = &config.password {
        pg.password(password.as_bytes());
    }
    pg.connect_timeout(config.statement_timeout);
    pg.options(format!(
        "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={idle}",
        ms = millis(config.statement_timeout),
        idle = millis(config.statement_timeout * 4),
    ));
    // Read off the query as written: a URL of several hosts is not one the
    // `url` crate parses.
    let asked = config.url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("sslmode"))
    });
    if config.ca.is_some() {
        pg.ssl_mode(SslMode::Require);
    } else if !asked {
        // libpq's default (`prefer`) takes any certificate; rustls checks
        // every one. Without a CA and without an sslmode the operator chose,
        // the link is plain, and the worker says so.
        pg.ssl_mode(SslMode::Disable);
        tracing::warn!(
            store = %shown,
            "the store connection is not encrypted: give --store-ca, or sslmode=require in the URL for a certificate the system trusts"
        );
    }
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(config)?);
    let manager = Manager::from_config(
        pg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mmt-postgres")
        .enable_all()
        .build()
        .map_err(|source| StoreError::Runtime { source })?;
    let pool = {
        let _entered = runtime.enter();
        Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.statement_timeout))
            .create_timeout(Some(config.statement_timeout))
            .recycle_timeout(Some(config.statement_timeout))
            .build()
            .map_err(|_| StoreError::BadUrl {
                detail: "the connection pool could not be built".to_owned(),
            })?
    };
    // The audit chains need the store's own keys, which the key check
    // opens: until then they hold a key of their own that nothing uses.
    let mut engine = Postgres {
        runtime: Some(runtime),
        pool,
        shown,
        chains: super::audit::Chains::new(Macs::generate()?.audit_key()?),
    };
    let macs = engine.block(migrate_and_check(&engine, key, seed))?;
    engine.chains = super::audit::Chains::new(macs.audit_key()?);
    Ok((engine, macs))
}

/// The rustls client configuration: ring, TLS 1.2 and 1.3, the roots of
/// `--store-ca` or of the system.
fn tls_config(config: &PgConfig) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca {
        Some(path) => {
            let bad = |detail: String| StoreError::Tls {
                detail: format!("{}: {detail}", path.display()),
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(format!("cannot read it ({e})")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not PEM certificates ({e})")))?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".to_owned()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a CA certificate ({e})")))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is left out, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls {
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// In one transaction under the migration lock: the missing migrations,
/// then the key check (written by the first worker of an empty store,
/// compared by every later one; a new store takes `seed` when given);
/// returns the store's own keys.
async fn migrate_and_check(
    engine: &Postgres,
    key: &KeyRing,
    seed: Option<&RingState>,
) -> Result<Macs, StoreError> {
    let mut client = engine.connection().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mmt_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM mmt_schema", &[])
        .await?
        .try_get(0)?;
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if current > known {
        return Err(StoreError::Schema {
            found: current,
            known,
        });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO mmt_schema (version) VALUES ($1)", &[&version])
            .await?;
        tracing::info!(version, "store schema migrated");
    }
    let wrong = |_| StoreError::WrongKeyFor {
        store: engine.shown.clone(),
    };
    let macs = match ring_state(&tx).await? {
        Some(state) => ring::open_macs(&state, key, wrong)?,
        None => {
            let holds_tokens: bool = tx
                .query_one("SELECT EXISTS (SELECT 1 FROM tokens)", &[])
                .await?
                .try_get(0)?;
            if holds_tokens {
                return Err(StoreError::MissingKeyCheckFor {
                    store: engine.shown.clone(),
                });
            }
            let (state, macs) = match seed {
                Some(seed) => (seed.clone(), ring::open_macs(seed, key, wrong)?),
                None => ring::fresh(key)?,
            };
            save_ring_state(&tx, &state).await?;
            macs
        }
    };
    tx.commit().await?;
    Ok(macs)
}

/// What the store knows of the key ring ([`ring`]): the `keyring` row, or
/// the `key_check` row of a store from before key rings (key 0's check).
pub(super) async fn ring_state(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Option<RingState>, StoreError> {
    let rows = tx
        .query(
            "SELECT name, value FROM mmt_meta WHERE name IN ($1, $2)",
            &[&KEY_CHECK, &KEY_RING],
        )
        .await?;
    let mut legacy = None;
    for row in rows {
        let name: String = row.try_get(0)?;
        let value: Vec<u8> = row.try_get(1)?;
        if name == KEY_RING {
            return serde_json::from_slice(&value)
                .map(Some)
                .map_err(|_| StoreError::Column {
                    column: "mmt_meta.value (keyring)",
                });
        }
        legacy = Some(RingState {
            checks: [(0, value)].into(),
            macs: None,
        });
    }
    Ok(legacy)
}

/// Replaces what the store knows of the key ring.
pub(super) async fn save_ring_state(
    tx: &tokio_postgres::Transaction<'_>,
    state: &RingState,
) -> Result<(), StoreError> {
    let value = serde_json::to_vec(state).map_err(|_| StoreError::Column {
        column: "mmt_meta.value (keyring)",
    })?;
    tx.execute(
        "INSERT INTO mmt_meta (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&KEY_RING, &value],
    )
    .await?;
    tx.execute("DELETE FROM mmt_meta WHERE name = $1", &[&KEY_CHECK])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(
            redact("postgres://mmt:hunter2@db.example:5432/mmt?sslmode=require"),
            "postgres://mmt:***@db.example:5432/mmt?sslmode=require"
        );
        assert_eq!(redact("postgres://mmt@db/mmt"), "postgres://mmt@db/mmt");
        assert!(!redact("postgres://mmt:hunter2@[bad").contains("hunter2"));
        assert_eq!(
            redact("postgres://mmt:hunter2@db1:5432,db2:5433/mmt?target_session_attrs=read-write"),
            "postgres://mmt:***@db1:5432,db2:5433/mmt?target_session_attrs=read-write"
        );
        assert_eq!(
            redact("postgres://mmt@db/mmt?password=hunter2&sslmode=require"),
            "postgres://mmt@db/mmt?password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://mmt:p%40ss@db/mmt"),
            "postgres://mmt:***@db/mmt"
        );
        let config = PgConfig::new("postgres://mmt:hunter2@db/mmt");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
