//! Peer-hosted services (DESIGN §7, `claudemesh serve-mcp`): this agent runs a local MCP
//! server (argv, never a shell; its own process group), lists its tools and registers them with
//! the mesh's broker (`mcp_register`); calls the broker forwards (`mcp_call_forward`) go to the
//! server and their results back (`mcp_call_response`). Registered again after every
//! reconnect; the server is restarted with backoff when it dies. The entries live in
//! `config.json` (`hosted_services`), so an agent restart hosts them again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use claudemesh_protocol::frames::{ClientFrame, ErrorCode};
use claudemesh_protocol::local::{HostParams, HostReply};
use claudemesh_protocol::scope::Scope;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiError;
use crate::api::services::{Mesh, resolve_scope};
use crate::config::Config;
use crate::core::calls::to_value;
use crate::shared::Agent;

mod server;

/// A hosted service as `config.json` keeps it. The file is 0600: `env` may hold secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedService {
    /// Mesh id.
    pub mesh: String,
    pub name: String,
    /// The server's argv.
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub scope: Scope,
}

impl std::fmt::Debug for HostedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.env.keys().collect();
        f.debug_struct("HostedService")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("command", &self.command)
            .field("env_keys", &keys)
            .field("scope", &self.scope)
            .finish()
    }
}

/// A call the broker forwarded to this host.
#[derive(Debug, Clone)]
pub struct Forward {
    pub call_id: String,
    pub service: String,
    pub tool: String,
    pub arguments: Value,
    pub from_member: String,
    pub timeout_ms: u64,
}

/// Most forwarded calls waiting for one hosted service.
const CALL_QUEUE: usize = 64;

/// The services this agent hosts now.
#[derive(Debug, Default)]
pub struct Hosting {
    agent: OnceLock<Weak<Agent>>,
    running: Mutex<HashMap<(String, String), Running>>,
    /// Every supervisor task: the daemon waits for them at shutdown.
    pub tracker: TaskTracker,
}

#[derive(Debug)]
struct Running {
    calls: mpsc::Sender<Forward>,
    stop: CancellationToken,
}

impl Hosting {
    /// Ties the supervisors to the agent (its `Arc`, which they hold while they run).
    pub fn bind(&self, agent: &Arc<Agent>) {
        let _ = self.agent.set(Arc::downgrade(agent));
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Running>> {
        // A poisoned map is still a map: a supervisor that panicked left no half-made entry.
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands a forwarded call to its service's supervisor; the answer to send back at once
    /// when this agent does not host it (or too many calls wait).
    pub fn forward(&self, mesh_id: &str, call: Forward) -> Option<ClientFrame> {
        let key = (mesh_id.to_string(), call.service.clone());
        let refuse = |call: &Forward, why: String| {
            Some(ClientFrame::McpCallResponse {
                call_id: call.call_id.clone(),
                result: None,
                error: Some(why),
            })
        };
        let tx = match self.running().get(&key) {
            Some(r) => r.calls.clone(),
            None => return refuse(&call, format!("{} is not hosted by this agent any more", call.service)),
        };
        match tx.try_send(call) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(c)) => {
                refuse(&c, format!("{} is busy ({CALL_QUEUE} calls waiting); try again", c.service))
            }
            Err(mpsc::error::TrySendError::Closed(c)) => refuse(&c, format!("{} is stopping", c.service)),
        }
    }

    /// Starts the supervisor of `spec` (stopping an older one of the same name); `first`
    /// gets the outcome of the first registration.
    fn start(
        &self,
        spec: HostedService,
        first: Option<oneshot::Sender<Result<Vec<claudemesh_protocol::frames::ToolInfo>, ApiError>>>,
    ) -> bool {
        let Some(agent) = self.agent.get().and_then(Weak::upgrade) else { return false };
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        let stop = agent.shutdown.child_token();
        let key = (spec.mesh.clone(), spec.name.clone());
        if let Some(old) = self.running().insert(key, Running { calls: tx, stop: stop.clone() }) {
            old.stop.cancel();
        }
        self.tracker.spawn(server::supervise(agent, spec, rx, stop, first));
        true
    }

    /// Stops hosting `name` on `mesh_id`; whether it was hosted.
    fn stop(&self, mesh_id: &str, name: &str) -> bool {
        match self.running().remove(&(mesh_id.to_string(), name.to_string())) {
            Some(r) => {
                r.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Hosts what `config.json` lists (at agent start).
    pub fn start_configured(&self, config: &Config) {
        for spec in config.hosted_services.iter().cloned() {
            tracing::info!(mesh = %spec.mesh, service = %spec.name, "hosting service from config");
            self.start(spec, None);
        }
    }
}

/// How long `service_host` waits for the first registration.
const HOST_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `service_host`: keeps the entry in `config.json`, starts the local server, registers it.
pub async fn host(agent: &Agent, p: HostParams) -> Result<Value, ApiError> {
    claudemesh_protocol::names::validate_service_name(&p.name)
        .map_err(|e| (ErrorCode::Invalid, format!("service name {:?}: {e}", p.name)))?;
    if p.command.first().is_none_or(String::is_empty) {
        return Err((ErrorCode::Invalid, "serve-mcp needs the server's command: `-- CMD ARGS…`".into()));
    }
    let m = Mesh::resolve(agent, p.mesh.as_deref())?;
    let scope = match &p.scope {
        Some(raw) => resolve_scope(agent, &m.id, raw).await?,
        None => Scope::Peer,
    };
    let spec = HostedService {
        mesh: m.id.clone(),
        name: p.name.clone(),
        command: p.command,
        env: p.env,
        description: p.description,
        scope,
    };
    save(agent, |c| {
        c.hosted_services.retain(|h| !(h.mesh == spec.mesh && h.name == spec.name));
        c.hosted_services.push(spec.clone());
    })?;
    let (tx, rx) = oneshot::channel();
    if !agent.hosting.start(spec, Some(tx)) {
        return Err((ErrorCode::Unavailable, "the agent is stopping".into()));
    }
    let outcome = tokio::time::timeout(HOST_WAIT, rx).await;
    let failed = |e: ApiError| {
        agent.hosting.stop(&m.id, &p.name);
        let _ = save(agent, |c| c.hosted_services.retain(|h| !(h.mesh == m.id && h.name == p.name)));
        Err(e)
    };
    match outcome {
        Ok(Ok(Ok(tools))) => to_value(&HostReply { mesh: m.slug, name: p.name, tools }),
        Ok(Ok(Err(e))) => failed(e),
        Ok(Err(_)) => failed((ErrorCode::Unavailable, "the agent is stopping".into())),
        Err(_) => Err((
            ErrorCode::Unavailable,
            format!(
                "{} on {}: not registered within {} s (is the broker reachable? see `claudemesh status`); \
                 the agent keeps trying",
                p.name,
                m.slug,
                HOST_WAIT.as_secs()
            ),
        )),
    }
}

/// `service_unhost`: forgets the entry, stops the server; the supervisor unregisters it.
pub async fn unhost(agent: &Agent, name: &str, mesh: Option<&str>) -> Result<Value, ApiError> {
    let m = Mesh::resolve(agent, mesh)?;
    let mut listed = false;
    save(agent, |c| {
        let before = c.hosted_services.len();
        c.hosted_services.retain(|h| !(h.mesh == m.id && h.name == name));
        listed = c.hosted_services.len() != before;
    })?;
    let was_running = agent.hosting.stop(&m.id, name);
    if !listed && !was_running {
        return Err((ErrorCode::NotFound, format!("this agent does not host {name} on {}", m.slug)));
    }
    // The supervisor is gone; make sure the broker forgets it even if it had not answered.
    let n = name.to_string();
    let _ = m
        .ask(
            agent,
            name,
            Box::new(move |req| ClientFrame::McpUnregister { req, name: n }),
            crate::api::admin::REQUEST_TIMEOUT,
        )
        .await;
    Ok(json!({ "mesh": m.slug, "name": name, "unhosted": true }))
}

/// Read-modify-write of `config.json`.
fn save(agent: &Agent, change: impl FnOnce(&mut Config)) -> Result<(), ApiError> {
    let mut c = Config::load(&agent.paths).map_err(crate::api::internal)?;
    change(&mut c);
    c.save(&agent.paths).map_err(crate::api::internal)
}
