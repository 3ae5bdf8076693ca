//! The HTTP edge of `--metrics-addr` (plain HTTP/1.1, hyper): `/metrics`
//! ([`super::metrics`]), `/healthz` (the process runs and answers) and
//! `/readyz` (the worker consumes: its broker session serves every queue and
//! the store answers a read; 503 with a one-line reason otherwise).
//!
//! The store is asked on a blocking thread with a deadline, one question at
//! a time: a disk that hangs makes `/readyz` say so, and never piles up
//! blocked threads however often it is probed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mmt_shared::wire::MessageKind;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::counters::link::{LinkStats, Readiness};
use crate::observe::metrics::{self, Link, Scrape};
use crate::observe::stats::Stats;
use crate::refresh::Refresher;
use crate::service::Service;

/// How long the store may take to answer a probe's read.
const STORE_PATIENCE: Duration = Duration::from_secs(2);
/// How long a client may take to send its request's headers.
const HEADER_PATIENCE: Duration = Duration::from_secs(5);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// The message id the store probe looks up (never stored: a read only).
const PROBE_ID: &str = "mmt-readyz-probe";

/// The address is unusable (in use, not local, not permitted).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics and probes on {addr}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Listens on `addr`; done before the worker starts anything, so an address
/// in use stops the start at once.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// What the endpoints read.
pub struct Probes {
    /// The counters `worker.stats` shows.
    pub stats: Arc<Stats>,
    /// The store (token counts, size, the probe's read).
    pub service: Arc<Service>,
    /// The refresh engine's counts.
    pub refresher: Arc<Refresher>,
    /// The broker link's recoveries.
    pub link: Arc<LinkStats>,
    /// Whether the broker session serves, set by the app.
    pub readiness: Arc<Readiness>,
}

/// The store's answer to a probe: its size on disk, or why it is not
/// answering.
type StoreAnswer = Result<Option<u64>, &'static str>;

struct Server {
    probes: Probes,
    /// A store probe is waiting for the store.
    asking: Arc<AtomicBool>,
}

impl Server {
    /// One read of the store, and its size (file metadata), within
    /// [`STORE_PATIENCE`].
    async fn ask_store(&self) -> StoreAnswer {
        if self.asking.swap(true, Ordering::AcqRel) {
            return Err("store: not answering (the previous probe is still waiting)");
        }
        let asking = Asking(self.asking.clone());
        let service = self.probes.service.clone();
        let read = tokio::task::spawn_blocking(move || {
            let _asking = asking;
            let store = service.store();
            store
                .processed(MessageKind::TokenResolve, PROBE_ID)
                .map(|_| store.size_on_disk().ok())
        });
        match tokio::time::timeout(STORE_PATIENCE, read).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err(_))) => Err("store: a read failed"),
            Ok(Err(_)) => Err("store: the probe failed"),
            Err(_) => Err("store: not answering within 2 s"),
        }
    }

    /// Why the worker is not ready, if it is not.
    async fn not_ready(&self) -> (Option<String>, StoreAnswer) {
        let store = self.ask_store().await;
        let reason = match (self.probes.readiness.reason(), &store) {
            (Some(broker), _) => Some(broker),
            (None, Err(store)) => Some((*store).to_owned()),
            (None, Ok(_)) => None,
        };
        (reason, store)
    }

    async fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match request.uri().path() {
            "/metrics" => {
                let (reason, store) = self.not_ready().await;
                let p = &self.probes;
                let link = Link {
                    reconnects: p.link.recoveries_total(),
                    up: reason.is_none(),
                    store_bytes: store.ok().flatten(),
                };
                match Scrape::read(&p.stats, &p.service, &p.refresher, link).encode() {
                    Ok(body) => {
                        let mut response = text(StatusCode::OK, body);
                        response.headers_mut().insert(
                            CONTENT_TYPE,
                            HeaderValue::from_static(metrics::CONTENT_TYPE),
                        );
                        response
                    }
                    Err(_) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the metrics did not encode\n".into(),
                    ),
                }
            }
            "/healthz" => text(StatusCode::OK, "alive\n".into()),
            "/readyz" => match self.not_ready().await.0 {
                None => text(StatusCode::OK, "ready\n".into()),
                Some(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

/// Clears the "asking" mark when the blocking read ends, however it ends.
struct Asking(Arc<AtomicBool>);

impl Drop for Asking {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves the endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, probes: Probes, shutdown: CancellationToken) {
    let server = Arc::new(Server {
        probes,
        asking: Arc::new(AtomicBool::new(false)),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: try again shortly.
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let server = server.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.answer(&request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_PATIENCE)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "metrics endpoint: connection ended");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
}
