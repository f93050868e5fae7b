//! `claudemesh mcp`: the stdio MCP server Claude Code starts (DESIGN §6, §10). It registers one
//! session with the local agent, serves the mesh tools and prompts, pushes inbound messages as
//! `notifications/claude/channel` when push mode is on, and closes the session when stdin closes.
//!
//! stdout is the MCP channel: nothing else is ever written there. Logs go to stderr, and only
//! with `CLAUDEMESH_DEBUG=1`.

mod channel;
mod server;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use claudemesh_agent::{AgentClient, ClientError, Paths};
use claudemesh_protocol::frames::{PeerType, SessionInfo, SessionPatch, SessionStatus};
use claudemesh_protocol::local::{AgentCall, SessionRegister};
use rmcp::ServiceExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use server::MeshServer;

/// The `channel` this server declares for its session.
const CHANNEL: &str = "claudemesh";
/// The longest one agent call may take, starting the agent included: a stopped or wedged agent
/// (`kill -STOP`, what Ctrl-Z does to `agent run`) must not hang Claude Code.
const CALL_TIMEOUT: Duration = Duration::from_secs(12);
/// How often the session checks its agent connection; after an agent restart it registers
/// again within this, with no tool call needed.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The connection to the agent for request/response calls, and the session it registered.
///
/// The connection is made lazily and remade after the agent went away; every (re)connection
/// registers the session again with its current state (summary, status, groups).
#[derive(Debug)]
pub struct Link {
    paths: Paths,
    session: SessionInfo,
    claude_pid: Option<u32>,
    /// The name was not chosen (no `CLAUDEMESH_NAME`): the agent may suffix it (`repo-2`).
    default_name: bool,
    client: Option<AgentClient>,
}

/// The link, shared by the tool handlers and the push task.
pub type Shared = Arc<tokio::sync::Mutex<Link>>;

impl Link {
    pub fn new(paths: Paths, session: SessionInfo, claude_pid: Option<u32>) -> Self {
        let default_name = chosen_name().is_none();
        Self { paths, session, claude_pid, default_name, client: None }
    }

    pub fn session_id(&self) -> &str {
        &self.session.session_id
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The session as this server last described it to the agent.
    pub fn session(&self) -> &SessionInfo {
        &self.session
    }

    /// The connected client, connecting (starting the agent if needed, unless `!start`) and
    /// registering first.
    async fn client_with(&mut self, start: bool) -> Result<&mut AgentClient, ClientError> {
        if self.client.is_none() {
            let mut c = if start {
                let exe = std::env::current_exe()?;
                claudemesh_agent::connect_or_start(&self.paths, "mcp", &exe).await?
            } else {
                AgentClient::connect(&self.paths, "mcp").await?
            };
            let r = c
                .call(AgentCall::SessionRegister(SessionRegister {
                    meshes: launch_meshes(),
                    session: self.session.clone(),
                    claude_pid: self.claude_pid,
                    default_name: self.default_name,
                }))
                .await?;
            // A default name may come back made distinct (`repo-2`): keep it for re-registering.
            if let Some(n) = r["display_name"].as_str() {
                self.session.display_name = n.to_string();
            }
            debug(&format!("registered session {}", self.session.session_id));
            self.client = Some(c);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(ClientError::Protocol("no agent connection".into())),
        }
    }

    /// One call, within [`CALL_TIMEOUT`]; a broken or silent connection is dropped so the next
    /// call reconnects and re-registers.
    pub async fn call(&mut self, call: AgentCall) -> Result<Value, ClientError> {
        self.call_with(call, true).await
    }

    async fn call_with(&mut self, call: AgentCall, start: bool) -> Result<Value, ClientError> {
        let r = match tokio::time::timeout(CALL_TIMEOUT, async {
            self.client_with(start).await?.call(call).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the agent did not answer within {} s; is it stopped? (`claudemesh agent status`)",
                    CALL_TIMEOUT.as_secs()
                ),
            ))),
        };
        if matches!(r, Err(ClientError::Io(_) | ClientError::Protocol(_))) {
            self.client = None;
        }
        r
    }

    /// Makes sure a live, registered connection exists (one retry after a dead one), starting
    /// the agent if none runs. Asks the agent for its mesh list: the cheapest call that proves
    /// the connection is alive.
    pub async fn ensure(&mut self) -> Result<(), ClientError> {
        self.ensure_with(true).await
    }

    async fn ensure_with(&mut self, start: bool) -> Result<(), ClientError> {
        match self.call_with(AgentCall::Meshes, start).await {
            Ok(_) => Ok(()),
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => Err(ClientError::Io(e)),
            Err(ClientError::Io(_) | ClientError::Protocol(_)) => {
                self.call_with(AgentCall::Meshes, start).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Registers again with an agent that runs (after a restart), never starting one: an agent
    /// stopped on purpose (`claudemesh down`) stays stopped until a tool call needs it.
    pub async fn keep_alive(&mut self) -> Result<(), ClientError> {
        self.ensure_with(false).await
    }

    /// Applies `patch` at the agent, then to the local copy (kept for re-registration).
    pub async fn update(&mut self, patch: SessionPatch) -> Result<Value, ClientError> {
        let session_id = self.session.session_id.clone();
        let v = self.call(AgentCall::SessionUpdate { session_id, patch: patch.clone() }).await?;
        patch.apply(&mut self.session);
        Ok(v)
    }

    /// Closes the session at the agent and drops the connection (a silent agent gets
    /// [`CALL_TIMEOUT`]; the agent also closes the session when the connection goes).
    pub async fn close(&mut self) {
        if let Some(mut c) = self.client.take() {
            let session_id = self.session.session_id.clone();
            match tokio::time::timeout(CALL_TIMEOUT, c.call(AgentCall::SessionClose { session_id })).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => debug(&format!("session close failed: {e}")),
                Err(_) => debug("session close: the agent did not answer"),
            }
        }
    }
}

/// The meshes to open the session on: `CLAUDEMESH_MESH` (set by `claudemesh launch --mesh`,
/// comma-separated), else every joined mesh (empty).
fn launch_meshes() -> Vec<String> {
    std::env::var("CLAUDEMESH_MESH")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes a log line to stderr when `CLAUDEMESH_DEBUG` is set (never to stdout).
pub fn debug(msg: &str) {
    if std::env::var("CLAUDEMESH_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!("claudemesh mcp: {msg}");
    }
}

/// The session id: `CLAUDEMESH_SESSION_ID` (set by `claudemesh launch`), else Claude Code's own
/// session id when it is in the environment, else a fresh one.
fn session_id() -> String {
    ["CLAUDEMESH_SESSION_ID", "CLAUDE_SESSION_ID", "CLAUDE_CODE_SESSION_ID"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty() && v.len() <= 128)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// How others see this session: `CLAUDEMESH_NAME`, else the configured name, else the
/// working directory's name.
fn display_name(paths: &Paths, cwd: Option<&str>) -> String {
    if let Some(n) = chosen_name() {
        return n;
    }
    if let Ok(cfg) = claudemesh_agent::Config::load(paths)
        && let Some(n) = cfg.display_name.filter(|n| !n.is_empty())
    {
        return n;
    }
    cwd.and_then(|c| std::path::Path::new(c).file_name().map(|f| f.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "claude".into())
}

/// The name the user chose for this session (`CLAUDEMESH_NAME`, which `launch --name` sets).
fn chosen_name() -> Option<String> {
    std::env::var("CLAUDEMESH_NAME").ok().map(|n| n.trim().to_string()).filter(|n| !n.is_empty())
}

/// The session this process registers.
fn session_info(paths: &Paths) -> SessionInfo {
    let cwd = std::env::current_dir().ok().map(|d| d.display().to_string());
    let hostname =
        std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
    SessionInfo {
        session_id: session_id(),
        display_name: display_name(paths, cwd.as_deref()),
        cwd,
        pid: Some(std::process::id()),
        hostname,
        peer_type: PeerType::Ai,
        channel: Some(CHANNEL.into()),
        status: SessionStatus::Idle,
        ..Default::default()
    }
}

/// Serves MCP on stdin/stdout until the client closes stdin.
pub async fn serve() -> anyhow::Result<()> {
    let paths = Paths::from_env();
    let info = session_info(&paths);
    let claude_pid = Some(std::os::unix::process::parent_id());
    let link: Shared = Arc::new(tokio::sync::Mutex::new(Link::new(paths, info, claude_pid)));
    let stop = CancellationToken::new();
    // Registers at once (peers see the session before the first tool call) and again after an
    // agent restart, beside the MCP handshake, which never waits for the agent.
    let keepalive = tokio::spawn(keep_registered(link.clone(), stop.clone()));
    let server = MeshServer::new(link.clone(), stop.clone());
    let running = match server.serve(rmcp::transport::stdio()).await {
        Ok(r) => r,
        // The client went away before initializing (a probe, or Claude Code quitting early).
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(at)) => {
            debug(&format!("stdin closed before initialization ({at})"));
            stop.cancel();
            let _ = keepalive.await;
            link.lock().await.close().await;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let reason = running.waiting().await;
    debug(&format!("stdio closed: {reason:?}"));
    stop.cancel();
    let _ = keepalive.await;
    link.lock().await.close().await;
    Ok(())
}

/// Keeps the session registered: checks the agent connection every [`KEEPALIVE`] and, when
/// the agent went away and came back, connects and registers again, until `stop`. The first
/// check starts the agent if none runs (Claude Code just started this server to use it); later
/// ones only reconnect to a running one.
async fn keep_registered(link: Shared, stop: CancellationToken) {
    let mut first = true;
    loop {
        let checked = tokio::select! {
            _ = stop.cancelled() => return,
            r = async {
                let mut l = link.lock().await;
                if first { l.ensure().await } else { l.keep_alive().await }
            } => r,
        };
        first = false;
        if let Err(e) = checked {
            debug(&format!("agent not reachable: {e}"));
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(KEEPALIVE) => {}
        }
    }
}
