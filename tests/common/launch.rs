//! Set-up for the launch tests (tests/launch.rs, tests/launch_tty.rs): a HOME with
//! `claudemesh install` done and the stand-in `claude` (`claudemesh-claude-standin`) on PATH,
//! `claudemesh launch` commands in it, what the stand-in recorded, and `~/.claude.json`'s
//! `mcpServers`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claudemesh_agent::Paths;
use serde_json::{Map, Value, json};

use super::{EXE, World, broker_config};

/// The stand-in `claude` (tests/standin/claude.rs).
pub const STANDIN: &str = env!("CARGO_BIN_EXE_claudemesh-claude-standin");

/// A user's home for launch: `~/.claude.json` as `claudemesh install` left it, `claude` on PATH.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub bin: PathBuf,
    /// Where the stand-in appends its records.
    pub record: PathBuf,
    pub paths: Paths,
}

impl Home {
    pub fn new(paths: &Paths) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (home, bin) = (dir.path().join("home"), dir.path().join("bin"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        // Named `claude`, as Claude Code's process is (hooks and the MCP server look for it).
        std::os::unix::fs::symlink(STANDIN, bin.join("claude")).unwrap();
        let h = Home { record: dir.path().join("record.jsonl"), dir, home, bin, paths: paths.clone() };
        let out = h.command("exit:0", &["install"]).output().unwrap();
        assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
        h
    }

    /// `claudemesh <args>` in this home, the stand-in told `mode`; none of the variables launch
    /// sets is inherited from the test's environment.
    pub fn command(&self, mode: &str, args: &[&str]) -> Command {
        let mut c = Command::new(EXE);
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        c.args(args)
            .current_dir(self.dir.path())
            .env("HOME", &self.home)
            .env("PATH", path)
            .env("CLAUDEMESH_CONFIG_DIR", &self.paths.dir)
            .env("STANDIN_RECORD", &self.record)
            .env("STANDIN_MODE", mode);
        for k in [
            "CLAUDEMESH_SESSION_ID",
            "CLAUDEMESH_LAUNCH_PID",
            "CLAUDEMESH_NAME",
            "CLAUDEMESH_MESH",
            "CLAUDEMESH_GROUPS",
            "CLAUDEMESH_PUSH",
            "CLAUDEMESH_CLAUDE",
            "MCP_TIMEOUT",
            "MAX_MCP_OUTPUT_TOKENS",
        ] {
            c.env_remove(k);
        }
        c
    }

    /// Starts `claudemesh <args>` without a terminal (stdin empty, stdout discarded).
    pub fn spawn(&self, mode: &str, args: &[&str]) -> Child {
        self.command(mode, args).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap()
    }

    /// Everything the stand-in recorded so far.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `nth` (from 1) record of `event`, waiting for it up to 20 s.
    pub async fn wait_record(&self, event: &str, nth: usize) -> Value {
        let start = Instant::now();
        loop {
            let mut of: Vec<Value> = self.records().into_iter().filter(|r| r["event"] == event).collect();
            if of.len() >= nth {
                return of.swap_remove(nth - 1);
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no {event} #{nth}: {:?}", self.records());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `~/.claude.json`'s `mcpServers` now.
    pub fn servers(&self) -> Map<String, Value> {
        let root: Value =
            serde_json::from_slice(&std::fs::read(self.home.join(".claude.json")).unwrap()).unwrap();
        root["mcpServers"].as_object().unwrap().clone()
    }

    /// Changes `mcpServers` as another program would.
    pub fn edit_servers(&self, f: impl FnOnce(&mut Map<String, Value>)) {
        let path = self.home.join(".claude.json");
        let mut root: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f(root["mcpServers"].as_object_mut().unwrap());
        std::fs::write(&path, serde_json::to_string_pretty(&root).unwrap()).unwrap();
    }
}

/// An entry as launch `pid` writes it for service `name`.
pub fn stale_entry(name: &str, pid: u32) -> Value {
    json!({"type": "stdio", "command": EXE, "args":
        ["mcp", "--service", name, "--mesh", "team", "--launch-pid", pid.to_string()]})
}

/// The pid of a process that has exited.
pub fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c.id()
}

/// Waits for `child` to end (up to `limit`); its exit code, or 128 + the signal that killed it.
pub async fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("pid {} did not end within {limit:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A world whose broker runs services with runners from this build.
pub async fn services_world() -> World {
    World::start_with(broker_config).await
}

/// Deploys the fixture MCP server as service `name` from the admin's agent (`paths`) and
/// waits until it runs.
pub fn deploy_fixture(w: &World, paths: &Paths, name: &str) {
    let fixture = super::fixture_exe();
    assert!(
        fixture.exists(),
        "{} is missing: run `cargo build -p claudemesh-broker --bins`",
        fixture.display()
    );
    let token = w.broker.as_ref().unwrap().admin_token.clone();
    let out = Command::new(EXE)
        .args(["deploy", name, "--json", "--command", "--"])
        .arg(&fixture)
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("CLAUDEMESH_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("deploy: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(r["status"], "running", "{r}");
}
