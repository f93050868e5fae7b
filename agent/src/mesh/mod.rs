//! What the agent knows of one joined mesh ([`MeshView`]: link, member directory, presence,
//! former members, recent senders), and the pure rules over it: name resolution
//! ([`resolve`]) and priority × status ([`deliverable`]). The delivery core owns the views and
//! publishes copies of them in its snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::{Event, FormerMember, MemberInfo, PeerSession, Priority, SessionStatus};
use claudemesh_protocol::local::LinkState;
pub use claudemesh_protocol::local::Refusal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::MeshConfig;

mod command;
pub mod resolve;
pub mod trust;

pub use command::UplinkCmd;
pub use trust::MeshTrust;

use crate::store::Pin;

/// What the agent knows of one joined mesh.
#[derive(Debug, Clone)]
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
    /// Root key, pins and the verdict on every member's key.
    pub trust: MeshTrust,
    /// The broker sent `presence_reset`: `peers` and members' `online` miss changes until the
    /// next list (`uplink/presence.rs` refreshes them when needed).
    pub presence_stale: bool,
    /// Set when an [`UplinkCmd::Queued`] could not be handed to the link (its queue was full):
    /// the link then reads the outbox again, so no committed send waits for a reconnect.
    pub outbox_missed: Arc<AtomicBool>,
}

/// How many recent senders a mesh view remembers (see [`MeshView::senders`]).
pub const MAX_SENDERS: usize = 4096;

/// Most former members a mesh view remembers.
const MAX_FORMER: usize = 1024;

impl MeshView {
    /// Verifies the directory again (after any change to it); returns the pins to store.
    pub fn reverify(&mut self, now_ms: u64) -> Vec<(String, Pin)> {
        let (id, me) = (self.config.id.clone(), self.config.member_id.clone());
        self.trust.verify(&id, &me, &mut self.members, &self.former, now_ms)
    }

    /// Takes a `members` reply as the directory: the current members replace the old ones; the
    /// former ones are merged with those learnt from `member_removed` events (an older broker
    /// lists none), and a member who is current is not former. Then verifies it; returns the
    /// pins to store.
    pub fn set_directory(
        &mut self,
        members: Vec<MemberInfo>,
        former: Vec<FormerMember>,
        now_ms: u64,
    ) -> Vec<(String, Pin)> {
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
        self.reverify(now_ms)
    }

    /// A mesh about to connect: nothing known of its members or peers yet.
    pub fn new(
        config: MeshConfig,
        key: Arc<MemberKeypair>,
        uplink: mpsc::Sender<UplinkCmd>,
        cancel: CancellationToken,
    ) -> Self {
        let trust = MeshTrust::new(config.root_pubkey.clone());
        Self {
            trust,
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
            presence_stale: false,
            outbox_missed: Arc::default(),
        }
    }

    /// The groups the broker says this member was granted (by invite or admin): each of its
    /// sessions is in them unless it left one.
    pub fn granted_groups(&self) -> Vec<String> {
        self.members
            .get(&self.config.member_id)
            .map(|m| m.groups.iter().map(|g| g.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Applies a presence or membership event from the broker. A membership event verifies
    /// the directory again; the pins to store are returned.
    pub fn apply_event(&mut self, e: &Event, now_ms: u64) -> Vec<(String, Pin)> {
        match e {
            Event::PeerJoined(p) | Event::PeerUpdated(p) => {
                self.peers.insert(p.session.session_id.clone(), p.clone());
            }
            Event::PeerLeft { session_id, .. } => {
                self.peers.remove(session_id);
            }
            // News of a member who left or was removed (its connection closing after the
            // removal, say) does not bring it back; only joining does.
            Event::MemberUpdated(m) if self.former.contains_key(&m.member_id) => {}
            Event::MemberJoined(m) | Event::MemberUpdated(m) => {
                if m.member_id == self.config.member_id {
                    self.config.role = m.role;
                }
                self.former.remove(&m.member_id);
                self.members.insert(m.member_id.clone(), m.clone());
            }
            Event::MemberOnline { member_id, online } => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.online = *online;
                }
                return Vec::new();
            }
            Event::PresenceReset {} => {
                self.presence_stale = true;
                return Vec::new();
            }
            Event::MemberRemoved { member_id, reason, display_name } => {
                let (name, pubkey, statements) = self
                    .members
                    .remove(member_id)
                    .map(|m| (m.display_name, m.pubkey, m.statements))
                    .unwrap_or_else(|| (display_name.clone(), String::new(), Vec::new()));
                self.former.insert(
                    member_id.clone(),
                    FormerMember {
                        member_id: member_id.clone(),
                        display_name: name,
                        reason: *reason,
                        at: now_ms,
                        pubkey,
                        statements,
                    },
                );
                self.peers.retain(|_, p| &p.member_id != member_id);
            }
            _ => return Vec::new(),
        }
        if matches!(e, Event::MemberJoined(_) | Event::MemberUpdated(_) | Event::MemberRemoved { .. }) {
            self.reverify(now_ms)
        } else {
            Vec::new()
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

/// The short form of a member id that lists and errors show (`m_1cf452`).
pub use claudemesh_protocol::text::short_member_id as short_id;

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

/// Finds a joined mesh by slug or id; with `None`, the only mesh if there is exactly one.
/// Errors say what is joined and what to do.
pub fn resolve_mesh(meshes: &HashMap<String, MeshView>, slug_or_id: Option<&str>) -> Result<String, String> {
    match slug_or_id {
        Some(s) => meshes
            .values()
            .find(|m| m.config.slug == s || m.config.id == s)
            .map(|m| m.config.id.clone())
            .ok_or_else(|| format!("not a member of mesh {s}; joined: {}", slugs(meshes))),
        None if meshes.len() == 1 => Ok(meshes.keys().next().cloned().unwrap_or_default()),
        None if meshes.is_empty() => Err("no mesh joined yet: run `claudemesh join <invite>`".into()),
        None => Err(format!("you are in several meshes; say which with --mesh ({})", slugs(meshes))),
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
