//! A small TCP proxy between a worker and RabbitMQ that can cut every
//! connection through it, refuse new ones, or take them and say nothing (a
//! broker that accepts TCP and never speaks AMQP), so tests disturb one
//! worker's link and never the shared broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Relays it to the broker.
    Pass = 0,
    /// Closes it at once.
    Refuse = 1,
    /// Keeps it open and sends nothing (until a cut).
    Silent = 2,
}

/// A running proxy to 127.0.0.1:5672.
pub struct Proxy {
    pub addr: SocketAddr,
    cuts: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let (cuts, watcher) = watch::channel(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let modes = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut cut = watcher.clone();
                cut.mark_unchanged();
                let mode = modes.load(Ordering::SeqCst);
                if mode == Mode::Refuse as u8 {
                    drop(client);
                    continue;
                }
                if mode == Mode::Silent as u8 {
                    tokio::spawn(async move {
                        let _held = client;
                        let _ = cut.changed().await;
                    });
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect("127.0.0.1:5672").await else {
                        return;
                    };
                    let (mut client, mut upstream) = (client, upstream);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            cuts,
            accepted,
            mode,
            task,
        }
    }

    /// The AMQP URL through the proxy.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Drops every connection open through the proxy (new ones still pass).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// What to do with new connections from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
