//! The broker `claudemesh up` runs on this machine: its settings in `config.json`, and the
//! agent task that keeps it running as a child process (`claudemesh broker serve …`), restarts
//! it when it dies, and stops it with the agent.
//!
//! The child gets a pipe as stdin and `--stop-on-stdin-eof`: when the agent exits, even by
//! SIGKILL, the pipe closes and the broker stops, so no orphan keeps the port or the data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::paths::Paths;

/// How long a stopping broker gets to finish its commits before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Restart backoff: starts at 1 s, doubles, at most 30 s; a run of [`HEALTHY_RUN`] resets it.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run at least this long was healthy: the next restart after it waits 1 s again.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Returns once something accepts TCP connections at `addr` (tried every 50 ms).
async fn listening(addr: &str) {
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn yes() -> bool {
    true
}

/// `config.json` → `local_broker`: the broker this machine serves, written by `claudemesh up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalBrokerConfig {
    /// Address it listens on, e.g. `127.0.0.1:7900` or `0.0.0.0:7900`.
    pub listen: String,
    /// The URL teammates use to reach it (its `--public-url`), when it serves a team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Its data directory (redb file, admin token).
    pub data: PathBuf,
    /// `claudemesh down` sets this to false: the agent leaves the broker stopped until `up`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl LocalBrokerConfig {
    /// The URL this machine uses to reach it: `ws://HOST:PORT/ws` with [`Self::local_addr`].
    pub fn local_url(&self) -> String {
        format!("ws://{}/ws", self.local_addr())
    }

    /// The address this machine connects to: `HOST:PORT` of `listen`, with a wildcard address
    /// (`0.0.0.0`, `[::]`) replaced by the loopback address.
    pub fn local_addr(&self) -> String {
        let listen = self.listen.trim();
        let (host, port) = match listen.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (listen, "7900"),
        };
        let host = match host {
            "" | "0.0.0.0" => "127.0.0.1",
            "[::]" | "::" => "[::1]",
            h => h,
        };
        format!("{host}:{port}")
    }

    /// The broker's admin token file (the broker creates it at first start).
    pub fn admin_token_file(&self) -> PathBuf {
        self.data.join("admin.token")
    }

    /// The broker's admin token, trimmed. Errors: the file cannot be read (not started yet).
    pub fn admin_token(&self) -> std::io::Result<String> {
        std::fs::read_to_string(self.admin_token_file()).map(|t| t.trim().to_string())
    }
}

/// What the supervisor reports (in `status` as `local_broker`).
pub use claudemesh_protocol::local::LocalBrokerStatus;

/// `<config dir>/broker.log`.
pub fn log_path(paths: &Paths) -> PathBuf {
    paths.dir.join("broker.log")
}

fn spawn(exe: &Path, cfg: &LocalBrokerConfig, log: &Path) -> std::io::Result<Child> {
    use std::os::unix::fs::OpenOptionsExt;
    let out = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.arg("broker").arg("serve").arg("--listen").arg(&cfg.listen).arg("--data").arg(&cfg.data);
    if let Some(u) = &cfg.public_url {
        cmd.arg("--public-url").arg(u);
    }
    cmd.arg("--stop-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        // Its own process group: a Ctrl-C meant for a foreground agent reaches the agent,
        // which then stops the broker in order.
        .process_group(0);
    cmd.spawn()
}

/// Stops a running broker: close its stdin (it finishes and exits), kill it after the grace.
async fn stop(mut child: Child, stdin: Option<ChildStdin>) -> String {
    drop(stdin);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        Ok(Err(e)) => format!("cannot wait for it: {e}"),
        Err(_) => {
            let _ = child.kill().await;
            format!("killed after {} s", STOP_GRACE.as_secs())
        }
    }
}

/// Keeps the broker of `desired` running until `shutdown`; `None` (or a disabled config)
/// means none. A change of `desired` restarts it with the new settings. Progress goes to
/// `status`. `exe` is the `claudemesh` binary (the agent's own executable).
pub async fn supervise(
    exe: PathBuf,
    paths: Paths,
    mut desired: watch::Receiver<Option<LocalBrokerConfig>>,
    status: watch::Sender<Option<LocalBrokerStatus>>,
    shutdown: CancellationToken,
) {
    let log = log_path(&paths);
    let mut restarts = 0u32;
    let mut backoff = Duration::from_secs(1);
    let mut last_exit: Option<String> = None;
    'supervise: loop {
        let want = desired.borrow_and_update().clone().filter(|c| c.enabled);
        let Some(cfg) = want else {
            status.send_replace(None);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = desired.changed() => if r.is_err() { return } else { continue },
            }
        };
        let report =
            |state: &str, pid: Option<u32>, last_exit: &Option<String>, restarts: u32| LocalBrokerStatus {
                state: state.into(),
                listen: cfg.listen.clone(),
                url: cfg.local_url(),
                public_url: cfg.public_url.clone(),
                pid,
                restarts,
                last_exit: last_exit.clone(),
                log: log.clone(),
            };
        let started = Instant::now();
        let ended = match spawn(&exe, &cfg, &log) {
            Ok(mut child) => {
                // Held until the broker should stop: `Child::wait` would otherwise close it.
                let stdin = child.stdin.take();
                tracing::info!(listen = %cfg.listen, pid = child.id(), "local broker started");
                // `running` once it accepts connections: links of this agent retry the moment
                // they see it (`uplink::local_broker_started`).
                status.send_replace(Some(report("starting", child.id(), &last_exit, restarts)));
                let (addr, pid) = (cfg.local_addr(), child.id());
                let mut up = false;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            let how = stop(child, stdin).await;
                            tracing::info!(how = %how, "local broker stopped with the agent");
                            return;
                        }
                        r = desired.changed() => {
                            let how = stop(child, stdin).await;
                            tracing::info!(how = %how, "local broker stopped: its settings changed");
                            if r.is_err() { return }
                            continue 'supervise;
                        }
                        s = child.wait() => {
                            drop(stdin);
                            break match s {
                                Ok(s) => format!("exited ({s})"),
                                Err(e) => format!("cannot wait for it: {e}"),
                            };
                        }
                        _ = listening(&addr), if !up => {
                            up = true;
                            status.send_replace(Some(report("running", pid, &last_exit, restarts)));
                        }
                    }
                }
            }
            Err(e) => format!("cannot start {} broker serve: {e}", exe.display()),
        };
        tracing::error!(listen = %cfg.listen, why = %ended, log = %log.display(), "local broker ended; restarting");
        last_exit = Some(ended);
        restarts += 1;
        if started.elapsed() >= HEALTHY_RUN {
            backoff = Duration::from_secs(1);
        }
        status.send_replace(Some(report("restarting", None, &last_exit, restarts)));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
            r = desired.changed() => if r.is_err() { return },
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> LocalBrokerConfig {
        LocalBrokerConfig { listen: listen.into(), public_url: None, data: "/d".into(), enabled: true }
    }

    #[test]
    fn local_url_reaches_wildcard_listeners_over_loopback() {
        assert_eq!(cfg("127.0.0.1:7900").local_url(), "ws://127.0.0.1:7900/ws");
        assert_eq!(cfg("0.0.0.0:7912").local_url(), "ws://127.0.0.1:7912/ws");
        assert_eq!(cfg("[::]:7900").local_url(), "ws://[::1]:7900/ws");
        assert_eq!(cfg("localhost:80").local_url(), "ws://localhost:80/ws");
    }

    /// `running` waits for the port: `listening` returns only once something accepts there.
    #[tokio::test]
    async fn listening_waits_for_the_port_to_accept() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let wait = listening(&addr);
        tokio::pin!(wait);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), wait.as_mut()).await.is_err(),
            "nothing listens yet"
        );
        let _l = tokio::net::TcpListener::bind(&addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("it listens now");
    }

    #[test]
    fn enabled_defaults_to_true_in_older_files() {
        let c: LocalBrokerConfig = serde_json::from_str(r#"{"listen":"127.0.0.1:1","data":"/x"}"#).unwrap();
        assert!(c.enabled);
    }
}
