//! The Services view's data: every shared MCP service the member may see, per mesh (from
//! `service_catalog`, then kept current by the `services` events), and the log tail of the one
//! service the view follows.

use std::collections::VecDeque;

use claudemesh_protocol::frames::{CatalogEntry, Event as Wire, ServiceStatus};
use claudemesh_protocol::local::ServiceEntry;
use claudemesh_protocol::text;

/// Most log lines kept for the followed service.
pub const MAX_LOG_LINES: usize = 1_000;
/// Lines fetched with `service_logs` when a service starts being followed.
pub const LOG_FETCH: u32 = 200;

/// The service whose log is followed (one at a time).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Follow {
    /// Mesh slug.
    pub mesh: String,
    pub name: String,
}

/// Services and the followed log.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// Every service seen, in no particular order (rows sort them).
    pub list: Vec<ServiceEntry>,
    /// The service whose log the runner follows now (what the last `Effect::Follow` said).
    pub following: Option<Follow>,
    /// The followed service's newest lines (cleaned, one line each), oldest first.
    pub log: VecDeque<String>,
    /// The selected tool in the detail pane (an index into the selected service's tools).
    pub tool: usize,
}

impl Services {
    /// The service `name` of `mesh`.
    pub fn get(&self, mesh: &str, name: &str) -> Option<&ServiceEntry> {
        self.list.iter().find(|s| s.mesh == mesh && s.entry.name == name)
    }

    fn get_mut(&mut self, mesh: &str, name: &str) -> Option<&mut CatalogEntry> {
        self.list.iter_mut().find(|s| s.mesh == mesh && s.entry.name == name).map(|s| &mut s.entry)
    }

    /// Inserts a service or replaces the one of the same mesh and name.
    pub fn upsert(&mut self, mesh: &str, entry: CatalogEntry) {
        match self.get_mut(mesh, &entry.name) {
            Some(e) => *e = entry,
            None => self.list.push(ServiceEntry { mesh: mesh.to_string(), entry }),
        }
    }

    /// Replaces the services of `mesh` (or of every mesh) with a catalog reply's, keeping those
    /// of meshes the catalog could not reach.
    pub fn replace(&mut self, mesh: Option<&str>, services: Vec<ServiceEntry>, unreachable: &[String]) {
        self.list.retain(|s| unreachable.contains(&s.mesh) || mesh.is_some_and(|m| m != s.mesh));
        self.list.extend(services);
    }

    /// Appends lines to the followed log, cleaned, dropping the oldest past [`MAX_LOG_LINES`].
    pub fn push_log(&mut self, lines: impl IntoIterator<Item = String>) {
        for l in lines {
            if self.log.len() >= MAX_LOG_LINES {
                self.log.pop_front();
            }
            self.log.push_back(text::one_line(&l));
        }
    }

    /// Applies one broker event of `mesh` at `now_ms`; returns the line the Events view gets.
    /// `mcp_log` lines are appended when they are the followed service's.
    pub fn apply(&mut self, mesh: &str, e: Wire, now_ms: u64) -> Option<String> {
        let n = |name: &str| text::name(name);
        match e {
            Wire::McpDeployed(entry) => {
                let line = format!("{} deployed ({})", n(&entry.name), status_label(entry.status));
                self.upsert(mesh, entry);
                Some(line)
            }
            Wire::McpUpdated(entry) => {
                let line = format!("{} updated ({})", n(&entry.name), status_label(entry.status));
                self.upsert(mesh, entry);
                Some(line)
            }
            Wire::McpUndeployed { name } => {
                self.list.retain(|s| !(s.mesh == mesh && s.entry.name == name));
                Some(format!("{} undeployed", n(&name)))
            }
            Wire::McpStatus { name, status, error } => {
                let e = self.get_mut(mesh, &name)?;
                if status == ServiceStatus::Running && e.status != ServiceStatus::Running {
                    e.started_at = Some(now_ms);
                } else if status != ServiceStatus::Running {
                    e.started_at = None;
                }
                if status == ServiceStatus::Restarting {
                    e.restarts += 1;
                }
                e.status = status;
                e.error = error.clone();
                e.updated_at = now_ms;
                let why = error.map(|x| format!(": {}", text::one_line(&x))).unwrap_or_default();
                Some(format!("{} is {}{why}", n(&name), status_label(status)))
            }
            Wire::McpScopeChanged { name, scope } => {
                let line = format!("{} scope is now {scope}", n(&name));
                if let Some(e) = self.get_mut(mesh, &name) {
                    e.scope = scope;
                }
                Some(line)
            }
            Wire::McpCrashed { name, error } => {
                let e = self.get_mut(mesh, &name)?;
                e.status = ServiceStatus::Crashed;
                e.started_at = None;
                e.error = Some(error.clone());
                Some(format!("{} crashed: {}", n(&name), text::one_line(&error)))
            }
            Wire::McpToolsChanged { name, tools } => {
                let count = tools.len();
                if let Some(e) = self.get_mut(mesh, &name) {
                    e.tools = tools;
                }
                Some(format!("{} now has {count} tool(s)", n(&name)))
            }
            Wire::McpLog { name, lines } => {
                if self.following.as_ref().is_some_and(|f| f.mesh == mesh && f.name == name) {
                    self.push_log(lines);
                }
                None
            }
            other => Some(format!("{other:?}")),
        }
    }
}

/// A service status as a word.
pub fn status_label(s: ServiceStatus) -> &'static str {
    match s {
        ServiceStatus::Preparing => "preparing",
        ServiceStatus::Starting => "starting",
        ServiceStatus::Running => "running",
        ServiceStatus::Restarting => "restarting",
        ServiceStatus::Crashed => "crashed",
        ServiceStatus::Failed => "failed",
        ServiceStatus::Stopped => "stopped",
        ServiceStatus::Offline => "offline",
    }
}

/// What an agent error code means for a service call, in words.
pub fn code_meaning(code: claudemesh_protocol::frames::ErrorCode) -> &'static str {
    use claudemesh_protocol::frames::ErrorCode as C;
    match code {
        C::Forbidden => {
            "not allowed (the service's scope leaves you out, or only its deployer or an admin may)"
        }
        C::Unauthorized => "not authorised",
        C::NotFound => "no such service or tool",
        C::Unavailable => {
            "unavailable (the service is not running, or its host or the broker is unreachable)"
        }
        C::Timeout => "timed out (the service did not answer in time)",
        C::Invalid => "invalid request",
        C::TooLarge => "too large",
        C::RateLimited => "rate limited: try again shortly",
        C::Limit => "a limit was reached",
        C::Conflict => "conflict (a service of that name exists)",
        _ => "failed",
    }
}
