//! Seen means shown (DESIGN §6) for `check_messages`: the messages a tool result carries are
//! confirmed to the agent only after that result was written to stdout and flushed.
//!
//! The `check_messages` handler takes its messages under a lease and files `request id →
//! lease` in [`Leases`]. [`ConfirmingWriter`] wraps the stdout that rmcp writes JSON-RPC lines
//! to: it follows the bytes the inner writer accepted, and at each complete line that is a
//! response (`result`) to a filed request id it moves that lease to "written"; when a flush of
//! the inner writer then succeeds, the written leases go to [`Written`] (`poll_flush` cannot
//! wait on the agent), which the confirm task empties at once, and every later agent call
//! first (so a `check_messages` right after another sees the first one's messages as seen). An error response drops its lease unconfirmed;
//! a failed write or flush, or a process that dies first, confirms nothing, and the agent
//! offers the messages again when the lease runs out.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use claudemesh_protocol::limits::LEASE_MILLIS;
use rmcp::model::RequestId;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

/// A line longer than this is not a response we filed (a `check_messages` page is at most
/// ~60k characters): it is skipped rather than buffered.
const MAX_TRACKED_LINE: usize = 4 << 20;

/// Leases waiting for the response to the request that took them, by request id (as JSON).
#[derive(Debug, Clone, Default)]
pub struct Leases(Arc<Mutex<HashMap<String, (u64, Instant)>>>);

impl Leases {
    fn key(id: &RequestId) -> String {
        serde_json::to_string(id).unwrap_or_default()
    }

    /// Files `lease` to be confirmed once the response to request `id` was written. Entries
    /// left from requests never answered (cancelled) are dropped once their lease ran out.
    pub fn hold(&self, id: &RequestId, lease: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let stale = Duration::from_millis(2 * LEASE_MILLIS);
        map.retain(|_, (_, at)| at.elapsed() < stale);
        map.insert(Self::key(id), (lease, Instant::now()));
    }

    fn take(&self, key: &str) -> Option<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key).map(|(l, _)| l)
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

/// Leases whose tool result was written and flushed, waiting to be confirmed.
#[derive(Debug, Clone, Default)]
pub struct Written {
    queue: Arc<Mutex<Vec<u64>>>,
    notify: Arc<Notify>,
}

impl Written {
    fn push(&self, leases: &mut Vec<u64>) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).append(leases);
        self.notify.notify_one();
    }

    /// Every lease waiting, oldest first; none is returned twice.
    pub fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Until a lease was pushed (one wake-up may cover several, or none left: call
    /// [`Written::take`]).
    pub async fn pushed(&self) {
        self.notify.notified().await;
    }
}

/// The fields of a JSON-RPC line that tell a response from the rest.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// The stdout rmcp writes to, confirming leases once their response is out (see the module).
#[derive(Debug)]
pub struct ConfirmingWriter<W> {
    inner: W,
    leases: Leases,
    confirm: Written,
    /// The current line so far (bytes the inner writer accepted).
    line: Vec<u8>,
    /// The current line is not tracked (no lease was filed when it began, or it is too long).
    skipping: bool,
    /// Leases whose response was written, waiting for a successful flush.
    written: Vec<u64>,
}

impl<W> ConfirmingWriter<W> {
    pub fn new(inner: W, leases: Leases, confirm: Written) -> Self {
        Self { inner, leases, confirm, line: Vec::new(), skipping: false, written: Vec::new() }
    }

    /// Follows `bytes`, just accepted by the inner writer.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.line.is_empty() && !self.skipping && self.leases.is_empty() {
                // A line that began before any lease was filed cannot be a response to one.
                self.skipping = true;
            }
            let (part, rest, ended) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.skipping {
                if self.line.len() + part.len() > MAX_TRACKED_LINE {
                    self.line.clear();
                    self.skipping = true;
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if ended {
                if !self.skipping {
                    self.line_done();
                }
                self.line.clear();
                self.skipping = false;
            }
            bytes = rest;
        }
    }

    fn line_done(&mut self) {
        let Ok(Line { id: Some(id), result, error }) = serde_json::from_slice::<Line>(&self.line) else {
            return;
        };
        if result.is_none() && error.is_none() {
            return; // a request of ours to the client, not a response
        }
        if let Some(lease) = self.leases.take(&Leases::key(&id))
            && result.is_some()
        {
            self.written.push(lease);
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ConfirmingWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.scan(&buf[..n.min(buf.len())]);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        match &r {
            Poll::Ready(Ok(())) => {
                if !this.written.is_empty() {
                    this.confirm.push(&mut this.written);
                }
            }
            // Not known to be out: confirm nothing (the agent offers them again).
            Poll::Ready(Err(_)) => this.written.clear(),
            Poll::Pending => {}
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn id(n: i64) -> RequestId {
        RequestId::Number(n)
    }

    #[tokio::test]
    async fn confirms_after_the_response_is_written_and_flushed() {
        let leases = Leases::default();
        let rx = Written::default();
        let mut w = ConfirmingWriter::new(Vec::new(), leases.clone(), rx.clone());
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\n").await.unwrap();
        leases.hold(&id(7), 42);
        leases.hold(&RequestId::String("7".into()), 43);
        // Another response, a request of ours with the same id, then ours in two pieces.
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n").await.unwrap();
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n").await.unwrap();
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"res").await.unwrap();
        assert!(rx.take().is_empty());
        w.write_all(b"ult\":{\"content\":[]}}\n").await.unwrap();
        assert!(rx.take().is_empty(), "written but not flushed yet");
        w.flush().await.unwrap();
        assert_eq!(rx.take(), [42]);
        assert!(rx.take().is_empty());
        // The string id "7" is another request; an error response confirms nothing.
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"7\",\"error\":{\"code\":1,\"message\":\"x\"}}\n")
            .await
            .unwrap();
        w.flush().await.unwrap();
        assert!(rx.take().is_empty());
        assert!(leases.is_empty());
    }

    /// A writer that accepts everything but fails to flush.
    struct FailingFlush;

    impl AsyncWrite for FailingFlush {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_failed_flush_confirms_nothing() {
        let leases = Leases::default();
        let rx = Written::default();
        let mut w = ConfirmingWriter::new(FailingFlush, leases.clone(), rx.clone());
        leases.hold(&id(1), 9);
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n").await.unwrap();
        assert!(w.flush().await.is_err());
        assert!(rx.take().is_empty());
    }
}
