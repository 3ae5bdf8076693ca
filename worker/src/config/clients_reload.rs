//! SIGHUP reloads the clients file (CONTRACT.md §8): a file that reads and
//! validates replaces the one in force for every message checked after it;
//! one that does not is logged and the old one kept.

use std::path::PathBuf;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::clients_file;
use crate::rules::identity::{Gate, Mode};

/// Starts listening for SIGHUP (the handler is in place when this returns,
/// so a signal sent after it is never the default "terminate"), reloading
/// `path` into `gate` on each, until `stop`.
pub fn listen(path: PathBuf, gate: Gate, stop: CancellationToken) -> std::io::Result<()> {
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            let file = path.clone();
            match tokio::task::spawn_blocking(move || clients_file::load(&file)).await {
                Ok(Ok(clients)) => {
                    let count = clients.len();
                    gate.replace(Mode::Strict(clients));
                    tracing::info!(file = %path.display(), clients = count, "clients file reloaded");
                }
                Ok(Err(error)) => tracing::warn!(
                    %error,
                    "clients file not reloaded; the previous one stays in force"
                ),
                Err(error) => tracing::warn!(
                    %error,
                    "clients file reload failed; the previous one stays in force"
                ),
            }
        }
    });
    Ok(())
}
