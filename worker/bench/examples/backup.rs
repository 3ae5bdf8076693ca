//! Backup and restore times of the embedded store (issue 21): a store of N
//! tokens preloaded as the scale phase's is ([`Preloaded`]: the records one
//! `integration.connected` leaves, a processed reply each), then the
//! `mmt-worker` built beside this example, timed as processes: `backup`
//! from the stopped store, `backup` through a running worker's socket, and
//! `restore` into a fresh directory.
//!
//! ```sh
//! cargo build --release -p mmt-worker --bin mmt-worker
//! cargo run --release -p mmt-bench --example backup -- 100000
//! ```
//!
//! The running worker needs the broker of `MMT_AMQP_URL` (default the
//! local one); its namespace is deleted afterwards.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mmt_bench::tokens::Preloaded;
use mmt_shared::config::{DEFAULT_AMQP_URL, Namespace};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tokens: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("the number of tokens")?
        .unwrap_or(100_000);
    let worker = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .context("target directory")?
        .join("mmt-worker");
    if !worker.exists() {
        bail!("{} is missing: build it with --release", worker.display());
    }
    let root = tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| ".".into()))?;
    let loaded = Preloaded::load(root.path(), "source", tokens).await?;
    println!(
        "preloaded {tokens} tokens in {:.1} s ({:.0}/s); store {} MiB",
        loaded.load_secs,
        loaded.tokens_per_s(),
        size(&loaded.data_dir) >> 20
    );
    let key = loaded.key_file.clone();

    let offline = root.path().join("offline.mmt");
    let took = time(
        &worker,
        &["backup", "--data-dir"],
        &loaded.data_dir,
        &offline,
        &key,
    )
    .await?;
    report("backup, stopped store", tokens, took, &offline);

    let restored = root.path().join("restored");
    let took = time(
        &worker,
        &["restore", "--data-dir"],
        &restored,
        &offline,
        &key,
    )
    .await?;
    report("restore", tokens, took, &restored);

    let namespace = format!("backup-example-{}", std::process::id());
    let amqp_url = std::env::var("MMT_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
    let mut running = tokio::process::Command::new(&worker)
        .args(["run", "--namespace", &namespace, "--data-dir"])
        .arg(&loaded.data_dir)
        .arg("--key-file")
        .arg(&key)
        .env("MMT_AMQP_URL", &amqp_url)
        .env("MMT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let socket = loaded.data_dir.join("backup.sock");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("the worker never opened its backup socket");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let online = root.path().join("online.mmt");
    let before = peak_mib(running.id().unwrap_or_default());
    let took = time(
        &worker,
        &["backup", "--data-dir"],
        &loaded.data_dir,
        &online,
        &key,
    )
    .await;
    let after = peak_mib(running.id().unwrap_or_default());
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &running.id().unwrap_or_default().to_string()])
        .status()
        .await;
    running.wait().await?;
    report("backup, running worker", tokens, took?, &online);
    println!("the running worker's peak memory: {before} MiB before the backup, {after} MiB after");
    delete(&amqp_url, &namespace).await?;
    Ok(())
}

/// Runs `mmt-worker ARGS DIR --to|--from FILE --key-file KEY`: how long it
/// took and its peak resident memory (MiB).
async fn time(
    worker: &Path,
    args: &[&str],
    dir: &Path,
    file: &Path,
    key: &Path,
) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let file_flag = if args[0] == "backup" {
        "--to"
    } else {
        "--from"
    };
    let mut child = tokio::process::Command::new(worker)
        .args(args)
        .arg(dir)
        .arg(file_flag)
        .arg(file)
        .arg("--key-file")
        .arg(key)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id().context("running")?;
    let mut stderr = child.stderr.take().context("piped")?;
    let said = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_mib(pid));
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let took = started.elapsed();
    let said = said.await?;
    if !status.success() {
        bail!("{args:?} failed: {said}");
    }
    print!("{said}");
    Ok((took, peak))
}

/// The peak resident memory of `pid` so far (`VmHWM`), in MiB.
fn peak_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb >> 10)
}

fn report(what: &str, tokens: usize, (took, peak): (Duration, u64), path: &Path) {
    println!(
        "{what}: {:.2} s, {:.0} tokens/s, peak memory {peak} MiB; {} MiB on disk",
        took.as_secs_f64(),
        tokens as f64 / took.as_secs_f64(),
        size(path) >> 20
    );
}

/// Bytes under `path` (a file or a directory).
fn size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![path.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else {
            total += meta.len();
        }
    }
    total
}

/// Deletes the queues and exchanges the worker declared for `namespace`.
async fn delete(amqp_url: &str, namespace: &str) -> anyhow::Result<()> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let ns = Namespace::new(namespace)?;
    let connection = lapin::Connection::connect(amqp_url, Default::default()).await?;
    for queue in mmt_worker::amqp::topology::queues(&ns) {
        let channel = connection.create_channel().await?;
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in mmt_worker::amqp::topology::exchanges(&ns) {
        let channel = connection.create_channel().await?;
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
