//! A `mmt-worker run` child process of the bench, over a store of its own:
//! its stderr goes to a log file beside the store, its CPU time is read from
//! `/proc/<pid>/stat`, and it is stopped with SIGTERM (and told to read its
//! key file again with SIGHUP) as an operator would.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mmt_shared::config::Namespace;
use mmt_shared::time_fmt::now_millis;

use super::{BenchConfig, BenchError};
use mmt_worker::observe::process::{USER_HZ, cpu_ticks};

/// A running worker child.
pub struct WorkerChild {
    /// The process.
    pub child: tokio::process::Child,
    /// Its pid.
    pub pid: u32,
    /// Its log (stderr).
    pub log_path: PathBuf,
}

impl WorkerChild {
    /// Spawns `mmt-worker run` over `data_dir`, with `extra` arguments and
    /// `env` variables; it logs warnings only, into `worker-<name>-*.log`.
    pub fn spawn(
        config: &BenchConfig,
        ns: &Namespace,
        (data_dir, key_file): (&Path, &Path),
        name: &str,
        extra: &[&OsStr],
        env: &[(&str, &str)],
    ) -> Result<Self, BenchError> {
        let log_path = data_dir.with_file_name(format!("worker-{name}-{}.log", now_millis()));
        let log = std::fs::File::create(&log_path).map_err(BenchError::io(format!(
            "cannot create {}",
            log_path.display()
        )))?;
        let mut command = tokio::process::Command::new(&config.worker_binary);
        command
            .arg("run")
            .arg("--namespace")
            .arg(ns.as_str())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--key-file")
            .arg(key_file)
            .arg("--prefetch")
            .arg(config.prefetch.to_string())
            .args(extra)
            .env("MMT_AMQP_URL", &config.amqp_url)
            .env("MMT_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().map_err(BenchError::io(format!(
            "cannot start {}",
            config.worker_binary.display()
        )))?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Child("exited at once".into()))?;
        Ok(Self {
            child,
            pid,
            log_path,
        })
    }

    /// The child's CPU time so far (user + system), in seconds; 10 ms steps.
    pub fn cpu_secs(&self) -> Result<f64, BenchError> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path)
            .map_err(BenchError::io(format!("cannot read {path}")))?;
        let ticks =
            cpu_ticks(&stat).ok_or_else(|| BenchError::Child(format!("no CPU times in {path}")))?;
        Ok(ticks as f64 / USER_HZ)
    }

    /// The last lines of its log, for an error message.
    pub fn tail(&self) -> String {
        tail(&self.log_path)
    }

    /// Sends it `signal` (`TERM`, `HUP`) with `kill`.
    async fn signal(&self, signal: &str) -> Result<(), BenchError> {
        let sent = tokio::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .await
            .map_err(BenchError::io("cannot run kill"))?;
        if !sent.success() {
            return Err(BenchError::Child(format!(
                "kill -{signal} {} failed",
                self.pid
            )));
        }
        Ok(())
    }

    /// Sends it SIGHUP, as an operator does after `mmt-worker key rotate`:
    /// it reads the key file again (CONTRACT.md §11).
    pub async fn hangup(&self) -> Result<(), BenchError> {
        self.signal("HUP").await
    }

    /// Stops it with SIGTERM and checks that it exits cleanly within 30 s.
    pub async fn stop(&mut self) -> Result<(), BenchError> {
        self.signal("TERM").await?;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(BenchError::Child(format!(
                "stopped with {status}: {}",
                self.tail()
            ))),
            Ok(Err(error)) => Err(BenchError::io("cannot wait for the worker")(error)),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(BenchError::Child(
                    "did not stop within 30 s of SIGTERM".into(),
                ))
            }
        }
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
