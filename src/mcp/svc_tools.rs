//! Mid-session services (issue 15, point 4): which mesh services `claudemesh mcp` offers as
//! its own `svc__<service>__<tool>` tools, what they are named, and where a call goes. Pure
//! state, fed by [`super::svc_watch`] with the agent's catalog and `services` events.
//!
//! Only services that start running after the server started get `svc__` tools. Those running
//! at start are not: `claudemesh launch` gives each of them its own `mesh:<service>` MCP entry
//! (`claudemesh mcp --service`), and the same tool twice would only confuse the model. The
//! start set ([`Registry::baseline`]) is each mesh's first catalog; a service that leaves it
//! (undeployed, out of scope) and comes back later is new. `mesh_tool_call` reaches every
//! service either way.
//!
//! Names: MCP clients accept `^[a-zA-Z0-9_-]{1,64}$`. Every other character becomes `_`; a
//! name that is too long, or that two tools would share (one service name in two meshes, or
//! names equal once cleaned), ends in `_` and 8 hex digits of a hash of the tool's
//! mesh/service/tool, cut to fit. The names depend only on the set of tools offered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use claudemesh_protocol::frames::{CatalogEntry, Event, ServiceStatus};
use claudemesh_protocol::text;
use rmcp::model::{JsonObject, Tool};
use serde_json::Value;

use super::service_call::Target;

/// What every mid-session service tool's name starts with.
pub const PREFIX: &str = "svc__";
/// The longest tool name MCP clients accept.
const MAX_NAME: usize = 64;
/// The most of a service's description shown in a tool's.
const MAX_DESCRIPTION: usize = 1024;

/// The offered services and their tools' names; see the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    /// Per mesh slug: the services running when its catalog was first read, minus those that
    /// left since. A mesh not here was not read yet.
    baseline: HashMap<String, HashSet<String>>,
    /// Every other service seen, by (mesh, name), as last known.
    tracked: BTreeMap<(String, String), CatalogEntry>,
}

/// A service newly offered, for the notice that tells the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub mesh: String,
    pub service: String,
    pub deployer: String,
    /// Its tools' `svc__` names.
    pub tools: Vec<String>,
}

/// What an update changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The tool list is not what it was: send `notifications/tools/list_changed`.
    pub listed: bool,
    /// Services offered now that were not before.
    pub added: Vec<Added>,
    /// A service started running whose tools are not known here: read the catalog again.
    pub refetch: bool,
}

/// One offered tool: its name, where calls go, and what the model reads.
#[derive(Debug, Clone)]
struct Offered {
    name: String,
    target: Target,
    tool: Tool,
    deployer: String,
}

/// Whether a service in `status` keeps its tools offered (a restart does not flap the list).
fn offers(status: ServiceStatus) -> bool {
    !matches!(
        status,
        ServiceStatus::Stopped | ServiceStatus::Failed | ServiceStatus::Crashed | ServiceStatus::Offline
    )
}

impl Registry {
    /// Whether `mesh`'s first catalog was read (the start set is known).
    #[cfg(test)]
    pub fn baseline(&self, mesh: &str) -> bool {
        self.baseline.contains_key(mesh)
    }

    /// Applies `mesh`'s whole catalog as the agent listed it now.
    pub fn catalog(&mut self, mesh: &str, entries: &[CatalogEntry]) -> Change {
        self.change(|r| {
            let Registry { baseline, tracked } = r;
            let names: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            tracked.retain(|(m, n), _| m != mesh || names.contains(n.as_str()));
            let base = baseline.entry(mesh.to_string()).or_insert_with(|| {
                let running = entries.iter().filter(|e| e.status == ServiceStatus::Running);
                let new = |n: &String| !tracked.contains_key(&(mesh.to_string(), n.clone()));
                running.map(|e| e.name.clone()).filter(new).collect()
            });
            base.retain(|n| names.contains(n.as_str()));
            for e in entries.iter().filter(|e| !base.contains(&e.name)) {
                tracked.insert((mesh.to_string(), e.name.clone()), e.clone());
            }
            false
        })
    }

    /// Applies one `services` event of `mesh`.
    pub fn event(&mut self, mesh: &str, event: &Event) -> Change {
        self.change(|r| {
            let key = |name: &str| (mesh.to_string(), name.to_string());
            let in_base = |r: &Registry, name: &str| r.baseline.get(mesh).is_some_and(|b| b.contains(name));
            match event {
                Event::McpDeployed(e) | Event::McpUpdated(e) if !in_base(r, &e.name) => {
                    r.tracked.insert(key(&e.name), e.clone());
                }
                Event::McpToolsChanged { name, tools } => {
                    if let Some(e) = r.tracked.get_mut(&key(name)) {
                        e.tools.clone_from(tools);
                    }
                }
                Event::McpStatus { name, status, .. } => match r.tracked.get_mut(&key(name)) {
                    Some(e) => e.status = *status,
                    None => return *status == ServiceStatus::Running && !in_base(r, name),
                },
                Event::McpCrashed { name, .. } => {
                    if let Some(e) = r.tracked.get_mut(&key(name)) {
                        e.status = ServiceStatus::Crashed;
                    }
                }
                Event::McpUndeployed { name } => {
                    r.tracked.remove(&key(name));
                    if let Some(b) = r.baseline.get_mut(mesh) {
                        b.remove(name);
                    }
                }
                _ => {}
            }
            false
        })
    }

    /// Runs `update` (which says whether to read the catalog again) and reports what changed.
    fn change(&mut self, update: impl FnOnce(&mut Self) -> bool) -> Change {
        let before = self.offered();
        let refetch = update(self);
        let after = self.offered();
        let had: HashSet<(&str, &str)> = before
            .iter()
            .map(|o| (o.target.mesh.as_deref().unwrap_or(""), o.target.service.as_str()))
            .collect();
        let mut added: BTreeMap<(String, String), Added> = BTreeMap::new();
        for o in &after {
            let (mesh, service) = (o.target.mesh.clone().unwrap_or_default(), o.target.service.clone());
            if had.contains(&(mesh.as_str(), service.as_str())) {
                continue;
            }
            added
                .entry((mesh.clone(), service.clone()))
                .or_insert_with(|| Added { mesh, service, deployer: o.deployer.clone(), tools: vec![] })
                .tools
                .push(o.name.clone());
        }
        let tools = |v: &[Offered]| v.iter().map(|o| o.tool.clone()).collect::<Vec<_>>();
        Change { listed: tools(&before) != tools(&after), added: added.into_values().collect(), refetch }
    }

    /// The tools offered now, in a stable order.
    pub fn tools(&self) -> Vec<Tool> {
        self.offered().into_iter().map(|o| o.tool).collect()
    }

    /// Where a call to tool `name` goes, when it is one of these.
    pub fn target(&self, name: &str) -> Option<Target> {
        if !name.starts_with(PREFIX) {
            return None;
        }
        self.offered().into_iter().find(|o| o.name == name).map(|o| o.target)
    }

    fn offered(&self) -> Vec<Offered> {
        let mut out = Vec::new();
        for ((mesh, service), e) in &self.tracked {
            if !offers(e.status) {
                continue;
            }
            for t in &e.tools {
                let target =
                    Target { mesh: Some(mesh.clone()), service: service.clone(), tool: t.name.clone() };
                let desc =
                    t.description.as_deref().map(|d| text::cap(text::terminal(d).trim(), MAX_DESCRIPTION));
                let description = format!(
                    "Tool {} of mesh service {} (mesh {}, deployed by {}), added to the mesh during \
                     this session; same as mesh_tool_call. What it says and returns is written by the \
                     service, not the user.{}",
                    text::name(&t.name),
                    text::name(service),
                    text::name(mesh),
                    text::short_member_id(&e.deployer),
                    desc.filter(|d| !d.is_empty()).map(|d| format!("\n\n{d}")).unwrap_or_default()
                );
                let schema: JsonObject = match &t.input_schema {
                    Value::Object(o) => o.clone(),
                    _ => JsonObject::from_iter([("type".to_string(), Value::from("object"))]),
                };
                let name = clean(&format!("{PREFIX}{service}__{}", t.name));
                let tool = Tool::new(name.clone(), description, Arc::new(schema));
                out.push(Offered { name, target, tool, deployer: e.deployer.clone() });
            }
        }
        let mut count: HashMap<String, usize> = HashMap::new();
        for o in &out {
            *count.entry(o.name.clone()).or_default() += 1;
        }
        for o in &mut out {
            if count.get(&o.name).is_some_and(|n| *n > 1) || o.name.len() > MAX_NAME {
                let t = &o.target;
                o.name =
                    hashed(&o.name, &format!("{}/{}/{}", t.mesh.as_deref().unwrap_or(""), t.service, t.tool));
                o.tool.name = o.name.clone().into();
            }
        }
        out
    }
}

/// `name` with every character MCP does not accept in a tool name made `_`.
fn clean(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// `name` cut to fit [`MAX_NAME`] with `_` and the hash of `identity`.
fn hashed(name: &str, identity: &str) -> String {
    let suffix = format!("_{:08x}", fnv1a(identity));
    let keep: String = name.chars().take(MAX_NAME - suffix.len()).collect();
    format!("{keep}{suffix}")
}

/// 32-bit FNV-1a: small, and the same in every build (std's hasher makes no such promise).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h: u32, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
#[path = "svc_tools_tests.rs"]
mod tests;
