//! What one agent-socket client may cost in memory: its request lines are read at most
//! [`MAX_AGENT_LINE_BYTES`] at a time (a longer line is discarded as it streams in, never
//! buffered whole), and the replies and events queued for it are bounded in number and in bytes
//! ([`MAX_AGENT_CLIENT_QUEUED_BYTES`]): a client that does not read is disconnected, not
//! buffered for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use claudemesh_protocol::limits::MAX_AGENT_CLIENT_QUEUED_BYTES;
use claudemesh_protocol::local::AgentLine;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Lines queued for one client at most, whatever their size.
pub const QUEUED_LINES: usize = 1024;
/// How long a reply waits for room in a full queue before the client counts as not reading
/// and is disconnected.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What reading one request line found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A line (without its newline) is in the buffer; the last one may lack a newline.
    Line,
    /// A line longer than the limit, this many bytes: read and dropped.
    TooLong(usize),
    /// The client closed its side.
    Eof,
}

/// Reads one line into `buf` (cleared first), keeping at most `max` bytes of it: the rest of a
/// longer line is consumed and dropped as it arrives, so memory stays bounded whatever a client
/// sends.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    buf.clear();
    let (mut total, mut over) = (0usize, false);
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match (over, total) {
                (true, _) => LineRead::TooLong(total),
                (false, 0) => LineRead::Eof,
                (false, _) => LineRead::Line,
            });
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let body = if done { &chunk[..take - 1] } else { &chunk[..take] };
        if !over && buf.len() + body.len() > max {
            over = true;
            // Give the memory back: the line is dropped, not kept.
            *buf = Vec::new();
        }
        if !over {
            buf.extend_from_slice(body);
        }
        total += body.len();
        r.consume(take);
        if done {
            return Ok(if over { LineRead::TooLong(total) } else { LineRead::Line });
        }
    }
}

/// Why a line was not queued for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The client is gone.
    Closed,
    /// It does not read: past the bound in lines or bytes. It is being disconnected.
    Full,
}

/// The sending side of one client's queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientTx {
    tx: mpsc::Sender<String>,
    queued: Arc<AtomicUsize>,
    /// Cancelled when the client is to be disconnected (it does not read).
    gone: CancellationToken,
}

/// The receiving side: what the connection's writer sends.
#[derive(Debug)]
pub struct ClientRx {
    rx: mpsc::Receiver<String>,
    queued: Arc<AtomicUsize>,
}

/// A client's queue, disconnected through `gone` when it overflows.
pub fn channel(gone: CancellationToken) -> (ClientTx, ClientRx) {
    let (tx, rx) = mpsc::channel(QUEUED_LINES);
    let queued = Arc::new(AtomicUsize::new(0));
    (ClientTx { tx, queued: queued.clone(), gone }, ClientRx { rx, queued })
}

fn encode(l: &AgentLine) -> String {
    // An AgentLine is plain data (strings, numbers, maps with string keys): it always encodes.
    let mut s = serde_json::to_string(l).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

impl ClientTx {
    /// Counts `bytes` in, unless that passes the bound while other lines wait (one line alone
    /// always goes, so a large reply is never refused to a client that reads).
    fn reserve(&self, bytes: usize) -> Result<(), QueueError> {
        let before = self.queued.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > MAX_AGENT_CLIENT_QUEUED_BYTES {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.gone.cancel();
            return Err(QueueError::Full);
        }
        Ok(())
    }

    /// Queues `line` without waiting (the core's events): a client past either bound is
    /// disconnected.
    pub fn try_send(&self, line: &AgentLine) -> Result<(), QueueError> {
        if self.gone.is_cancelled() {
            return Err(QueueError::Closed);
        }
        let s = encode(line);
        let n = s.len();
        self.reserve(n)?;
        match self.tx.try_send(s) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => {
                        self.gone.cancel();
                        QueueError::Full
                    }
                    mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
                })
            }
        }
    }

    /// Queues a reply, waiting while the queue is full in lines (at most [`SEND_TIMEOUT`]);
    /// past that, or past the bound in bytes, the client is disconnected.
    pub async fn send(&self, line: &AgentLine) -> Result<(), QueueError> {
        if self.gone.is_cancelled() {
            return Err(QueueError::Closed);
        }
        let s = encode(line);
        let n = s.len();
        self.reserve(n)?;
        let sent = tokio::select! {
            r = tokio::time::timeout(SEND_TIMEOUT, self.tx.send(s)) => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(QueueError::Closed),
                Err(_) => {
                    self.gone.cancel();
                    Err(QueueError::Full)
                }
            },
            () = self.gone.cancelled() => Err(QueueError::Closed),
        };
        if sent.is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
        }
        sent
    }

    /// Bytes queued and not written yet.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl ClientRx {
    /// The next line to write; call [`ClientRx::written`] once it is written.
    pub async fn recv(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    /// A line of `bytes` was written: it no longer counts.
    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The next queued line, decoded (tests of the core read what it sent).
    pub fn try_recv(&mut self) -> Result<AgentLine, mpsc::error::TryRecvError> {
        let s = self.rx.try_recv()?;
        self.written(s.len());
        serde_json::from_str(&s).map_err(|_| mpsc::error::TryRecvError::Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_line_is_dropped_as_it_streams_and_the_next_one_is_read() {
        let mut input: Vec<u8> = vec![b'x'; 100_000];
        input.extend_from_slice(b"\n{\"ok\":1}\nlast");
        let mut r = tokio::io::BufReader::with_capacity(4096, input.as_slice());
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, &mut buf, 1000).await.unwrap(), LineRead::TooLong(100_000));
        assert!(buf.capacity() <= 1000 + 4096, "never held the long line: {}", buf.capacity());
        assert_eq!(read_line(&mut r, &mut buf, 1000).await.unwrap(), LineRead::Line);
        assert_eq!(buf, b"{\"ok\":1}");
        assert_eq!(read_line(&mut r, &mut buf, 1000).await.unwrap(), LineRead::Line);
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut r, &mut buf, 1000).await.unwrap(), LineRead::Eof);
        let mut r = tokio::io::BufReader::new(&b"exactly10!\n"[..]);
        assert_eq!(read_line(&mut r, &mut buf, 10).await.unwrap(), LineRead::Line);
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_cut_off_past_the_byte_bound() {
        let gone = CancellationToken::new();
        let (tx, mut rx) = channel(gone.clone());
        let big = AgentLine::ok(1, serde_json::Value::String("y".repeat(MAX_AGENT_CLIENT_QUEUED_BYTES)));
        // One line alone always goes, however large.
        tx.try_send(&big).unwrap();
        assert!(!gone.is_cancelled());
        assert_eq!(tx.try_send(&AgentLine::ok(2, serde_json::Value::Null)), Err(QueueError::Full));
        assert!(gone.is_cancelled(), "the client is disconnected");
        assert!(tx.queued_bytes() > MAX_AGENT_CLIENT_QUEUED_BYTES);
        let l = rx.recv().await.unwrap();
        rx.written(l.len());
        assert_eq!(tx.queued_bytes(), 0);
        assert_eq!(tx.send(&AgentLine::ok(3, serde_json::Value::Null)).await, Err(QueueError::Closed));
    }
}
