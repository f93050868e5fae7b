//! A TCP proxy the test owns, between agents and a broker: it forwards bytes both ways until
//! told to reset every connection (RST, as a NAT or load balancer dropping state does) or to
//! stall (stop forwarding in both directions, connections left open, as a black-holed route
//! does). A recording proxy also keeps every connection's bytes in both directions, for tests
//! that check what went over the wire. Included by `#[path = "common/proxy.rs"] mod proxy;` next to `mod common;`.
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
    /// Each connection's bytes (to the broker, to the agent) when recording, else `None`.
    recorded: Option<std::sync::Mutex<Vec<Wire>>>,
}

/// One proxied connection's bytes, as they went.
#[derive(Debug, Clone, Default)]
pub struct Wire {
    /// From the agent to the broker (the HTTP request, then client frames).
    pub to_broker: Vec<u8>,
    /// From the broker to the agent (the HTTP response, then server frames).
    pub to_agent: Vec<u8>,
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
        Self::start_with(upstream, false).await
    }

    /// As [`Proxy::start`], keeping every connection's bytes ([`Proxy::recorded`]).
    pub async fn recording(upstream: &str) -> Self {
        Self::start_with(upstream, true).await
    }

    async fn start_with(upstream: &str, record: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let control = Arc::new(Control {
            generation: watch::channel(0).0,
            stalled: watch::channel(false).0,
            accepted: AtomicU64::new(0),
            recorded: record.then(Default::default),
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

    /// Each connection's bytes so far, in accept order (empty unless [`Proxy::recording`]).
    pub fn recorded(&self) -> Vec<Wire> {
        self.control.recorded.as_ref().map(|r| r.lock().unwrap().clone()).unwrap_or_default()
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
    let slot = c.recorded.as_ref().map(|r| {
        let mut r = r.lock().unwrap();
        r.push(Wire::default());
        r.len() - 1
    });
    let tap = |to_broker: bool| Tap { c: c.clone(), slot, to_broker };
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
            _ = pump(&mut dr, &mut uw, c.stalled.subscribe(), tap(true)) => false,
            _ = pump(&mut ur, &mut dw, c.stalled.subscribe(), tap(false)) => false,
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

/// Where a pump records what it forwards (nowhere unless recording).
struct Tap {
    c: Arc<Control>,
    slot: Option<usize>,
    to_broker: bool,
}

impl Tap {
    fn record(&self, bytes: &[u8]) {
        let (Some(r), Some(i)) = (&self.c.recorded, self.slot) else { return };
        let mut r = r.lock().unwrap();
        let w = &mut r[i];
        if self.to_broker { &mut w.to_broker } else { &mut w.to_agent }.extend_from_slice(bytes);
    }
}

/// Copies `r` to `w`, pausing while stalled. Ends at EOF or on an error.
async fn pump(
    r: &mut tokio::net::tcp::ReadHalf<'_>,
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    mut stalled: watch::Receiver<bool>,
    tap: Tap,
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
        tap.record(&buf[..n]);
        // Bytes already read are written even if a stall began meanwhile (nothing is dropped).
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
