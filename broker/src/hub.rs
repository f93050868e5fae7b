//! The broker's in-memory state: meshes, their members (a cache of the store), live
//! connections and presence. Each mesh has its own mutex, never held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use claudemesh_protocol::frames::{
    AgentInstance, Event, FormerMember, MemberInfo, PeerSession, SessionInfo, encode,
};
use claudemesh_protocol::limits::MAX_FORMER_MEMBERS;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::keyuse::KeyUse;
use crate::metrics::Metrics;
use crate::rate::{Budget, MemberBuckets};
use crate::store::{MemberRecord, MeshRecord, Snapshot, StoreHandle};

/// What a connection's writer task sends.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded frame and its type (for metrics).
    Frame(String, &'static str),
    /// A presence event's JSON (`{"kind":…,"data":…}`), encoded once for every connection
    /// and batched with others before it goes out; and whether the connection's presence
    /// budget may shed it ([`Event::is_sheddable`]).
    Presence(Arc<str>, bool),
    /// Close the connection with this code and reason.
    Close(u16, String),
}

/// How the hub reaches one connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Outgoing>,
    /// Cancelled to drop the connection at once (it fell too far behind).
    pub kill: CancellationToken,
    /// Cancelled to stop reading the connection's frames at once (its member was removed);
    /// the writer still gets up to 2 s to deliver what is queued, the close last. A child of
    /// `kill`.
    pub stop: CancellationToken,
    /// The agent process on the other end, when its hello said.
    pub instance: Option<AgentInstance>,
    /// Bytes queued for the writer and not yet written: the writer subtracts what it wrote.
    pub queued: Arc<AtomicUsize>,
    /// [`crate::BrokerConfig::out_queue_bytes`]: `queued` past this drops the connection.
    pub max_queued: usize,
    /// Counts the connections dropped for not reading.
    pub metrics: Arc<Metrics>,
    /// Set by the writer when the connection went over its presence budget (it was sent
    /// `presence_reset` and is sent no sheddable presence); cleared by the connection's next
    /// `list_members` or first-page `list_peers` before the answer is built, so nothing after
    /// the list is dropped (the two lists together have everything dropped before it).
    pub presence_stale: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Queues a frame. A connection whose queue is full, in frames or in bytes, is dropped
    /// rather than buffered; what it missed is durable and re-pushed when it reconnects.
    pub fn send(&self, out: Outgoing) -> bool {
        let bytes = out.bytes();
        let queued = self.queued.fetch_add(bytes, Relaxed) + bytes;
        if queued > self.max_queued && !matches!(out, Outgoing::Close(..)) {
            release(&self.queued, bytes);
            tracing::warn!(conn = self.id, queued, "connection does not read what it is sent; dropping it");
            self.drop_slow();
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(e) => {
                release(&self.queued, bytes);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(conn = self.id, "connection fell behind its outgoing queue; dropping it");
                    self.drop_slow();
                }
                false
            }
        }
    }
}

impl ConnHandle {
    /// Queues a frame, waiting (rather than dropping the connection) while the queue is full in
    /// frames or bytes: for the replay of a member's queue, which may be far larger than the
    /// bound and is read from the store only as fast as the connection takes it. False once
    /// the connection is gone.
    pub async fn send_waiting(&self, out: Outgoing) -> bool {
        let bytes = out.bytes();
        // Backpressure on bytes: the writer frees them as it writes (no event to wait on; a
        // replay is rare and a 2 ms poll costs nothing next to the writes it waits for).
        while self.queued.load(Relaxed) > 0 && self.queued.load(Relaxed) + bytes > self.max_queued {
            if self.kill.is_cancelled() {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        self.queued.fetch_add(bytes, Relaxed);
        if self.tx.send(out).await.is_err() {
            release(&self.queued, bytes);
            return false;
        }
        true
    }

    fn drop_slow(&self) {
        if !self.kill.is_cancelled() {
            self.metrics.slow_dropped.fetch_add(1, Relaxed);
        }
        self.kill.cancel();
    }
}

/// Takes `bytes` off a connection's queued count, never below zero (every item is counted in
/// once by [`ConnHandle::send`] or [`ConnHandle::send_waiting`] and out once by the writer; the
/// floor keeps a miscount from turning into a huge number that drops a healthy connection).
pub fn release(queued: &AtomicUsize, bytes: usize) {
    let _ = queued.fetch_update(Relaxed, Relaxed, |q| Some(q.saturating_sub(bytes)));
}

impl Outgoing {
    /// The bytes this item holds while queued (what [`ConnHandle::queued`] counts).
    pub fn bytes(&self) -> usize {
        match self {
            Self::Frame(text, _) => text.len(),
            Self::Presence(json, _) => json.len(),
            Self::Close(_, reason) => reason.len(),
        }
    }
}

/// A session in presence.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    pub member_id: String,
    pub info: SessionInfo,
    pub connected_since: u64,
    /// Set while the owning connection is gone (reconnect grace).
    pub offline_since: Option<Instant>,
}

impl SessionEntry {
    pub fn peer(&self) -> PeerSession {
        PeerSession {
            member_id: self.member_id.clone(),
            session: self.info.clone(),
            connected_since: self.connected_since,
        }
    }
}

/// Mutable state of one mesh.
#[derive(Debug, Default)]
pub struct MeshState {
    pub members: HashMap<String, MemberRecord>,
    pub conns: HashMap<String, ConnHandle>,
    pub sessions: HashMap<String, SessionEntry>,
    /// Last known owner of every session id ever opened (for `session:` targets while offline).
    pub session_owner: HashMap<String, String>,
    pub buckets: HashMap<String, MemberBuckets>,
    /// Per member: recent replacements of its connection by another agent instance.
    pub key_use: HashMap<String, KeyUse>,
}

impl MeshState {
    pub fn member_info(&self, m: &MemberRecord) -> MemberInfo {
        MemberInfo {
            member_id: m.member_id.clone(),
            pubkey: m.pubkey.clone(),
            display_name: m.display_name.clone(),
            role: m.role,
            groups: m.groups.clone(),
            declared_groups: m.declared_groups.clone(),
            online: self.conns.contains_key(&m.member_id),
            statements: m.statements.clone(),
        }
    }

    /// Active (not removed) members.
    pub fn active_members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.values().filter(|m| !m.removed)
    }

    /// Members who left or were removed, newest first, at most [`MAX_FORMER_MEMBERS`]: agents
    /// use them to say "bob left the mesh" instead of "no such member".
    pub fn former_members(&self) -> Vec<FormerMember> {
        let mut former: Vec<FormerMember> = self
            .members
            .values()
            .filter(|m| m.removed)
            .map(|m| FormerMember {
                member_id: m.member_id.clone(),
                display_name: m.display_name.clone(),
                reason: m.removed_reason.unwrap_or_default(),
                at: m.removed_at,
                pubkey: m.pubkey.clone(),
                statements: m.statements.clone(),
            })
            .collect();
        // Ties (records from before `removed_at` existed are all 0) in a stable order.
        former.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.member_id.cmp(&b.member_id)));
        former.truncate(MAX_FORMER_MEMBERS);
        former
    }

    /// Takes one token of `budget` from `member`'s buckets, or says how many milliseconds
    /// until one is available.
    pub fn take(&mut self, member: &str, budget: Budget, cfg: &BrokerConfig) -> Result<(), u64> {
        if let Some(b) = self.buckets.get_mut(member) {
            return b.take(budget);
        }
        self.buckets.entry(member.to_string()).or_insert_with(|| MemberBuckets::new(cfg)).take(budget)
    }

    /// Queues a presence event for every connection of the mesh, encoded once. A sheddable
    /// event skips the connections over their presence budget (their writer would drop it):
    /// a join in a storm then costs a flag check per connection, not a queued item and a
    /// writer wake-up each.
    pub fn presence(&self, event: &Event) {
        if self.conns.is_empty() {
            return;
        }
        let json: Arc<str> = encode(event).into();
        let sheddable = event.is_sheddable();
        for c in self.conns.values() {
            if sheddable && c.presence_stale.load(std::sync::atomic::Ordering::Acquire) {
                continue;
            }
            c.send(Outgoing::Presence(json.clone(), sheddable));
        }
    }

    /// Sends an encoded frame to one member if it is connected. Returns whether it was queued.
    pub fn send_to(&self, member: &str, frame: String, ty: &'static str) -> bool {
        self.conns.get(member).is_some_and(|c| c.send(Outgoing::Frame(frame, ty)))
    }

    /// Recomputes the member's declared messaging groups from its present sessions. Returns
    /// the new set when it changed (it is then persisted), keeping the last set when the
    /// member has no session left (remembered while offline).
    pub fn refresh_declared_groups(&mut self, member: &str) -> Option<Vec<String>> {
        let mut groups: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.member_id == member)
            .flat_map(|s| s.info.groups.iter().map(|g| g.name.clone()))
            .collect();
        groups.sort();
        groups.dedup();
        let has_sessions = self.sessions.values().any(|s| s.member_id == member);
        let rec = self.members.get_mut(member)?;
        if !has_sessions || rec.declared_groups == groups {
            return None;
        }
        rec.declared_groups = groups.clone();
        Some(groups)
    }
}

/// One mesh: identity and its locked state.
#[derive(Debug)]
pub struct Mesh {
    pub id: String,
    pub slug: String,
    pub created_at: u64,
    state: Mutex<MeshState>,
}

impl Mesh {
    pub fn new(rec: &MeshRecord) -> Self {
        Self {
            id: rec.id.clone(),
            slug: rec.slug.clone(),
            created_at: rec.created_at,
            state: Mutex::default(),
        }
    }

    /// Locks the mesh state. A poisoned lock (a panic while holding it) is recovered: the
    /// state is plain data and every mutation is a complete assignment.
    pub fn lock(&self) -> MutexGuard<'_, MeshState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Everything shared by the broker's tasks.
#[derive(Debug)]
pub struct Hub {
    pub config: BrokerConfig,
    pub metrics: Arc<Metrics>,
    pub store: StoreHandle,
    pub admin_token: String,
    /// Bearer token `/metrics` requires (`--metrics-token-file`); `Debug` redacts it.
    pub metrics_token: Option<claudemesh_protocol::frames::Secret>,
    pub started: Instant,
    pub shutdown: CancellationToken,
    /// Shared MCP services: one actor per mesh that has any.
    pub services: crate::services::Services,
    meshes: RwLock<HashMap<String, Arc<Mesh>>>,
    next_conn: AtomicU64,
}

impl Hub {
    pub fn new(
        config: BrokerConfig,
        metrics: Arc<Metrics>,
        store: StoreHandle,
        admin_token: String,
        snapshot: Snapshot,
        shutdown: CancellationToken,
    ) -> Self {
        let mut meshes: HashMap<String, Arc<Mesh>> = HashMap::new();
        for m in &snapshot.meshes {
            meshes.insert(m.id.clone(), Arc::new(Mesh::new(m)));
        }
        for rec in snapshot.members {
            if let Some(mesh) = meshes.get(&rec.mesh_id) {
                mesh.lock().members.insert(rec.member_id.clone(), rec);
            }
        }
        for (mesh_id, session, member) in snapshot.session_owners {
            if let Some(mesh) = meshes.get(&mesh_id) {
                mesh.lock().session_owner.insert(session, member);
            }
        }
        let depth: u64 = snapshot.queue_depth.values().map(|d| u64::from(*d)).sum();
        metrics.queue_depth.store(depth as i64, Relaxed);
        Self {
            config,
            metrics,
            store,
            admin_token,
            metrics_token: None,
            started: Instant::now(),
            services: crate::services::Services::new(CancellationToken::new()),
            shutdown,
            meshes: RwLock::new(meshes),
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Relaxed)
    }

    pub fn mesh(&self, id: &str) -> Option<Arc<Mesh>> {
        self.meshes.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    pub fn meshes(&self) -> Vec<Arc<Mesh>> {
        self.meshes.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }

    pub fn add_mesh(&self, mesh: Arc<Mesh>) {
        self.meshes.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(mesh.id.clone(), mesh);
    }

    pub fn connection_count(&self) -> usize {
        self.meshes().iter().map(|m| m.lock().conns.len()).sum()
    }

    /// Closes every connection with `code` (broker shutdown: 1001).
    pub fn close_all(&self, code: u16, reason: &str) {
        for mesh in self.meshes() {
            for c in mesh.lock().conns.values() {
                if !c.send(Outgoing::Close(code, reason.to_string())) {
                    c.kill.cancel();
                }
            }
        }
    }
}
