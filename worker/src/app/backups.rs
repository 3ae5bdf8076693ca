//! The running worker's backup socket: how `mmt-worker backup` reads an
//! embedded store that a worker holds (the data directory is locked, and
//! fjall has no read-only open: a second opener would recover the journal
//! and write). The socket is `DATA_DIR/backup.sock`, mode 0600 in the 0700
//! data directory: only the worker's own user (and root) may connect, who
//! can read the store's files anyway.
//!
//! A client sends [`REQUEST`]; the worker answers [`OK`] and then the
//! backup file's bytes (`Store::backup`, written from a blocking thread
//! while the consumers go on), or [`BUSY`] while another backup is being
//! written. A worker that stops ends the backup being written: the client
//! sees the file end early and keeps nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::service::Service;

/// The socket's name in the data directory.
pub const SOCKET: &str = "backup.sock";
/// What a client asks.
pub const REQUEST: &[u8] = b"backup 1\n";
/// The answer before the backup's bytes.
pub const OK: &[u8] = b"ok\n";
/// The answer while another backup is being written.
pub const BUSY: &[u8] = b"busy\n";

/// How long a client may take to ask.
const ASK_PATIENCE: Duration = Duration::from_secs(5);
/// How long a client may leave the backup's bytes unread.
const READ_PATIENCE: Duration = Duration::from_secs(60);

/// Serves backups from `DATA_DIR/backup.sock` until `shutdown`. A socket
/// that cannot be made (a path longer than a socket's, say) is told in the
/// log: the worker serves without it.
pub(super) fn start(data_dir: &Path, service: &Arc<Service>, shutdown: &CancellationToken) {
    match listen(data_dir) {
        Ok((listener, path)) => {
            tokio::spawn(serve(listener, path, service.clone(), shutdown.clone()));
        }
        Err(error) => tracing::warn!(
            %error,
            "no backup socket in the data directory: `mmt-worker backup` cannot read this worker's store while it runs"
        ),
    }
}

/// Listens on the data directory's backup socket (one left by a worker that
/// did not stop cleanly is replaced: the caller holds the directory).
fn listen(data_dir: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, path))
}

/// Serves backups until `shutdown`, then removes the socket.
async fn serve(
    listener: UnixListener,
    path: PathBuf,
    service: Arc<Service>,
    shutdown: CancellationToken,
) {
    let busy = Arc::new(AtomicBool::new(false));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "backup socket: accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(answer(
            stream,
            service.clone(),
            busy.clone(),
            shutdown.clone(),
        ));
    }
    let _ = std::fs::remove_file(&path);
}

/// Answers one client.
async fn answer(
    mut stream: UnixStream,
    service: Arc<Service>,
    busy: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = [0; REQUEST.len()];
    match tokio::time::timeout(ASK_PATIENCE, stream.read_exact(&mut request)).await {
        Ok(Ok(_)) if request == REQUEST => {}
        _ => return,
    }
    if busy.swap(true, Ordering::SeqCst) {
        let _ = stream.write_all(BUSY).await;
        return;
    }
    let written = match stream.write_all(OK).await {
        Ok(()) => match stream.into_std() {
            Ok(stream) => {
                tokio::task::spawn_blocking(move || write(stream, &service, &shutdown)).await
            }
            Err(error) => Ok(Err(error.to_string())),
        },
        Err(error) => Ok(Err(error.to_string())),
    };
    busy.store(false, Ordering::SeqCst);
    match written {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(error, "backup not written"),
        Err(error) => tracing::warn!(%error, "backup task failed"),
    }
}

/// Writes a backup of the worker's store to `stream` (blocking).
fn write(
    stream: std::os::unix::net::UnixStream,
    service: &Service,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let started = Instant::now();
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_write_timeout(Some(READ_PATIENCE)))
        .map_err(|e| e.to_string())?;
    let backup = service.store().backup().map_err(|e| chain(&e))?;
    let (tokens, taken_at) = (backup.header().tokens(), backup.header().taken_at.clone());
    tracing::info!(tokens, taken_at, "backup started");
    let out = std::io::BufWriter::with_capacity(1 << 16, stream);
    let (out, totals) = backup
        .write(out, &mut |_, _| !shutdown.is_cancelled())
        .map_err(|e| chain(&e))?;
    out.into_inner().map_err(|e| e.to_string())?;
    tracing::info!(
        tokens = totals[0],
        taken_at,
        seconds = started.elapsed().as_secs_f64(),
        "backup written"
    );
    Ok(())
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use mmt_shared::secret::Secret;
    use mmt_shared::wire::{MessageKind, Scope};

    use super::*;
    use crate::ops::backup::{TakeError, take};
    use crate::rules::lifecycle::{self, ConnectInput};
    use crate::store::backup::Reader;
    use crate::store::crypto::KeyRing;
    use crate::store::{Decision, Store, TokenSecrets};

    /// A worker's service over a store of `tokens` tokens, and its key file.
    fn service(dir: &Path, tokens: usize) -> (Arc<Service>, PathBuf) {
        let key_file = dir.join("mmt.key");
        let (key, _) = KeyRing::load_or_create(&key_file).expect("key");
        let store = Store::open(&dir.join("data"), key).expect("opens");
        store
            .write(|tx| {
                for i in 0..tokens {
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
        (Arc::new(Service::new(store, Vec::new())), key_file)
    }

    fn key(key_file: &Path) -> KeyRing {
        KeyRing::load_or_create(key_file).expect("key").0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_through_the_socket_reads_back_whole_and_a_second_one_meanwhile_is_told_busy()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let (service, key_file) = service(dir.path(), 3_000);
        let shutdown = CancellationToken::new();
        start(&dir.path().join("data"), &service, &shutdown);
        let socket = dir.path().join("data").join(SOCKET);
        // A client that asks and then reads nothing holds the worker's one
        // backup.
        let mut stalled = std::os::unix::net::UnixStream::connect(&socket).expect("connects");
        stalled.write_all(REQUEST).expect("asks");
        let mut answer = [0; OK.len()];
        stalled.read_exact(&mut answer).expect("answered");
        assert_eq!(answer, OK);
        let (data, file, k) = (
            dir.path().join("data"),
            dir.path().join("b.mmt"),
            key(&key_file),
        );
        let busy = tokio::task::spawn_blocking(move || take(&data, &file, k, &mut |_| {}))
            .await
            .expect("runs");
        assert!(matches!(busy, Err(TakeError::Busy)), "{busy:?}");
        drop(stalled);
        let (data, file, k) = (
            dir.path().join("data"),
            dir.path().join("b.mmt"),
            key(&key_file),
        );
        let taken = loop {
            let (data, file, k) = (data.clone(), file.clone(), key(&key_file));
            match tokio::task::spawn_blocking(move || take(&data, &file, k, &mut |_| {}))
                .await
                .expect("runs")
            {
                // The stalled backup's thread sees its client gone at its
                // next write.
                Err(TakeError::Busy) => tokio::task::yield_now().await,
                other => break other.expect("backs up"),
            }
        };
        assert!(taken.from_worker);
        assert_eq!(taken.totals, [3_000, 3_000, 0, 0]);
        let reader = Reader::open(std::fs::File::open(&file).expect("kept")).expect("a backup");
        let macs = reader.check_key(&k).expect("the key");
        assert_eq!(reader.finish(&macs).expect("whole"), [3_000, 3_000, 0, 0]);
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_that_stops_ends_the_backup_being_written_and_nothing_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (service, key_file) = service(dir.path(), 10_000);
        let shutdown = CancellationToken::new();
        start(&dir.path().join("data"), &service, &shutdown);
        let (data, file, k) = (
            dir.path().join("data"),
            dir.path().join("b.mmt"),
            key(&key_file),
        );
        let stop = shutdown.clone();
        let ended =
            tokio::task::spawn_blocking(move || take(&data, &file, k, &mut |_| stop.cancel()))
                .await
                .expect("runs");
        assert!(matches!(ended, Err(TakeError::Ended)), "{ended:?}");
        assert!(!dir.path().join("b.mmt").exists());
        assert!(!dir.path().join("b.mmt.partial").exists());
    }
}
