//! What `claudemesh mcp --service` knows about its service, and the task that keeps it
//! current: a connection of its own subscribed to the agent's `services` and `links` events,
//! the catalog read at start, after every (re)subscription (an agent restart) and whenever the
//! mesh's link comes back (a broker restart: events may have been missed). A change of the
//! service's tools is a `notifications/tools/list_changed`; the service leaving — undeployed,
//! or this member's access withdrawn, which reach a member as the same `mcp_undeployed` event
//! and the same absence from the catalog — ends the process ([`Ending`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use claudemesh_agent::{AgentClient, ClientError};
use claudemesh_protocol::frames::{CatalogEntry, ErrorCode, Event, ToolInfo};
use claudemesh_protocol::local::{AgentCall, CatalogReply, LinkState, LocalEvent, Topic};
use claudemesh_protocol::text;
use rmcp::service::{Peer, RoleServer};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Shared, debug};

/// The service as last read: its mesh (slug) once found, and its catalog entry.
#[derive(Debug, Default)]
pub struct Known {
    pub mesh: Option<String>,
    pub entry: Option<CatalogEntry>,
}

/// [`Known`], shared by the follow task and the handler (never held across an await).
pub type SharedKnown = Arc<Mutex<Known>>;

/// Locks `k`; a panic elsewhere while it was held leaves at worst a stale entry.
pub fn lock(k: &SharedKnown) -> MutexGuard<'_, Known> {
    k.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why the process should end, and whether that is a failure (exit code 1) or the service
/// leaving (exit code 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub message: String,
    pub failed: bool,
}

/// What the task follows and where it reports.
#[derive(Debug)]
pub struct Follow {
    pub service: String,
    /// `--mesh`, when given.
    pub mesh: Option<String>,
    pub known: SharedKnown,
    /// The MCP client, once initialized (before that, its first `tools/list` sees the tools).
    pub peer: watch::Receiver<Option<Peer<RoleServer>>>,
    /// Set once the first catalog read ended, however.
    pub primed: Arc<watch::Sender<bool>>,
    pub end: mpsc::Sender<Ending>,
}

/// What one catalog read found.
enum Found {
    Entry(String, Box<CatalogEntry>),
    Gone,
    Ambiguous(Vec<String>),
    /// The agent or the mesh did not answer: try again later.
    Unknown,
}

/// Runs until `stop`, or until the service left (then sends an [`Ending`]).
pub async fn run(link: Shared, f: Follow, stop: CancellationToken) {
    loop {
        match subscribe(&link, f.mesh.clone()).await {
            Ok(mut sub) => {
                let go_on = reload(&link, &f).await;
                f.primed.send_replace(true);
                if !go_on {
                    return;
                }
                loop {
                    let ev = tokio::select! {
                        () = stop.cancelled() => return,
                        ev = sub.next_event() => ev,
                    };
                    let here = |m: &str| lock(&f.known).mesh.as_deref().is_none_or(|k| k == m);
                    let go_on = match ev {
                        Ok((_, _, LocalEvent::Services { mesh, event })) if here(&mesh) => {
                            on_event(&f, &mesh, &event).await
                        }
                        Ok((_, _, LocalEvent::Links { mesh, state: LinkState::Connected, .. }))
                            if here(&mesh) =>
                        {
                            reload(&link, &f).await
                        }
                        Ok(_) => true,
                        Err(e) => {
                            debug(&format!("service event stream ended: {e}"));
                            break;
                        }
                    };
                    if !go_on {
                        return;
                    }
                }
            }
            // The agent answered that the mesh is not one this member joined: no retry helps.
            Err(ClientError::Api(e)) if e.code == ErrorCode::NotFound => {
                end(&f, e.message, true).await;
                f.primed.send_replace(true);
                return;
            }
            Err(e) => {
                debug(&format!("cannot subscribe to services: {e}"));
                f.primed.send_replace(true);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// A connection of its own carrying `services` and `links` events (of `mesh`, when given).
async fn subscribe(link: &Shared, mesh: Option<String>) -> Result<AgentClient, ClientError> {
    let paths = {
        let mut l = link.lock().await;
        l.ensure().await?;
        l.paths().clone()
    };
    let mut c = AgentClient::connect(&paths, "mcp-service").await?;
    c.subscribe(vec![Topic::Services, Topic::Links], None, mesh).await?;
    Ok(c)
}

/// Reads the catalog and applies what it says; `false` once the process should end.
async fn reload(link: &Shared, f: &Follow) -> bool {
    let asked = link
        .lock()
        .await
        .request_retry::<CatalogReply>(AgentCall::ServiceCatalog { mesh: f.mesh.clone() })
        .await;
    let found = match asked {
        Ok(cat) => find(&cat, &f.service, lock(&f.known).mesh.as_deref().or(f.mesh.as_deref())),
        // The link is down or busy: the next `links` event brings another read.
        Err(ClientError::Api(e))
            if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::RateLimited) =>
        {
            debug(&format!("cannot read the catalog now: {}", e.message));
            Found::Unknown
        }
        // The mesh is not joined, or the call is refused: this entry cannot work.
        Err(ClientError::Api(e)) => {
            return end(
                f,
                format!("cannot serve service {}: {}", f.service, text::one_line(&e.message)),
                true,
            )
            .await;
        }
        Err(e) => {
            debug(&format!("cannot read the catalog: {e}"));
            Found::Unknown
        }
    };
    match found {
        Found::Entry(mesh, entry) => {
            let changed = {
                let mut k = lock(&f.known);
                k.mesh = Some(mesh);
                let before = k.entry.as_ref().map(|e| e.tools.clone());
                k.entry = Some(*entry);
                // First found after a listing without it (the link was down at start) counts too.
                before != k.entry.as_ref().map(|e| e.tools.clone())
            };
            !changed || notify(f).await
        }
        Found::Gone => gone(f).await,
        Found::Ambiguous(meshes) => {
            let m = meshes.join(", ");
            end(f, format!("service {} is in meshes {m}: pass --mesh to choose one", f.service), true).await
        }
        Found::Unknown => true,
    }
}

/// Where `service` is in `cat` (in `mesh` when given); [`Found::Unknown`] when the mesh it
/// would be in could not be asked.
fn find(cat: &CatalogReply, service: &str, mesh: Option<&str>) -> Found {
    let hits: Vec<_> =
        cat.services.iter().filter(|s| s.entry.name == service && mesh.is_none_or(|m| s.mesh == m)).collect();
    match hits.as_slice() {
        [one] => Found::Entry(one.mesh.clone(), Box::new(one.entry.clone())),
        [] if cat.errors.iter().any(|e| mesh.is_none_or(|m| e.mesh == m)) => Found::Unknown,
        [] => Found::Gone,
        many => Found::Ambiguous(many.iter().map(|s| s.mesh.clone()).collect()),
    }
}

/// Applies one event of `mesh`; `false` once the process should end.
async fn on_event(f: &Follow, mesh: &str, event: &Event) -> bool {
    let tools: Option<Vec<ToolInfo>> = match event {
        Event::McpToolsChanged { name, tools } if *name == f.service => Some(tools.clone()),
        Event::McpDeployed(e) | Event::McpUpdated(e) if e.name == f.service => Some(e.tools.clone()),
        Event::McpUndeployed { name } if *name == f.service => return gone(f).await,
        _ => None,
    };
    let Some(tools) = tools else { return true };
    let changed = {
        let mut k = lock(&f.known);
        k.mesh = Some(mesh.to_string());
        let differs = k.entry.as_ref().is_none_or(|old| old.tools != tools);
        match event {
            Event::McpDeployed(e) | Event::McpUpdated(e) => k.entry = Some(e.clone()),
            _ => {
                if let Some(entry) = k.entry.as_mut() {
                    entry.tools = tools;
                }
            }
        }
        differs && k.entry.is_some()
    };
    !changed || notify(f).await
}

/// Tells the client the tools changed; `false` once it is gone.
async fn notify(f: &Follow) -> bool {
    let peer = f.peer.borrow().clone();
    let Some(peer) = peer else { return true };
    match peer.notify_tool_list_changed().await {
        Ok(()) => {
            debug(&format!("service {}: tools changed", f.service));
            true
        }
        Err(e) => {
            debug(&format!("cannot notify the client: {e}"));
            false
        }
    }
}

/// The service left: ends the process cleanly; one never found cannot be served (a failure).
async fn gone(f: &Follow) -> bool {
    let (mesh, seen) = {
        let k = lock(&f.known);
        (k.mesh.clone().or_else(|| f.mesh.clone()), k.entry.is_some())
    };
    let on = mesh.map(|m| format!(" on mesh {}", text::name(&m))).unwrap_or_default();
    let service = text::name(&f.service);
    if !seen {
        let message = format!(
            "no service {service} that you may use{on} (not deployed, or not shared with you); \
             `claudemesh catalog` lists the services you may use"
        );
        return end(f, message, true).await;
    }
    let message = format!(
        "service {service}{on} is no longer available to you (undeployed, or your access was \
         withdrawn); `claudemesh catalog` lists the services you may use"
    );
    end(f, message, false).await
}

async fn end(f: &Follow, message: String, failed: bool) -> bool {
    let _ = f.end.send(Ending { message, failed }).await;
    false
}
