//! The PostgreSQL server of `--store-url`: a fresh database for every
//! measurement (`mmt_bench_<id>`, created through the URL's server and
//! dropped `WITH (FORCE)` afterwards), the server's settings for the report,
//! and the CPU time of the server's processes, read from `/proc`.
//!
//! The server must run on this machine for its CPU time to be read: the
//! postmaster is the parent of the bench's own backend, and every process
//! it forked (backends, WAL writer, checkpointer, ...) is counted. Where
//! `/proc` does not show it (another machine, another pid namespace), the
//! PostgreSQL CPU figures are left out.

use std::collections::HashMap;

use tokio::task::JoinHandle;

use mmt_worker::observe::process::{USER_HZ, cpu_ticks};

/// Why the bench could not use the PostgreSQL server.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse.
    #[error("--store-url does not parse as a postgres:// URL")]
    BadUrl,
    /// A statement of the bench's own connection failed.
    #[error("PostgreSQL: {what}")]
    Query {
        /// What was being done.
        what: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
}

fn query_error(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Query { what, source }
}

/// The server of `--store-url`, through the bench's own connection.
pub struct Server {
    url: url::Url,
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
    postmaster: Option<u32>,
}

/// A database of the bench's own, empty when made.
#[derive(Clone, Debug)]
pub struct TempDb {
    /// Its name.
    pub name: String,
    /// The URL the workers connect to.
    pub url: String,
}

impl Server {
    /// Connects to the server of `url` (the database the URL names; plain
    /// TCP, as for a server on this machine).
    pub async fn connect(url: &str) -> Result<Self, PgError> {
        let parsed = url::Url::parse(url).map_err(|_| PgError::BadUrl)?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(PgError::BadUrl);
        }
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(query_error("cannot connect to --store-url"))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let backend: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(query_error("pg_backend_pid()"))?
            .get(0);
        let postmaster = u32::try_from(backend).ok().and_then(parent_of);
        Ok(Self {
            url: parsed,
            client,
            connection,
            postmaster,
        })
    }

    /// The postmaster's pid, when `/proc` shows it.
    pub fn postmaster(&self) -> Option<u32> {
        self.postmaster
    }

    /// Creates an empty database `mmt_bench_<id>`.
    pub async fn create_db(&self) -> Result<TempDb, PgError> {
        let name = format!(
            "mmt_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        self.client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(query_error(format!("CREATE DATABASE {name}")))?;
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        // The worker warns about a plain link unless it was asked for.
        if !url.query_pairs().any(|(key, _)| key == "sslmode") {
            url.query_pairs_mut().append_pair("sslmode", "disable");
        }
        Ok(TempDb {
            name,
            url: url.to_string(),
        })
    }

    /// Drops a database of the bench (its connections closed by force).
    pub async fn drop_db(&self, db: &TempDb) -> Result<(), PgError> {
        self.client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name))
            .await
            .map_err(query_error(format!("DROP DATABASE {}", db.name)))
    }

    /// The pids of the backends connected to `db`.
    pub async fn backends(&self, db: &TempDb) -> Result<Vec<u32>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1",
                &[&db.name],
            )
            .await
            .map_err(query_error("pg_stat_activity"))?;
        Ok(rows
            .iter()
            .filter_map(|row| u32::try_from(row.get::<_, i32>(0)).ok())
            .collect())
    }

    /// Transactions committed and rolled back in `db`, and rows it
    /// inserted, updated or deleted, so far (`pg_stat_database`: a backend
    /// reports them at the latest when it exits).
    pub async fn db_stats(&self, db: &TempDb) -> Result<(i64, i64, i64), PgError> {
        let row = self
            .client
            .query_one(
                "SELECT xact_commit, xact_rollback, tup_inserted + tup_updated + tup_deleted
                 FROM pg_stat_database WHERE datname = $1",
                &[&db.name],
            )
            .await
            .map_err(query_error("pg_stat_database"))?;
        Ok((row.get(0), row.get(1), row.get(2)))
    }

    /// The size of every table of `db` with its indexes and TOAST
    /// (`pg_total_relation_size`), largest first, in bytes.
    pub async fn table_sizes(&self, db: &TempDb) -> Result<Vec<(String, i64)>, PgError> {
        let mut url = self.url.clone();
        url.set_path(&format!("/{}", db.name));
        let (client, connection) = tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls)
            .await
            .map_err(query_error(format!("cannot connect to {}", db.name)))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let rows = client
            .query(
                "SELECT c.relname::text, pg_total_relation_size(c.oid)::bigint
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'
                 ORDER BY 2 DESC",
                &[],
            )
            .await
            .map_err(query_error("pg_total_relation_size"));
        drop(client);
        let _ = connection.await;
        Ok(rows?
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
            .collect())
    }

    /// The server's version and the settings that bound a commit.
    pub async fn settings(&self) -> Result<String, PgError> {
        let rows = self
            .client
            .query(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings
                 WHERE name IN ('server_version', 'synchronous_commit', 'fsync',
                   'shared_buffers', 'wal_sync_method', 'commit_delay',
                   'max_connections', 'default_transaction_isolation')
                 ORDER BY name",
                &[],
            )
            .await
            .map_err(query_error("pg_settings"))?;
        Ok(rows
            .iter()
            .map(|row| format!("{}={}", row.get::<_, String>(0), row.get::<_, String>(1)))
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Closes the bench's connection.
    pub async fn close(self) {
        drop(self.client);
        let _ = self.connection.await;
    }
}

/// The parent pid of a process, from `/proc/<pid>/stat` (field 4).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The CPU ticks of the postmaster and of every process it forked, by pid.
#[derive(Clone, Debug, Default)]
pub struct ServerCpu(HashMap<u32, u64>);

impl ServerCpu {
    /// Reads them now (one pass over `/proc`).
    pub fn sample(postmaster: u32) -> Self {
        let mut ticks = HashMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self(ticks);
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if (pid == postmaster || parent == Some(postmaster))
                && let Some(t) = cpu_ticks(&stat)
            {
                ticks.insert(pid, t);
            }
        }
        Self(ticks)
    }

    /// CPU seconds from `before` to this sample, over the processes alive at
    /// this sample that `only` keeps (a process forked since counts from
    /// zero; one that exited since is lost).
    pub fn secs_since(&self, before: &ServerCpu, only: impl Fn(u32) -> bool) -> f64 {
        let ticks: u64 = self
            .0
            .iter()
            .filter(|(pid, _)| only(**pid))
            .map(|(pid, now)| now.saturating_sub(before.0.get(pid).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / USER_HZ
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_parent() {
        assert!(parent_of(std::process::id()).is_some());
    }

    #[test]
    fn cpu_since_counts_new_processes_from_zero_and_filters() {
        let before = ServerCpu(HashMap::from([(1, 100), (2, 50)]));
        let after = ServerCpu(HashMap::from([(1, 150), (2, 60), (3, 40)]));
        assert!((after.secs_since(&before, |_| true) - 1.0).abs() < 1e-9);
        assert!((after.secs_since(&before, |pid| pid == 2) - 0.1).abs() < 1e-9);
    }
}
