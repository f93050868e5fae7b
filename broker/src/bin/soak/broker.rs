//! The broker under soak: a `claudemesh-broker serve` child on 127.0.0.1:0 with a fresh data
//! directory, its URL and admin token, its RSS and store size, a few `/metrics` gauges, and
//! the warnings in its log.

use std::path::{Path, PathBuf};

use anyhow::Context;
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
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(["--rate", &rate, "--burst", &burst]);
        let (child, pid, url) = crate::child::spawn_listening(cmd, log, &exe.display().to_string()).await?;
        let token = crate::child::wait_for_token(&data.join("admin.token")).await?;
        Ok(Self { child, pid, url, token, dir, keep })
    }

    /// The broker's resident memory (VmRSS), kB.
    pub fn rss_kb(&self) -> anyhow::Result<u64> {
        crate::child::status_kb(self.pid, "VmRSS:")
    }

    /// Size of the store file, bytes (0 when it cannot be read).
    pub fn store_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.join("data").join("broker.redb")).map_or(0, |m| m.len())
    }

    /// Reads a few gauges from `/metrics` over plain HTTP on the broker's port.
    pub async fn gauges(&self) -> anyhow::Result<Gauges> {
        let text = crate::child::metrics(&self.url).await?;
        let value = |name: &str| crate::child::metric(&text, name).unwrap_or(f64::NAN);
        Ok(Gauges {
            connections: value("claudemesh_connections"),
            sessions: value("claudemesh_sessions"),
            queue_depth: value("claudemesh_queue_depth"),
            expired: value("claudemesh_messages_expired_total"),
        })
    }

    /// Counts warnings and errors in the broker's log so far.
    pub fn log_summary(&self) -> crate::child::LogSummary {
        crate::child::log_summary(&self.dir.join("broker.log"))
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
