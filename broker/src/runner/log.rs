//! [`LogSink`]: where a service's output lines go (stderr, stray stdout, preparation steps).
//! The runner batches what arrives into `log` events for the broker, which keeps each
//! service's 1,000-line ring.

use std::sync::Arc;

use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// Lines longer than this are cut (with `…`) before they are sent on.
pub const MAX_LOG_LINE_BYTES: usize = 4096;

/// What replaces a secret value in a log line.
pub const REDACTED: &str = "[redacted]";

/// A service's log: cheap to clone, never blocks. When the runner falls behind, lines are
/// dropped and counted rather than stalling the child that writes them. Lines are scrubbed of
/// the service's secret values ([`LogSink::redacting`]).
#[derive(Clone)]
pub struct LogSink {
    name: String,
    tx: mpsc::Sender<(String, String)>,
    redact: Arc<Vec<Zeroizing<String>>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink").field("name", &self.name).field("redact", &self.redact.len()).finish()
    }
}

impl LogSink {
    /// A sink for service `name` feeding `tx` with `(name, line)`.
    pub fn new(name: impl Into<String>, tx: mpsc::Sender<(String, String)>) -> Self {
        Self { name: name.into(), tx, redact: Arc::default() }
    }

    /// This sink, replacing each of `values` (longest first) with [`REDACTED`] in every line.
    pub fn redacting(&self, values: Vec<Zeroizing<String>>) -> Self {
        Self { redact: Arc::new(values), ..self.clone() }
    }

    /// A sink and the receiving end of its lines (tests, and code run outside a runner).
    pub fn channel(name: impl Into<String>, capacity: usize) -> (Self, mpsc::Receiver<(String, String)>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self::new(name, tx), rx)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues one line (control characters but tab replaced, cut to [`MAX_LOG_LINE_BYTES`]).
    /// Returns false when it was dropped because the queue is full or closed.
    pub fn line(&self, line: impl AsRef<str>) -> bool {
        let mut clean = clean_line(line.as_ref());
        for v in self.redact.iter() {
            if clean.contains(v.as_str()) {
                clean = clean.replace(v.as_str(), REDACTED);
            }
        }
        self.tx.try_send((self.name.clone(), clean)).is_ok()
    }
}

/// A log line made safe to show in a terminal: no control characters (escape sequences from a
/// child must not reach the operator's terminal), at most [`MAX_LOG_LINE_BYTES`].
pub fn clean_line(line: &str) -> String {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut out = String::with_capacity(line.len().min(MAX_LOG_LINE_BYTES));
    for c in line.chars() {
        if out.len() + c.len_utf8() > MAX_LOG_LINE_BYTES {
            out.push('…');
            break;
        }
        out.push(if c.is_control() && c != '\t' { '�' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned_and_cut() {
        assert_eq!(clean_line("a\x1b[31mred\r\n"), "a�[31mred");
        let long = "x".repeat(MAX_LOG_LINE_BYTES + 10);
        let c = clean_line(&long);
        assert!(c.ends_with('…') && c.len() <= MAX_LOG_LINE_BYTES + '…'.len_utf8());
    }

    #[tokio::test]
    async fn secret_values_are_scrubbed() {
        let (sink, mut rx) = LogSink::channel("svc", 4);
        let sink = sink.redacting(vec![Zeroizing::new("tok-123".to_string())]);
        assert!(sink.line("auth with tok-123 ok"));
        assert_eq!(rx.recv().await, Some(("svc".into(), "auth with [redacted] ok".into())));
    }

    #[tokio::test]
    async fn a_full_sink_drops_instead_of_blocking() {
        let (sink, mut rx) = LogSink::channel("svc", 1);
        assert!(sink.line("one"));
        assert!(!sink.line("two"));
        assert_eq!(rx.recv().await, Some(("svc".into(), "one".into())));
    }
}
