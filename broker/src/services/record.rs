//! [`ServiceRecord`]: what the broker stores about a deployed service (in the `services`
//! table), and how it becomes the runner's [`ServiceSpec`] and a member's [`CatalogEntry`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use claudemesh_protocol::frames::{
    CatalogEntry, HostedBy, SealedSecret, ServiceSource, ServiceStatus, ToolInfo,
};
use claudemesh_protocol::scope::Scope;
use serde::{Deserialize, Serialize};

use super::ServicesConfig;
use crate::runner::wire::{PrepareMode, PrepareSource, Resolved, ServiceSpec};

/// A broker-hosted service, durable. Holds its environment, which may carry the deployer's
/// secrets: `Debug` redacts it and it never leaves the broker except to its runner.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub mesh_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// As deployed; a bundle's `upload_id` is replaced by `bundle.zip` in the service dir.
    pub source: ServiceSource,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub entry: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The vault values `env` references, sealed by the deployer's agent to the mesh runner's
    /// key: opaque here, opened only by the runner (also at boot restore, deployer offline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SealedSecret>,
    pub scope: Scope,
    /// Member id of the deployer.
    pub deployer: String,
    /// Whether it should run (false after a failed deploy; undeploy removes the record).
    pub enabled: bool,
    #[serde(default)]
    pub resolved: Resolved,
    /// The last known tools, so the catalog has them while it restarts.
    #[serde(default)]
    pub tools: Vec<ToolInfo>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl std::fmt::Debug for ServiceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRecord")
            .field("mesh_id", &self.mesh_id)
            .field("name", &self.name)
            .field("source", &self.source.kind())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.iter().map(|s| &s.key).collect::<Vec<_>>())
            .field("scope", &self.scope)
            .field("deployer", &self.deployer)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// `<services_dir>/<mesh_id>/<name>`. Both parts are validated names (no `/`, no `..`).
pub fn service_dir(services_dir: &Path, mesh_id: &str, name: &str) -> PathBuf {
    services_dir.join(mesh_id).join(name)
}

/// The file a bundle's zip is kept in, inside its service dir.
pub const BUNDLE_FILE: &str = "bundle.zip";

impl ServiceRecord {
    /// The store key.
    pub fn key(&self) -> String {
        crate::store::key(&[&self.mesh_id, &self.name])
    }

    /// What the runner needs to prepare (as `mode` says) and run it.
    pub fn spec(&self, dir: PathBuf, cfg: &ServicesConfig, mode: PrepareMode) -> ServiceSpec {
        let source = match &self.source {
            ServiceSource::Npx { package, version } => {
                PrepareSource::Npx { package: package.clone(), version: version.clone() }
            }
            ServiceSource::Uvx { package, version } => {
                PrepareSource::Uvx { package: package.clone(), version: version.clone() }
            }
            ServiceSource::Git { url, rev } => PrepareSource::Git { url: url.clone(), rev: rev.clone() },
            ServiceSource::Bundle { .. } => PrepareSource::Bundle { zip: dir.join(BUNDLE_FILE) },
            ServiceSource::Command { command } => PrepareSource::Command { argv: vec![command.clone()] },
        };
        ServiceSpec {
            name: self.name.clone(),
            dir,
            source,
            args: self.args.clone(),
            entry: self.entry.clone(),
            env: self.env.clone(),
            secrets: self.secrets.clone(),
            prepare: mode,
            limits: cfg.child,
            health: cfg.health,
            restart: cfg.restart,
        }
    }

    /// The catalog entry `viewer` sees: no env, no secrets; the referenced vault key names only
    /// for its deployer (so that `update` can seal them again).
    pub fn entry_for(&self, rt: &Runtime, viewer: &str) -> CatalogEntry {
        let mut e = self.entry(rt);
        if viewer == self.deployer {
            e.vault_keys = self.secrets.iter().map(|s| s.key.clone()).collect();
        }
        e
    }

    /// The catalog entry members see (no env, no secrets).
    pub fn entry(&self, rt: &Runtime) -> CatalogEntry {
        CatalogEntry {
            name: self.name.clone(),
            description: self.description.clone(),
            source_kind: self.source.kind().to_string(),
            status: rt.status,
            tools: self.tools.clone(),
            scope: self.scope.clone(),
            deployer: self.deployer.clone(),
            hosted_by: HostedBy::Broker,
            updated_at: self.updated_at,
            started_at: rt.started_at,
            restarts: rt.restarts,
            version: self.resolved.sha.clone().or_else(|| self.resolved.version.clone()),
            error: rt.error.clone(),
            vault_keys: Vec::new(),
        }
    }
}

/// A service's live state, kept by its mesh actor (not stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub status: ServiceStatus,
    pub started_at: Option<u64>,
    pub restarts: u32,
    pub error: Option<String>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self { status: ServiceStatus::Stopped, started_at: None, restarts: 0, error: None }
    }
}
