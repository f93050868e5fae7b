//! Shared MCP services through the agent (DESIGN §7): each `service_*` call is resolved to a
//! mesh, turned into its broker frame (`mcp_deploy`, `mcp_catalog`, `mcp_call`, …) and sent
//! over that mesh's link; the reply becomes the typed reply of `protocol::local::services`.
//! Member names in a `members` scope are resolved to ids here. Environment values are passed
//! on, never logged nor put in an error.

use std::time::Duration;

use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ServerFrame, ServiceSource};
use claudemesh_protocol::local::{
    AgentCall, CallParams, CallReply, CatalogReply, DeployParams, DeployReply, LinkState, LocalSource,
    LogsReply, MeshError, SchemaReply, ScopeReply, ServiceEntry, UpdateParams,
};
use claudemesh_protocol::scope::Scope;
use serde_json::{Value, json};

use super::admin::{REQUEST_TIMEOUT, request_raw_within};
use crate::api::ApiError;
use crate::core::calls::to_value;
use crate::shared::Agent;

/// The longest a deploy or update may take (an `npm install` or a cargo build can be slow).
pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A service call's default timeout, and its cap.
pub const CALL_DEFAULT_MS: u64 = 30_000;
pub const CALL_MAX_MS: u64 = 300_000;
/// What the agent waits for a call's reply beyond the call's own timeout (the broker answers
/// a timed-out call itself).
const CALL_GRACE: Duration = Duration::from_secs(10);

/// Serves one `service_*` call.
pub async fn handle(agent: &Agent, call: AgentCall) -> Result<Value, ApiError> {
    match call {
        AgentCall::ServiceDeploy(p) => deploy(agent, *p).await,
        AgentCall::ServiceUpdate(p) => update(agent, p).await,
        AgentCall::ServiceUndeploy { name, mesh } => {
            let m = Mesh::resolve(agent, mesh.as_deref())?;
            let n = name.clone();
            m.ask(
                agent,
                &name,
                Box::new(move |req| ClientFrame::McpUndeploy { req, name: n }),
                REQUEST_TIMEOUT,
            )
            .await?;
            Ok(json!({ "mesh": m.slug, "name": name, "undeployed": true }))
        }
        AgentCall::ServiceCatalog { mesh } => catalog(agent, mesh.as_deref()).await,
        AgentCall::ServiceSchema { name, tool, mesh } => {
            let m = Mesh::resolve(agent, mesh.as_deref())?;
            let n = name.clone();
            let build = Box::new(move |req| ClientFrame::McpSchema { req, name: n, tool });
            match m.ask(agent, &name, build, REQUEST_TIMEOUT).await? {
                ServerFrame::McpSchemaResult { tools, .. } => {
                    to_value(&SchemaReply { mesh: m.slug, name, tools })
                }
                other => Err(unexpected(&other)),
            }
        }
        AgentCall::ServiceLogs { name, lines, mesh } => {
            let m = Mesh::resolve(agent, mesh.as_deref())?;
            let n = name.clone();
            let build = Box::new(move |req| ClientFrame::McpLogs { req, name: n, lines, follow: false });
            match m.ask(agent, &name, build, REQUEST_TIMEOUT).await? {
                ServerFrame::McpLogsResult { lines, .. } => {
                    to_value(&LogsReply { mesh: m.slug, name, lines })
                }
                other => Err(unexpected(&other)),
            }
        }
        AgentCall::ServiceScope { name, scope, mesh } => {
            let m = Mesh::resolve(agent, mesh.as_deref())?;
            match scope {
                None => {
                    let entry =
                        m.catalog(agent).await?.into_iter().find(|e| e.name == name).ok_or_else(|| {
                            (ErrorCode::NotFound, format!("no service {name} in {} that you may see", m.slug))
                        })?;
                    to_value(&ScopeReply { mesh: m.slug, name, scope: entry.scope })
                }
                Some(raw) => {
                    let scope = resolve_scope(agent, &m.id, &raw).await?;
                    let (n, s) = (name.clone(), scope.clone());
                    let build = Box::new(move |req| ClientFrame::McpScope { req, name: n, scope: s });
                    m.ask(agent, &name, build, REQUEST_TIMEOUT).await?;
                    to_value(&ScopeReply { mesh: m.slug, name, scope })
                }
            }
        }
        AgentCall::ServiceCall(p) => call_tool(agent, p).await,
        AgentCall::ServiceHost(p) => crate::hosting::host(agent, p).await,
        AgentCall::ServiceUnhost { name, mesh } => {
            crate::hosting::unhost(agent, &name, mesh.as_deref()).await
        }
        other => Err((ErrorCode::Internal, format!("{other:?} is not a service call"))),
    }
}

/// A resolved mesh: its id (for the link) and slug (for replies and errors).
#[derive(Debug, Clone)]
pub(crate) struct Mesh {
    pub id: String,
    pub slug: String,
}

impl Mesh {
    /// `mesh` (a slug or id), or the only joined mesh.
    pub(crate) fn resolve(agent: &Agent, mesh: Option<&str>) -> Result<Self, ApiError> {
        let view = agent.view();
        let id = view.resolve_mesh(mesh)?;
        let slug = view.meshes.get(&id).map(|v| v.config.slug.clone()).unwrap_or_else(|| id.clone());
        Ok(Self { id, slug })
    }

    /// Sends a request about service `name` and waits up to `within`; a broker error comes
    /// back with its code, naming the service and the mesh. A link that is down fails at once.
    pub(crate) async fn ask(
        &self,
        agent: &Agent,
        name: &str,
        build: Box<dyn FnOnce(u64) -> ClientFrame + Send>,
        within: Duration,
    ) -> Result<ServerFrame, ApiError> {
        let link = agent.view().meshes.get(&self.id).map(|v| (v.link, v.link_detail.clone()));
        match link {
            Some((LinkState::Connected, _)) => {}
            Some((state, detail)) => {
                let why = detail.map(|d| format!(": {d}")).unwrap_or_default();
                return Err((
                    ErrorCode::Unavailable,
                    format!(
                        "mesh {}: the broker link is {}{why}; see `claudemesh status` and try again",
                        self.slug,
                        state.describe()
                    ),
                ));
            }
            None => return Err((ErrorCode::NotFound, format!("mesh {} is no longer joined", self.slug))),
        }
        let what =
            if name.is_empty() { format!("mesh {}", self.slug) } else { format!("{name} on {}", self.slug) };
        match request_raw_within(agent, &self.id, build, within).await {
            Ok(ServerFrame::Error(e)) => Err((e.code, format!("{what}: {}", e.message))),
            Ok(f) => Ok(f),
            Err((code, m)) => Err((code, format!("{what}: {m}"))),
        }
    }

    /// The services of this mesh the member may see.
    async fn catalog(
        &self,
        agent: &Agent,
    ) -> Result<Vec<claudemesh_protocol::frames::CatalogEntry>, ApiError> {
        match self.ask(agent, "", Box::new(|req| ClientFrame::McpCatalog { req }), REQUEST_TIMEOUT).await? {
            ServerFrame::McpCatalogResult { services, .. } => Ok(services),
            other => Err(unexpected(&other)),
        }
    }
}

/// `mesh` resolved, or every joined mesh by slug when it is `None`.
pub(crate) fn every_mesh(agent: &Agent, mesh: Option<&str>) -> Result<Vec<Mesh>, ApiError> {
    Ok(match mesh {
        Some(_) => vec![Mesh::resolve(agent, mesh)?],
        None => {
            let view = agent.view();
            let mut all: Vec<Mesh> = view
                .meshes
                .values()
                .map(|v| Mesh { id: v.config.id.clone(), slug: v.config.slug.clone() })
                .collect();
            all.sort_by(|a, b| a.slug.cmp(&b.slug));
            all
        }
    })
}

pub(crate) fn unexpected(f: &ServerFrame) -> ApiError {
    (ErrorCode::Internal, format!("unexpected reply {} from the broker", f.type_name()))
}

/// `service_catalog`: one mesh, or every joined mesh at once (a mesh that cannot answer is
/// listed in `errors`, the others still answer).
async fn catalog(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let meshes = every_mesh(agent, mesh)?;
    let answers = futures_util::future::join_all(meshes.iter().map(|m| m.catalog(agent))).await;
    let mut reply = CatalogReply::default();
    for (m, answer) in meshes.into_iter().zip(answers) {
        match answer {
            Ok(services) => reply
                .services
                .extend(services.into_iter().map(|entry| ServiceEntry { mesh: m.slug.clone(), entry })),
            Err((code, message)) if mesh.is_none() => {
                reply.errors.push(MeshError { mesh: m.slug, code, message })
            }
            Err(e) => return Err(e),
        }
    }
    to_value(&reply)
}

/// A scope's JSON form as a client gives it, with the entries of `{"members":[…]}` (display
/// names, ids or id prefixes) resolved to member ids of `mesh_id`. Unknown names are one
/// `not_found` error naming them all.
pub(crate) async fn resolve_scope(agent: &Agent, mesh_id: &str, raw: &Value) -> Result<Scope, ApiError> {
    let scope = Scope::from_json(raw).map_err(|e| (ErrorCode::Invalid, e.to_string()))?;
    let Scope::Members(names) = scope else { return Ok(scope) };
    super::members::refresh_directory(agent, mesh_id).await;
    let mut ids: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for n in &names {
        match super::members::find_member(agent, mesh_id, n) {
            Ok(m) => {
                if !ids.contains(&m.member_id) {
                    ids.push(m.member_id);
                }
            }
            Err((ErrorCode::NotFound, _)) => unknown.push(n.clone()),
            Err(e) => return Err(e),
        }
    }
    if !unknown.is_empty() {
        let slug = agent.view().meshes.get(mesh_id).map(|v| v.config.slug.clone()).unwrap_or_default();
        return Err((
            ErrorCode::NotFound,
            format!("no member {} in {slug}; `claudemesh members` lists who is there", unknown.join(", ")),
        ));
    }
    Ok(Scope::Members(ids))
}

/// A client's source as the broker takes it; a bundle is zipped (if a directory) and uploaded
/// first. A `command`'s argv: its first word is the command, the rest go before `args`.
async fn source(
    agent: &Agent,
    m: &Mesh,
    name: &str,
    s: LocalSource,
    args: &mut Vec<String>,
) -> Result<ServiceSource, ApiError> {
    Ok(match s {
        LocalSource::Npx { package, version } => ServiceSource::Npx { package, version },
        LocalSource::Uvx { package, version } => ServiceSource::Uvx { package, version },
        LocalSource::Git { url, rev } => ServiceSource::Git { url, rev },
        LocalSource::Bundle { path } => {
            let upload_id = super::bundle::upload(agent, m, name, &path).await?;
            ServiceSource::Bundle { upload_id }
        }
        LocalSource::Command { argv } => {
            let mut argv = argv.into_iter();
            let command = argv
                .next()
                .filter(|c| !c.is_empty())
                .ok_or((ErrorCode::Invalid, "a command source needs a command to run".to_string()))?;
            let mut all: Vec<String> = argv.collect();
            all.append(args);
            *args = all;
            ServiceSource::Command { command }
        }
    })
}

fn deploy_reply(m: &Mesh, f: ServerFrame) -> Result<Value, ApiError> {
    match f {
        ServerFrame::McpDeployResult { name, status, tools, error, log_tail, .. } => {
            to_value(&DeployReply { mesh: m.slug.clone(), name, status, tools, error, log_tail })
        }
        other => Err(unexpected(&other)),
    }
}

async fn deploy(agent: &Agent, p: DeployParams) -> Result<Value, ApiError> {
    claudemesh_protocol::names::validate_service_name(&p.name)
        .map_err(|e| (ErrorCode::Invalid, format!("service name {:?}: {e}", p.name)))?;
    let m = Mesh::resolve(agent, p.mesh.as_deref())?;
    let scope = match &p.scope {
        Some(raw) => resolve_scope(agent, &m.id, raw).await?,
        None => Scope::Peer,
    };
    let mut args = p.args;
    let mut env = p.env;
    // Sealed first: a missing vault key fails the deploy before a bundle is uploaded.
    let secrets = super::vault::seal_for_runner(agent, &m, &mut env).await?;
    let source = source(agent, &m, &p.name, p.source, &mut args).await?;
    let frame = claudemesh_protocol::frames::McpDeploy {
        req: 0,
        name: p.name.clone(),
        source,
        description: p.description,
        args,
        entry: p.entry,
        env,
        secrets,
        scope,
        admin_token: p.admin_token,
    };
    let build =
        Box::new(move |req| ClientFrame::McpDeploy(claudemesh_protocol::frames::McpDeploy { req, ..frame }));
    deploy_reply(&m, m.ask(agent, &p.name, build, DEPLOY_TIMEOUT).await?)
}

async fn update(agent: &Agent, p: UpdateParams) -> Result<Value, ApiError> {
    let m = Mesh::resolve(agent, p.mesh.as_deref())?;
    // Every referenced vault key is sealed again, so a value changed with `vault set` reaches
    // the service: from the new environment, or the keys the catalog says the old one uses.
    let mut env = p.env;
    let secrets = match env.as_mut() {
        Some(env) => Some(super::vault::seal_for_runner(agent, &m, env).await?),
        None => {
            let keys = m
                .catalog(agent)
                .await?
                .into_iter()
                .find(|e| e.name == p.name)
                .map(|e| e.vault_keys)
                .unwrap_or_default();
            if keys.is_empty() { None } else { Some(super::vault::seal_keys(agent, &m, &keys, None).await?) }
        }
    };
    let mut extra = vec![];
    let source = match p.source {
        Some(s) => Some(source(agent, &m, &p.name, s, &mut extra).await?),
        None => None,
    };
    let args = match (p.args, extra.is_empty()) {
        (a, true) => a,
        (Some(mut a), false) => {
            extra.append(&mut a);
            Some(extra)
        }
        (None, false) => Some(extra),
    };
    let frame = claudemesh_protocol::frames::McpUpdate {
        req: 0,
        name: p.name.clone(),
        source,
        description: None,
        args,
        env,
        secrets,
    };
    let build =
        Box::new(move |req| ClientFrame::McpUpdate(claudemesh_protocol::frames::McpUpdate { req, ..frame }));
    deploy_reply(&m, m.ask(agent, &p.name, build, DEPLOY_TIMEOUT).await?)
}

async fn call_tool(agent: &Agent, p: CallParams) -> Result<Value, ApiError> {
    let m = Mesh::resolve(agent, p.mesh.as_deref())?;
    let timeout_ms = p.timeout_ms.unwrap_or(CALL_DEFAULT_MS).clamp(1, CALL_MAX_MS);
    let arguments = match p.arguments {
        Value::Null => json!({}),
        v @ Value::Object(_) => v,
        _ => return Err((ErrorCode::Invalid, "a tool's arguments must be a JSON object".into())),
    };
    let (service, tool) = (p.service.clone(), p.tool.clone());
    let build = Box::new(move |req| ClientFrame::McpCall {
        req,
        service,
        tool,
        arguments,
        timeout_ms: Some(timeout_ms),
    });
    let within = Duration::from_millis(timeout_ms) + CALL_GRACE;
    match m.ask(agent, &p.service, build, within).await? {
        ServerFrame::McpCallResult { result, .. } => {
            to_value(&CallReply { mesh: m.slug, service: p.service, tool: p.tool, result })
        }
        other => Err(unexpected(&other)),
    }
}
