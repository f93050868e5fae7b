//! Connections before they authenticate: every accepted socket gets a [`Slot`] in the
//! broker's [`Gate`] until its `hello` or `enroll` succeeds. The gate caps how many such
//! connections exist in all and per source IP (evicting the oldest when a new one arrives at a
//! cap), and [`GuardedIo`] wraps the socket so that the HTTP upgrade (and TLS handshake) must
//! finish within the handshake timeout and at most a small byte budget is read before
//! authentication. `crate::socket` enforces the hello deadline and answers a connection that
//! used up its budget; afterwards the slot is released and the socket is read without limits
//! beyond the protocol's frame cap.
//!
//! Why evict the oldest instead of refusing the newest: a half-open attacker holds its
//! connections as long as it can, while a real agent finishes its hello within milliseconds of
//! connecting. Refusing new connections at the cap (nginx `limit_conn`, OpenSSH
//! `MaxStartups`) lets whoever holds the slots lock everyone else out; dropping the oldest
//! pending connection lets every fresh client in unless the attacker can open a cap's worth of
//! connections within one legitimate handshake.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The limits the gate enforces (from [`crate::BrokerConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// From accept until the WebSocket upgrade (and TLS handshake) is complete.
    pub handshake_timeout: Duration,
    /// Unauthenticated connections in all; at least 1.
    pub max_unauthenticated: usize,
    /// Unauthenticated connections per source IP; at least 1.
    pub max_unauthenticated_per_ip: usize,
    /// Bytes read from a connection (HTTP request and frames) before it authenticates.
    pub preauth_bytes: usize,
}

const HANDSHAKE: u8 = 0;
const UPGRADED: u8 = 1;
const AUTHENTICATED: u8 = 2;

/// Unauthenticated connections, oldest first, and by source IP.
#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    order: BTreeMap<u64, Arc<Slot>>,
    per_ip: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Table {
    fn remove(&mut self, id: u64, ip: IpAddr) -> Option<Arc<Slot>> {
        if let Some(set) = self.per_ip.get_mut(&ip) {
            set.remove(&id);
            if set.is_empty() {
                self.per_ip.remove(&ip);
            }
        }
        self.order.remove(&id)
    }
}

/// The registry of unauthenticated connections.
#[derive(Debug)]
pub struct Gate {
    limits: GateLimits,
    metrics: Arc<Metrics>,
    table: Mutex<Table>,
}

impl Gate {
    /// A gate enforcing `limits`, counting into `metrics`.
    pub fn new(limits: GateLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { limits, metrics, table: Mutex::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table is plain data, every mutation complete: a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection from `ip`, evicting the oldest unauthenticated connection
    /// of that IP, then the oldest of all, when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Arc<Slot> {
        let mut evicted = Vec::new();
        let slot = {
            let mut t = self.lock();
            let per_ip = self.limits.max_unauthenticated_per_ip.max(1);
            while let Some(&oldest) = t.per_ip.get(&ip).filter(|s| s.len() >= per_ip).and_then(|s| s.first())
            {
                evicted.extend(t.remove(oldest, ip));
            }
            let total = self.limits.max_unauthenticated.max(1);
            while t.order.len() >= total {
                let Some((&id, s)) = t.order.first_key_value() else { break };
                let ip = s.ip;
                evicted.extend(t.remove(id, ip));
            }
            t.next_id += 1;
            let slot = Arc::new(Slot {
                id: t.next_id,
                ip,
                gate: Arc::downgrade(self),
                phase: AtomicU8::new(HANDSHAKE),
                read: AtomicUsize::new(0),
                evicted: CancellationToken::new(),
                over_budget: CancellationToken::new(),
                waker: AtomicWaker::new(),
            });
            t.order.insert(slot.id, slot.clone());
            t.per_ip.entry(ip).or_default().insert(slot.id);
            slot
        };
        self.metrics.preauth_evicted.fetch_add(evicted.len() as u64, SeqCst);
        for s in evicted {
            tracing::debug!(ip = %s.ip, "evicted the oldest unauthenticated connection");
            s.evict();
        }
        self.metrics.unauthenticated.store(self.lock().order.len() as i64, SeqCst);
        slot
    }

    fn release(&self, id: u64, ip: IpAddr) {
        let left = {
            let mut t = self.lock();
            t.remove(id, ip);
            t.order.len()
        };
        self.metrics.unauthenticated.store(left as i64, SeqCst);
    }

    /// Unauthenticated connections now.
    pub fn pending(&self) -> usize {
        self.lock().order.len()
    }

    /// Wraps an accepted socket from `addr` in its guard.
    pub fn wrap<S>(self: &Arc<Self>, inner: S, addr: SocketAddr) -> GuardedIo<S> {
        let slot = self.admit(addr.ip());
        GuardedIo {
            inner,
            slot,
            deadline: Box::pin(tokio::time::sleep(self.limits.handshake_timeout)),
            budget: self.limits.preauth_bytes,
        }
    }
}

/// One connection's entry in the gate, shared by its [`GuardedIo`] and its socket task.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    ip: IpAddr,
    gate: Weak<Gate>,
    phase: AtomicU8,
    read: AtomicUsize,
    evicted: CancellationToken,
    over_budget: CancellationToken,
    /// The reader parked at the byte budget, woken when the connection authenticates.
    waker: AtomicWaker,
}

impl Slot {
    /// The WebSocket upgrade is done: the hello deadline (the socket task's) replaces the
    /// handshake deadline.
    pub fn upgraded(&self) {
        let _ = self.phase.compare_exchange(HANDSHAKE, UPGRADED, SeqCst, SeqCst);
    }

    /// The connection authenticated: it leaves the gate and reads without the pre-auth budget.
    pub fn authenticated(&self) {
        if self.phase.swap(AUTHENTICATED, SeqCst) != AUTHENTICATED {
            self.release();
            self.waker.wake();
        }
    }

    /// Whether the connection has authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.phase.load(SeqCst) == AUTHENTICATED
    }

    /// Cancelled when a newer connection took this one's place at a cap.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// Cancelled when the connection sent more than the pre-auth byte budget.
    pub fn over_budget(&self) -> &CancellationToken {
        &self.over_budget
    }

    fn evict(&self) {
        self.evicted.cancel();
        self.waker.wake();
    }

    fn release(&self) {
        if let Some(g) = self.gate.upgrade() {
            g.release(self.id, self.ip);
        }
    }
}

/// A socket under the gate's rules until its connection authenticates.
#[derive(Debug)]
pub struct GuardedIo<S> {
    inner: S,
    slot: Arc<Slot>,
    deadline: Pin<Box<Sleep>>,
    budget: usize,
}

impl<S> GuardedIo<S> {
    /// This connection's slot.
    pub fn slot(&self) -> Arc<Slot> {
        self.slot.clone()
    }
}

impl<S> Drop for GuardedIo<S> {
    fn drop(&mut self) {
        if !self.slot.is_authenticated() {
            self.slot.release();
        }
    }
}

fn io_err(kind: std::io::ErrorKind, msg: &str) -> std::io::Error {
    std::io::Error::new(kind, msg.to_string())
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let phase = this.slot.phase.load(SeqCst);
        if phase == AUTHENTICATED {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        this.slot.waker.register(cx.waker());
        if phase == HANDSHAKE {
            if this.slot.evicted.is_cancelled() {
                return Poll::Ready(Err(io_err(std::io::ErrorKind::ConnectionAborted, "evicted")));
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io_err(std::io::ErrorKind::TimedOut, "handshake timed out")));
            }
        }
        let used = this.slot.read.load(SeqCst);
        let left = this.budget.saturating_sub(used);
        if left == 0 {
            if phase == HANDSHAKE {
                return Poll::Ready(Err(io_err(std::io::ErrorKind::InvalidData, "request too large")));
            }
            // The socket task answers and closes; until then (or until the hello already read
            // authenticates the connection, which wakes us) nothing more is read.
            this.slot.over_budget.cancel();
            return if this.slot.is_authenticated() {
                Pin::new(&mut this.inner).poll_read(cx, buf)
            } else {
                Poll::Pending
            };
        }
        if left >= buf.remaining() {
            let before = buf.filled().len();
            let r = Pin::new(&mut this.inner).poll_read(cx, buf);
            this.slot.read.fetch_add(buf.filled().len() - before, SeqCst);
            return r;
        }
        // Near the budget: read no more than is left.
        let mut tmp = vec![0u8; left];
        let mut small = ReadBuf::new(&mut tmp);
        let r = Pin::new(&mut this.inner).poll_read(cx, &mut small);
        let n = small.filled().len();
        buf.put_slice(small.filled());
        this.slot.read.fetch_add(n, SeqCst);
        r
    }
}

impl<S: AsyncWrite + Unpin> GuardedIo<S> {
    fn refused(&self) -> Option<std::io::Error> {
        (self.slot.phase.load(SeqCst) == HANDSHAKE && self.slot.evicted.is_cancelled())
            .then(|| io_err(std::io::ErrorKind::ConnectionAborted, "evicted"))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.refused() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.refused() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A plain TCP listener whose connections go through a [`Gate`].
#[derive(Debug)]
pub struct GuardedListener {
    tcp: TcpListener,
    gate: Arc<Gate>,
}

impl GuardedListener {
    /// Accepts on `tcp`, admitting every connection through `gate`.
    pub fn new(tcp: TcpListener, gate: Arc<Gate>) -> Self {
        Self { tcp, gate }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, addr)) => {
                    // Nagle would hold small pushes back for an ACK round trip.
                    let _ = stream.set_nodelay(true);
                    return (self.gate.wrap(stream, addr), addr);
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: wait a
                    // little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// What a WebSocket handler learns about its connection: the peer address and its slot.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub slot: Arc<Slot>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        Self { addr: *s.remote_addr(), slot: s.io().slot() }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Self { addr: *s.remote_addr(), slot: s.io().get_ref().0.slot() }
    }
}
