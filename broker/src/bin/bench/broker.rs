//! The server under test: a `claudemesh-broker serve` child process on 127.0.0.1:0 with a
//! fresh data directory, or one of the relay floors (`claudemesh-broker-bench relay`, see
//! [`super::relay`]); its URL and admin token, its RSS, and a summary of its warning log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::Opts;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// Which server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Server {
    /// `claudemesh-broker serve`.
    Broker,
    /// The relay that appends to one file and `fdatasync`s before each ack (the durable floor).
    Durable,
    /// The relay that stores nothing (the WebSocket + JSON floor).
    Storeless,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Durable => "durable floor",
            Self::Storeless => "storeless floor",
        }
    }
}

/// A running server child. Killed (and its data directory removed) when dropped.
#[derive(Debug)]
pub struct Broker {
    pub kind: Server,
    child: Child,
    pub pid: u32,
    pub url: String,
    pub token: String,
    dir: PathBuf,
}

/// Resident memory of the broker, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    /// VmRSS, kB.
    pub now_kb: u64,
    /// VmHWM (peak RSS so far), kB.
    pub peak_kb: u64,
}

/// Store counters from the broker's `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    /// Write transactions committed (each one fsync).
    pub commits: f64,
    /// Sum of commit durations, seconds.
    pub commit_secs: f64,
}

impl StoreStats {
    /// Commits per second and mean commit duration (ms) between two snapshots.
    pub fn rate_since(&self, earlier: &StoreStats, secs: f64) -> (f64, f64) {
        let n = self.commits - earlier.commits;
        let mean_ms = if n > 0.0 { (self.commit_secs - earlier.commit_secs) / n * 1e3 } else { 0.0 };
        (n / secs, mean_ms)
    }
}

/// The broker binary next to this executable (both are built into `target/release`).
pub fn default_broker_path() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = me.parent().context("this executable has no parent directory")?;
    Ok(dir.join("claudemesh-broker"))
}

impl Broker {
    /// Starts `kind`: the broker (`o.broker serve`) with limits opened up (rate, burst, queue)
    /// so the bench measures throughput rather than the per-member policy, or a relay floor
    /// (this executable's `relay`), and waits until it listens.
    pub async fn start(kind: Server, o: &Opts) -> anyhow::Result<Self> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = o.data_root.join(format!("claudemesh-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let data = dir.join("data");
        let log = std::fs::File::create(dir.join("broker.log")).context("cannot create the broker log")?;
        let cmd = match kind {
            Server::Broker => {
                let mut c = Command::new(&o.broker);
                c.arg("serve")
                    .args(["--listen", "127.0.0.1:0", "--data"])
                    .arg(&data)
                    .args(["--rate", "1000000000", "--burst", "1000000000"])
                    .args(["--max-queue", "10000000", "--max-connections", "20000"])
                    // One load generator on one IP: the per-IP pre-auth cap (64) would evict
                    // its own handshakes in a connect storm.
                    .args(["--max-unauthenticated", "4096", "--max-unauthenticated-per-ip", "4096"]);
                c
            }
            Server::Durable | Server::Storeless => {
                let me = std::env::current_exe().context("cannot find this executable's path")?;
                let mut c = Command::new(me);
                c.arg("relay");
                if kind == Server::Durable {
                    c.arg("--durable").arg(&data);
                }
                c
            }
        };
        let what = if kind == Server::Broker { o.broker.display().to_string() } else { "relay".into() };
        let (child, pid, url) = crate::child::spawn_listening(cmd, log, &what).await?;
        let token = match kind {
            Server::Broker => crate::child::wait_for_token(&data.join("admin.token")).await?,
            Server::Durable | Server::Storeless => String::new(),
        };
        Ok(Self { kind, child, pid, url, token, dir })
    }

    /// The broker's current and peak resident memory.
    pub fn rss(&self) -> anyhow::Result<Rss> {
        let field = |name: &str| crate::child::status_kb(self.pid, name);
        Ok(Rss { now_kb: field("VmRSS:")?, peak_kb: field("VmHWM:")? })
    }

    /// CPU the server has used so far: (whole process, its `store-writer` thread), in clock
    /// ticks (the relays have no such thread: 0).
    pub fn cpu(&self) -> anyhow::Result<(u64, u64)> {
        crate::child::cpu_ticks(self.pid, "store-writer")
    }

    /// Reads `/metrics` over plain HTTP on the broker's port.
    /// The relays have no store counters: zeros.
    pub async fn store_stats(&self) -> anyhow::Result<StoreStats> {
        if self.kind != Server::Broker {
            return Ok(StoreStats::default());
        }
        let text = crate::child::metrics(&self.url).await?;
        let value = |name: &str| crate::child::metric(&text, name).unwrap_or(0.0);
        Ok(StoreStats {
            commits: value("claudemesh_commit_batches_total"),
            commit_secs: value("claudemesh_store_commit_seconds_sum"),
        })
    }

    /// Whether the broker process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Counts warnings and errors in the broker's log so far.
    pub fn log_summary(&self) -> crate::child::LogSummary {
        crate::child::log_summary(&self.dir.join("broker.log"))
    }

    /// Kills the broker and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
