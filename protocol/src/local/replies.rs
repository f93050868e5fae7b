//! The typed result of every agent call (the `result` of a `response` line), shared by the
//! agent, the CLI, `claudemesh mcp`, the hooks and the dashboard, so that no client reads
//! replies field by field. Each struct names the call it answers; `--json` prints them as is.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{InboxMessage, LinkState, WaitOutcome};
use crate::frames::{
    ErrorCode, GroupRole, MemberInfo, PeerSession, Priority, RecipientStatus, Role, SessionStatus,
};

/// `status`: the agent, its meshes and its local sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatusReply {
    pub agent_version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub config_dir: PathBuf,
    /// How many local sessions are open.
    pub sessions: usize,
    pub local_sessions: Vec<LocalSessionStatus>,
    pub meshes: Vec<MeshStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_broker: Option<LocalBrokerStatus>,
}

/// One joined mesh in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MeshStatus {
    pub slug: String,
    pub id: String,
    pub broker_url: String,
    /// The address the broker announces for members (its `--public-url`), once it said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    pub member_id: String,
    pub role: Role,
    pub display_name: String,
    pub link: LinkState,
    /// Why the link is not connected, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether the link keeps trying on its own (every state but `refused` and `key_in_use`).
    pub retrying: bool,
    /// While disconnected: seconds until the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
    /// The broker's refusal of the last hello, while the link retries after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_secs: Option<u64>,
    /// Local sessions open on this mesh.
    pub sessions: usize,
    /// Sessions online in the mesh, as the broker reports them.
    pub peers: usize,
    /// Messages in the inbox, and how many of them no session has seen.
    pub inbox: usize,
    pub unread: usize,
    /// Sends waiting for the broker's acknowledgement.
    pub outbox: usize,
    /// Members whose keys this agent refuses because the broker lists a key that differs from
    /// the pinned one (or a removed one again), or that enrolled beyond an invite's uses: one
    /// sentence each, saying what to do. `status` shows them loudly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_warnings: Vec<String>,
}

/// Why the broker refused a hello that the link retries after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// One local session in `status` and on the `sessions` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LocalSessionStatus {
    pub session_id: String,
    pub display_name: String,
    pub status: SessionStatus,
    /// Mesh slugs it is open on.
    #[serde(default)]
    pub meshes: Vec<String>,
    /// Groups it is in now: those it declared, and those granted to the member that it did not
    /// leave.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_session: Option<String>,
    pub stop_hook_waiting: bool,
    pub idle_secs: u64,
    /// Messages routed to it that it has not seen.
    #[serde(default)]
    pub unseen: usize,
}

/// The local broker `claudemesh up` runs under the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalBrokerStatus {
    /// `starting` (started, not accepting connections yet), `running`, `restarting` (waiting to
    /// start again after an exit) or `stopped`.
    pub state: String,
    pub listen: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Restarts after an unexpected exit since the agent started.
    pub restarts: u32,
    /// How the last run ended, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// Where its output goes.
    pub log: PathBuf,
}

/// One entry of `meshes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshEntry {
    pub slug: String,
    pub id: String,
    pub broker_url: String,
    pub member_id: String,
    pub role: Role,
    pub display_name: String,
    pub link: LinkState,
}

/// One online session in `peers` (this agent's own sessions included at once, before the
/// broker echoes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    #[serde(flatten)]
    pub peer: PeerSession,
    /// Mesh slug.
    pub mesh: String,
    /// The display name of the member the session belongs to, when the directory knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_name: Option<String>,
    /// One of this member's own sessions.
    pub me: bool,
}

/// One current member in `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    #[serde(flatten)]
    pub member: MemberInfo,
    pub mesh: String,
    pub me: bool,
    /// The short member id lists and errors show (`m_1cf452`).
    pub short_id: String,
    /// The names of its open sessions.
    #[serde(default)]
    pub sessions: Vec<String>,
    /// What this agent believes of its key (protocol 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<MemberTrust>,
}

/// Whether a member's key is one this agent encrypts to and accepts messages from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustState {
    /// Chained by signed statements to the admin key pinned at join, and equal to its pin.
    Verified,
    /// Nothing chains it to the root (trusted on first use only for a mesh joined before
    /// protocol 2).
    Unverified,
    /// Differs from the key pinned on first sight: refused until repinned.
    KeyChanged,
    /// Verifiably removed or left, yet listed again: refused for good.
    Removed,
}

/// This agent's verdict on one member's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTrust {
    pub state: TrustState,
    /// Why it is not verified, and what to do, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// 15 digits in groups of five; equal on both ends means equal keys
    /// ([`crate::trust::safety_code`]).
    pub safety_code: String,
    /// More verified members enrolled under its invite than the invite allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overused_invite: bool,
}

/// `send`: where the message went. `id` is the client message id (`message_status` takes it),
/// `None` when only this agent's own sessions got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReply {
    pub id: Option<String>,
    pub mesh: String,
    /// The wire target it resolved to (`member:…`, `session:…`, `@g`, `*`).
    pub target: String,
    /// Recipient members the broker will get an envelope for.
    pub recipients: usize,
    /// This agent's other sessions that got it directly.
    pub local: usize,
    /// The idempotency key was seen before: this is the first send's reply, nothing was sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Members a `@group` or `*` send left out because this agent does not trust their keys,
    /// as `name (short id)`; `claudemesh members` says why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrusted: Vec<String>,
}

/// `inbox`: a page of messages. With `take`, the unseen ones among them are held under
/// `lease` for [`crate::limits::LEASE_MILLIS`]: `confirm {lease}` once they were shown marks
/// them seen; otherwise they become unseen again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InboxReply {
    pub messages: Vec<InboxMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// How many more matching messages wait beyond this page.
    #[serde(default)]
    pub more: usize,
    /// Paging forward (`after`): the cursor of the next page, absent after the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `confirm`: how many messages became seen. `expired` when the lease is not held any more (it
/// ran out, was confirmed already, or never existed): whatever it held is unseen again and will
/// be offered once more, unless a confirm already marked it seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfirmReply {
    pub confirmed: usize,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// `mark_seen`: how many messages were marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MarkSeenReply {
    pub marked: usize,
}

/// `mark_read`: how many messages became read (those already read, or not found, are not
/// counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MarkReadReply {
    pub marked: usize,
}

/// Where a send stands, as `message_status` and the `outbox` topic report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SendState {
    /// Stored locally, waiting for the broker.
    Pending,
    /// The broker acknowledged it durably.
    Accepted { msg_id: String, recipients: u32 },
    /// The broker refused it; it will not be retried.
    Failed { error: String },
}

/// A send as this machine recorded it: kept by the agent for `message_status` and `sent`, and
/// carried whole by the `outbox` event of a new send. Records made before a field existed read
/// it as its default (an empty body, `next`, no target, no recipients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub client_msg_id: String,
    pub mesh_id: String,
    /// What the sender typed as the recipient.
    pub to: String,
    /// Unix ms.
    pub created_at: u64,
    /// The message as sent (plaintext: this machine wrote it).
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub priority: Priority,
    /// The wire target it resolved to (`member:…`, `session:…`, `@g`, `*`).
    #[serde(default)]
    pub target: String,
    /// The sending session; absent when sent as the member itself (the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_session: Option<String>,
    /// Member ids of the recipients it was sealed for (one envelope each; sealed again, and
    /// this list with it, when the directory was stale). Named apart from the `recipients`
    /// count an accepted `state` carries beside it.
    #[serde(default)]
    pub recipient_ids: Vec<String>,
    #[serde(flatten)]
    pub state: SendState,
}

/// `sent`: this machine's sends, oldest first: the newest `limit` of those asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SentReply {
    pub sent: Vec<SentRecord>,
    /// How many older sends matched but did not fit `limit`.
    #[serde(default)]
    pub more: usize,
}

/// `message_status`: the local record of a send, and the broker's per-recipient states once
/// it accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatusReply {
    #[serde(flatten)]
    pub sent: SentRecord,
    /// Each recipient member's state (queued, delivered to its agent, seen), once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_states: Option<Vec<RecipientStatus>>,
    /// Why the broker could not be asked, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_error: Option<String>,
}

/// `session_register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub session_id: String,
    /// The name it got (a default one made distinct: `repo`, `repo-2`).
    pub display_name: String,
    /// Mesh slugs it is open on.
    pub meshes: Vec<String>,
    /// Messages that were waiting for it.
    pub waiting: usize,
    /// The groups it is in: those it declared, and those granted to the member. A later
    /// `session_update` with `groups` gives the whole set; a granted group missing from it is
    /// left.
    #[serde(default)]
    pub groups: Vec<GroupRole>,
}

/// `session_update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateReply {
    pub session_id: String,
    /// Messages pushed because of the change (a session turning idle takes `next` ones).
    pub pushed: usize,
    /// Waiting messages newly routed to it (a `join_group`).
    #[serde(default)]
    pub rerouted: usize,
    /// The groups it is in now (see [`RegisterReply::groups`]).
    #[serde(default)]
    pub groups: Vec<GroupRole>,
}

/// `session_close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseReply {
    pub closed: String,
}

/// `hook`: the session the hook belongs to, its status after the hook, and what the hook shows
/// (under `lease`, like `inbox` with `take`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookReply {
    pub session_id: String,
    pub status: SessionStatus,
    pub messages: Vec<InboxMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// Due messages left for a later hook or `check_messages`.
    #[serde(default)]
    pub more: usize,
}

/// `hook_wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitReply {
    pub session_id: String,
    pub outcome: WaitOutcome,
}

/// `invite_create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteReply {
    pub invite_id: String,
    /// `claudemesh://…` link.
    pub url: String,
    pub token: String,
    pub mesh: String,
    pub broker_url: String,
    /// Why teammates on other machines may not reach `broker_url`, when that looks likely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    pub role: Role,
    #[serde(default)]
    pub groups: Vec<GroupRole>,
    pub max_uses: u32,
    /// Unix seconds.
    pub expires_at: u64,
}

/// `invite_revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeReply {
    pub revoked: String,
}

/// `member_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveReply {
    pub removed: String,
    pub display_name: String,
}

/// `member_set`: the member's role and granted groups after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSetReply {
    pub member_id: String,
    pub display_name: String,
    pub role: Role,
    pub groups: Vec<GroupRole>,
}

/// `leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveReply {
    /// The mesh slug left.
    pub left: String,
    pub mesh_id: String,
    /// Whether the broker was told (not with `local_only`, or when it had removed us already).
    pub broker_told: bool,
}

/// `shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownReply {
    pub stopping: bool,
}

/// `subscribe`: what is true now, and the sequence number it is true at. Every later event on
/// this connection carries the next numbers, so a client applying them to the snapshot misses
/// nothing that happened in between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeReply {
    pub subscribed: u64,
    pub seq: u64,
    pub snapshot: Snapshot,
}

/// The agent's state as a dashboard starts from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub status: StatusReply,
    pub peers: Vec<PeerEntry>,
}

/// `unsubscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribeReply {
    pub unsubscribed: u64,
}
