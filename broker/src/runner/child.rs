//! One running service child: spawning it through `runner-exec` with a cleared environment in
//! its own process group, splitting its stdout between rmcp (JSON-RPC lines) and its log, the
//! rmcp client over that, and killing the whole group.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use claudemesh_protocol::frames::ToolInfo;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::exec::limit_args;
use super::io::{Line, read_line_capped};
use super::log::{LogSink, clean_line};
use super::wire::ServiceSpec;

/// Longest stdout line passed to rmcp (its own cap); longer ones are logged as skipped.
const MAX_CHILD_LINE: usize = 16 * 1024 * 1024;

/// Why a child could not be started or spoken to.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("service {name}: cannot start {command}: {source}")]
    Spawn { name: String, command: String, source: std::io::Error },
    #[error("service {name}: initialize failed: {message}")]
    Initialize { name: String, message: String },
    #[error("service {name}: tools/list failed: {source}")]
    ListTools { name: String, source: Box<rmcp::ServiceError> },
}

/// The rmcp client's handler: forwards `notifications/tools/list_changed`.
#[derive(Debug, Clone)]
pub struct Handler {
    list_changed: mpsc::Sender<()>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("claudemesh-runner", env!("CARGO_PKG_VERSION")),
        )
        // The newest revision with `initialize` and `ping`, which MCP servers speak today.
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.list_changed.try_send(());
    }
}

/// How the runner starts `runner-exec`: its own executable and the subcommand path to it.
#[derive(Debug, Clone)]
pub struct ExecPrefix(pub Vec<OsString>);

/// A child process and the rmcp client speaking to it. Dropping it kills the process group.
pub struct Child {
    name: String,
    pgid: Pid,
    /// Cancelled when the process has exited (and been reaped).
    pub exited: CancellationToken,
    waiter: Option<JoinHandle<Option<std::process::ExitStatus>>>,
    client: Option<RunningService<RoleClient, Handler>>,
    readers: Vec<JoinHandle<()>>,
    /// The last lines of its output.
    pub tail: Tail,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child").field("name", &self.name).field("pgid", &self.pgid).finish_non_exhaustive()
    }
}

/// A started child before its MCP handshake.
#[derive(Debug)]
pub struct Spawned {
    /// The process (killed if the handshake fails or this is dropped).
    pub child: Child,
    /// rmcp's ends of the child's stdio, until the handshake takes them.
    handshake: Option<(tokio::io::DuplexStream, tokio::process::ChildStdin)>,
}

/// Starts `argv` for `spec` through `runner-exec`: env cleared, then PATH (the runner's),
/// HOME = the service dir, LANG, `extra_env` (from preparation), then `service_env` (the
/// service's env with its vault references resolved); cwd = the service dir; a new process
/// group.
pub fn spawn(
    spec: &ServiceSpec,
    exec: &ExecPrefix,
    argv: &[String],
    extra_env: &BTreeMap<String, String>,
    service_env: &BTreeMap<String, zeroize::Zeroizing<String>>,
    log: &LogSink,
) -> Result<Spawned, ChildError> {
    let (program, prefix) = match exec.0.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (OsString::from("claudemesh-broker"), vec![OsString::from("runner-exec")]),
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(prefix).args(limit_args(&spec.limits)).arg("--").args(argv);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", &spec.dir);
    cmd.env("LANG", std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()));
    cmd.envs(extra_env);
    for (k, v) in service_env {
        cmd.env(k, v.as_str());
    }
    cmd.current_dir(&spec.dir)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let command = argv.join(" ");
    let mut proc = cmd.spawn().map_err(|source| ChildError::Spawn {
        name: spec.name.clone(),
        command: command.clone(),
        source,
    })?;
    let pid = proc.id().unwrap_or(0);
    let missing = |what: &str| ChildError::Spawn {
        name: spec.name.clone(),
        command: command.clone(),
        source: std::io::Error::other(format!("no {what} pipe")),
    };
    let stdin = proc.stdin.take().ok_or_else(|| missing("stdin"))?;
    let stdout = proc.stdout.take().ok_or_else(|| missing("stdout"))?;
    let stderr = proc.stderr.take().ok_or_else(|| missing("stderr"))?;
    let (rmcp_write, transport_read) = tokio::io::duplex(64 * 1024);
    let tail = Tail::default();
    let readers = vec![
        tokio::spawn(split_stdout(stdout, rmcp_write, Logger::new(log.clone(), tail.clone()))),
        tokio::spawn(log_lines(stderr, Logger::new(log.clone(), tail.clone()))),
    ];
    let exited = CancellationToken::new();
    let done = exited.clone();
    let waiter = tokio::spawn(async move {
        let status = proc.wait().await.ok();
        done.cancel();
        status
    });
    tracing::info!(service = %spec.name, pid, command = %command, "started");
    let pgid = Pid::from_raw(i32::try_from(pid).unwrap_or(0));
    let child =
        Child { name: spec.name.clone(), pgid, exited, waiter: Some(waiter), client: None, readers, tail };
    Ok(Spawned { child, handshake: Some((transport_read, stdin)) })
}

impl Spawned {
    /// The MCP handshake (`initialize`); `list_changed` receives tools/list_changed signals.
    /// Runs once; the child stays in `self.child` whatever happens (also when this future is
    /// dropped at a timeout), so the caller can collect its output and kill it.
    pub async fn initialize(&mut self, list_changed: mpsc::Sender<()>) -> Result<(), ChildError> {
        let name = self.child.name.clone();
        let Some((transport_read, stdin)) = self.handshake.take() else {
            return Err(ChildError::Initialize { name, message: "already initialized".into() });
        };
        let transport =
            AsyncRwTransport::new_client(transport_read, stdin).with_max_line_length(MAX_CHILD_LINE);
        let client = (Handler { list_changed })
            .serve(transport)
            .await
            .map_err(|e| ChildError::Initialize { name, message: e.to_string() })?;
        self.child.client = Some(client);
        Ok(())
    }
}

impl Child {
    /// The MCP peer, once initialized.
    pub fn peer(&self) -> Option<Peer<RoleClient>> {
        self.client.as_ref().map(|c| c.peer().clone())
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Every tool, following `next_cursor` through all pages.
    pub async fn list_tools(&self) -> Result<Vec<ToolInfo>, ChildError> {
        let Some(client) = &self.client else {
            return Ok(Vec::new());
        };
        let tools = client
            .peer()
            .list_all_tools()
            .await
            .map_err(|source| ChildError::ListTools { name: self.name.clone(), source: Box::new(source) })?;
        Ok(tools
            .into_iter()
            .map(|t| ToolInfo {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()),
                input_schema: serde_json::Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    /// Kills the whole process group and waits for the child to be reaped.
    pub async fn kill(mut self) -> Option<std::process::ExitStatus> {
        self.killpg();
        let status = match self.waiter.take() {
            Some(w) => w.await.ok().flatten(),
            None => None,
        };
        if let Some(client) = self.client.take() {
            let _ = client.cancel().await;
        }
        status
    }

    /// Kills the process group, waits (at most `wait`) for the output readers to reach the end
    /// of the child's output, then returns its last lines.
    pub async fn kill_for_tail(&mut self, wait: std::time::Duration) -> Vec<String> {
        self.killpg();
        let readers = std::mem::take(&mut self.readers);
        let _ = tokio::time::timeout(wait, futures_util::future::join_all(readers)).await;
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    fn killpg(&self) {
        if self.pgid.as_raw() > 0 {
            // ESRCH: the group is already empty.
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.killpg();
        for r in &self.readers {
            r.abort();
        }
    }
}

/// Child stdout: JSON-RPC lines go to rmcp (in order), anything else to the log.
async fn split_stdout(stdout: impl AsyncRead + Unpin, mut rmcp: tokio::io::DuplexStream, mut logger: Logger) {
    let mut reader = BufReader::new(stdout);
    loop {
        match read_line_capped(&mut reader, MAX_CHILD_LINE).await {
            Ok(Some(Line::Full(mut line))) => {
                if is_json_rpc(&line) {
                    line.push(b'\n');
                    if rmcp.write_all(&line).await.is_err() {
                        break;
                    }
                } else {
                    logger.line(&String::from_utf8_lossy(&line));
                }
            }
            Ok(Some(Line::TooLong(n))) => logger.line(&format!("(stdout line of {n} bytes skipped)")),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = rmcp.shutdown().await;
}

/// Child stderr: every line to the log.
async fn log_lines(stderr: impl AsyncRead + Unpin, mut logger: Logger) {
    let mut reader = BufReader::new(stderr);
    loop {
        match read_line_capped(&mut reader, 64 * 1024).await {
            Ok(Some(Line::Full(line))) => logger.line(&String::from_utf8_lossy(&line)),
            Ok(Some(Line::TooLong(n))) => logger.line(&format!("(stderr line of {n} bytes skipped)")),
            Ok(None) | Err(_) => break,
        }
    }
}

fn is_json_rpc(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii();
    trimmed.starts_with(b"{")
        && serde_json::from_slice::<serde_json::Value>(trimmed)
            .is_ok_and(|v| v.get("jsonrpc").and_then(|j| j.as_str()) == Some("2.0"))
}

/// The last lines a child wrote (stderr and stray stdout), for `load_failed`'s `log_tail`.
pub type Tail = Arc<Mutex<VecDeque<String>>>;

/// Lines kept in a [`Tail`].
const TAIL_LINES: usize = 20;

/// A [`LogSink`] that says how many lines it dropped once it can send again, and keeps a tail.
struct Logger {
    sink: LogSink,
    dropped: u64,
    tail: Tail,
}

impl Logger {
    fn new(sink: LogSink, tail: Tail) -> Self {
        Self { sink, dropped: 0, tail }
    }

    fn line(&mut self, line: &str) {
        {
            let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() >= TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(clean_line(line));
        }
        if self.dropped > 0 && self.sink.line(format!("({} lines dropped)", self.dropped)) {
            self.dropped = 0;
        }
        if self.dropped > 0 || !self.sink.line(line) {
            self.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_is_counted_and_reported_once_the_sink_has_room() {
        let (sink, mut rx) = LogSink::channel("svc", 1);
        let mut logger = Logger::new(sink, Tail::default());
        logger.line("one");
        logger.line("two");
        logger.line("three");
        assert_eq!(rx.recv().await.map(|(_, l)| l).as_deref(), Some("one"));
        logger.line("four");
        assert_eq!(rx.recv().await.map(|(_, l)| l).as_deref(), Some("(2 lines dropped)"));
        logger.line("five");
        assert_eq!(rx.recv().await.map(|(_, l)| l).as_deref(), Some("(1 lines dropped)"));
        let tail = logger.tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(tail, ["one", "two", "three", "four", "five"]);
    }

    #[test]
    fn only_json_rpc_objects_go_to_rmcp() {
        assert!(is_json_rpc(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        assert!(!is_json_rpc(b"stray stdout line"));
        assert!(!is_json_rpc(br#"{"hello":"world"}"#));
    }
}
