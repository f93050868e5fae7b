//! The agent's in-memory state shared by its tasks: per-mesh views (link, member directory,
//! presence), the local sessions clients registered, and event subscriptions. Locks are std
//! mutexes, never held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use claudemesh_protocol::crypto::{MemberKeypair, random_bytes};
use claudemesh_protocol::frames::{
    AgentInstance, ErrorCode, FormerMember, MemberInfo, PeerSession, Priority, SessionInfo, SessionStatus,
};
use claudemesh_protocol::local::{AgentLine, LinkState, LocalEvent, Topic};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::MeshConfig;
use crate::paths::Paths;
use crate::store::Store;
use crate::uplink::UplinkCmd;

/// What the agent knows of one joined mesh.
#[derive(Debug)]
pub struct MeshView {
    pub config: MeshConfig,
    pub key: Arc<MemberKeypair>,
    pub link: LinkState,
    pub link_detail: Option<String>,
    pub connected_since: Option<Instant>,
    pub members: HashMap<String, MemberInfo>,
    pub peers: HashMap<String, PeerSession>,
    /// Sessions that sent us a message → their member: a reply to a message's `from_id` works
    /// even before the sender's batched `peer_joined` arrived, or after it left.
    pub senders: HashMap<String, String>,
    /// Members who left or were removed, by member id: a send to one says so.
    pub former: HashMap<String, FormerMember>,
    /// The address the broker says members should use (its `--public-url`), once it said so:
    /// invites carry it.
    pub public_url: Option<String>,
    /// While the link waits to reconnect: when it tries next.
    pub retry_at: Option<Instant>,
    /// The broker's refusal of the last hello, while the link keeps retrying after it.
    pub refusal: Option<Refusal>,
    pub uplink: mpsc::Sender<UplinkCmd>,
    pub cancel: CancellationToken,
}

/// Why the broker refused a hello that the link retries after (any refusal but a removal or
/// a key in use elsewhere): shown by `status` and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// A session registered by a local client (a Claude Code session's MCP server, usually).
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub info: SessionInfo,
    /// Mesh ids it is open on.
    pub meshes: Vec<String>,
    pub claude_pid: Option<u32>,
    /// Claude Code's own `session_id`, once a hook reported it.
    pub claude_session: Option<String>,
    /// Generation of the newest `hook_wait` for this session; older waiters give way.
    pub waiter: u64,
    /// Whether a `Stop` hook is waiting to wake this session.
    pub waiting: bool,
    pub last_active: Instant,
    /// Registered clients holding it open; it closes when the last one goes.
    pub holders: u32,
}

/// One event subscription of a socket client.
#[derive(Debug)]
pub struct Subscription {
    pub conn: u64,
    pub id: u64,
    pub topics: Vec<Topic>,
    pub session: Option<String>,
    pub mesh: Option<String>,
    pub tx: mpsc::Sender<AgentLine>,
}

/// Everything the agent's tasks share.
#[derive(Debug)]
pub struct Agent {
    pub paths: Paths,
    pub store: Store,
    pub started: Instant,
    /// This agent process, as every hello names it: a broker tells a reconnect of the same
    /// agent from a second agent using a copy of the same key.
    pub instance: AgentInstance,
    pub shutdown: CancellationToken,
    meshes: Mutex<HashMap<String, MeshView>>,
    sessions: Mutex<HashMap<String, LocalSession>>,
    subs: Mutex<Vec<Subscription>>,
    next_id: AtomicU64,
    /// Held while deciding and recording that a message went to a session (pushed or shown),
    /// so a push and a hook never both take the same message.
    delivery: Mutex<()>,
    /// The local broker `claudemesh up` configured (what [`crate::local_broker::supervise`]
    /// should run), and what it reports.
    pub local_broker_wanted: tokio::sync::watch::Sender<Option<crate::local_broker::LocalBrokerConfig>>,
    pub local_broker: tokio::sync::watch::Sender<Option<crate::local_broker::LocalBrokerStatus>>,
    /// Bumped whenever a session could have a new message due (stored, status changed,
    /// session closed); `hook_wait` watches it.
    changed: tokio::sync::watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State is plain data updated by whole assignments; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a message of `priority` may be pushed to a session in `status` now (DESIGN §6):
/// `now` always; `next` when the session is idle; `low` never (the model asks for it); `dnd`
/// holds everything but `now`.
pub fn deliverable(priority: Priority, status: SessionStatus) -> bool {
    match (priority, status) {
        (Priority::Now, _) => true,
        (Priority::Next, SessionStatus::Idle) => true,
        (Priority::Next, _) | (Priority::Low, _) => false,
    }
}

impl Agent {
    pub fn new(paths: Paths, store: Store, shutdown: CancellationToken) -> Self {
        Self {
            paths,
            store,
            started: Instant::now(),
            instance: AgentInstance {
                id: claudemesh_protocol::codec::to_hex(&random_bytes::<16>()),
                started_at: crate::inbox::now_ms(),
            },
            shutdown,
            meshes: Mutex::default(),
            sessions: Mutex::default(),
            subs: Mutex::default(),
            next_id: AtomicU64::new(1),
            delivery: Mutex::default(),
            local_broker_wanted: tokio::sync::watch::Sender::new(None),
            local_broker: tokio::sync::watch::Sender::new(None),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// See [`Agent::delivery`]. Never held across an `.await`.
    pub fn delivery_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.delivery)
    }

    /// Wakes `hook_wait`ers to look again.
    pub fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every later [`Agent::bump`].
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    pub fn meshes(&self) -> MutexGuard<'_, HashMap<String, MeshView>> {
        lock(&self.meshes)
    }

    pub fn sessions(&self) -> MutexGuard<'_, HashMap<String, LocalSession>> {
        lock(&self.sessions)
    }

    /// Finds a joined mesh by slug or id; with `None`, the only mesh if there is exactly one.
    pub fn resolve_mesh(&self, slug_or_id: Option<&str>) -> Result<String, String> {
        let meshes = self.meshes();
        match slug_or_id {
            Some(s) => meshes
                .values()
                .find(|m| m.config.slug == s || m.config.id == s)
                .map(|m| m.config.id.clone())
                .ok_or_else(|| format!("not a member of mesh {s}; joined: {}", slugs(&meshes))),
            None if meshes.len() == 1 => Ok(meshes.keys().next().cloned().unwrap_or_default()),
            None if meshes.is_empty() => Err("no mesh joined yet: run `claudemesh join <invite>`".into()),
            None => Err(format!("you are in several meshes; say which with --mesh ({})", slugs(&meshes))),
        }
    }

    pub fn subscribe(&self, s: Subscription) {
        lock(&self.subs).push(s);
    }

    pub fn unsubscribe(&self, conn: u64, id: Option<u64>) {
        lock(&self.subs).retain(|s| !(s.conn == conn && id.is_none_or(|i| i == s.id)));
    }

    /// Whether any subscriber listens to messages for `session`.
    pub fn has_message_subscriber(&self, session: &str) -> bool {
        lock(&self.subs)
            .iter()
            .any(|s| s.topics.contains(&Topic::Messages) && s.session.as_deref() == Some(session))
    }

    /// Sends an event to every matching subscription. `session` narrows `messages` events;
    /// `mesh` (id) narrows the rest. Returns how many subscribers got it.
    pub fn publish(
        &self,
        topic: Topic,
        mesh_id: Option<&str>,
        session: Option<&str>,
        event: &LocalEvent,
    ) -> usize {
        let mut subs = lock(&self.subs);
        let mut n = 0;
        subs.retain(|s| {
            if !s.topics.contains(&topic) {
                return true;
            }
            if topic == Topic::Messages && s.session.is_some() && s.session.as_deref() != session {
                return true;
            }
            if let (Some(want), Some(m)) = (&s.mesh, mesh_id)
                && want != m
            {
                return true;
            }
            match s.tx.try_send(AgentLine::Event { sub: s.id, seq: 0, event: Box::new(event.clone()) }) {
                Ok(()) => {
                    n += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(conn = s.conn, "subscriber is not reading; dropping its subscription");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        n
    }

    pub fn set_link(&self, mesh_id: &str, state: LinkState, detail: Option<String>) {
        let slug = {
            let mut meshes = self.meshes();
            let Some(m) = meshes.get_mut(mesh_id) else { return };
            if m.link == state && m.link_detail == detail {
                return;
            }
            m.link = state;
            m.link_detail.clone_from(&detail);
            m.connected_since = (state == LinkState::Connected).then(Instant::now);
            m.config.slug.clone()
        };
        tracing::info!(mesh = %slug, ?state, detail = detail.as_deref().unwrap_or(""), "link");
        self.publish(Topic::Links, Some(mesh_id), None, &LocalEvent::Links { mesh: slug, state, detail });
    }

    /// Records when the link of `mesh_id` retries next (None: it does not wait) and the
    /// broker refusal it retries after, if that is why.
    pub fn set_retry(&self, mesh_id: &str, retry_at: Option<Instant>, refusal: Option<Refusal>) {
        if let Some(m) = self.meshes().get_mut(mesh_id) {
            m.retry_at = retry_at;
            m.refusal = refusal;
        }
    }
}

/// How many recent senders a mesh view remembers (see [`MeshView::senders`]).
pub const MAX_SENDERS: usize = 4096;

/// Most former members a mesh view remembers.
const MAX_FORMER: usize = 1024;

impl MeshView {
    /// Takes a `members` reply as the directory: the current members replace the old ones; the
    /// former ones are merged with those learnt from `member_removed` events (an older broker
    /// lists none), and a member who is current is not former.
    pub fn set_directory(&mut self, members: Vec<MemberInfo>, former: Vec<FormerMember>) {
        self.members = members.into_iter().map(|m| (m.member_id.clone(), m)).collect();
        for f in former {
            self.former.insert(f.member_id.clone(), f);
        }
        let current = &self.members;
        self.former.retain(|id, _| !current.contains_key(id));
        if self.former.len() > MAX_FORMER {
            let mut by_age: Vec<(u64, String)> =
                self.former.values().map(|f| (f.at, f.member_id.clone())).collect();
            by_age.sort();
            for (_, id) in by_age.into_iter().take(self.former.len() - MAX_FORMER) {
                self.former.remove(&id);
            }
        }
    }

    /// A mesh about to connect: nothing known of its members or peers yet.
    pub fn new(
        config: MeshConfig,
        key: Arc<MemberKeypair>,
        uplink: mpsc::Sender<UplinkCmd>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            config,
            key,
            link: LinkState::Connecting,
            link_detail: None,
            connected_since: None,
            members: Default::default(),
            peers: Default::default(),
            senders: Default::default(),
            former: Default::default(),
            public_url: None,
            retry_at: None,
            refusal: None,
            uplink,
            cancel,
        }
    }

    /// Remembers that `session` of `member` sent us something.
    pub fn remember_sender(&mut self, session: &str, member: &str) {
        if session.is_empty() || self.senders.get(session).is_some_and(|m| m == member) {
            return;
        }
        if self.senders.len() >= MAX_SENDERS {
            self.senders.clear();
        }
        self.senders.insert(session.to_string(), member.to_string());
    }
}

fn slugs(m: &HashMap<String, MeshView>) -> String {
    let mut v: Vec<&str> = m.values().map(|m| m.config.slug.as_str()).collect();
    v.sort();
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_by_status() {
        use Priority::*;
        use SessionStatus::*;
        let table = [
            (Now, Idle, true),
            (Now, Working, true),
            (Now, Dnd, true),
            (Next, Idle, true),
            (Next, Working, false),
            (Next, Dnd, false),
            (Low, Idle, false),
            (Low, Working, false),
            (Low, Dnd, false),
        ];
        for (p, s, want) in table {
            assert_eq!(deliverable(p, s), want, "{p:?} {s:?}");
        }
    }
}
