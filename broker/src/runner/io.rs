//! The runner's I/O plumbing: the single writer of [`FromRunner`] lines, the batcher that turns
//! [`LogSink`](super::log::LogSink) lines into `log` events, and a line reader with a length cap.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::FromRunner;

/// Events queued for the writer before senders wait.
pub const OUT_CAPACITY: usize = 1024;
/// Log lines queued for the batcher before [`LogSink`](super::log::LogSink) drops them.
pub const LOG_CAPACITY: usize = 4096;
/// A `log` event is sent at least this often while lines arrive…
pub const LOG_FLUSH: Duration = Duration::from_millis(50);
/// …or as soon as this many lines are waiting.
pub const LOG_BATCH: usize = 200;

/// Writes each event as one JSON line to `output`, flushing after each, until every sender is
/// gone. A write error (the broker went away) cancels `broken`.
pub async fn write_events<W: AsyncWrite + Unpin>(
    mut output: W,
    mut rx: mpsc::Receiver<FromRunner>,
    broken: CancellationToken,
) {
    while let Some(ev) = rx.recv().await {
        let mut line = match serde_json::to_vec(&ev) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an event");
                continue;
            }
        };
        line.push(b'\n');
        let written = async {
            output.write_all(&line).await?;
            output.flush().await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, "cannot write to the broker; stopping");
            broken.cancel();
            return;
        }
    }
    let _ = output.shutdown().await;
}

/// Collects `(service, line)` pairs into `log` events: one per service per flush, lines in
/// order, flushed every [`LOG_FLUSH`] or at [`LOG_BATCH`] lines. Ends when every sink is gone.
pub async fn batch_logs(mut rx: mpsc::Receiver<(String, String)>, out: mpsc::Sender<FromRunner>) {
    let mut pending: Vec<(String, Vec<String>)> = Vec::new();
    let mut count = 0usize;
    let mut tick = tokio::time::interval(LOG_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some((name, line)) => {
                    match pending.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, lines)) => lines.push(line),
                        None => pending.push((name, vec![line])),
                    }
                    count += 1;
                    if count >= LOG_BATCH {
                        flush(&mut pending, &out).await;
                        count = 0;
                    }
                }
                None => {
                    flush(&mut pending, &out).await;
                    return;
                }
            },
            _ = tick.tick() => {
                flush(&mut pending, &out).await;
                count = 0;
            }
        }
    }
}

async fn flush(pending: &mut Vec<(String, Vec<String>)>, out: &mpsc::Sender<FromRunner>) {
    for (name, lines) in pending.drain(..) {
        let _ = out.send(FromRunner::Log { name, lines }).await;
    }
}

/// One line read by [`read_line_capped`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its `\n`.
    Full(Vec<u8>),
    /// A line longer than the cap: skipped up to its end; holds its length.
    TooLong(usize),
}

/// Reads the next line of at most `max` bytes; `None` at the end of input. A longer line is
/// skipped without being buffered.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let mut skipped = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (buf.is_empty(), skipped) {
                (true, 0) => None,
                (_, 0) => Some(Line::Full(buf)),
                (_, n) => Some(Line::TooLong(n)),
            });
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if skipped > 0 || buf.len() + chunk.len() > max {
            skipped += buf.len() + chunk.len();
            buf.clear();
        } else {
            buf.extend_from_slice(chunk);
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(if skipped > 0 { Line::TooLong(skipped) } else { Line::Full(buf) }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_whole() {
        let data = b"short\nthis line is too long\nok\nend".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        assert_eq!(read_line_capped(&mut r, 8).await.ok().flatten(), Some(Line::Full(b"short".to_vec())));
        assert!(matches!(read_line_capped(&mut r, 8).await.ok().flatten(), Some(Line::TooLong(_))));
        assert_eq!(read_line_capped(&mut r, 8).await.ok().flatten(), Some(Line::Full(b"ok".to_vec())));
        assert_eq!(read_line_capped(&mut r, 8).await.ok().flatten(), Some(Line::Full(b"end".to_vec())));
        assert_eq!(read_line_capped(&mut r, 8).await.ok().flatten(), None);
    }

    #[tokio::test]
    async fn log_lines_are_batched_per_service_in_order() {
        let (tx, rx) = mpsc::channel(LOG_CAPACITY);
        let (out, mut events) = mpsc::channel(16);
        let batcher = tokio::spawn(batch_logs(rx, out));
        for i in 0..LOG_BATCH + 1 {
            let _ = tx.send(("a".into(), format!("a{i}"))).await;
        }
        let _ = tx.send(("b".into(), "b0".into())).await;
        drop(tx);
        let _ = batcher.await;
        let mut got = Vec::new();
        while let Some(FromRunner::Log { name, lines }) = events.recv().await {
            got.push((name, lines.len()));
        }
        assert_eq!(got, [("a".to_string(), LOG_BATCH), ("a".to_string(), 1), ("b".to_string(), 1)]);
    }
}
