//! The runner as the broker sees it: a real `claudemesh-broker runner` process over pipes, with
//! `claudemesh-mcp-fixture` as its service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use claudemesh_broker::runner::wire::{
    CallErrorCode, ChildLimits, FromRunner, HealthPolicy, PrepareMode, PrepareSource, RestartPolicy,
    ServiceSpec, ToRunner,
};
use claudemesh_protocol::frames::ServiceStatus;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

const RUNNER: &str = env!("CARGO_BIN_EXE_claudemesh-broker");
const FIXTURE: &str = env!("CARGO_BIN_EXE_claudemesh-mcp-fixture");
const WAIT: Duration = Duration::from_secs(20);

struct Runner {
    proc: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<FromRunner>,
    /// Every event seen so far, in order.
    seen: Vec<FromRunner>,
    /// Events seen that no `wait` took yet: waits match in any order.
    backlog: Vec<FromRunner>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Runner {
    async fn start() -> Self {
        let mut proc = tokio::process::Command::new(RUNNER)
            .arg("runner")
            .env("RUNNER_TEST_SECRET", "must-not-leak")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = proc.stdin.take();
        let stdout = proc.stdout.take().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let ev: FromRunner = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut r = Self { proc, stdin, events, seen: Vec::new(), backlog: Vec::new(), _dir: dir, dir: path };
        r.wait(|e| matches!(e, FromRunner::Ready { .. })).await;
        r
    }

    async fn send(&mut self, msg: &ToRunner) {
        let mut line = serde_json::to_vec(msg).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The first event matching `f` not taken by an earlier wait (all are kept in `seen`).
    async fn wait(&mut self, f: impl Fn(&FromRunner) -> bool) -> FromRunner {
        if let Some(i) = self.backlog.iter().position(&f) {
            return self.backlog.remove(i);
        }
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let ev = self.events.recv().await.expect("the runner's output ended");
                self.seen.push(ev.clone());
                if f(&ev) {
                    return ev;
                }
                self.backlog.push(ev);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no matching event within {WAIT:?}; seen: {:#?}", self.seen))
    }

    fn spec(&self, name: &str, env: &[(&str, &str)]) -> ServiceSpec {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        ServiceSpec {
            name: name.into(),
            dir,
            source: PrepareSource::Command { argv: vec![FIXTURE.into()] },
            args: Vec::new(),
            entry: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            secrets: Vec::new(),
            prepare: PrepareMode::Fresh,
            limits: ChildLimits {
                memory_bytes: 1 << 30,
                open_files: 256,
                processes: 1 << 20,
                prepare_timeout_ms: 10_000,
            },
            health: HealthPolicy { interval_ms: 200, timeout_ms: 500, misses: 2, start_timeout_ms: 10_000 },
            restart: RestartPolicy {
                backoff_min_ms: 20,
                backoff_max_ms: 100,
                max_crashes: 3,
                crash_window_ms: 60_000,
            },
        }
    }

    async fn load(&mut self, spec: ServiceSpec) -> FromRunner {
        let name = spec.name.clone();
        self.send(&ToRunner::Load { spec: Box::new(spec) }).await;
        self.wait(|e| {
            matches!(e, FromRunner::Loaded { name: n, .. } | FromRunner::LoadFailed { name: n, .. } if *n == name)
        })
        .await
    }

    async fn call(&mut self, id: u64, name: &str, tool: &str, arguments: Value, timeout_ms: u64) {
        let msg = ToRunner::Call {
            id,
            name: name.into(),
            tool: tool.into(),
            arguments,
            timeout_ms,
            caller: "m1".into(),
        };
        self.send(&msg).await;
    }

    async fn answer(&mut self, id: u64) -> FromRunner {
        self.wait(|e| matches!(e, FromRunner::Result { id: i, .. } | FromRunner::CallError { id: i, .. } if *i == id))
            .await
    }

    /// The first text content of call `id`'s result.
    async fn text(&mut self, id: u64) -> String {
        match self.answer(id).await {
            FromRunner::Result { result, .. } => result["content"][0]["text"].as_str().unwrap().to_string(),
            other => panic!("call {id}: {other:?}"),
        }
    }

    async fn error(&mut self, id: u64) -> CallErrorCode {
        match self.answer(id).await {
            FromRunner::CallError { code, .. } => code,
            other => panic!("call {id} should have failed: {other:?}"),
        }
    }

    /// Waits until a `log` event of `name` carried a line containing `needle`.
    async fn log_line(&mut self, name: &str, needle: &str) {
        if !log_has(&self.seen, name, needle) {
            self.wait(|e| log_has(std::slice::from_ref(e), name, needle)).await;
        }
    }

    async fn status(&mut self, name: &str, status: ServiceStatus) -> FromRunner {
        self.wait(|e| matches!(e, FromRunner::Status { name: n, status: s, .. } if n == name && *s == status))
            .await
    }
}

fn is_loaded(ev: &FromRunner) -> bool {
    matches!(ev, FromRunner::Loaded { .. })
}

/// Waits until process `pid` no longer exists (zombies count as gone).
async fn gone(pid: u32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z')) => {
                return true;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn log_has(seen: &[FromRunner], name: &str, needle: &str) -> bool {
    seen.iter().any(|e| matches!(e, FromRunner::Log { name: n, lines } if n == name && lines.iter().any(|l| l.contains(needle))))
}

#[tokio::test]
async fn loads_calls_logs_and_clears_the_environment() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[("SVC_VAR", "secret-value")]);
    let dir = spec.dir.clone();
    let loaded = r.load(spec).await;
    let FromRunner::Loaded { tools, resolved, .. } = loaded else { panic!("{loaded:?}") };
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"echo") && names.contains(&"spawn_child"), "{names:?}");
    assert_eq!(resolved.command, vec![FIXTURE.to_string()]);
    r.status("fx", ServiceStatus::Running).await;
    let statuses: Vec<ServiceStatus> = r
        .seen
        .iter()
        .filter_map(|e| if let FromRunner::Status { status, .. } = e { Some(*status) } else { None })
        .collect();
    assert_eq!(statuses, [ServiceStatus::Preparing, ServiceStatus::Starting, ServiceStatus::Running]);

    r.call(1, "fx", "echo", json!({"text": "hello"}), 5_000).await;
    assert_eq!(r.text(1).await, "hello");
    r.call(2, "fx", "add", json!({"a": 2, "b": 3}), 5_000).await;
    assert_eq!(r.text(2).await, "5");

    r.call(3, "fx", "env", json!({"name": "RUNNER_TEST_SECRET"}), 5_000).await;
    assert_eq!(serde_json::from_str::<Value>(&r.text(3).await).unwrap()["set"], false);
    r.call(4, "fx", "env", json!({"name": "HOME"}), 5_000).await;
    assert_eq!(serde_json::from_str::<Value>(&r.text(4).await).unwrap()["value"], dir.to_str().unwrap());
    r.call(5, "fx", "env", json!({"name": "SVC_VAR"}), 5_000).await;
    assert_eq!(serde_json::from_str::<Value>(&r.text(5).await).unwrap()["value"], "secret-value");

    r.log_line("fx", "stray stdout line").await;
    r.log_line("fx", "fixture ready").await;
    assert!(
        !r.seen.iter().any(
            |e| matches!(e, FromRunner::Log { lines, .. } if lines.iter().any(|l| l.contains("jsonrpc")))
        ),
        "protocol lines must not reach the log"
    );
}

#[tokio::test]
async fn big_results_are_cut_with_a_notice() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[]);
    assert!(is_loaded(&r.load(spec).await));
    r.call(1, "fx", "big", json!({"bytes": 3_000_000}), 20_000).await;
    let FromRunner::Result { result, .. } = r.answer(1).await else { panic!("big failed") };
    let size = serde_json::to_vec(&result).unwrap().len();
    assert!(size <= claudemesh_broker::runner::wire::MAX_RESULT_BYTES, "{size}");
    let content = result["content"].as_array().unwrap();
    assert!(content[0]["text"].as_str().unwrap().len() > 500_000);
    assert!(content.last().unwrap()["text"].as_str().unwrap().contains("truncated from"));
}

#[tokio::test]
async fn calls_time_out_run_concurrently_and_unknown_services_are_refused() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[]);
    assert!(is_loaded(&r.load(spec).await));
    let started = std::time::Instant::now();
    r.call(1, "fx", "sleep", json!({"ms": 30_000}), 300).await;
    r.call(2, "fx", "echo", json!({"text": "meanwhile"}), 5_000).await;
    assert_eq!(r.text(2).await, "meanwhile");
    assert_eq!(r.error(1).await, CallErrorCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));

    r.call(3, "fx", "sleep", json!({"ms": 30_000}), 30_000).await;
    r.send(&ToRunner::Cancel { id: 3 }).await;
    assert_eq!(r.error(3).await, CallErrorCode::Cancelled);

    r.call(4, "nope", "echo", json!({}), 1_000).await;
    assert_eq!(r.error(4).await, CallErrorCode::NotLoaded);
    r.call(5, "fx", "no_such_tool", json!({}), 5_000).await;
    assert_eq!(r.error(5).await, CallErrorCode::Tool);
}

#[tokio::test]
async fn a_crash_mid_call_restarts_the_service() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[]);
    assert!(is_loaded(&r.load(spec).await));
    r.status("fx", ServiceStatus::Running).await;
    r.call(1, "fx", "crash", json!({}), 10_000).await;
    assert_eq!(r.error(1).await, CallErrorCode::Crashed);
    r.status("fx", ServiceStatus::Restarting).await;
    r.status("fx", ServiceStatus::Running).await;
    r.call(2, "fx", "echo", json!({"text": "back"}), 5_000).await;
    assert_eq!(r.text(2).await, "back");
}

#[tokio::test]
async fn a_crash_loop_ends_in_crashed() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[("FIXTURE_CRASH_ON_START", "after-first")]);
    assert!(is_loaded(&r.load(spec).await));
    r.status("fx", ServiceStatus::Running).await;
    r.call(1, "fx", "crash", json!({}), 10_000).await;
    assert_eq!(r.error(1).await, CallErrorCode::Crashed);
    r.wait(|e| matches!(e, FromRunner::Crashed { name, .. } if name == "fx")).await;
    r.status("fx", ServiceStatus::Crashed).await;
    let restarts = r
        .seen
        .iter()
        .filter(|e| matches!(e, FromRunner::Status { status: ServiceStatus::Restarting, .. }))
        .count();
    assert_eq!(restarts, 2, "max_crashes 3: two restarts, then crashed");
    r.call(2, "fx", "echo", json!({"text": "x"}), 1_000).await;
    assert_eq!(r.error(2).await, CallErrorCode::NotRunning);
}

#[tokio::test]
async fn a_failing_first_start_is_load_failed_with_the_log_tail() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[("FIXTURE_CRASH_ON_START", "1")]);
    let FromRunner::LoadFailed { step, log_tail, .. } = r.load(spec).await else { panic!("loaded") };
    assert_eq!(step, "initialize");
    assert!(log_tail.iter().any(|l| l.contains("crashing on start")), "{log_tail:?}");
    r.status("fx", ServiceStatus::Failed).await;
}

#[tokio::test]
async fn unanswered_pings_restart_the_service() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[("FIXTURE_HANG_PING", "1")]);
    assert!(is_loaded(&r.load(spec).await));
    let ev = r.status("fx", ServiceStatus::Restarting).await;
    let FromRunner::Status { error: Some(error), .. } = ev else { panic!("{ev:?}") };
    assert!(error.contains("ping"), "{error}");
}

#[tokio::test]
async fn list_changed_sends_the_new_tools() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[]);
    assert!(is_loaded(&r.load(spec).await));
    r.call(1, "fx", "add_tool", json!({}), 5_000).await;
    assert_eq!(r.text(1).await, "added");
    let ev = r.wait(|e| matches!(e, FromRunner::ToolsChanged { .. })).await;
    let FromRunner::ToolsChanged { tools, .. } = ev else { unreachable!() };
    assert!(tools.iter().any(|t| t.name == "extra"));
}

async fn spawn_grandchild(r: &mut Runner, id: u64) -> (u32, u32) {
    r.call(id, "fx", "spawn_child", json!({}), 5_000).await;
    let grandchild: u32 = r.text(id).await.parse().unwrap();
    (parent_of(grandchild), grandchild)
}

#[tokio::test]
async fn unload_kills_the_child_and_its_children() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[]);
    assert!(is_loaded(&r.load(spec).await));
    let (child, grandchild) = spawn_grandchild(&mut r, 1).await;
    assert!(Path::new(&format!("/proc/{child}")).exists());
    // runner-exec applied the spec's limits before exec.
    let limits = std::fs::read_to_string(format!("/proc/{child}/limits")).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(open_files.split_whitespace().nth(3), Some("256"), "{open_files}");
    r.send(&ToRunner::Unload { name: "fx".into() }).await;
    r.wait(|e| matches!(e, FromRunner::Unloaded { name } if name == "fx")).await;
    assert!(gone(child).await, "child {child} survived unload");
    assert!(gone(grandchild).await, "grandchild {grandchild} survived unload");
    r.call(2, "fx", "echo", json!({}), 1_000).await;
    assert_eq!(r.error(2).await, CallErrorCode::NotLoaded);
}

#[tokio::test]
async fn closing_stdin_stops_the_runner_and_its_children() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[]);
    assert!(is_loaded(&r.load(spec).await));
    let (child, grandchild) = spawn_grandchild(&mut r, 1).await;
    r.stdin = None;
    let status = tokio::time::timeout(WAIT, r.proc.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    assert!(gone(child).await, "child {child} survived the runner");
    assert!(gone(grandchild).await, "grandchild {grandchild} survived the runner");
}

#[tokio::test]
async fn malformed_lines_are_ignored_and_shutdown_exits() {
    let mut r = Runner::start().await;
    r.send_raw(b"this is not json\n{\"op\":\"nope\"}\n").await;
    r.send(&ToRunner::Ping { id: 7 }).await;
    r.wait(|e| matches!(e, FromRunner::Pong { id: 7 })).await;
    r.send(&ToRunner::Shutdown).await;
    let status = tokio::time::timeout(WAIT, r.proc.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_killed_runner_takes_its_children_along() {
    let mut r = Runner::start().await;
    let spec = r.spec("fx", &[]);
    assert!(is_loaded(&r.load(spec).await));
    let (child, grandchild) = spawn_grandchild(&mut r, 1).await;
    r.proc.start_kill().unwrap();
    let _ = r.proc.wait().await;
    // The parent-death signal runner-exec set; a grandchild is beyond its reach.
    assert!(gone(child).await, "child {child} survived a killed runner");
    kill_leftover(grandchild);
}

/// Cleans up the grandchild a SIGKILLed runner leaves behind.
fn kill_leftover(pid: u32) {
    let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

#[tokio::test]
async fn a_silent_first_start_times_out_as_load_failed() {
    let mut r = Runner::start().await;
    let mut spec = r.spec("fx", &[("FIXTURE_HANG_START", "1")]);
    spec.health.start_timeout_ms = 500;
    let started = std::time::Instant::now();
    let FromRunner::LoadFailed { step, error, log_tail, .. } = r.load(spec).await else { panic!("loaded") };
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(step, "initialize");
    assert!(error.contains("initialize"), "{error}");
    assert!(log_tail.iter().any(|l| l.contains("fixture ready")), "{log_tail:?}");
}
