//! What the delivery core is fed: one enum for every source (socket calls, subscriptions,
//! connections closing, broker links, config changes, the clock). The core handles inputs one
//! at a time, in arrival order, so no two of them ever race.

use claudemesh_protocol::frames::{Event, FormerMember, MemberInfo, PeerSession, Push, Role};
use claudemesh_protocol::local::{AgentCall, LinkState, SendState, Topic, WaitOutcome};
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::mesh::{MeshView, Refusal};

/// The reply to a call: its JSON result, or an error code and message.
pub type Reply = oneshot::Sender<Result<serde_json::Value, ApiError>>;

/// One input of the core.
#[derive(Debug)]
pub enum Input {
    /// A socket call the core serves (send, inbox, confirm, mark_seen, session_*, hook). The
    /// reply is sent once what the call changed is committed to the store.
    Call {
        conn: u64,
        call: AgentCall,
        reply: Reply,
    },
    /// A connection opened: where its lines go.
    ConnOpened {
        conn: u64,
        tx: crate::socket_bounds::ClientTx,
    },
    /// `subscribe`: the core writes the reply (snapshot and sequence number) itself, before any
    /// event of the subscription.
    Subscribe {
        conn: u64,
        id: u64,
        topics: Vec<Topic>,
        session: Option<String>,
        mesh: Option<String>,
        /// With topic `services`: follow this service's log (`mcp_log` events).
        service: Option<String>,
    },
    Unsubscribe {
        conn: u64,
        id: u64,
    },
    /// The connection went away: its subscriptions end and the sessions it held close.
    ConnClosed {
        conn: u64,
    },
    /// `hook_wait` starts: the reply carries its generation and the receiver of its outcome.
    Wait {
        session: String,
        reply: oneshot::Sender<Result<(u64, oneshot::Receiver<WaitOutcome>), ApiError>>,
    },
    /// A `hook_wait` ended without an outcome from the core (timeout, client gone).
    WaitEnded {
        session: String,
        generation: u64,
    },
    /// Something a mesh's broker link saw.
    Uplink {
        mesh: String,
        event: UplinkEvent,
    },
    /// A mesh was joined (or its link restarted with a new key or URL).
    MeshAdded(Box<MeshView>),
    /// A mesh was left or dropped from the config.
    MeshRemoved {
        mesh: String,
    },
    /// Answered (`done`) once every input queued before it is handled and committed: a caller
    /// that queued writes waits on it before it answers.
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// Forget the pin of a member and verify again (`member_repin`); `done` once applied.
    Repin {
        mesh: String,
        member_id: String,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// An event for local subscribers of `topic` that no broker frame carries (this agent's
    /// own vault changes).
    Publish {
        topic: claudemesh_protocol::local::Topic,
        mesh_id: String,
        event: Box<claudemesh_protocol::local::LocalEvent>,
    },
    /// How long a message for a session that went away waits for it (config).
    SessionGrace {
        secs: u64,
    },
    /// How long seen messages are kept, and how often they are pruned (config).
    Retention {
        ttl_secs: u64,
        every_secs: u64,
    },
    /// Time passed: leases expire, waiting session messages move on, seen messages past their
    /// TTL are pruned when a prune is due.
    Tick,
    /// The agent stops: the core commits what it has and returns, releasing the store.
    Stop,
}

/// What a broker link reports. Links never write the core's state; they send these.
#[derive(Debug)]
pub enum UplinkEvent {
    Link {
        state: LinkState,
        detail: Option<String>,
        retry_in: Option<std::time::Duration>,
        refusal: Option<Refusal>,
    },
    /// `hello_ack`: this member's role and the broker's public address.
    Hello { role: Role, public_url: Option<String> },
    /// A `members` reply: the whole directory. `done` answers once it is applied.
    Directory { members: Vec<MemberInfo>, former: Vec<FormerMember>, done: Option<oneshot::Sender<()>> },
    /// Every page of a `peers` walk: every online session. `refresh` when it follows a
    /// `presence_reset` (sessions missing from it are announced gone); `stale` when another
    /// reset came during the walk (the view stays stale); `done` answers once it is applied.
    Peers { sessions: Vec<PeerSession>, refresh: bool, stale: bool, done: Option<oneshot::Sender<()>> },
    /// Presence, membership, receipts, expiries and service events.
    Events(Vec<Event>),
    /// A message from the broker: `stored` answers `true` once it is durably in the inbox (new
    /// or already there), so the link may acknowledge it.
    Push { push: Box<Push>, stored: oneshot::Sender<bool> },
    /// A send left the outbox.
    Outbox { client_msg_id: String, state: SendState },
}
