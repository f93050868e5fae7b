//! The supervisor of one hosted service: runs the local MCP server (argv, cleared of nothing
//! but given the service's env; its own process group, killed whole on stop), registers its
//! tools whenever the mesh's link (re)connects, answers forwarded calls, and restarts the
//! server with backoff (1 s doubling to 60 s) when it dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ServerFrame, ToolInfo};
use claudemesh_protocol::local::LinkState;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Forward, HostedService};
use crate::api::ApiError;
use crate::mesh::UplinkCmd;
use crate::shared::Agent;

type First = Option<oneshot::Sender<Result<Vec<ToolInfo>, ApiError>>>;

/// How long the server has to start and list its tools.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A running local server.
struct Child {
    client: RunningService<RoleClient, ()>,
    pid: Option<u32>,
    tools: Vec<ToolInfo>,
}

impl Child {
    /// Kills the server's whole process group (what it spawned too).
    fn kill(&self) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn start(spec: &HostedService) -> Result<Child, String> {
    let (program, args) = spec.command.split_first().ok_or("no command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).envs(&spec.env).process_group(0).kill_on_drop(true);
    let (transport, _stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pid = transport.id();
    let ready = async {
        let client = ().serve(transport).await.map_err(|e| format!("MCP initialize failed: {e}"))?;
        let tools = client.peer().list_all_tools().await.map_err(|e| format!("tools/list failed: {e}"))?;
        Ok::<_, String>((client, tools))
    };
    let (client, tools) = match tokio::time::timeout(START_TIMEOUT, ready).await {
        Ok(r) => r,
        Err(_) => Err(format!("no MCP answer within {} s", START_TIMEOUT.as_secs())),
    }
    .inspect_err(|_| {
        if let Some(p) = pid.and_then(|p| i32::try_from(p).ok()) {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
    })?;
    let tools = tools
        .into_iter()
        .map(|t| ToolInfo {
            name: t.name.to_string(),
            description: t.description.map(|d| d.to_string()),
            input_schema: serde_json::Value::Object((*t.input_schema).clone()),
        })
        .collect();
    Ok(Child { client, pid, tools })
}

/// Registers `spec` with `tools` over the mesh's link.
async fn register(agent: &Agent, spec: &HostedService, tools: Vec<ToolInfo>) -> Result<(), ApiError> {
    let (name, description, scope) = (spec.name.clone(), spec.description.clone(), spec.scope.clone());
    let build = Box::new(move |req| ClientFrame::McpRegister { req, name, description, tools, scope });
    match crate::api::admin::request_raw(agent, &spec.mesh, build).await? {
        ServerFrame::Error(e) => Err((e.code, format!("{}: {}", spec.name, e.message))),
        _ => Ok(()),
    }
}

/// The instant the mesh's link connected, while it is connected.
fn connected(agent: &Agent, mesh: &str) -> Option<Instant> {
    agent.view().meshes.get(mesh).filter(|v| v.link == LinkState::Connected).and_then(|v| v.connected_since)
}

/// Runs one hosted service until `stop`.
pub(super) async fn supervise(
    agent: Arc<Agent>,
    spec: HostedService,
    mut calls: mpsc::Receiver<Forward>,
    stop: CancellationToken,
    mut first: First,
) {
    let mut backoff = Duration::from_secs(1);
    let mut view = agent.core.watch();
    'restart: loop {
        let child = tokio::select! {
            () = stop.cancelled() => return,
            r = start(&spec) => r,
        };
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(service = %spec.name, error = %e, "hosted service did not start");
                if let Some(f) = first.take() {
                    let _ = f.send(Err((ErrorCode::Invalid, format!("{}: {e}", spec.name))));
                    return;
                }
                answer_waiting(&agent, &spec, &mut calls, "the local server is restarting");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue 'restart;
            }
        };
        let started = Instant::now();
        let mut registered_for: Option<Instant> = None;
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let mut work = tokio::task::JoinSet::new();
        loop {
            // Registered once per connection of the link.
            let now_connected = connected(&agent, &spec.mesh);
            if now_connected.is_some() && now_connected != registered_for {
                match register(&agent, &spec, child.tools.clone()).await {
                    Ok(()) => {
                        registered_for = now_connected;
                        tracing::info!(service = %spec.name, tools = child.tools.len(), "hosted service registered");
                        if let Some(f) = first.take() {
                            let _ = f.send(Ok(child.tools.clone()));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(service = %spec.name, code = ?e.0, error = %e.1, "registration refused");
                        if let Some(f) = first.take() {
                            let _ = f.send(Err(e));
                            return;
                        }
                        registered_for = now_connected;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => {
                    work.abort_all();
                    drop(child);
                    return;
                }
                r = view.changed() => {
                    if r.is_err() {
                        // The core is gone: the agent is stopping.
                        stop.cancelled().await;
                    }
                }
                Some(call) = calls.recv() => {
                    let (agent, peer, mesh) = (agent.clone(), child.client.peer().clone(), spec.mesh.clone());
                    work.spawn(async move { answer(&agent, &mesh, &peer, call).await });
                }
                Some(_) = work.join_next(), if !work.is_empty() => {}
                _ = check.tick() => {
                    if child.client.is_closed() {
                        tracing::warn!(service = %spec.name, "hosted service exited; restarting");
                        break;
                    }
                }
            }
        }
        drop(child);
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Answers calls that arrived while there is no server to take them.
fn answer_waiting(agent: &Agent, spec: &HostedService, calls: &mut mpsc::Receiver<Forward>, why: &str) {
    while let Ok(c) = calls.try_recv() {
        let f = ClientFrame::McpCallResponse {
            call_id: c.call_id,
            result: None,
            error: Some(format!("{}: {why}", spec.name)),
        };
        send(agent, &spec.mesh, f);
    }
}

fn send(agent: &Agent, mesh: &str, f: ClientFrame) {
    if let Some(v) = agent.view().meshes.get(mesh)
        && v.uplink.try_send(UplinkCmd::Frame(Box::new(f))).is_err()
    {
        tracing::warn!(mesh, "mesh link is busy; a call response was dropped (the caller times out)");
    }
}

/// Calls the local server for a forwarded call, within its timeout, and sends the answer.
async fn answer(agent: &Agent, mesh: &str, peer: &rmcp::Peer<RoleClient>, c: Forward) {
    let args = match c.arguments {
        serde_json::Value::Object(m) => Some(m),
        serde_json::Value::Null => None,
        _ => {
            let error = Some("a tool's arguments must be a JSON object".to_string());
            send(agent, mesh, ClientFrame::McpCallResponse { call_id: c.call_id, result: None, error });
            return;
        }
    };
    let mut params = CallToolRequestParams::new(c.tool.clone());
    if let Some(a) = args {
        params = params.with_arguments(a);
    }
    let limit = Duration::from_millis(c.timeout_ms.clamp(1, crate::api::services::CALL_MAX_MS));
    let (result, error) = match tokio::time::timeout(limit, peer.call_tool(params)).await {
        Ok(Ok(r)) => match serde_json::to_value(&r) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("cannot encode the result: {e}"))),
        },
        Ok(Err(e)) => (None, Some(format!("{} failed in the local server: {e}", c.tool))),
        Err(_) => (None, Some(format!("{} timed out after {} ms", c.tool, limit.as_millis()))),
    };
    tracing::debug!(service = %c.service, tool = %c.tool, from = %c.from_member, ok = error.is_none(), "forwarded call");
    send(agent, mesh, ClientFrame::McpCallResponse { call_id: c.call_id, result, error });
}
