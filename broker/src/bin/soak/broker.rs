//! The broker under soak: a `claudemesh-broker serve` child on 127.0.0.1:0 with a fresh data
//! directory, its URL and admin token, its RSS and store size, a few `/metrics` gauges, and
//! the warnings in its log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// A running broker child. Killed (and its data directory removed unless kept) when dropped.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub token: String,
    dir: PathBuf,
    keep: bool,
}

/// Gauges read from the broker's `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub connections: f64,
    pub sessions: f64,
    pub queue_depth: f64,
    pub expired: f64,
}

/// What the broker logged at warn level or above.
#[derive(Debug, Clone, Default)]
pub struct LogSummary {
    pub warnings: usize,
    pub errors: usize,
    pub first: Option<String>,
}

/// The broker binary next to this executable (both are built into `target/release`).
pub fn default_broker_path() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = me.parent().context("this executable has no parent directory")?;
    Ok(dir.join("claudemesh-broker"))
}

impl Broker {
    /// Starts `exe serve` under `root` with a per-member send rate of `rate`/s (burst 5×) so
    /// the soak's bursts are not refused, and waits until it listens and wrote its token.
    pub async fn start(exe: &Path, root: &Path, rate: f64, keep: bool) -> anyhow::Result<Self> {
        let dir = root.join(format!("claudemesh-soak-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let data = dir.join("data");
        let log = std::fs::File::create(dir.join("broker.log")).context("cannot create the broker log")?;
        let (rate, burst) = (format!("{rate}"), format!("{}", rate * 5.0));
        let mut child = Command::new(exe)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(["--rate", &rate, "--burst", &burst])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {}; build it with `cargo build --release -p claudemesh-broker --bins` or pass --broker",
                    exe.display()
                )
            })?;
        let pid = child.id().context("the broker exited at once")?;
        let stdout = child.stdout.take().context("the broker's stdout was not captured")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the broker did not print its address within 20 s")?
            .context("cannot read the broker's stdout")?
            .context("the broker exited before printing its address (see its log)")?;
        let url = line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line from the broker: {line:?}"))?
            .trim()
            .to_string();
        if !url.starts_with("ws://127.0.0.1:") {
            bail!("the broker listens on {url}, expected ws://127.0.0.1:<port>");
        }
        // Keep draining stdout so the broker never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token = wait_for_token(&data.join("admin.token")).await?;
        Ok(Self { child, pid, url, token, dir, keep })
    }

    /// The broker's resident memory (VmRSS), kB.
    pub fn rss_kb(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no VmRSS in {path}"))
    }

    /// Size of the store file, bytes (0 when it cannot be read).
    pub fn store_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.join("data").join("broker.redb")).map_or(0, |m| m.len())
    }

    /// Reads a few gauges from `/metrics` over plain HTTP on the broker's port.
    pub async fn gauges(&self) -> anyhow::Result<Gauges> {
        let addr = self.url.trim_start_matches("ws://").trim_end_matches("/ws");
        let fetch = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
            let mut text = String::new();
            s.read_to_string(&mut text).await?;
            anyhow::Ok(text)
        };
        let text =
            tokio::time::timeout(Duration::from_secs(5), fetch).await.context("/metrics timed out")??;
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(f64::NAN)
        };
        Ok(Gauges {
            connections: value("claudemesh_connections"),
            sessions: value("claudemesh_sessions"),
            queue_depth: value("claudemesh_queue_depth"),
            expired: value("claudemesh_messages_expired_total"),
        })
    }

    /// Counts warnings and errors in the broker's log so far.
    pub fn log_summary(&self) -> LogSummary {
        let text = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let mut s = LogSummary::default();
        for line in text.lines() {
            let warn = line.contains(" WARN ");
            let error = line.contains(" ERROR ");
            s.warnings += usize::from(warn);
            s.errors += usize::from(error);
            if (warn || error) && s.first.is_none() {
                s.first = Some(line.chars().take(200).collect());
            }
        }
        s
    }

    /// Where the data directory and log are (kept after exit with `--keep`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn wait_for_token(path: &Path) -> anyhow::Result<String> {
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
