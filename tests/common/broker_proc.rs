//! A real `claudemesh broker serve` process for the fault tests: started on a fixed port and
//! data directory so it can be SIGKILLed and restarted on the same redb file and address, and a
//! [`World`] built on it (mesh created, members enrolled through it). Included by
//! `#[path = "common/broker_proc.rs"] mod broker_proc;` next to `mod common;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claudemesh_agent::{Config, Paths};
use claudemesh_broker::testkit::Client;

use crate::common::{EXE, World};

/// A broker running as its own process (killed on drop).
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, the same across restarts.
    pub addr: String,
    /// Its `--data` directory (the redb file and admin token).
    pub data: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
}

/// A port on 127.0.0.1 nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl BrokerProcess {
    /// Starts `claudemesh broker serve` on a free port with `data` as its data directory and
    /// limits high enough for bulk tests (`extra` arguments are appended, and kept for restarts).
    pub async fn start(data: &Path, extra: &[&str]) -> Self {
        let mut b = Self {
            child: None,
            addr: format!("127.0.0.1:{}", free_port()),
            data: data.to_path_buf(),
            log: data.with_extension("log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.restart().await;
        b
    }

    /// The WebSocket URL members use.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// (Re)starts the process on the same address and data directory; waits for `/health`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(EXE)
            .args(["broker", "serve", "--listen", &self.addr, "--data"])
            .arg(&self.data)
            .args(["--rate", "1000000", "--burst", "1000000", "--max-queue", "1000000"])
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.healthy().await {
                return;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("the broker exited ({st}) at start; log:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the broker did not answer /health within 20 s; log:\n{}", self.log_text());
    }

    /// Whether `/health` answers 200.
    pub async fn healthy(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(&self.addr).await else { return false };
        let req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        matches!(read, Ok(Ok(_))) && buf.starts_with(b"HTTP/1.1 200")
    }

    /// SIGKILL: no shutdown at all, as in a crash or power cut of the broker host.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running (it did not crash).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Everything the broker logged so far (all runs).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin token the broker wrote at its first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token")).unwrap().trim().to_string()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A [`World`] whose mesh lives on `broker` (the world holds no in-process broker): members
/// enroll through it, and their agents connect to it.
pub async fn world_on(broker: &BrokerProcess, dir: tempfile::TempDir) -> World {
    let mut c = Client::connect(&broker.url()).await.unwrap();
    let admin = c.mesh_create(&broker.admin_token(), "team", "admin").await.unwrap().unwrap();
    World { broker: None, addr: broker.addr.clone(), mesh_id: admin.mesh_id.clone(), dir, admin }
}

/// Points the agent of `paths` at `url` instead (e.g. a proxy in front of the broker).
pub fn set_broker_url(paths: &Paths, url: &str) {
    let mut cfg = Config::load(paths).unwrap();
    cfg.meshes[0].broker_url = url.to_string();
    cfg.save(paths).unwrap();
}
