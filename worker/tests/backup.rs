//! `mmt-worker backup`, `restore` and `store release` run as processes: the
//! exit codes the README gives, a held store that `run` refuses, and a
//! restore killed with SIGKILL half-way, which leaves no data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mmt_shared::secret::Secret;
use mmt_shared::wire::{MessageKind, Scope};
use mmt_worker::rules::lifecycle::{self, ConnectInput};
use mmt_worker::store::crypto::KeyRing;
use mmt_worker::store::{Decision, Store, TokenSecrets};

/// A stopped deployment: a key file and a data directory of `tokens`
/// tokens.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new(tokens: usize) -> Self {
        let this = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let (key, _) = KeyRing::load_or_create(&this.key_file()).expect("key");
        let store = Store::open(&this.data(), key).expect("opens");
        for chunk in (0..tokens).collect::<Vec<_>>().chunks(1_000) {
            store
                .write(|tx| {
                    for i in chunk {
                        let user = format!("u{i}");
                        let input = ConnectInput {
                            client_id: "acme",
                            end_user_id: &user,
                            broker_type: "coinbase",
                            broker_name: "Coinbase",
                            account_id: "cb-1",
                            account_name: "Main",
                            scope: Scope::Read,
                            expires_in_seconds: None,
                            refresh_expires_in_seconds: None,
                            has_refresh_token: false,
                            at: 1_000,
                        };
                        let meta = lifecycle::connect(None, &input, 1_000, String::new).meta;
                        let secrets = TokenSecrets {
                            access_token: Secret::new(format!("raw-{i}")),
                            refresh_token: None,
                        };
                        tx.put_token(&format!("tok_{i:06}"), &meta, None, &secrets)?;
                        tx.record_processed(
                            MessageKind::IntegrationConnected,
                            &format!("m-{i}"),
                            br#"{"ok":true}"#,
                        )?;
                    }
                    Ok(Decision::Commit(()))
                })
                .expect("fills");
        }
        this
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key_file(&self) -> PathBuf {
        self.path("mmt.key")
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// `mmt-worker ARGS --key-file KEY`, its output.
    fn run(&self, args: &[&str], key_file: &Path) -> Output {
        self.command(args, key_file).output().expect("runs")
    }

    fn command(&self, args: &[&str], key_file: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mmt-worker"));
        command
            .args(args)
            .arg("--key-file")
            .arg(key_file)
            .current_dir(self.dir.path())
            .env_remove("MMT_DATA_DIR")
            .env_remove("MMT_KEY_FILE")
            .env_remove("MMT_LOG");
        command
    }

    /// Every entry of the deployment's directory.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("reads")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn backup_and_restore_exit_as_documented_and_a_restored_store_is_held_until_released() {
    let d = Deployment::new(300);
    let key = d.key_file();
    let backed = d.run(&["backup", "--data-dir", "data", "--to", "b.mmt"], &key);
    assert_eq!(backed.status.code(), Some(0), "{}", stderr(&backed));
    assert!(
        stderr(&backed).contains("300 tokens, 300 processed messages"),
        "{}",
        stderr(&backed)
    );
    let again = d.run(&["backup", "--data-dir", "data", "--to", "b.mmt"], &key);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));

    let other = d.path("other.key");
    KeyRing::load_or_create(&other).expect("key");
    let wrong = d.run(&["restore", "--from", "b.mmt", "--data-dir", "r"], &other);
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("the key does not open this backup"));

    let mut bytes = std::fs::read(d.path("b.mmt")).expect("reads");
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    std::fs::write(d.path("flipped.mmt"), &bytes).expect("writes");
    let flipped = d.run(
        &["restore", "--from", "flipped.mmt", "--data-dir", "r"],
        &key,
    );
    assert_eq!(flipped.status.code(), Some(2), "{}", stderr(&flipped));
    assert!(
        stderr(&flipped).contains("the backup file is damaged"),
        "{}",
        stderr(&flipped)
    );
    let taken = d.run(&["restore", "--from", "b.mmt", "--data-dir", "data"], &key);
    assert_eq!(taken.status.code(), Some(2), "{}", stderr(&taken));
    assert_eq!(
        d.entries(),
        ["b.mmt", "data", "flipped.mmt", "mmt.key", "other.key"]
    );

    let restored = d.run(&["restore", "--from", "b.mmt", "--data-dir", "r"], &key);
    assert_eq!(restored.status.code(), Some(0), "{}", stderr(&restored));
    assert!(
        stderr(&restored).contains("no worker starts on it yet"),
        "{}",
        stderr(&restored)
    );
    let run = d.run(
        &[
            "run",
            "--amqp-url",
            "amqp://127.0.0.1:1/%2f",
            "--data-dir",
            "r",
        ],
        &key,
    );
    assert_eq!(run.status.code(), Some(8), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("was restored from a backup taken at"),
        "{}",
        stderr(&run)
    );
    let released = d.run(
        &["store", "release", "--data-dir", "r", "--none-revoked"],
        &key,
    );
    assert_eq!(released.status.code(), Some(0), "{}", stderr(&released));
    // Past the store now: no broker on port 1.
    let run = d.run(
        &[
            "run",
            "--amqp-url",
            "amqp://127.0.0.1:1/%2f",
            "--data-dir",
            "r",
        ],
        &key,
    );
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
}

#[test]
fn a_restore_killed_half_way_leaves_no_data_directory_and_the_next_one_restores() {
    let d = Deployment::new(20_000);
    let key = d.key_file();
    let backed = d.run(&["backup", "--data-dir", "data", "--to", "b.mmt"], &key);
    assert_eq!(backed.status.code(), Some(0), "{}", stderr(&backed));
    let mut restore = d
        .command(&["restore", "--from", "b.mmt", "--data-dir", "r"], &key)
        .spawn()
        .expect("starts");
    // Killed as soon as its store is being written.
    let deadline = Instant::now() + Duration::from_secs(60);
    let work = loop {
        let found = std::fs::read_dir(d.dir.path())
            .expect("reads")
            .map(|e| e.expect("entry").path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".r.restore-"))
                    && p.join("fjall").exists()
            });
        if let Some(work) = found {
            break work;
        }
        assert!(Instant::now() < deadline, "the restore never started");
        std::thread::sleep(Duration::from_millis(1));
    };
    restore.kill().expect("SIGKILL");
    let status = restore.wait().expect("ends");
    assert_eq!(status.code(), None, "killed, not finished: {status:?}");
    assert!(!d.path("r").exists(), "no data directory");
    assert!(work.exists(), "the killed restore's own directory is left");

    let restored = d.run(&["restore", "--from", "b.mmt", "--data-dir", "r"], &key);
    assert_eq!(restored.status.code(), Some(0), "{}", stderr(&restored));
    assert!(!work.exists(), "removed by the next restore");
    assert_eq!(d.entries(), ["b.mmt", "data", "mmt.key", "r"]);
}
