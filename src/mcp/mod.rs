//! `claudemesh mcp`: the stdio MCP server Claude Code starts (DESIGN §6, §10). It registers one
//! session with the local agent, serves the mesh tools and prompts (shared skills among them), pushes inbound messages as
//! `notifications/claude/channel` when push mode is on, and closes the session when stdin closes.
//! Services deployed while it runs get tools of their own ([`svc_tools`], [`svc_watch`]).
//! `claudemesh mcp --service NAME` is another server in this module: one mesh service's tools
//! ([`service_proxy`], [`service_follow`]); both call services through [`service_call`].
//!
//! stdout is the MCP channel: nothing else is ever written there. It goes through
//! [`confirm::ConfirmingWriter`], which confirms the messages a `check_messages` result carries
//! once that result was written. stdin lines pass [`line_check`] first ([`stdio`]): a request
//! rmcp could not read gets a JSON-RPC error with its id rather than silence. Logs go to stderr, and only with `CLAUDEMESH_DEBUG=1`.

mod channel;
mod confirm;
mod inbox;
mod line_check;
mod link;
mod prompts;
mod server;
mod service_call;
mod service_follow;
mod service_proxy;
mod services;
mod sharing;
mod stdio;
mod svc_tools;
mod svc_watch;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use claudemesh_agent::Paths;
use claudemesh_protocol::frames::{PeerType, SessionInfo, SessionStatus};
use claudemesh_protocol::limits::{MAX_SESSION_ID_BYTES, MCP_KEEPALIVE_MILLIS};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use crate::hook::ancestry;
pub use confirm::Leases;
pub use link::Link;
pub use server::MeshServer;
pub use service_proxy::{ProxyArgs, serve as serve_service};

/// The `channel` this server declares for its session.
const CHANNEL: &str = "claudemesh";
/// How often the session checks its agent connection; after an agent restart it registers
/// again within this (plus a connect), with no tool call needed.
const KEEPALIVE: Duration = Duration::from_millis(MCP_KEEPALIVE_MILLIS);

/// The link, shared by the tool handlers, the push task, the keepalive and the confirm task.
pub type Shared = Arc<tokio::sync::Mutex<Link>>;

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

/// The session id: `CLAUDEMESH_SESSION_ID` when `claudemesh launch` set it for the `claude`
/// this server runs under (see [`ancestry::launched_here`]), else Claude Code's own session id
/// when it is in the environment, else a fresh one. A launch id inherited by another `claude`
/// (a `claude -p` run inside a launched session) means the Claude ids may be inherited too:
/// then the id is always fresh.
fn session_id(claude: Option<u32>) -> String {
    if let Some(sid) = ancestry::inherited_session(claude) {
        return sid;
    }
    if ancestry::launch_pid_set() && std::env::var_os("CLAUDEMESH_SESSION_ID").is_some() {
        debug("CLAUDEMESH_SESSION_ID belongs to another claude process: using a session id of our own");
        return uuid::Uuid::new_v4().to_string();
    }
    ["CLAUDE_SESSION_ID", "CLAUDE_CODE_SESSION_ID"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty() && v.len() <= MAX_SESSION_ID_BYTES && !v.chars().any(char::is_control))
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

/// The session this process registers, for the `claude` process `claude`.
fn session_info(paths: &Paths, claude: Option<u32>) -> SessionInfo {
    let cwd = std::env::current_dir().ok().map(|d| d.display().to_string());
    let hostname =
        std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
    SessionInfo {
        session_id: session_id(claude),
        display_name: display_name(paths, cwd.as_deref()),
        cwd,
        pid: Some(std::process::id()),
        hostname,
        peer_type: PeerType::Ai,
        channel: Some(CHANNEL.into()),
        // The groups `claudemesh launch --group` registered, kept when this registers again.
        groups: crate::cmd::launch::groups_from_env(&std::env::var("CLAUDEMESH_GROUPS").unwrap_or_default()),
        status: SessionStatus::Idle,
        ..Default::default()
    }
}

/// The `claude` process this server belongs to: its nearest `claude` ancestor, else its parent
/// (Claude Code starts MCP servers as its own children).
fn claude_pid() -> u32 {
    let ancestors = ancestry::ancestors();
    ancestry::nearest_claude(&ancestry::System, &ancestors).unwrap_or_else(std::os::unix::process::parent_id)
}

/// Serves MCP on stdin/stdout until the client closes stdin.
pub async fn serve() -> anyhow::Result<()> {
    let paths = Paths::from_env();
    let claude = claude_pid();
    let info = session_info(&paths, Some(claude));
    let written = confirm::Written::default();
    let link =
        Link::new(paths, info, Some(claude), chosen_name().is_none(), launch_meshes(), written.clone());
    let link: Shared = Arc::new(tokio::sync::Mutex::new(link));
    let stop = CancellationToken::new();
    // Registers at once (peers see the session before the first tool call) and again after an
    // agent restart, beside the MCP handshake, which never waits for the agent.
    let keepalive = tokio::spawn(keep_registered(link.clone(), stop.clone()));
    let leases = Leases::default();
    let confirming = tokio::spawn(confirm_leases(link.clone(), written.clone(), stop.clone()));
    // stdin is checked line by line before rmcp reads it (a request rmcp cannot read still gets
    // a reply with its id); stdout confirms `check_messages` leases once their result is out.
    let ((stdin, stdout), (filter, writer)) = stdio::Stdio::start(leases.clone(), written).split();
    let server = MeshServer::new(link.clone(), stop.clone(), leases);
    let reason = match server.serve((stdin, stdout)).await {
        Ok(running) => Some(running.waiting().await),
        // The client went away before initializing (a probe, or Claude Code quitting early).
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(at)) => {
            debug(&format!("stdin closed before initialization ({at})"));
            None
        }
        Err(e) => {
            stdio::Stdio::finish(filter, writer).await;
            stop.cancel();
            return Err(e.into());
        }
    };
    debug(&format!("stdio closed: {reason:?}"));
    // Every line rmcp wrote is out before the last confirmations.
    stdio::Stdio::finish(filter, writer).await;
    stop.cancel();
    let _ = keepalive.await;
    // Confirms what was written before stdin closed, then the session closes.
    let _ = confirming.await;
    link.lock().await.close().await;
    Ok(())
}

/// Confirms the leases of tool results as soon as [`confirm::ConfirmingWriter`] saw them
/// written, until `stop`, when it confirms what is left.
async fn confirm_leases(link: Shared, written: confirm::Written, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = written.pushed() => link.lock().await.confirm_written().await,
            () = stop.cancelled() => {
                link.lock().await.confirm_written().await;
                return;
            }
        }
    }
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
