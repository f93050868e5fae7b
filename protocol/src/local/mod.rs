//! Agent-socket frames (DESIGN §10): JSON lines between local clients (CLI, `claudemesh mcp`,
//! hooks, TUI) and the agent — hello, request/response envelope, subscriptions and events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::frames::{ErrorCode, Event, Priority, SessionPatch};

mod hooks;
mod line;
mod params;
mod replies;
mod services;
mod vault;
pub use hooks::{HookCall, HookEvent, WaitOutcome};
pub use line::{LineError, parse_client_line};
pub use params::*;
pub use replies::*;
pub use services::*;
pub use vault::*;

/// A line a local client writes to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientLine {
    /// First line: the client's protocol version and a name for logs.
    Hello {
        protocol: u32,
        client: String,
    },
    Request {
        id: u64,
        #[serde(flatten)]
        call: AgentCall,
    },
    /// Start a stream of events; they carry this `id` as `sub`.
    Subscribe {
        id: u64,
        topics: Vec<Topic>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
        /// With topic `services`: also follow this service's log (`mcp_log` events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    Unsubscribe {
        id: u64,
    },
}

/// What a request asks the agent to do: `{"method": "...", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum AgentCall {
    Status,
    Meshes,
    Peers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    Members {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    Send(SendParams),
    Inbox(InboxParams),
    /// The messages of a lease (from `inbox` with `take`, or `hook`) were shown: mark them seen
    /// and send the receipts. Reply: [`ConfirmReply`].
    Confirm {
        lease: u64,
        /// Only these messages of the lease were shown (a hook that had room for fewer): they
        /// become seen, the rest are unseen again at once. Absent: all of them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        msg_ids: Option<Vec<String>>,
    },
    MarkSeen {
        msg_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
    /// A person read these messages in the dashboard: set their `read` flag. Touches nothing a
    /// session or the broker sees (no seen mark, no lease, no receipt). `mesh` (a slug) narrows
    /// which mesh's messages the ids name. Reply: [`MarkReadReply`].
    MarkRead {
        msg_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    MessageStatus {
        msg_id: String,
    },
    /// This machine's sends with their bodies, oldest first: the newest `limit` (default
    /// [`crate::limits::SENT_DEFAULT_LIMIT`], at most [`crate::limits::SENT_MAX_LIMIT`]), of mesh
    /// `mesh` (a slug) or of all. Reply: [`SentReply`].
    Sent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    SessionRegister(SessionRegister),
    SessionUpdate {
        session_id: String,
        #[serde(flatten)]
        patch: SessionPatch,
    },
    SessionClose {
        session_id: String,
    },
    /// Sign an invite with this member's (admin) key and register it with the broker.
    InviteCreate(InviteCreate),
    InviteList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    InviteRevoke {
        invite_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Remove a member (admins): `member` is a display name, a member id or a unique prefix of
    /// one.
    MemberRemove {
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Change a member's role and/or granted groups (admins). `groups` replaces the whole list.
    MemberSet {
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<crate::frames::Role>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        groups: Option<Vec<crate::frames::GroupRole>>,
    },
    /// Forget the key pinned for a member (after comparing safety codes) and pin the one the
    /// broker lists now, if the chain verifies it. Reply: the member's [`MemberEntry`].
    MemberRepin {
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Leave a mesh: tell the broker (which removes the member), then drop the link and the key
    /// from `config.json`. With `local_only` the broker is not asked (it is gone for good).
    Leave {
        mesh: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local_only: bool,
    },
    /// A Claude Code hook fired: find its session, apply the status change, and take the
    /// messages the hook may show (marked seen).
    Hook(HookCall),
    /// Wait until `session_id` has a message a hook may show now (nothing is taken), or until
    /// the timeout, a newer waiter for the same session, or the session closes.
    HookWait {
        session_id: String,
        timeout_ms: u64,
    },
    /// Ask the agent to exit cleanly.
    Shutdown,

    // Shared MCP services (DESIGN §7); see [`services`] for the params and replies.
    /// Boxed: the largest call by far (keeps every other call small).
    ServiceDeploy(Box<DeployParams>),
    ServiceUndeploy {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    ServiceUpdate(UpdateParams),
    /// Every service the member may see in `mesh`, or in every joined mesh.
    ServiceCatalog {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    ServiceSchema {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// The newest `lines` of the log. To follow it, subscribe to `services` with `service`
    /// set: the subscription then carries the service's new lines as `mcp_log` events.
    ServiceLogs {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Read the scope (`scope` absent) or set it (the deployer or an admin).
    ServiceScope {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    ServiceCall(CallParams),
    ServiceHost(HostParams),
    /// Stop hosting a peer-hosted service: unregister it and stop its local server.
    ServiceUnhost {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },

    // Vault and skills (DESIGN §8, §9); see [`vault`] for the params and replies.
    VaultSet(VaultSetParams),
    /// This member's entries (metadata only). Reply: [`VaultListReply`].
    VaultList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Reply: [`VaultDeleteReply`]; `not_found` when there is no such entry.
    VaultDelete {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Boxed: a skill carries its files.
    SkillShare(Box<SkillShareParams>),
    /// Skills whose name, description or tags contain every word of `query`. Reply:
    /// [`SkillListReply`].
    SkillList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Reply: [`SkillItem`].
    SkillGet {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
    /// Its author or an admin. Reply: [`SkillRemoveReply`].
    SkillRemove {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mesh: Option<String>,
    },
}

/// Every `method` an [`AgentCall`] can carry (the protocol tests check this list is complete).
pub const AGENT_METHODS: &[&str] = &[
    "status",
    "meshes",
    "peers",
    "members",
    "send",
    "inbox",
    "confirm",
    "mark_seen",
    "mark_read",
    "message_status",
    "sent",
    "session_register",
    "session_update",
    "session_close",
    "invite_create",
    "invite_list",
    "invite_revoke",
    "member_remove",
    "member_set",
    "member_repin",
    "leave",
    "hook",
    "hook_wait",
    "shutdown",
    "service_deploy",
    "service_undeploy",
    "service_update",
    "service_catalog",
    "service_schema",
    "service_logs",
    "service_scope",
    "service_call",
    "service_host",
    "service_unhost",
    "vault_set",
    "vault_list",
    "vault_delete",
    "skill_share",
    "skill_list",
    "skill_get",
    "skill_remove",
];

/// Streams a client can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Messages,
    Presence,
    Links,
    /// This agent's local sessions opening, changing and closing.
    Sessions,
    /// Sends entering the outbox (pending, with the whole record) and leaving it for the broker
    /// (accepted or failed).
    Outbox,
    Services,
    /// This agent's own vault changes (`vault` events).
    Vault,
    /// Skills shared, replaced or removed in a mesh (`skills` events).
    Skills,
}

/// A line the agent writes to a local client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentLine {
    Hello {
        protocol: u32,
        agent_version: String,
    },
    Response {
        id: u64,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<LocalError>,
    },
    Event {
        sub: u64,
        /// The connection's event sequence: one more than the last event or `subscribe` reply
        /// it got (see [`SubscribeReply`]).
        #[serde(default)]
        seq: u64,
        #[serde(flatten)]
        event: Box<LocalEvent>,
    },
}

impl AgentLine {
    pub fn ok(id: u64, result: serde_json::Value) -> Self {
        AgentLine::Response { id, ok: true, result: Some(result), error: None }
    }

    pub fn err(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        AgentLine::Response {
            id,
            ok: false,
            result: None,
            error: Some(LocalError { code, message: message.into() }),
        }
    }
}

/// An error reply from the agent, with the same stable codes as the broker's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalError {
    pub code: ErrorCode,
    pub message: String,
}

/// State of one mesh's broker link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    #[default]
    Connecting,
    Connected,
    Disconnected,
    /// The broker refused this member for good (removed from the mesh): no retry until the
    /// config changes.
    Refused,
    /// Another agent uses this member's key (a copied config dir): this agent, the one that
    /// started later, stopped the link. No retry until the config changes or the agent restarts.
    KeyInUse,
}

impl LinkState {
    /// The state in words, for errors that tell a person why a mesh cannot be reached.
    pub fn describe(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
            LinkState::Refused => "refused by the broker",
            LinkState::KeyInUse => "stopped (another agent uses this member's key)",
        }
    }
}

/// An event on a subscription: `{"topic": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "topic", content = "data", rename_all = "snake_case")]
pub enum LocalEvent {
    Messages(InboxMessage),
    Presence {
        mesh: String,
        event: Event,
    },
    Links {
        mesh: String,
        state: LinkState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A local session opened or changed (`closed: false`), or closed.
    Sessions {
        session: LocalSessionStatus,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        closed: bool,
    },
    /// A send entered the outbox (`pending`, with `sent`), or left it: accepted by the broker,
    /// or refused for good.
    Outbox {
        mesh: String,
        client_msg_id: String,
        #[serde(flatten)]
        state: SendState,
        /// The whole record of a new send (its body, target and recipients): only on the
        /// `pending` event; `accepted` and `failed` carry none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent: Option<Box<SentRecord>>,
    },
    Services {
        mesh: String,
        event: Event,
    },
    /// A vault entry of this member was set or deleted through this agent.
    Vault {
        mesh: String,
        key: String,
        action: VaultAction,
    },
    Skills(SkillEvent),
}

/// A received message as the agent stores and serves it (decrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    pub msg_id: String,
    pub mesh: String,
    pub from_member: String,
    pub from_session: String,
    /// The sender member's name as this agent verified it (its signed directory name).
    pub from_name: String,
    /// The sending session's name from inside the box, when it differs from `from_name`: a
    /// claim by the sender, shown beside the verified name, never instead of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    pub target: String,
    pub priority: Priority,
    /// Empty when the message could not be decrypted; see `error`.
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    pub sent_at: u64,
    pub received_at: u64,
    #[serde(default)]
    pub seen: bool,
    /// A person marked it read in the dashboard (`mark_read`); independent of `seen`, which is
    /// about Claude sessions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
    /// Why the message could not be opened, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
