//! The plain data the delivery core owns: local sessions, subscriptions and the connections
//! they write to, the live part of the inbox (every message some session has not seen yet, or
//! that waits for a session), take leases, and `hook_wait` waiters. No locks: only the core
//! task touches it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use claudemesh_protocol::frames::{SessionInfo, Target};
use claudemesh_protocol::local::{Topic, WaitOutcome};
use tokio::sync::oneshot;

use crate::mesh::MeshView;
use crate::store::InboxRecord;

/// A message in the inbox: `(mesh id, msg id)`.
pub type MsgKey = (String, String);

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
    /// The socket connections that registered it, once per registration: it closes when the
    /// last one closes it or goes away.
    pub holders: Vec<u64>,
    /// Groups granted to the member that this session left (`leave_group`): it no longer
    /// takes their messages.
    pub left_groups: BTreeSet<String>,
}

impl LocalSession {
    /// Whether this session is in group `g` on mesh `view`: declared by the session, or granted
    /// to the member and not left.
    pub fn in_group(&self, g: &str, view: Option<&MeshView>) -> bool {
        self.info.groups.iter().any(|x| x.name == g)
            || (!self.left_groups.contains(g)
                && view.is_some_and(|v| v.granted_groups().iter().any(|x| x == g)))
    }

    /// The groups it is in now on `view`'s mesh, sorted.
    pub fn groups(&self, view: Option<&MeshView>) -> Vec<String> {
        let mut g: BTreeSet<String> = self.info.groups.iter().map(|x| x.name.clone()).collect();
        if let Some(v) = view {
            g.extend(v.granted_groups().into_iter().filter(|x| !self.left_groups.contains(x)));
        }
        g.into_iter().collect()
    }

    /// Whether a message to `target` on `mesh_id` is for this session (a `member:` target is
    /// for every session of the member; routing then picks the most recently active one).
    pub fn addressed_by(&self, target: &Target, mesh_id: &str, view: Option<&MeshView>) -> bool {
        if !self.meshes.iter().any(|m| m == mesh_id) {
            return false;
        }
        match target {
            Target::Session(id) => id == &self.info.session_id,
            Target::Group(g) => self.in_group(g, view),
            Target::Member(_) | Target::Broadcast => true,
        }
    }
}

/// One event subscription of a socket connection.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub conn: u64,
    pub id: u64,
    pub topics: Vec<Topic>,
    /// Narrows `messages` to one session: its pushes. Without it, `messages` carries every
    /// message as it arrives in the inbox, marking nothing (a dashboard).
    pub session: Option<String>,
    /// Narrows every topic to one mesh (id).
    pub mesh: Option<String>,
    /// With `services`: the service whose log it follows (its mesh is then always set).
    pub service: Option<String>,
}

/// Where the lines of one socket connection go, and its event sequence.
#[derive(Debug)]
pub struct ConnOut {
    pub tx: crate::socket_bounds::ClientTx,
    /// The sequence number of the last event (or `subscribe` reply) written to it.
    pub seq: u64,
}

/// Messages taken for one session and not confirmed yet.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The session they were taken for; `None` for the user (the CLI).
    pub session: Option<String>,
    pub items: Vec<MsgKey>,
    pub deadline: Instant,
}

/// A `hook_wait` in progress.
#[derive(Debug)]
pub struct Waiter {
    pub generation: u64,
    pub tx: oneshot::Sender<WaitOutcome>,
}

/// Everything the core owns.
#[derive(Debug, Default)]
pub struct State {
    pub meshes: HashMap<String, MeshView>,
    pub sessions: HashMap<String, LocalSession>,
    pub subs: Vec<Subscription>,
    pub conns: HashMap<u64, ConnOut>,
    /// Messages some session has not seen yet, or that wait for a session (`pending`). Changed
    /// only through [`State::set_live`] and [`State::unset_live`], which keep the three indexes
    /// below in step, so no hot path walks the whole live set.
    pub live: BTreeMap<MsgKey, InboxRecord>,
    /// Per session, the live messages it has an unseen delivery of.
    pub unseen_by_session: HashMap<String, BTreeSet<MsgKey>>,
    /// The live messages waiting for a session.
    pub waiting: BTreeSet<MsgKey>,
    /// Per mesh id, the live messages nobody has seen (`message.seen` unset).
    pub unread: HashMap<String, usize>,
    /// When a pending message started waiting (for the session grace period).
    pub pending_since: HashMap<MsgKey, Instant>,
    pub leases: HashMap<u64, Lease>,
    /// Message → the sessions a lease holds it for (looked up on every take and push, so
    /// without building a key).
    pub leased: HashMap<MsgKey, HashSet<String>>,
    pub waiters: HashMap<String, Waiter>,
    /// Messages in the inbox per mesh id, and those no session has seen.
    pub inbox_total: HashMap<String, usize>,
}

impl State {
    /// Makes `rec` the live copy of `key`, its indexes following.
    pub fn set_live(&mut self, key: MsgKey, rec: InboxRecord) {
        self.unset_live(&key);
        if rec.pending {
            self.waiting.insert(key.clone());
        }
        for (s, d) in &rec.deliveries {
            if !d.seen {
                self.unseen_by_session.entry(s.clone()).or_default().insert(key.clone());
            }
        }
        if !rec.message.seen {
            *self.unread.entry(rec.mesh_id.clone()).or_default() += 1;
        }
        self.live.insert(key, rec);
    }

    /// Takes `key` out of the live set (and its indexes); returns what it was.
    pub fn unset_live(&mut self, key: &MsgKey) -> Option<InboxRecord> {
        let rec = self.live.remove(key)?;
        self.waiting.remove(key);
        for (s, d) in &rec.deliveries {
            if !d.seen
                && let Some(set) = self.unseen_by_session.get_mut(s)
            {
                set.remove(key);
                if set.is_empty() {
                    self.unseen_by_session.remove(s);
                }
            }
        }
        if !rec.message.seen
            && let Some(n) = self.unread.get_mut(&rec.mesh_id)
        {
            *n = n.saturating_sub(1);
        }
        Some(rec)
    }

    /// The live messages `session` has not seen, by key order.
    pub fn unseen_of(&self, session: &str) -> impl Iterator<Item = (&MsgKey, &InboxRecord)> + '_ {
        self.unseen_by_session
            .get(session)
            .into_iter()
            .flatten()
            .filter_map(|k| self.live.get(k).map(|r| (k, r)))
    }

    /// Whether the message `key` is held by a lease for `session`.
    pub fn is_leased(&self, key: &MsgKey, session: &str) -> bool {
        self.leased.get(key).is_some_and(|s| s.contains(session))
    }

    /// The service logs local subscribers follow: `(mesh id, service)`.
    pub fn follows(&self) -> std::collections::BTreeSet<(String, String)> {
        self.subs
            .iter()
            .filter(|s| s.topics.contains(&Topic::Services))
            .filter_map(|s| Some((s.mesh.clone()?, s.service.clone()?)))
            .collect()
    }

    /// Whether any subscriber listens to messages for `session`.
    pub fn has_message_subscriber(&self, session: &str) -> bool {
        self.subs.iter().any(|s| s.topics.contains(&Topic::Messages) && s.session.as_deref() == Some(session))
    }
}
