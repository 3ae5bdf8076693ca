//! `mmt-worker`: runs the worker, or publishes fixtures. Glue over the
//! `mmt_worker` library; errors are printed once, with their causes, and
//! mapped to exit codes that say what kind of problem it is.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mmt_worker::cli::{
    AuditArgs, AuditCommand, BackupArgs, BrokerSetupArgs, Cli, Command, CopyArgs, KeyArgs,
    KeyCommand, LogFormat, PublishArgs, ReleaseArgs, RestoreArgs, RunArgs, StoreArgs, StoreCommand,
};
use mmt_worker::ops::backup::TakeError;
use mmt_worker::ops::fixtures::{self, Publisher};
use mmt_worker::ops::progress::Reporter;
use mmt_worker::ops::release::ReleaseError;
use mmt_worker::ops::restore::RestoreError;
use mmt_worker::store::StoreError;
use mmt_worker::store::backup::BackupError;
use mmt_worker::store::crypto::CryptoError;
use mmt_worker::{Worker, WorkerError};
use tracing_subscriber::EnvFilter;

/// Exit codes, documented in the README.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const KEY: u8 = 3;
    pub const STORE: u8 = 4;
    pub const BROKER: u8 = 5;
    pub const EXPECTATION: u8 = 6;
    pub const KEY_FILE_MODE: u8 = 7;
    pub const RESTORED: u8 = 8;
}

/// Logs on stderr: text (coloured only when stderr is a terminal, so a log
/// file holds no escape codes) or one JSON object per line.
fn init_logs(format: LogFormat, default_filter: &str) {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_env("MMT_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// How long the end of `main` waits for the runtime's threads.
const SHUTDOWN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The store engine's own info lines (opening, recovering, each memtable
    // written out) are its internals; its warnings and errors (a failed
    // fsync, a full disk) still show.
    init_logs(
        cli.log_format,
        "info,lapin=warn,fjall=warn,lsm_tree=warn,value_log=warn",
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mmt-worker: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::Store(args) => store(args).await,
            Command::Backup(args) => blocking(move || backup(&args)).await,
            Command::Restore(args) => blocking(move || restore(&args)).await,
            Command::Publish(args) => publish(args).await,
            Command::BrokerSetup(args) => broker_setup(args).await,
            Command::Audit(args) => tokio::task::spawn_blocking(move || audit(args)).await?,
            Command::Key(args) => key(&args),
        }
    });
    // A store that failed can leave blocking threads waiting on it for
    // ever: do not wait for them to exit.
    runtime.shutdown_timeout(SHUTDOWN_PATIENCE);
    match result {
        Ok(code) => code,
        // `mmt-worker publish ... | head`: a closed stdout is a normal end.
        Err(error) if broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mmt-worker: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Whether `error` is a write to a stdout whose reader has gone: a bare
/// `io::Error` (stdout writes are the only ones `?`-ed without a wrapper),
/// never one inside a broker or store error.
fn broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(code) = backup_exit_code(error) {
        return code;
    }
    match error.downcast_ref::<WorkerError>() {
        Some(WorkerError::Key(error)) => key_exit_code(error),
        Some(WorkerError::Store(StoreError::BadUrl { .. } | StoreError::Tls { .. }))
        | Some(WorkerError::StorePassword { .. }) => exit::CONFIG,
        Some(WorkerError::Store(error)) => store_exit_code(error),
        Some(WorkerError::Amqp(_))
        | Some(WorkerError::Connect(_))
        | Some(WorkerError::ConnectTimedOut(_)) => exit::BROKER,
        Some(WorkerError::Clients(_))
        | Some(WorkerError::Integrations(_))
        | Some(WorkerError::Metrics(_)) => exit::CONFIG,
        _ if error.downcast_ref::<CryptoError>().is_some() => exit::KEY,
        _ => exit::FAILURE,
    }
}

fn key_exit_code(error: &CryptoError) -> u8 {
    match error {
        CryptoError::KeyFileMode { .. } => exit::KEY_FILE_MODE,
        _ => exit::KEY,
    }
}

fn store_exit_code(error: &StoreError) -> u8 {
    match error {
        StoreError::WrongKey { .. }
        | StoreError::MissingKeyCheck { .. }
        | StoreError::WrongKeyFor { .. }
        | StoreError::MissingKeyCheckFor { .. }
        | StoreError::MissingKey { .. }
        | StoreError::MacsKeyMissing { .. } => exit::KEY,
        StoreError::Restored { .. } => exit::RESTORED,
        StoreError::NotRestored { .. } => exit::CONFIG,
        _ => exit::STORE,
    }
}

/// The exit code of a backup, restore or release error: a wrong key 3 (as
/// the worker), a damaged file or a refused destination 2.
fn backup_exit_code(error: &anyhow::Error) -> Option<u8> {
    let of_backup = |error: &BackupError| match error {
        BackupError::WrongKey => exit::KEY,
        BackupError::NotABackup
        | BackupError::Format { .. }
        | BackupError::Truncated
        | BackupError::Damaged { .. } => exit::CONFIG,
        BackupError::Store(error) => store_exit_code(error),
        BackupError::Io(_) | BackupError::Stopped => exit::FAILURE,
    };
    if let Some(error) = error.downcast_ref::<TakeError>() {
        return Some(match error {
            TakeError::Backup(error) => of_backup(error),
            TakeError::Store(error) => store_exit_code(error),
            TakeError::Exists { .. } | TakeError::Partial { .. } => exit::CONFIG,
            TakeError::Unanswered { .. } => exit::STORE,
            _ => exit::FAILURE,
        });
    }
    if let Some(error) = error.downcast_ref::<RestoreError>() {
        return Some(match error {
            RestoreError::Backup(error) => of_backup(error),
            RestoreError::Store(error) => store_exit_code(error),
            RestoreError::Key(error) => key_exit_code(error),
            RestoreError::NotEmpty { .. } => exit::CONFIG,
            RestoreError::Mismatch(_) => exit::STORE,
            _ => exit::FAILURE,
        });
    }
    error
        .downcast_ref::<ReleaseError>()
        .map(|error| match error {
            ReleaseError::Store(error) => store_exit_code(error),
            ReleaseError::Key(error) => key_exit_code(error),
            ReleaseError::File { .. } | ReleaseError::Line { .. } => exit::CONFIG,
        })
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Listening starts before anything else: a SIGTERM while the worker
    // starts (or right after) stops it cleanly rather than killing it.
    let mut stop = Box::pin(stop_signal());
    // SIGHUP too: its default action would end the worker. One that comes
    // before the reload tasks listen is dropped (the start reads the files
    // anyway).
    let early_hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    if let Err(error) = &early_hangups {
        tracing::warn!(%error, "cannot listen for SIGHUP while starting");
    }
    let config = args
        .config()
        .map_err(|source| WorkerError::StorePassword { source })?;
    let fleet = args.fleet();
    let worker = tokio::select! {
        worker = Worker::start_with(&config, &fleet) => worker?,
        () = &mut stop => {
            tracing::info!("signal received while starting: stopped before taking any message");
            return Ok(ExitCode::SUCCESS);
        }
    };
    drop(early_hangups);
    let shutdown = worker.shutdown_token();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("signal received: finishing the batch in hand, then stopping");
        shutdown.cancel();
    });
    worker.run().await?;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT: listened for from the call on (not from the first
/// poll), so that none is lost to the default action in between.
fn stop_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (Ok(mut one), Err(error)) | (Err(error), Ok(mut one)) => {
                tracing::warn!(%error, "cannot listen for one of SIGTERM and SIGINT; the other stops the worker");
                one.recv().await;
            }
            (Err(error), Err(_)) => {
                tracing::warn!(%error, "cannot listen for SIGTERM or SIGINT");
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let scenarios = args
        .files
        .iter()
        .map(|path| fixtures::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let broker = args.broker.broker().map_err(WorkerError::Connect)?;
    let connection = broker
        .connect("mmt-worker publish")
        .await
        .map_err(WorkerError::Connect)?;
    // A worker in strict mode checks `user_id` (CONTRACT.md §10); the broker
    // accepts only the connection's own user there.
    let user_id = Some(broker.username().to_owned()).filter(|u| !u.is_empty());
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut publisher = Publisher::new(
        &connection,
        &args.broker.namespace,
        Duration::from_secs(args.timeout_secs),
        run_id,
    )
    .await?
    .with_user_id(user_id);
    let mut failed = 0usize;
    let mut out = std::io::stdout();
    for (path, scenario) in args.files.iter().zip(&scenarios) {
        writeln!(out, "# {}: {}", path.display(), scenario.description)?;
        for report in publisher.run(scenario).await? {
            let reply = report.reply.as_ref().map_or_else(
                || "(no reply asked)".to_owned(),
                |r| fixtures::redacted(&report.routing_key, r).to_string(),
            );
            match &report.mismatch {
                None => writeln!(
                    out,
                    "  ok   {} {} -> {reply}",
                    report.name, report.routing_key
                )?,
                Some(why) => {
                    failed += 1;
                    writeln!(
                        out,
                        "  FAIL {} {} -> {reply}\n       {why}",
                        report.name, report.routing_key
                    )?;
                }
            }
        }
    }
    out.flush()?;
    let _ = connection.close(200, "done".into()).await;
    if failed > 0 {
        eprintln!("mmt-worker: {failed} step(s) did not get the expected reply");
        return Ok(ExitCode::from(exit::EXPECTATION));
    }
    Ok(ExitCode::SUCCESS)
}

async fn store(args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Copy(args) => blocking(move || store_copy(&args)).await,
        StoreCommand::Release(args) => blocking(move || release(&args)).await,
    }
}

/// Runs a command that reads and writes files on a blocking thread.
async fn blocking(
    command: impl FnOnce() -> anyhow::Result<ExitCode> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(command).await?
}

/// `mmt-worker backup`: from the running worker or the stopped one's data
/// directory, with a progress line.
fn backup(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    use mmt_worker::ops::backup;
    use mmt_worker::store::crypto::KeyRing;
    let key = KeyRing::load(&args.key_file, &args.data_dir).map_err(WorkerError::Key)?;
    let mut reporter = Reporter::stderr("backup");
    let taken = backup::take(&args.data_dir, &args.to, key, &mut |progress| {
        reporter.show(progress)
    });
    reporter.end();
    let taken = taken?;
    let [tokens, processed, refresh, jobs] = taken.totals;
    eprintln!(
        "backup: {} written ({}), taken at {}: {tokens} tokens, {processed} processed messages, {refresh} refresh records, {jobs} upstream jobs",
        args.to.display(),
        if taken.from_worker {
            "by the running worker; the key, the digest and the tag checked as it came"
        } else {
            "from the data directory: no worker was running"
        },
        taken.header.taken_at,
    );
    Ok(ExitCode::SUCCESS)
}

/// `mmt-worker restore`: into an absent or empty data directory, with a
/// progress line; the store is left held until `store release`.
fn restore(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let mut reporter = Reporter::stderr("restore");
    let done = mmt_worker::ops::restore::restore(
        &args.from,
        &args.data_dir,
        &args.key_file,
        args.verify_sample,
        &mut |progress| {
            reporter.show(progress);
            true
        },
    );
    reporter.end();
    let done = done?;
    let [tokens, processed, refresh, jobs] = done.totals;
    eprintln!(
        "restore: {} restored from a backup taken at {}: {tokens} tokens, {processed} processed messages, {refresh} refresh records, {jobs} upstream jobs; the digest, the tag and the counts checked, {} tokens opened with the key",
        args.data_dir.display(),
        done.header.taken_at,
        done.opened,
    );
    eprintln!(
        "restore: no worker starts on it yet: tokens revoked after {} are live in it again. Apply the revocations since then with `mmt-worker store release --data-dir {} --revoked FILE` (or `--none-revoked`); docs/security.md, \"Backups\"",
        done.header.taken_at,
        args.data_dir.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// `mmt-worker store release`: the revocations since the backup, then the
/// mark goes.
fn release(args: &ReleaseArgs) -> anyhow::Result<ExitCode> {
    use mmt_worker::ops::release;
    let revocations = release::revocations(&args.revoked)?;
    let released = release::release(&args.data_dir, &args.key_file, &revocations)?;
    eprintln!(
        "store release: {} released (restored from a backup taken at {}): {} tokens revoked, {} already revoked, {} not in the store; {} events of other kinds skipped",
        args.data_dir.display(),
        released.mark.backup_taken_at,
        released.revoked,
        released.already_revoked,
        released.not_found,
        revocations.other_events,
    );
    Ok(ExitCode::SUCCESS)
}

/// `mmt-worker key rotate`: appends a fresh key and says what comes next.
fn key(args: &KeyArgs) -> anyhow::Result<ExitCode> {
    let KeyCommand::Rotate(rotate) = &args.command;
    let id =
        mmt_worker::store::crypto::keyfile::rotate(&rotate.key_file).map_err(WorkerError::Key)?;
    println!(
        "key rotate: key {id} appended to {} and active; send SIGHUP to every worker that uses this file (give workers of a shared store the new file first): they wrap new data keys under key {id} and rewrap the older ones in the background (watch `keys` in worker.stats)",
        rotate.key_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `mmt-worker audit verify|query`: reads the log with the key the master
/// key derives; exit 1 when a chain is broken.
fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    use mmt_worker::ops::audit::{self, AuditError, Filter, Source};
    use mmt_worker::store::Store;
    use mmt_worker::store::crypto::KeyRing;
    let log = match &args.command {
        AuditCommand::Verify(log) => log,
        AuditCommand::Query(query) => &query.log,
    };
    let shown = log.store_url.as_deref().map_or_else(
        || log.data_dir.display().to_string(),
        mmt_worker::store::postgres::redact,
    );
    let key =
        KeyRing::load(&log.key_file, std::path::Path::new(&shown)).map_err(WorkerError::Key)?;
    // The embedded store's audit key comes from its data directory, read
    // while a worker holds the store.
    let dir_key = match &log.store_url {
        Some(_) => None,
        None => {
            Some(mmt_worker::store::audit_key_of(&log.data_dir, &key).map_err(WorkerError::Store)?)
        }
    };
    let store = match &log.store_url {
        Some(url) => {
            let config = mmt_worker::cli::shared_store(
                url,
                log.store_password_file.as_deref(),
                log.store_ca.as_deref(),
            )
            .map_err(|source| WorkerError::StorePassword { source })?;
            Some(Store::connect(&config, key).map_err(WorkerError::Store)?)
        }
        None => None,
    };
    let audit_key = match (&store, &dir_key) {
        (Some(store), _) => store.audit_key(),
        (None, Some(key)) => key,
        (None, None) => anyhow::bail!("no audit log to read"),
    };
    let source = match &store {
        Some(store) => Source::Shared(store),
        None => Source::Dir(&log.data_dir),
    };
    match &args.command {
        AuditCommand::Verify(_) => match audit::verify(&source, audit_key) {
            Ok(verified) => {
                println!(
                    "audit verify: {} lines in {} chain(s), every chain intact",
                    verified.lines, verified.chains
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(error @ AuditError::Broken { .. }) => {
                println!("audit verify: {error}");
                Ok(ExitCode::from(1))
            }
            Err(error) => Err(error.into()),
        },
        AuditCommand::Query(query) => {
            let since = match query.since.as_deref() {
                Some(text) => Some(
                    Filter::parse_since(text)
                        .ok_or_else(|| anyhow::anyhow!("--since {text}: not an RFC 3339 time"))?,
                ),
                None => None,
            };
            let filter = Filter {
                client: query.client.clone(),
                token_id: query.token_id.clone(),
                since,
            };
            let mut out = std::io::stdout().lock();
            audit::query(&source, audit_key, &filter, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mmt-worker store copy`: opens both stores with the one key, copies with
/// a progress line (rewritten in place on a terminal, every 5 s elsewhere),
/// then compares them.
fn store_copy(args: &CopyArgs) -> anyhow::Result<ExitCode> {
    use mmt_worker::ops::store_copy;
    use mmt_worker::store::Store;
    use mmt_worker::store::crypto::KeyRing;
    use mmt_worker::store::ring::RingState;
    use std::path::Path;
    let open = |location: &str, seed: Option<&RingState>| -> anyhow::Result<Store> {
        let shared = location.starts_with("postgres://") || location.starts_with("postgresql://");
        // A URL is named only with its password hidden, in errors too.
        let shown = if shared {
            mmt_worker::store::postgres::redact(location)
        } else {
            location.to_owned()
        };
        let key = KeyRing::load(&args.key_file, Path::new(&shown)).map_err(WorkerError::Key)?;
        let store = if shared {
            let config = mmt_worker::cli::shared_store(
                location,
                args.store_password_file.as_deref(),
                args.store_ca.as_deref(),
            )
            .map_err(|source| WorkerError::StorePassword { source })?;
            Store::connect_seeded(&config, key, seed)
        } else {
            match seed {
                Some(seed) => Store::open_seeded(Path::new(location), key, seed),
                None => Store::open(Path::new(location), key),
            }
        };
        Ok(store.map_err(WorkerError::Store)?)
    };
    let from = open(&args.from, None)?;
    // A new destination keeps the source's own keys: its records' tags and
    // the audit log's references stay valid.
    let seed = from.ring_state().map_err(WorkerError::Store)?;
    let to = open(&args.to, Some(&seed))?;
    let mut reporter = Reporter::stderr("store copy");
    let copied = store_copy::copy(&from, &to, store_copy::PAGE, &mut |progress| {
        reporter.show(progress);
        true
    });
    reporter.end();
    let copied = copied?;
    let [tokens, processed, refresh, jobs] = copied.rows;
    eprintln!(
        "store copy: {tokens} tokens, {processed} processed messages, {refresh} refresh records, {jobs} upstream jobs copied{}",
        if copied.resumed {
            " (going on from an earlier run)"
        } else {
            ""
        }
    );
    let compared = store_copy::verify(&from, &to, args.verify_sample)?;
    eprintln!("store copy: verified: the counts agree and {compared} tokens open alike in both");
    Ok(ExitCode::SUCCESS)
}

async fn broker_setup(args: BrokerSetupArgs) -> anyhow::Result<ExitCode> {
    use mmt_worker::ops::broker_setup::{self, Roles};
    let clients =
        mmt_worker::config::clients_file::load(&args.clients).map_err(WorkerError::Clients)?;
    let plan = broker_setup::plan(
        &clients,
        &args.namespace,
        &Roles {
            vhost: &args.vhost,
            worker: &args.worker_user,
            console: &args.console_user,
        },
    );
    if !args.apply {
        print!("{}", plan.script(&args.namespace, &args.vhost));
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args.passwords_dir.clone();
    let created =
        tokio::task::spawn_blocking(move || broker_setup::apply(&plan, dir.as_deref())).await??;
    for user in created {
        println!("created broker user {user} (password in the --passwords-dir)");
    }
    println!(
        "broker-setup: permissions applied for namespace {}",
        args.namespace
    );
    Ok(ExitCode::SUCCESS)
}
