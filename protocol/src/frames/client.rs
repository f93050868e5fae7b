//! Frames an agent (or admin tool) sends to a broker. One enum, tagged by `type`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::services::{SealedSecret, ServiceSource, Skill, ToolInfo, VaultKind};
use super::types::{
    Envelope, GroupRole, Priority, ReceiptState, Role, Secret, SessionInfo, SessionPatch, Target,
};
use crate::scope::Scope;
use crate::trust::SignedStatement;

/// The protocol a `hello` or `enroll` without a `protocol` field speaks: 1, which a broker of
/// protocol 2 refuses with advice to upgrade.
fn protocol_v1() -> u32 {
    1
}

/// `hello`: authenticate an enrolled member by signing the broker's challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub mesh_id: String,
    pub member_id: String,
    /// ed25519 public key, hex.
    pub pubkey: String,
    /// Signature over [`crate::crypto::hello_transcript`], hex.
    pub signature: String,
    /// Which agent process is connecting. The broker uses it to tell a reconnect of the same
    /// agent from a second agent holding the same key (a copied config dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<AgentInstance>,
    /// The protocol version the client speaks ([`crate::limits::PROTOCOL_VERSION`]); absent
    /// means 1.
    #[serde(default = "protocol_v1")]
    pub protocol: u32,
}

/// An agent process: a random id drawn at start, and when it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInstance {
    /// Random, 16 bytes hex; new for every agent process.
    pub id: String,
    /// Unix milliseconds when the agent process started.
    pub started_at: u64,
}

/// `enroll`: join a mesh with a signed invite and a fresh key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enroll {
    /// The invite token (or URL).
    pub invite: String,
    pub pubkey: String,
    pub display_name: String,
    /// Signature over [`crate::crypto::enroll_transcript`] by the new key, hex.
    pub signature: String,
    /// As in [`Hello::protocol`].
    #[serde(default = "protocol_v1")]
    pub protocol: u32,
    /// The new member's `member` statement (protocol 2), naming the member id derived from its
    /// key ([`crate::trust::member_id_for`]), so the mesh can verify it from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<SignedStatement>,
}

/// `send`: one message, boxed once per recipient member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    pub req: u64,
    /// Idempotency key chosen by the sending agent (a uuid).
    pub client_msg_id: String,
    pub from_session: String,
    pub target: Target,
    #[serde(default)]
    pub priority: Priority,
    pub envelopes: Vec<Envelope>,
}

/// `mcp_deploy`: start a shared MCP server on the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpDeploy {
    pub req: u64,
    pub name: String,
    pub source: ServiceSource,
    #[serde(default)]
    pub description: String,
    /// Extra arguments passed to the server's command.
    #[serde(default)]
    pub args: Vec<String>,
    /// Explicit entry command for git/bundle sources, overriding runtime detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Vec<String>>,
    /// Environment; values may reference `$vault:<key>` or `$vault:<key>:file:<path>`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Referenced vault values, sealed to the runner key.
    #[serde(default)]
    pub secrets: Vec<SealedSecret>,
    #[serde(default)]
    pub scope: Scope,
    /// The broker's admin token: required for a `command` source (an executable on the broker
    /// host), which only the broker's operator may deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
}

/// `mcp_update`: change a deployed service; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpUpdate {
    pub req: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ServiceSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SealedSecret>>,
}

/// Everything a client may send to a broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    // Connection
    Hello(Hello),
    Enroll(Enroll),

    // Sessions
    SessionOpen {
        req: u64,
        #[serde(flatten)]
        session: SessionInfo,
    },
    SessionUpdate {
        req: u64,
        session_id: String,
        #[serde(flatten)]
        patch: SessionPatch,
    },
    SessionClose {
        req: u64,
        session_id: String,
    },

    // Messaging
    Send(Send),
    ClientAck {
        msg_ids: Vec<String>,
    },
    Receipt {
        msg_ids: Vec<String>,
        state: ReceiptState,
    },
    MessageStatus {
        req: u64,
        msg_id: String,
    },
    /// One page of presence, sessions in `session_id` order. Without `cursor` the first
    /// page; `limit` (default and maximum [`crate::limits::MAX_PEERS_PAGE`]) caps its size.
    ListPeers {
        req: u64,
        /// The `next` of the previous page: sessions after this id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// The member directory. With `limit` (at most [`crate::limits::MAX_MEMBERS_PAGE`]) one
    /// page of it in `member_id` order, after `cursor`; without, the whole directory in one
    /// frame, as brokers before paging answered and as older agents ask.
    ListMembers {
        req: u64,
        /// The `next` of the previous page: members after this id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },

    // Admin
    MeshCreate {
        req: u64,
        slug: String,
        admin_token: Secret,
        pubkey: String,
        display_name: String,
    },
    InviteRegister {
        req: u64,
        invite: String,
    },
    InviteRevoke {
        req: u64,
        invite_id: String,
    },
    InviteList {
        req: u64,
    },
    /// `statement`: a `removal` statement (reason `removed`) signed by the calling admin.
    MemberRemove {
        req: u64,
        member_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        statement: Option<SignedStatement>,
    },
    /// `statement`: a `role` statement signed by the calling admin giving the member's role
    /// and groups as they are after the change.
    MemberSet {
        req: u64,
        member_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        groups: Option<Vec<GroupRole>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        statement: Option<SignedStatement>,
    },
    /// Publishes the caller's own `member` statement (its enrollment proof), which the broker
    /// verifies and then relays with its directory entry. Sent after every `hello_ack`.
    Statement {
        req: u64,
        statement: SignedStatement,
    },
    MeshInfo {
        req: u64,
    },
    /// The caller leaves its mesh: the broker marks the member as left (as `member_remove`
    /// does, with reason `left`), drops its queue and closes its connection after `ok`. The
    /// last admin cannot leave while other members remain.
    /// `statement`: a `removal` statement (reason `left`) signed by the member itself.
    Leave {
        req: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        statement: Option<SignedStatement>,
    },

    // Services
    McpDeploy(McpDeploy),
    McpUndeploy {
        req: u64,
        name: String,
    },
    McpUpdate(McpUpdate),
    /// The newest `lines` (default 100, at most 1,000) of a service's log. With `follow`, this
    /// connection then gets `mcp_log` events for the service until `mcp_logs_unfollow`, the
    /// loss of access, or the connection closing.
    McpLogs {
        req: u64,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        follow: bool,
    },
    /// Stop the `mcp_log` events of an earlier `mcp_logs{follow}`. Reply `ok`.
    McpLogsUnfollow {
        req: u64,
        name: String,
    },
    McpScope {
        req: u64,
        name: String,
        scope: Scope,
    },
    McpSchema {
        req: u64,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
    },
    McpCatalog {
        req: u64,
    },
    McpCall {
        req: u64,
        service: String,
        tool: String,
        #[serde(default)]
        arguments: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Expose one of this agent's local MCP servers to the mesh (peer-hosted).
    McpRegister {
        req: u64,
        name: String,
        #[serde(default)]
        description: String,
        tools: Vec<ToolInfo>,
        #[serde(default)]
        scope: Scope,
    },
    McpUnregister {
        req: u64,
        name: String,
    },
    /// The host agent's answer to an `mcp_call_forward`.
    McpCallResponse {
        call_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Start a bundle upload; binary WebSocket frames carry the bytes, then `upload_end`.
    UploadBegin {
        req: u64,
        name: String,
        size: u64,
        sha256: String,
    },
    /// Bytes `offset..offset+len` of an upload, base64 (at most `chunk_size` bytes decoded).
    /// No reply; a bad chunk fails the upload, reported at `upload_end`.
    UploadChunk {
        upload_id: String,
        offset: u64,
        data: String,
    },
    UploadEnd {
        req: u64,
        upload_id: String,
    },

    /// The public key of this mesh's service runner (starting the runner if none runs), to
    /// seal vault secrets to at deploy. Answered by `runner_key`.
    McpRunnerKey {
        req: u64,
    },

    // Vault
    VaultSet {
        req: u64,
        key: String,
        ciphertext: String,
        nonce: String,
        sealed_key: String,
        #[serde(default)]
        kind: VaultKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mount_path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    VaultGet {
        req: u64,
        key: String,
    },
    VaultList {
        req: u64,
    },
    VaultDelete {
        req: u64,
        key: String,
    },

    // Skills
    SkillShare {
        req: u64,
        #[serde(flatten)]
        skill: Skill,
    },
    SkillGet {
        req: u64,
        name: String,
    },
    SkillList {
        req: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
    },
    SkillRemove {
        req: u64,
        name: String,
    },
}

impl ClientFrame {
    /// The wire `type` of this frame, for metrics and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Hello(_) => "hello",
            ClientFrame::Enroll(_) => "enroll",
            ClientFrame::SessionOpen { .. } => "session_open",
            ClientFrame::SessionUpdate { .. } => "session_update",
            ClientFrame::SessionClose { .. } => "session_close",
            ClientFrame::Send(_) => "send",
            ClientFrame::ClientAck { .. } => "client_ack",
            ClientFrame::Receipt { .. } => "receipt",
            ClientFrame::MessageStatus { .. } => "message_status",
            ClientFrame::ListPeers { .. } => "list_peers",
            ClientFrame::ListMembers { .. } => "list_members",
            ClientFrame::MeshCreate { .. } => "mesh_create",
            ClientFrame::InviteRegister { .. } => "invite_register",
            ClientFrame::InviteRevoke { .. } => "invite_revoke",
            ClientFrame::InviteList { .. } => "invite_list",
            ClientFrame::MemberRemove { .. } => "member_remove",
            ClientFrame::MemberSet { .. } => "member_set",
            ClientFrame::MeshInfo { .. } => "mesh_info",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Statement { .. } => "statement",
            ClientFrame::McpDeploy(_) => "mcp_deploy",
            ClientFrame::McpUndeploy { .. } => "mcp_undeploy",
            ClientFrame::McpUpdate(_) => "mcp_update",
            ClientFrame::McpLogs { .. } => "mcp_logs",
            ClientFrame::McpLogsUnfollow { .. } => "mcp_logs_unfollow",
            ClientFrame::McpScope { .. } => "mcp_scope",
            ClientFrame::McpSchema { .. } => "mcp_schema",
            ClientFrame::McpCatalog { .. } => "mcp_catalog",
            ClientFrame::McpCall { .. } => "mcp_call",
            ClientFrame::McpRegister { .. } => "mcp_register",
            ClientFrame::McpUnregister { .. } => "mcp_unregister",
            ClientFrame::McpCallResponse { .. } => "mcp_call_response",
            ClientFrame::UploadBegin { .. } => "upload_begin",
            ClientFrame::UploadChunk { .. } => "upload_chunk",
            ClientFrame::UploadEnd { .. } => "upload_end",
            ClientFrame::McpRunnerKey { .. } => "mcp_runner_key",
            ClientFrame::VaultSet { .. } => "vault_set",
            ClientFrame::VaultGet { .. } => "vault_get",
            ClientFrame::VaultList { .. } => "vault_list",
            ClientFrame::VaultDelete { .. } => "vault_delete",
            ClientFrame::SkillShare { .. } => "skill_share",
            ClientFrame::SkillGet { .. } => "skill_get",
            ClientFrame::SkillList { .. } => "skill_list",
            ClientFrame::SkillRemove { .. } => "skill_remove",
        }
    }

    /// The request id, for frames that carry one (every request; not `hello`, `enroll`,
    /// `client_ack`, `receipt` or `mcp_call_response`).
    pub fn req(&self) -> Option<u64> {
        match self {
            ClientFrame::SessionOpen { req, .. } => Some(*req),
            ClientFrame::SessionUpdate { req, .. } => Some(*req),
            ClientFrame::SessionClose { req, .. } => Some(*req),
            ClientFrame::Send(f) => Some(f.req),
            ClientFrame::MessageStatus { req, .. } => Some(*req),
            ClientFrame::ListPeers { req, .. } => Some(*req),
            ClientFrame::ListMembers { req, .. } => Some(*req),
            ClientFrame::MeshCreate { req, .. } => Some(*req),
            ClientFrame::InviteRegister { req, .. } => Some(*req),
            ClientFrame::InviteRevoke { req, .. } => Some(*req),
            ClientFrame::InviteList { req, .. } => Some(*req),
            ClientFrame::MemberRemove { req, .. } => Some(*req),
            ClientFrame::MemberSet { req, .. } => Some(*req),
            ClientFrame::MeshInfo { req, .. } => Some(*req),
            ClientFrame::Leave { req, .. } => Some(*req),
            ClientFrame::Statement { req, .. } => Some(*req),
            ClientFrame::McpDeploy(f) => Some(f.req),
            ClientFrame::McpUndeploy { req, .. } => Some(*req),
            ClientFrame::McpUpdate(f) => Some(f.req),
            ClientFrame::McpLogs { req, .. } => Some(*req),
            ClientFrame::McpLogsUnfollow { req, .. } => Some(*req),
            ClientFrame::McpScope { req, .. } => Some(*req),
            ClientFrame::McpSchema { req, .. } => Some(*req),
            ClientFrame::McpCatalog { req, .. } => Some(*req),
            ClientFrame::McpCall { req, .. } => Some(*req),
            ClientFrame::McpRegister { req, .. } => Some(*req),
            ClientFrame::McpUnregister { req, .. } => Some(*req),
            ClientFrame::UploadBegin { req, .. } => Some(*req),
            ClientFrame::UploadEnd { req, .. } => Some(*req),
            ClientFrame::McpRunnerKey { req } => Some(*req),
            ClientFrame::VaultSet { req, .. } => Some(*req),
            ClientFrame::VaultGet { req, .. } => Some(*req),
            ClientFrame::VaultList { req, .. } => Some(*req),
            ClientFrame::VaultDelete { req, .. } => Some(*req),
            ClientFrame::SkillShare { req, .. } => Some(*req),
            ClientFrame::SkillGet { req, .. } => Some(*req),
            ClientFrame::SkillList { req, .. } => Some(*req),
            ClientFrame::SkillRemove { req, .. } => Some(*req),
            ClientFrame::ClientAck { .. }
            | ClientFrame::Enroll(_)
            | ClientFrame::Hello(_)
            | ClientFrame::McpCallResponse { .. }
            | ClientFrame::UploadChunk { .. }
            | ClientFrame::Receipt { .. } => None,
        }
    }
}
