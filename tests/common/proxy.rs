//! A TCP proxy the test owns, between agents and a broker: it forwards bytes both ways until
//! told to reset every connection (RST, as a NAT or load balancer dropping state does) or to
//! stall (stop forwarding in both directions, connections left open, as a black-holed route
//! does). Included by `#[path = "common/proxy.rs"] mod proxy;` next to `mod common;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxy's controls, shared by its tasks.
#[derive(Debug)]
struct Control {
    /// Bumped by each reset: a connection from an older generation ends at once, with RST.
    generation: watch::Sender<u64>,
    /// While true, nothing is forwarded (and nothing read, so TCP back-pressure builds up).
    stalled: watch::Sender<bool>,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

/// A proxy on 127.0.0.1 (its accept loop and every connection are aborted on drop).
#[derive(Debug)]
pub struct Proxy {
    /// The address agents connect to.
    pub addr: String,
    control: Arc<Control>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port, forwarding each connection to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let control = Arc::new(Control {
            generation: watch::channel(0).0,
            stalled: watch::channel(false).0,
            accepted: AtomicU64::new(0),
        });
        let (c, upstream) = (control.clone(), upstream.to_string());
        let accept = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((down, _)) = listener.accept().await {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                conns.spawn(serve(down, upstream.clone(), c.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        Self { addr, control, accept }
    }

    /// The WebSocket URL of the broker behind this proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Resets every open connection (both sides get RST); new ones are forwarded as before.
    pub fn reset_all(&self) {
        self.control.generation.send_modify(|g| *g += 1);
    }

    /// Stops (`true`) or resumes (`false`) forwarding on every connection, new ones included.
    pub fn stall(&self, on: bool) {
        self.control.stalled.send_replace(on);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Forwards one connection until either side closes or a reset comes.
async fn serve(mut down: TcpStream, upstream: String, c: Arc<Control>) {
    let mut gen_rx = c.generation.subscribe();
    let born = *gen_rx.borrow_and_update();
    let Ok(mut up) = TcpStream::connect(&upstream).await else { return };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let was_reset = {
        let (mut dr, mut dw) = down.split();
        let (mut ur, mut uw) = up.split();
        let reset = async {
            while *gen_rx.borrow_and_update() == born {
                if gen_rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = reset => true,
            _ = pump(&mut dr, &mut uw, c.stalled.subscribe()) => false,
            _ = pump(&mut ur, &mut dw, c.stalled.subscribe()) => false,
        }
    };
    if was_reset {
        // Linger 0: closing sends RST, not FIN (and does not block: nothing is left to flush).
        #[allow(deprecated)]
        let _ = down.set_linger(Some(std::time::Duration::ZERO));
        #[allow(deprecated)]
        let _ = up.set_linger(Some(std::time::Duration::ZERO));
    }
}

/// Copies `r` to `w`, pausing while stalled. Ends at EOF or on an error.
async fn pump(
    r: &mut tokio::net::tcp::ReadHalf<'_>,
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // A stall begins: stop reading at once.
            _ = stalled.changed() => continue,
        };
        // Bytes already read are written even if a stall began meanwhile (nothing is dropped).
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
