//! Service (shared MCP server), vault and skill payload types of DESIGN §7–§9.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scope::Scope;

/// Where a deployed service's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceSource {
    /// An npm package run with `npx`.
    Npx {
        package: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// A PyPI package run with `uvx`.
    Uvx {
        package: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// A git repository; the broker records the commit it checked out.
    Git {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rev: Option<String>,
    },
    /// A zip uploaded with `upload_begin`/`upload_end`.
    Bundle { upload_id: String },
    /// An executable on the broker host (broker-admin only).
    Command { command: String },
}

impl ServiceSource {
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceSource::Npx { .. } => "npx",
            ServiceSource::Uvx { .. } => "uvx",
            ServiceSource::Git { .. } => "git",
            ServiceSource::Bundle { .. } => "bundle",
            ServiceSource::Command { .. } => "command",
        }
    }
}

/// A secret for a service, sealed by the deployer's agent to the runner's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// The vault key it came from (for error messages and updates; never the value).
    pub key: String,
    /// `crypto_box_seal` of the value to the runner key, base64.
    pub sealed: String,
}

/// Lifecycle of a service (DESIGN §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Preparing,
    Starting,
    Running,
    Restarting,
    Crashed,
    Failed,
    Stopped,
    /// A peer-hosted service whose host is not connected.
    Offline,
}

/// Where a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HostedBy {
    #[default]
    Broker,
    Peer,
}

/// One MCP tool as listed by the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "empty_object")]
    pub input_schema: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A service as the catalog shows it to a member allowed to see it. Never holds secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub source_kind: String,
    pub status: ServiceStatus,
    #[serde(default)]
    pub tools: Vec<ToolInfo>,
    pub scope: Scope,
    /// Member id of the deployer (or host, for peer-hosted services).
    pub deployer: String,
    #[serde(default)]
    pub hosted_by: HostedBy,
    /// Unix milliseconds of the last change.
    pub updated_at: u64,
    /// Unix milliseconds the running child started (absent unless `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Restarts since the deploy (crashes, failed health checks).
    #[serde(default)]
    pub restarts: u32,
    /// The package version installed (npx, uvx) or commit checked out (git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it is `failed` or `crashed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The deployer's vault keys its environment references (names only, never values).
    /// Filled only in the deployer's own view, so that `update` can seal them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault_keys: Vec<String>,
}

/// How a vault entry is used at deploy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VaultKind {
    #[default]
    Env,
    File,
}

/// Metadata of a vault entry, as `vault_list` returns it (no ciphertext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultEntryMeta {
    pub key: String,
    pub kind: VaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub updated_at: u64,
}

/// A whole vault entry as its owner stores and fetches it. The broker cannot open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultEntry {
    pub key: String,
    pub ciphertext: String,
    pub nonce: String,
    pub sealed_key: String,
    #[serde(default)]
    pub kind: VaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub updated_at: u64,
}

/// A skill shared with the mesh; exposed by `claudemesh mcp` as an MCP prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    pub name: String,
    pub description: String,
    pub instructions: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Extra files by relative path (text only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// A skill with its authorship, as the broker returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillRecord {
    #[serde(flatten)]
    pub skill: Skill,
    pub author: String,
    pub updated_at: u64,
}

/// A skill in listings (no instructions or files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillSummary {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub author: String,
    pub updated_at: u64,
}

/// What happened to a skill, in `skill_changed` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillAction {
    Shared,
    Removed,
}
