//! Peer-hosted services (DESIGN §7 "Peer-hosted"): an agent registers one of its local MCP
//! servers, calls to it are forwarded to that agent (`mcp_call_forward`) and its answer
//! (`mcp_call_response`) goes back to the caller; a host whose connection closes turns its
//! entries `offline`.

use claudemesh_protocol::frames::{
    CatalogEntry, ErrorCode, Event, HostedBy, ServerFrame, ServiceStatus, ToolInfo, encode,
};
use claudemesh_protocol::scope::Scope;
use tokio::time::Instant;

use super::actor::{Caller, MeshActor, PeerSvc, Pending};
use super::catalog::{FORWARD_GRACE, cut_result};
use super::now_ms;
use super::record::Runtime;

impl MeshActor {
    /// `mcp_register`: a new entry, or a refresh by the same host (after it reconnected).
    pub(super) fn register(
        &mut self,
        caller: Caller,
        name: String,
        description: String,
        tools: Vec<ToolInfo>,
        scope: Scope,
    ) {
        if self.svcs.contains_key(&name) {
            return caller
                .error(ErrorCode::Conflict, format!("a service named {name} is deployed on the broker"));
        }
        if let Some(p) = self.peers.get(&name)
            && p.host != caller.who.member_id
        {
            return caller.error(ErrorCode::Conflict, format!("service {name} is hosted by another member"));
        }
        let p = PeerSvc {
            host: caller.who.member_id.clone(),
            host_conn: Some(caller.conn.id),
            description,
            tools,
            scope,
            updated_at: now_ms(),
        };
        let entry = peer_entry(&name, &p);
        self.tell(&p.scope, &p.host, &Event::McpDeployed(entry));
        self.peers.insert(name, p);
        caller.ok();
    }

    /// `mcp_unregister`: the host or an admin.
    pub(super) fn unregister(&mut self, caller: Caller, name: String) {
        match self.peers.get(&name) {
            Some(p) if caller.who.can_manage(&p.host) => {
                let (scope, host) = (p.scope.clone(), p.host.clone());
                self.peers.remove(&name);
                self.tell(&scope, &host, &Event::McpUndeployed { name });
                caller.ok();
            }
            Some(_) => caller.error(
                ErrorCode::Forbidden,
                format!("only the host of {name} or an admin may unregister it"),
            ),
            None => caller.error(ErrorCode::NotFound, format!("no peer-hosted service {name}")),
        }
    }

    /// A host's answer: only the host the call went to may answer it.
    pub(super) fn call_response(
        &mut self,
        member_id: String,
        call_id: String,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) {
        let Some(p) = self.forwards.get(&call_id) else { return };
        if p.host.as_deref() != Some(member_id.as_str()) {
            return;
        }
        let Some(p) = self.forwards.remove(&call_id) else { return };
        match (result, error) {
            (Some(r), _) => {
                p.caller.reply(&ServerFrame::McpCallResult { req: p.caller.req, result: cut_result(r) })
            }
            (None, e) => p.caller.error(
                ErrorCode::Unavailable,
                format!(
                    "service {} (hosted by a peer): {}",
                    p.service,
                    e.unwrap_or_else(|| "no result".into())
                ),
            ),
        }
    }

    /// Sends a call to the service's host agent.
    pub(super) fn forward(
        &mut self,
        caller: Caller,
        service: String,
        tool: String,
        arguments: serde_json::Value,
        timeout: std::time::Duration,
    ) {
        let call_id = format!("f{}", self.id());
        let Some(p) = self.peers.get(&service) else { return };
        let frame = ServerFrame::McpCallForward {
            call_id: call_id.clone(),
            service: service.clone(),
            tool,
            arguments,
            from_member: caller.who.member_id.clone(),
            timeout_ms: timeout.as_millis() as u64,
        };
        let host = p.host.clone();
        let sent =
            p.host_conn.is_some() && self.mesh.lock().send_to(&host, encode(&frame), frame.type_name());
        if !sent {
            return caller.error(
                ErrorCode::Unavailable,
                format!("service {service} is offline: its host is not connected"),
            );
        }
        let deadline = Instant::now() + timeout + FORWARD_GRACE;
        self.forwards.insert(call_id, Pending { caller, service, deadline, host: Some(host) });
    }
}

/// A peer-hosted service's catalog entry: running while its host is connected.
pub(super) fn peer_entry(name: &str, p: &PeerSvc) -> CatalogEntry {
    let rt = Runtime {
        status: if p.host_conn.is_some() { ServiceStatus::Running } else { ServiceStatus::Offline },
        ..Runtime::default()
    };
    CatalogEntry {
        name: name.to_string(),
        description: p.description.clone(),
        source_kind: "peer".into(),
        status: rt.status,
        tools: p.tools.clone(),
        scope: p.scope.clone(),
        deployer: p.host.clone(),
        hosted_by: HostedBy::Peer,
        updated_at: p.updated_at,
        started_at: None,
        restarts: 0,
        version: None,
        error: None,
        vault_keys: Vec::new(),
    }
}
