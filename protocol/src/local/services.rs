//! Agent-socket calls and replies for shared MCP services (DESIGN §7, §10): what the CLI verbs
//! (`deploy`, `undeploy`, `update`, `logs`, `scope`, `catalog`, `schema`, `call`, `serve-mcp`),
//! the `mesh_*` MCP tools and the dashboard's Services view send to the agent, which forwards
//! them to the mesh's broker.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::frames::{CatalogEntry, ServiceStatus, ToolInfo};

/// Where a deploy's code comes from, as a local client gives it. `bundle` names a directory or
/// a `.zip` on this machine; the agent zips a directory, checks the size and uploads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LocalSource {
    Npx {
        package: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    Uvx {
        package: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    Git {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rev: Option<String>,
    },
    Bundle {
        path: PathBuf,
    },
    /// An executable on the broker host with its arguments (broker admins only).
    Command {
        argv: Vec<String>,
    },
}

/// `service_deploy`: deploy a service to a mesh's broker. Replies once it runs or failed:
/// [`DeployReply`]. `scope` is a scope's JSON form (`"peer"`, `"mesh"`, `{"members":[…]}`,
/// `{"group":"g"}`, `{"groups":[…]}`, `{"role":"r"}`); member names in it are resolved to ids
/// by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    pub name: String,
    pub source: LocalSource,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<serde_json::Value>,
    /// The broker's admin token, for a `command` source (only the broker's operator may run an
    /// executable on the broker host). Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<crate::frames::Secret>,
}

/// `service_update`: fetch and restart (git: fetch, rebuild, new sha; npx/uvx: resolve the
/// version again); absent fields stay as they are. Reply: [`DeployReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<LocalSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

/// `service_call`: call a tool of a service. Reply: [`CallReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    pub service: String,
    pub tool: String,
    #[serde(default)]
    pub arguments: serde_json::Value,
    /// Default 30 000, at most 300 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `service_host`: run a local MCP server on this machine and expose it to the mesh
/// (peer-hosted). Kept in `config.json`, so the agent starts and registers it again after a
/// restart. Reply: [`HostReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    pub name: String,
    /// The server's command and arguments (argv; never run through a shell).
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<serde_json::Value>,
}

/// A service and the mesh it is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// Mesh slug.
    pub mesh: String,
    #[serde(flatten)]
    pub entry: CatalogEntry,
}

/// `service_catalog`: the services the caller may see, per mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CatalogReply {
    pub services: Vec<ServiceEntry>,
    /// Meshes whose broker could not be asked, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MeshError>,
}

/// A mesh a fan-out call could not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshError {
    pub mesh: String,
    pub code: crate::frames::ErrorCode,
    pub message: String,
}

/// `service_deploy` / `service_update`: how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployReply {
    pub mesh: String,
    pub name: String,
    pub status: ServiceStatus,
    #[serde(default)]
    pub tools: Vec<ToolInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// `service_schema`: a service's tools with their input schemas (one tool when asked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaReply {
    pub mesh: String,
    pub name: String,
    pub tools: Vec<ToolInfo>,
}

/// `service_logs`: the newest lines of a service's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsReply {
    pub mesh: String,
    pub name: String,
    pub lines: Vec<String>,
}

/// `service_scope`: the scope now in force (after a change, the new one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeReply {
    pub mesh: String,
    pub name: String,
    pub scope: crate::scope::Scope,
}

/// `service_call`: the MCP `CallToolResult` as the service returned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallReply {
    pub mesh: String,
    pub service: String,
    pub tool: String,
    pub result: serde_json::Value,
}

/// `service_host`: the local server started and its tools were registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReply {
    pub mesh: String,
    pub name: String,
    pub tools: Vec<ToolInfo>,
}
