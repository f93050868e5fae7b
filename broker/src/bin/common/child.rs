//! Starting a server child for the bench and soak binaries (both include this file): spawn it
//! with its stdout piped and stderr to a log, read the `listening on ws://…` line every server
//! of ours prints first, keep draining stdout, wait for the admin token file, read its RSS and
//! its `/metrics`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Spawns `cmd` (killed on drop, `RUST_LOG=warn`, stderr to `log`) and waits up to 20 s for
/// its `listening on ws://127.0.0.1:<port>/ws` line. Returns the child, its pid and the URL.
/// `what` names the program in errors (a path, or "relay").
pub async fn spawn_listening(
    mut cmd: Command,
    log: std::fs::File,
    what: &str,
) -> anyhow::Result<(Child, u32, String)> {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {what}; build it with `cargo build --release -p claudemesh-broker --bins` or pass --broker"
            )
        })?;
    let pid = child.id().context("the server exited at once")?;
    let stdout = child.stdout.take().context("the server's stdout was not captured")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("the server did not print its address within 20 s")?
        .context("cannot read the server's stdout")?
        .context("the server exited before printing its address (see its log)")?;
    let url = line
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line from the server: {line:?}"))?
        .trim()
        .to_string();
    if !url.starts_with("ws://127.0.0.1:") {
        bail!("the server listens on {url}, expected ws://127.0.0.1:<port>");
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, pid, url))
}

/// Waits up to 5 s for the broker to write its admin token to `path`.
pub async fn wait_for_token(path: &Path) -> anyhow::Result<String> {
    for _ in 0..500 {
        if let Ok(t) = std::fs::read_to_string(path)
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_string());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the broker did not write {} within 5 s", path.display())
}

/// What a server child logged at warn level or above.
#[derive(Debug, Clone, Default)]
pub struct LogSummary {
    pub warnings: usize,
    pub errors: usize,
    /// "connection fell behind its outgoing queue; dropping it" lines.
    pub fell_behind: usize,
    /// The first warning or error line (200 characters at most).
    pub first: Option<String>,
}

/// Counts the warnings and errors in the log file at `path` so far (none if it is unreadable).
pub fn log_summary(path: &Path) -> LogSummary {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut s = LogSummary::default();
    for line in text.lines() {
        let warn = line.contains(" WARN ");
        let error = line.contains(" ERROR ");
        s.warnings += usize::from(warn);
        s.errors += usize::from(error);
        s.fell_behind += usize::from(line.contains("fell behind"));
        if (warn || error) && s.first.is_none() {
            s.first = Some(line.chars().take(200).collect());
        }
    }
    s
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS:`, `VmHWM:`).
pub fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// CPU time (user + system, in clock ticks) a process has used, and the part of it used by
/// its threads named `thread` (`/proc/<pid>/task/*/comm`), from `/proc/<pid>/stat` (fields 14
/// and 15, proc(5)).
#[allow(dead_code, reason = "the bench reads CPU per delivery; the soak, which shares this file, does not")]
pub fn cpu_ticks(pid: u32, thread: &str) -> anyhow::Result<(u64, u64)> {
    let ticks = |path: &str| -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        // The command name (field 2) may hold spaces: count fields after its closing ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
        match f[..] {
            [u, s] => Ok(u + s),
            _ => anyhow::bail!("no CPU times in {path}"),
        }
    };
    let total = ticks(&format!("/proc/{pid}/stat"))?;
    let mut named = 0;
    let tasks = format!("/proc/{pid}/task");
    for t in std::fs::read_dir(&tasks).with_context(|| format!("cannot read {tasks}"))?.flatten() {
        let dir = t.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == thread) {
            named += ticks(&dir.join("stat").display().to_string()).unwrap_or(0);
        }
    }
    Ok((total, named))
}

/// The broker's `/metrics` text, read over plain HTTP on the port of its `ws://…/ws` URL (5 s).
pub async fn metrics(url: &str) -> anyhow::Result<String> {
    let addr = url.trim_start_matches("ws://").trim_end_matches("/ws");
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch).await.context("/metrics timed out")?
}

/// The value of the unlabelled metric `name` in a `/metrics` text, if it is there.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
}
