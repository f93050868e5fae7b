//! One runner process (`claudemesh-broker runner`, wrapped as `--runner-wrap` says): spawned
//! with argv and a cleared environment, its stdin fed from a bounded queue of [`ToRunner`]
//! lines, its stdout read as [`FromRunner`] lines, its stderr passed to the broker's log.
//! Stopping asks it to shut down (it kills its services' process groups), then kills it.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::runner::wire::{FromRunner, MAX_LINE_BYTES, ToRunner};

/// What the actor hears from a runner, tagged with the runner's generation so that lines of a
/// runner already replaced are ignored.
#[derive(Debug)]
pub enum RunnerMsg {
    Line(FromRunner),
    /// Its stdout closed: it exited or is exiting.
    Exited(String),
}

/// Lines queued for a runner's stdin before senders wait.
const STDIN_QUEUE: usize = 1024;

/// A running runner. Dropping it kills the process.
#[derive(Debug)]
pub struct RunnerProc {
    pub tx: mpsc::Sender<ToRunner>,
    pub pid: Option<u32>,
    child: Child,
}

/// Starts a runner for mesh `mesh_slug`. Its environment is PATH, LANG and HOME (the data
/// dir), the settings that reach package registries (proxies, CA bundles, mirrors:
/// [`crate::runner::prepare::step::PASSTHROUGH`], used only by preparation steps, never given to
/// services), and `RUST_LOG` for its own diagnostics.
pub fn spawn(
    argv: &[OsString],
    data_dir: &Path,
    mesh_slug: &str,
    generation: u64,
    events: mpsc::Sender<(u64, RunnerMsg)>,
) -> std::io::Result<RunnerProc> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty runner command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("HOME", data_dir)
        .env("LANG", std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()))
        .current_dir(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let passthrough = crate::runner::prepare::step::PASSTHROUGH.iter();
    for var in ["PATH", "RUST_LOG", "CLAUDEMESH_DEBUG"].iter().chain(passthrough) {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("runner pipes missing"));
    };
    let (tx, mut rx) = mpsc::channel::<ToRunner>(STDIN_QUEUE);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut line = match serde_json::to_string(&msg) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a runner line");
                    continue;
                }
            };
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                return;
            }
        }
    });
    let slug = mesh_slug.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let l = crate::runner::log::clean_line(&l);
            let (level, msg) = runner_level(&l);
            match level {
                "ERROR" => tracing::error!(target: "claudemesh_broker::runner", mesh = %slug, "{msg}"),
                "WARN" => tracing::warn!(target: "claudemesh_broker::runner", mesh = %slug, "{msg}"),
                "DEBUG" | "TRACE" => {
                    tracing::debug!(target: "claudemesh_broker::runner", mesh = %slug, "{msg}")
                }
                _ => tracing::info!(target: "claudemesh_broker::runner", mesh = %slug, "{msg}"),
            }
        }
    });
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        let why = loop {
            buf.clear();
            match (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut buf).await {
                Ok(0) => break "its output closed".to_string(),
                Ok(_) if buf.len() > MAX_LINE_BYTES => break "it wrote a line over the size limit".into(),
                Ok(_) => match serde_json::from_slice::<FromRunner>(&buf) {
                    Ok(m) => {
                        if events.send((generation, RunnerMsg::Line(m))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "runner wrote a line that is not protocol; ignored"),
                },
                Err(e) => break format!("reading its output failed: {e}"),
            }
        };
        let _ = events.send((generation, RunnerMsg::Exited(why))).await;
    });
    Ok(RunnerProc { tx, pid, child })
}

use tokio::io::AsyncReadExt;

impl RunnerProc {
    /// Asks the runner to stop its services and exit; kills it after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.tx.try_send(ToRunner::Shutdown);
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            tracing::warn!(pid = ?self.pid, "runner did not stop in {grace:?}; killing it");
            let _ = self.child.kill().await;
        }
    }

    /// Queues a line; false when the runner's queue is full or it is gone.
    pub fn send(&self, msg: ToRunner) -> bool {
        self.tx.try_send(msg).is_ok()
    }
}

/// A runner stderr line's level and message: the runner writes `LEVEL message` (no time: the
/// broker's log adds it); any other line (a wrap's own output) is `INFO`, whole.
fn runner_level(line: &str) -> (&str, &str) {
    match line.trim_start().split_once(' ') {
        Some((lv, rest)) if ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&lv) => {
            (lv, rest.trim_start())
        }
        _ => ("INFO", line),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runner_lines_keep_their_level_once() {
        assert_eq!(super::runner_level(" INFO load service=tools"), ("INFO", "load service=tools"));
        assert_eq!(super::runner_level("ERROR service x failed"), ("ERROR", "service x failed"));
        assert_eq!(super::runner_level("docker: pulling image"), ("INFO", "docker: pulling image"));
    }
}
