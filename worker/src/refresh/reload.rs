//! SIGHUP reloads the integrations file: a good file replaces the one in
//! force (and the concurrency bound); a bad one is refused with the reason
//! in the log, and the one in force stays.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::integrations::Integrations;
use crate::refresh::Refresher;
use crate::service::Service;

/// Reads `path` again; on success it is in force when this returns.
pub async fn reload(service: &Service, refresher: &Refresher, path: PathBuf) -> bool {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || Integrations::load(&path)).await {
        Ok(Ok(integrations)) => {
            let (count, concurrency) =
                (integrations.by_broker_type.len(), integrations.concurrency);
            service.set_integrations(integrations);
            refresher.resize(concurrency);
            tracing::info!(
                file = shown,
                integrations = count,
                concurrency,
                "integrations reloaded"
            );
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "integrations file refused; keeping the one in force");
            false
        }
        Err(error) => {
            tracing::error!(%error, "integrations reload failed; keeping the one in force");
            false
        }
    }
}

/// Starts reloading `path` on every SIGHUP until `stop`. The handler is in
/// place when this returns (a SIGHUP right after start is never fatal).
pub fn on_sighup(
    service: Arc<Service>,
    refresher: Arc<Refresher>,
    path: PathBuf,
    stop: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; the integrations file is read at start only");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    reload(&service, &refresher, path.clone()).await;
                }
            }
        }
    });
}
