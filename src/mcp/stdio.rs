//! The MCP server's stdin and stdout, between the process and rmcp. A filter task reads stdin
//! line by line and asks [`line_check::check`] about each: good lines go on to rmcp through a
//! pipe, and a line rmcp could not answer properly is answered here, with the request's id.
//!
//! Those replies and rmcp's own output share stdout, so neither may cut into a line of the
//! other: rmcp writes into a [`LineSender`], which hands on whole lines only, and one writer
//! task writes every line to stdout through [`ConfirmingWriter`] (which confirms
//! `check_messages` leases once their result is out, as before).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use super::confirm::{ConfirmingWriter, Leases, Written};
use super::debug;
use super::line_check::{self, Verdict};

/// A stdin line longer than this is dropped (as rmcp drops it) and answered as invalid.
const MAX_LINE: usize = 16 << 20;
/// How much of a dropped line is kept to find its id.
const ID_SCAN: usize = 64 << 10;
/// Lines queued for stdout before writers wait.
const QUEUE: usize = 64;
/// Room in the pipe from the filter to rmcp.
const PIPE: usize = 1 << 20;

/// The halves rmcp serves on, and the tasks behind them.
pub struct Stdio {
    /// What rmcp reads: stdin's lines that passed the check.
    pub input: DuplexStream,
    /// What rmcp writes: whole lines, to the writer task.
    pub output: LineSender,
    filter: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Stdio {
    /// Starts the filter on the process's stdin and the writer on its stdout.
    pub fn start(leases: Leases, written: Written) -> Self {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (input, to_rmcp) = tokio::io::duplex(PIPE);
        let filter = tokio::spawn(filter(tokio::io::stdin(), to_rmcp, tx.clone()));
        let writer =
            tokio::spawn(write_lines(rx, ConfirmingWriter::new(tokio::io::stdout(), leases, written)));
        Self { input, output: LineSender::new(tx), filter, writer }
    }

    /// After rmcp let go of both halves: stops reading stdin and waits (at most 2 s) until every
    /// line queued was written.
    pub async fn finish(filter: JoinHandle<()>, writer: JoinHandle<()>) {
        filter.abort();
        let _ = filter.await;
        if tokio::time::timeout(Duration::from_secs(2), writer).await.is_err() {
            debug("stdout did not take the last lines within 2 s");
        }
    }

    /// The halves for rmcp, and the tasks for [`Stdio::finish`].
    pub fn split(self) -> ((DuplexStream, LineSender), (JoinHandle<()>, JoinHandle<()>)) {
        ((self.input, self.output), (self.filter, self.writer))
    }
}

/// Reads `stdin` line by line (bounded), passing good lines to `to_rmcp` and queueing replies
/// for the others; closes `to_rmcp` at end of input.
async fn filter<R>(stdin: R, mut to_rmcp: DuplexStream, replies: mpsc::Sender<Vec<u8>>)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut stdin = BufReader::new(stdin);
    let mut line = Vec::new();
    loop {
        line.clear();
        let (ended, oversized) = match read_line(&mut stdin, &mut line).await {
            Ok(r) => r,
            Err(e) => {
                debug(&format!("cannot read stdin: {e}"));
                return;
            }
        };
        if line.is_empty() && !ended {
            return;
        }
        let verdict = if oversized {
            let id = line_check::recover_id(&String::from_utf8_lossy(&line));
            let v = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": line_check::INVALID_REQUEST,
                "message": format!("Invalid Request: a line of more than {MAX_LINE} bytes"),
            }});
            Verdict::Reply(v.to_string())
        } else {
            line_check::check(&line)
        };
        match verdict {
            Verdict::Skip => {}
            Verdict::Pass(text) => {
                let mut bytes = text.into_bytes();
                bytes.push(b'\n');
                if to_rmcp.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Verdict::Reply(r) => {
                debug(&format!("answered a line rmcp cannot read: {r}"));
                let mut bytes = r.into_bytes();
                bytes.push(b'\n');
                if replies.send(bytes).await.is_err() {
                    return;
                }
            }
        }
        if !ended {
            return;
        }
    }
}

/// Reads one line without its `\n` into `line`, keeping at most [`MAX_LINE`] bytes (past that,
/// only the first [`ID_SCAN`] are kept and the rest skipped). Returns (whether a `\n` ended it,
/// whether it was too long); `(false, _)` with an empty `line` is the end of input.
async fn read_line<R>(r: &mut BufReader<R>, line: &mut Vec<u8>) -> io::Result<(bool, bool)>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut oversized = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok((false, oversized));
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let take = newline.map_or(available.len(), |i| i);
        if !oversized && line.len() + take > MAX_LINE {
            oversized = true;
            line.truncate(ID_SCAN);
        }
        if !oversized {
            line.extend_from_slice(&available[..take]);
        } else if line.len() < ID_SCAN {
            let room = ID_SCAN - line.len();
            line.extend_from_slice(&available[..take.min(room)]);
        }
        let consumed = newline.map_or(take, |i| i + 1);
        r.consume(consumed);
        if newline.is_some() {
            return Ok((true, oversized));
        }
    }
}

/// Writes each queued line to `out` and flushes once the queue is empty, until every sender is
/// gone or stdout fails.
async fn write_lines<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Vec<u8>>, mut out: W) {
    while let Some(line) = rx.recv().await {
        if out.write_all(&line).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if out.write_all(&more).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

/// The stdout rmcp writes to: bytes are gathered into lines, and each whole line goes to the
/// writer task (a flush waits until the gathered lines are queued).
pub struct LineSender {
    tx: PollSender<Vec<u8>>,
    /// The line being written.
    partial: Vec<u8>,
    /// A whole line waiting for room in the queue.
    ready: Option<Vec<u8>>,
}

impl LineSender {
    fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        Self { tx: PollSender::new(tx), partial: Vec::new(), ready: None }
    }

    /// Queues the waiting whole line, if any.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ready.is_some() {
            ready!(self.tx.poll_reserve(cx)).map_err(|_| closed())?;
            let line = self.ready.take().unwrap_or_default();
            self.tx.send_item(line).map_err(|_| closed())?;
        }
        Poll::Ready(Ok(()))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "stdout writer is gone")
}

impl AsyncWrite for LineSender {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_push(cx))?;
        match data.iter().position(|b| *b == b'\n') {
            Some(i) => {
                this.partial.extend_from_slice(&data[..=i]);
                this.ready = Some(std::mem::take(&mut this.partial));
                Poll::Ready(Ok(i + 1))
            }
            None => {
                this.partial.extend_from_slice(data);
                Poll::Ready(Ok(data.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_push(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_push(cx))?;
        this.tx.close();
        Poll::Ready(Ok(()))
    }
}
