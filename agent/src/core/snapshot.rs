//! The snapshot the core publishes after every turn that changed something ([`View`]), and the
//! read-only answers built from it (`status`, `meshes`, `peers`, `members`, the `subscribe`
//! snapshot): pure functions, so a reader never waits behind a writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use claudemesh_protocol::frames::{ErrorCode, PeerSession, SessionInfo};
use claudemesh_protocol::local::{
    LinkState, LocalBrokerStatus, LocalSessionStatus, MemberEntry, MeshEntry, MeshStatus, PeerEntry,
    Snapshot, StatusReply,
};

use super::Core;
use super::state::LocalSession;
use crate::error::ApiError;
use crate::mesh::{MeshView, resolve_mesh, short_id};

/// One local session as readers see it.
#[derive(Debug, Clone, Default)]
pub struct SessionView {
    pub info: SessionInfo,
    /// Mesh ids it is open on.
    pub meshes: Vec<String>,
    pub status: LocalSessionStatus,
}

/// What the core knew at the end of a turn.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub meshes: HashMap<String, MeshView>,
    pub sessions: Vec<SessionView>,
    /// Per mesh id: messages in the inbox, and those no session has seen.
    pub inbox: HashMap<String, (usize, usize)>,
    pub started: Option<Instant>,
    pub config_dir: PathBuf,
    /// The service logs local subscribers follow: `(mesh id, service)`, re-followed by a
    /// link after it reconnects.
    pub follows: std::collections::BTreeSet<(String, String)>,
}

impl Core {
    /// `s` as `status` and the `sessions` topic show it.
    pub(crate) fn session_status(&self, s: &LocalSession) -> LocalSessionStatus {
        let sid = &s.info.session_id;
        let unseen = self.state.unseen_by_session.get(sid).map_or(0, std::collections::BTreeSet::len);
        self.session_status_with(s, unseen)
    }

    /// As [`Core::session_status`], with its unseen count already known.
    fn session_status_with(&self, s: &LocalSession, unseen: usize) -> LocalSessionStatus {
        let sid = &s.info.session_id;
        let mut groups: Vec<String> = Vec::new();
        for v in s.meshes.iter().filter_map(|m| self.state.meshes.get(m)) {
            groups.extend(s.groups(Some(v)));
        }
        if s.meshes.is_empty() {
            groups = s.groups(None);
        }
        groups.sort();
        groups.dedup();
        LocalSessionStatus {
            session_id: sid.clone(),
            display_name: s.info.display_name.clone(),
            status: s.info.status,
            meshes: s
                .meshes
                .iter()
                .filter_map(|m| self.state.meshes.get(m))
                .map(|v| v.config.slug.clone())
                .collect(),
            groups,
            claude_pid: s.claude_pid,
            claude_session: s.claude_session.clone(),
            stop_hook_waiting: s.waiting,
            idle_secs: s.last_active.elapsed().as_secs(),
            unseen,
        }
    }
}

/// The view of `core` now.
pub(crate) fn build(core: &Core) -> View {
    let mut inbox: HashMap<String, (usize, usize)> =
        core.state.inbox_total.iter().map(|(m, n)| (m.clone(), (*n, 0))).collect();
    // Every count from the live set's indexes: nothing here walks the inbox.
    for (m, n) in &core.state.unread {
        inbox.entry(m.clone()).or_default().1 = *n;
    }
    let unseen: HashMap<&str, usize> =
        core.state.unseen_by_session.iter().map(|(s, k)| (s.as_str(), k.len())).collect();
    let mut sessions: Vec<SessionView> = core
        .state
        .sessions
        .values()
        .map(|s| {
            let n = unseen.get(s.info.session_id.as_str()).copied().unwrap_or(0);
            SessionView {
                info: s.info.clone(),
                meshes: s.meshes.clone(),
                status: core.session_status_with(s, n),
            }
        })
        .collect();
    sessions.sort_by(|a, b| a.info.display_name.cmp(&b.info.display_name));
    View {
        meshes: core.state.meshes.clone(),
        sessions,
        inbox,
        started: Some(core.started),
        config_dir: core.paths.dir.clone(),
        follows: core.state.follows(),
    }
}

impl View {
    /// Finds a joined mesh by slug or id (see [`resolve_mesh`]).
    pub fn resolve_mesh(&self, slug_or_id: Option<&str>) -> Result<String, ApiError> {
        resolve_mesh(&self.meshes, slug_or_id).map_err(|e| (ErrorCode::NotFound, e))
    }

    /// The mesh ids `mesh` selects: that one, or all.
    pub fn selected(&self, mesh: Option<&str>) -> Result<Vec<String>, ApiError> {
        match mesh {
            Some(_) => self.resolve_mesh(mesh).map(|m| vec![m]),
            None => {
                let mut v: Vec<String> = self.meshes.keys().cloned().collect();
                v.sort();
                Ok(v)
            }
        }
    }

    /// `status`. `outbox` is the number of unacknowledged sends per mesh id.
    pub fn status(
        &self,
        outbox: &std::collections::BTreeMap<String, usize>,
        local_broker: Option<LocalBrokerStatus>,
    ) -> StatusReply {
        let mut meshes: Vec<MeshStatus> = self
            .meshes
            .values()
            .map(|m| {
                let id = &m.config.id;
                let (inbox, unread) = self.inbox.get(id).copied().unwrap_or_default();
                MeshStatus {
                    slug: m.config.slug.clone(),
                    id: id.clone(),
                    broker_url: m.config.broker_url.clone(),
                    public_url: m.public_url.clone(),
                    member_id: m.config.member_id.clone(),
                    role: m.config.role,
                    display_name: m.config.display_name.clone(),
                    link: m.link,
                    detail: m.link_detail.clone(),
                    // A link retries unless the broker said the member is removed or its key is
                    // in use elsewhere; `retry_in_secs` counts down while it waits.
                    retrying: matches!(m.link, LinkState::Connecting | LinkState::Disconnected),
                    retry_in_secs: m
                        .retry_at
                        .filter(|_| m.link == LinkState::Disconnected)
                        .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64().ceil() as u64),
                    refusal: m.refusal.clone(),
                    connected_secs: m.connected_since.map(|t| t.elapsed().as_secs()),
                    sessions: self.sessions.iter().filter(|s| s.meshes.contains(id)).count(),
                    peers: m.peers.len(),
                    inbox,
                    unread,
                    outbox: outbox.get(id).copied().unwrap_or(0),
                    trust_warnings: trust_warnings(m),
                }
            })
            .collect();
        meshes.sort_by(|a, b| a.slug.cmp(&b.slug));
        let mut local_sessions: Vec<LocalSessionStatus> =
            self.sessions.iter().map(|s| s.status.clone()).collect();
        local_sessions.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        StatusReply {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.map_or(0, |t| t.elapsed().as_secs()),
            config_dir: self.config_dir.clone(),
            sessions: self.sessions.len(),
            local_sessions,
            meshes,
            local_broker,
        }
    }

    /// The `subscribe` snapshot (outbox counts are not in the view; `status` has them).
    pub fn snapshot(&self, local_broker: Option<LocalBrokerStatus>) -> Snapshot {
        Snapshot {
            status: self.status(&Default::default(), local_broker),
            peers: self.peers(None).unwrap_or_default(),
        }
    }

    /// `meshes`.
    pub fn mesh_list(&self) -> Vec<MeshEntry> {
        let mut v: Vec<MeshEntry> = self
            .meshes
            .values()
            .map(|m| MeshEntry {
                slug: m.config.slug.clone(),
                id: m.config.id.clone(),
                broker_url: m.config.broker_url.clone(),
                member_id: m.config.member_id.clone(),
                role: m.config.role,
                display_name: m.config.display_name.clone(),
                link: m.link,
            })
            .collect();
        v.sort_by(|a, b| a.slug.cmp(&b.slug));
        v
    }

    /// This agent's sessions on mesh `id` that the broker has not echoed yet.
    fn unechoed<'a>(&'a self, id: &'a str, v: &'a MeshView) -> impl Iterator<Item = &'a SessionView> + 'a {
        self.sessions
            .iter()
            .filter(move |s| s.meshes.iter().any(|m| m == id) && !v.peers.contains_key(&s.info.session_id))
    }

    /// `peers`: cached presence plus this agent's own sessions at once.
    pub fn peers(&self, mesh: Option<&str>) -> Result<Vec<PeerEntry>, ApiError> {
        let mut out = Vec::new();
        for id in self.selected(mesh)? {
            let Some(v) = self.meshes.get(&id) else { continue };
            let own: Vec<PeerSession> = self
                .unechoed(&id, v)
                .map(|s| PeerSession {
                    member_id: v.config.member_id.clone(),
                    session: s.info.clone(),
                    connected_since: 0,
                })
                .collect();
            for p in v.peers.values().chain(own.iter()) {
                out.push(PeerEntry {
                    peer: p.clone(),
                    mesh: v.config.slug.clone(),
                    member_name: v.members.get(&p.member_id).map(|m| m.display_name.clone()),
                    me: p.member_id == v.config.member_id,
                });
            }
        }
        out.sort_by(|a, b| {
            (&a.mesh, &a.peer.session.display_name).cmp(&(&b.mesh, &b.peer.session.display_name))
        });
        Ok(out)
    }

    /// `members`: every current member with its short id, whether it is online, and the names
    /// of its open sessions (this agent's own included before the broker echoes them).
    pub fn members(&self, mesh: Option<&str>) -> Result<Vec<MemberEntry>, ApiError> {
        let mut out = Vec::new();
        for id in self.selected(mesh)? {
            let Some(v) = self.meshes.get(&id) else { continue };
            for m in v.members.values() {
                let me = m.member_id == v.config.member_id;
                let mut sessions: Vec<String> = v
                    .peers
                    .values()
                    .filter(|p| p.member_id == m.member_id)
                    .map(|p| p.session.display_name.clone())
                    .collect();
                if me {
                    sessions.extend(self.unechoed(&id, v).map(|s| s.info.display_name.clone()));
                }
                sessions.sort();
                let mut member = m.clone();
                // Statements are for verification, not for reading.
                member.statements.clear();
                let trust = v.trust.members.get(&m.member_id).cloned();
                // Our own member is online whenever our link is, whatever the cached directory says.
                member.online = m.online || !sessions.is_empty() || (me && v.link == LinkState::Connected);
                out.push(MemberEntry {
                    member,
                    mesh: v.config.slug.clone(),
                    me,
                    short_id: short_id(&m.member_id).to_string(),
                    sessions,
                    trust,
                });
            }
        }
        out.sort_by(|a, b| (&a.mesh, &a.member.display_name).cmp(&(&b.mesh, &b.member.display_name)));
        Ok(out)
    }
}

/// What `status` shouts about a mesh's keys: changed or removed keys the broker lists, and
/// members beyond an invite's uses, sorted.
fn trust_warnings(m: &crate::mesh::MeshView) -> Vec<String> {
    use claudemesh_protocol::local::TrustState;
    let mut w: Vec<String> = m
        .members
        .values()
        .filter_map(|x| {
            let t = m.trust.members.get(&x.member_id)?;
            match t.state {
                TrustState::KeyChanged | TrustState::Removed => t.detail.clone(),
                _ if t.overused_invite => Some(format!(
                    "{} enrolled with an invite that more members used than it allows: someone who saw \
                     it enrolled extra keys; compare safety codes (`claudemesh members --verify`)",
                    x.display_name
                )),
                _ => None,
            }
        })
        .collect();
    w.sort();
    w
}
