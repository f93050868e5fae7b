//! The dashboard's messages: what arrived (`inbox`, `messages` events) and what this machine
//! sent (`sent`, `outbox` events), grouped into conversations by peer member, by group and the
//! broadcast, with per-recipient delivery states kept live from receipts. Peer text is cleaned
//! here, once, on the way in ([`claudemesh_protocol::text`]); everything rendered after is safe.

use std::collections::{BTreeMap, HashMap};

use claudemesh_protocol::frames::{DeliveryState, Priority};
use claudemesh_protocol::local::{InboxMessage, SendState, SentRecord};
use claudemesh_protocol::text;

/// What a conversation is with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConvKind {
    /// Direct messages with one member (its id), both ways.
    Direct(String),
    /// A group (`@name`).
    Group(String),
    /// Broadcasts (`*`).
    All,
}

/// A conversation: a mesh (slug) and who it is with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConvKey {
    pub mesh: String,
    pub kind: ConvKind,
}

impl ConvKey {
    /// The `to` a send into this conversation uses: a member id, `@group` or `*`.
    pub fn send_to(&self) -> String {
        match &self.kind {
            ConvKind::Direct(m) => m.clone(),
            ConvKind::Group(g) => format!("@{g}"),
            ConvKind::All => "*".into(),
        }
    }
}

/// Where a message this machine sent stands, with each recipient's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub client_msg_id: String,
    /// What was typed as the recipient.
    pub to: String,
    pub state: SendState,
    /// Recipient member id → its state (queued, delivered, seen, expired), from
    /// `message_status` and then receipts.
    pub recipients: BTreeMap<String, DeliveryState>,
}

/// A message that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub msg_id: String,
    pub from_member: String,
    /// `alice (m_1cf452)`, with a differing session name as a quoted claim ([`text::sender`]).
    pub from: String,
    /// A Claude session of this member saw it.
    pub seen: bool,
    /// The person marked it read here.
    pub read: bool,
}

/// Which way a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    In(Incoming),
    Out(Outgoing),
}

/// One message, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub mesh: String,
    pub conv: ConvKey,
    /// Unix ms: received (in) or created (out).
    pub at: u64,
    pub priority: Priority,
    /// Cleaned for a terminal; newlines kept.
    pub body: String,
    /// Why it could not be opened (in), cleaned.
    pub error: Option<String>,
    pub dir: Direction,
}

impl Msg {
    /// Not yet marked read by the person (only incoming messages can be unread).
    pub fn unread(&self) -> bool {
        matches!(&self.dir, Direction::In(i) if !i.read)
    }
}

/// A conversation's summary, kept as messages come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conv {
    pub key: ConvKey,
    /// Who it is with, as shown (`alice (m_1cf452)`, `@dev`, `* everyone`).
    pub title: String,
    /// Indices into [`Messages::all`], oldest first.
    pub msgs: Vec<usize>,
    pub unread: usize,
    /// Unix ms of its newest message.
    pub last_at: u64,
}

/// Every message the dashboard holds, and the indexes over them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Messages {
    pub all: Vec<Msg>,
    pub convs: BTreeMap<ConvKey, Conv>,
    /// `mesh \u{1f} msg_id` (incoming, or the broker's id of an outgoing one) and
    /// `out \u{1f} client_msg_id` → index.
    by_id: HashMap<String, usize>,
}

fn id_key(mesh: &str, id: &str) -> String {
    format!("{mesh}\u{1f}{id}")
}

fn out_key(id: &str) -> String {
    format!("out\u{1f}{id}")
}

/// The conversation an arrival belongs to, from its wire target.
fn conv_of_target(mesh: &str, target: &str, direct_with: &str) -> ConvKey {
    let kind = if target == "*" {
        ConvKind::All
    } else if let Some(g) = target.strip_prefix('@') {
        ConvKind::Group(g.to_string())
    } else {
        ConvKind::Direct(direct_with.to_string())
    };
    ConvKey { mesh: mesh.to_string(), kind }
}

impl Messages {
    /// Adds an arrival (nothing when it is already here). Returns its index when it is new.
    pub fn add_incoming(&mut self, m: InboxMessage) -> Option<usize> {
        let k = id_key(&m.mesh, &m.msg_id);
        if self.by_id.contains_key(&k) {
            return None;
        }
        let conv = conv_of_target(&m.mesh, &m.target, &m.from_member);
        let from = text::sender(&m.from_name, &m.from_member, m.session_name.as_deref());
        let title = match &conv.kind {
            ConvKind::Direct(_) => text::sender(&m.from_name, &m.from_member, None),
            _ => String::new(),
        };
        let msg = Msg {
            mesh: m.mesh.clone(),
            conv,
            at: m.received_at,
            priority: m.priority,
            body: text::terminal(&m.body),
            error: m.error.as_deref().map(text::one_line),
            dir: Direction::In(Incoming {
                msg_id: m.msg_id,
                from_member: m.from_member,
                from,
                seen: m.seen,
                read: m.read,
            }),
        };
        let i = self.push(msg, &title);
        self.by_id.insert(k, i);
        Some(i)
    }

    /// Adds a send this machine made, or updates the one already here. `mesh` is the slug of
    /// its `mesh_id`; `title` names a direct recipient when it is known.
    pub fn add_outgoing(&mut self, mesh: &str, r: SentRecord, title: &str) -> usize {
        if let Some(&i) = self.by_id.get(&out_key(&r.client_msg_id)) {
            self.set_send_state(&r.client_msg_id, r.state);
            return i;
        }
        let direct = r.recipient_ids.first().cloned().unwrap_or_else(|| r.to.clone());
        let target = if r.target.is_empty() { r.to.clone() } else { r.target.clone() };
        let conv = conv_of_target(mesh, &target, &direct);
        let msg = Msg {
            mesh: mesh.to_string(),
            conv,
            at: r.created_at,
            priority: r.priority,
            body: text::terminal(&r.body),
            error: None,
            dir: Direction::Out(Outgoing {
                client_msg_id: r.client_msg_id.clone(),
                to: text::one_line(&r.to),
                state: r.state.clone(),
                recipients: r.recipient_ids.iter().map(|m| (m.clone(), DeliveryState::Queued)).collect(),
            }),
        };
        // A recipient's name only titles a direct conversation, never a group's.
        let title = if matches!(msg.conv.kind, ConvKind::Direct(_)) { title } else { "" };
        let i = self.push(msg, title);
        self.by_id.insert(out_key(&r.client_msg_id), i);
        if let SendState::Accepted { msg_id, .. } = &r.state {
            self.by_id.insert(id_key(mesh, msg_id), i);
        }
        i
    }

    fn push(&mut self, msg: Msg, title: &str) -> usize {
        let i = self.all.len();
        let key = msg.conv.clone();
        let unread = msg.unread();
        let at = msg.at;
        // Keep the list sorted by time: loads arrive in order, live messages are the newest.
        self.all.push(msg);
        let conv = self.convs.entry(key.clone()).or_insert_with(|| Conv {
            title: default_title(&key),
            key,
            msgs: Vec::new(),
            unread: 0,
            last_at: 0,
        });
        if !title.is_empty() {
            conv.title = title.to_string();
        }
        let pos = conv.msgs.partition_point(|&j| self.all[j].at <= at);
        conv.msgs.insert(pos, i);
        conv.unread += usize::from(unread);
        conv.last_at = conv.last_at.max(at);
        i
    }

    /// A send's new state (accepted, failed). Returns whether it was known.
    pub fn set_send_state(&mut self, client_msg_id: &str, state: SendState) -> bool {
        let Some(&i) = self.by_id.get(&out_key(client_msg_id)) else { return false };
        let mesh = self.all[i].mesh.clone();
        if let SendState::Accepted { msg_id, .. } = &state {
            self.by_id.insert(id_key(&mesh, msg_id), i);
        }
        if let Direction::Out(o) = &mut self.all[i].dir {
            o.state = state;
        }
        true
    }

    /// A recipient's state for a message this machine sent (by the broker's id), from a
    /// receipt or `message_status`. A state never goes back (seen stays seen).
    pub fn set_recipient(&mut self, mesh: &str, msg_id: &str, member: &str, state: DeliveryState) -> bool {
        let Some(&i) = self.by_id.get(&id_key(mesh, msg_id)) else { return false };
        let Direction::Out(o) = &mut self.all[i].dir else { return false };
        let e = o.recipients.entry(member.to_string()).or_insert(DeliveryState::Queued);
        if rank(state) >= rank(*e) {
            *e = state;
        }
        true
    }

    /// Marks incoming messages read; returns the broker ids that changed, per mesh.
    pub fn mark_read(&mut self, idx: &[usize]) -> Vec<(String, String)> {
        let mut changed = Vec::new();
        for &i in idx {
            let Some(m) = self.all.get_mut(i) else { continue };
            if let Direction::In(inc) = &mut m.dir
                && !inc.read
            {
                inc.read = true;
                changed.push((m.mesh.clone(), inc.msg_id.clone()));
                if let Some(c) = self.convs.get_mut(&m.conv) {
                    c.unread = c.unread.saturating_sub(1);
                }
            }
        }
        changed
    }

    /// Names direct conversations from the directory: `name(mesh, member_id)` is the member's
    /// directory name when known.
    pub fn retitle(&mut self, name: impl Fn(&str, &str) -> Option<String>) {
        for c in self.convs.values_mut() {
            if let ConvKind::Direct(id) = &c.key.kind
                && let Some(n) = name(&c.key.mesh, id)
            {
                c.title = text::sender(&n, id, None);
            }
        }
    }

    /// Messages of `mesh` this dashboard holds that arrived, and sends of it still waiting for
    /// the broker.
    pub fn counts(&self, mesh: &str) -> (usize, usize) {
        let mut n = (0, 0);
        for m in self.all.iter().filter(|m| m.mesh == mesh) {
            match &m.dir {
                Direction::In(_) => n.0 += 1,
                Direction::Out(o) if o.state == SendState::Pending => n.1 += 1,
                Direction::Out(_) => {}
            }
        }
        n
    }

    /// A send this machine made, by its client message id.
    pub fn outgoing(&self, client_msg_id: &str) -> Option<&Outgoing> {
        match &self.all[*self.by_id.get(&out_key(client_msg_id))?].dir {
            Direction::Out(o) => Some(o),
            Direction::In(_) => None,
        }
    }

    /// Index of a message by mesh and broker id.
    pub fn find(&self, mesh: &str, msg_id: &str) -> Option<usize> {
        self.by_id.get(&id_key(mesh, msg_id)).copied()
    }

    /// Unread messages of one mesh (all meshes when `None`).
    pub fn unread(&self, mesh: Option<&str>) -> usize {
        self.convs.values().filter(|c| mesh.is_none_or(|m| m == c.key.mesh)).map(|c| c.unread).sum()
    }

    /// Conversations of one mesh (all when `None`), newest first.
    pub fn conv_list(&self, mesh: Option<&str>) -> Vec<&Conv> {
        let mut v: Vec<&Conv> =
            self.convs.values().filter(|c| mesh.is_none_or(|m| m == c.key.mesh)).collect();
        v.sort_by(|a, b| b.last_at.cmp(&a.last_at).then_with(|| a.key.cmp(&b.key)));
        v
    }
}

/// How far a delivery state has come: queued < delivered < seen; expired is final too.
fn rank(s: DeliveryState) -> u8 {
    match s {
        DeliveryState::Queued => 0,
        DeliveryState::Delivered => 1,
        DeliveryState::Seen | DeliveryState::Expired => 2,
    }
}

fn default_title(k: &ConvKey) -> String {
    match &k.kind {
        ConvKind::Direct(m) => text::name(text::short_member_id(m)),
        ConvKind::Group(g) => format!("@{}", text::name(g)),
        ConvKind::All => "* everyone".into(),
    }
}
