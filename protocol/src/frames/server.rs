//! Frames a broker sends to a client. One enum, tagged by `type`.

use serde::{Deserialize, Serialize};

use super::events::Event;
use super::services::{
    CatalogEntry, ServiceStatus, SkillRecord, SkillSummary, ToolInfo, VaultEntry, VaultEntryMeta,
};
use super::types::{
    DeliveryState, FormerMember, GroupRole, MemberInfo, MeshRef, PeerSession, Priority, Role, Target,
};

/// Stable error codes (DESIGN §5). Clients branch on these, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadSignature,
    Unauthorized,
    Forbidden,
    NotFound,
    Invalid,
    TooLarge,
    RateLimited,
    Limit,
    Unavailable,
    Timeout,
    Conflict,
    /// An invite or message past its lifetime.
    Expired,
    /// An invite an admin revoked, or a member removed from the mesh.
    Revoked,
    Internal,
    /// Another agent holds a live connection with this member's key (a copied config dir):
    /// the agent that started later gets this and stops that mesh's link.
    KeyInUse,
    /// The broker's store is out of space (disk full): nothing was stored; retry once an
    /// operator frees space.
    StorageFull,
    /// A send's envelopes do not name exactly its recipients (the sender's member directory is
    /// stale): refresh `list_members`, seal again and resend.
    RecipientsChanged,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Limit => "limit",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Expired => "expired",
            ErrorCode::Revoked => "revoked",
            ErrorCode::Internal => "internal",
            ErrorCode::KeyInUse => "key_in_use",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::RecipientsChanged => "recipients_changed",
        }
    }

    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadSignature,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Invalid,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Limit,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Conflict,
        ErrorCode::Expired,
        ErrorCode::Revoked,
        ErrorCode::Internal,
        ErrorCode::KeyInUse,
        ErrorCode::StorageFull,
        ErrorCode::RecipientsChanged,
    ];
}

/// `error`: a request failed, or a frame could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: when a retry can succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Sender of a pushed message, as the broker authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushFrom {
    pub member_id: String,
    pub session_id: String,
}

/// `push`: one recipient member's copy of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub msg_id: String,
    pub client_msg_id: String,
    pub from: PushFrom,
    pub target: Target,
    pub priority: Priority,
    pub nonce: String,
    pub ciphertext: String,
    /// Unix milliseconds when the broker accepted the send.
    pub sent_at: u64,
}

/// Per-recipient state in `message_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    pub member_id: String,
    pub state: DeliveryState,
    /// Unix milliseconds of the last state change.
    pub at: u64,
}

/// An invite as `invite_list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteInfo {
    pub invite_id: String,
    pub role: Role,
    #[serde(default)]
    pub groups: Vec<GroupRole>,
    pub expires_at: u64,
    pub max_uses: u32,
    pub uses: u32,
    pub revoked: bool,
    /// Member id of the admin who signed it.
    pub issuer: String,
}

/// Everything a broker may send to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Welcome {
        protocol: u32,
        challenge: String,
        broker_version: String,
        /// The URL members should use to reach this broker (`--public-url`), when the operator
        /// set one: invites carry it instead of whatever address the inviter happened to use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_url: Option<String>,
    },
    HelloAck {
        member_id: String,
        role: Role,
        mesh: MeshRef,
        /// As in `welcome`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_url: Option<String>,
        #[serde(default)]
        services: Vec<CatalogEntry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runner_pubkey: Option<String>,
    },
    Enrolled {
        member_id: String,
        role: Role,
        mesh: MeshRef,
    },
    Error(ErrorFrame),
    /// Generic success for requests that return nothing else.
    Ok {
        req: u64,
    },

    // Messaging
    Ack {
        req: u64,
        msg_id: String,
        recipients: u32,
        online: u32,
    },
    Push(Push),
    MessageStatus {
        req: u64,
        msg_id: String,
        sent_at: u64,
        recipients: Vec<RecipientStatus>,
    },
    Peers {
        req: u64,
        sessions: Vec<PeerSession>,
        /// More sessions follow: ask again with this as `cursor`. Absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Members {
        req: u64,
        members: Vec<MemberInfo>,
        /// Members who left or were removed (newest first, at most
        /// [`crate::limits::MAX_FORMER_MEMBERS`]), so a send to one says why it cannot go.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        former: Vec<FormerMember>,
        /// More members follow (a paged `list_members`): ask again with this as `cursor`.
        /// Absent on the last page; `former` comes with the first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Event(Event),
    /// Several events at once (presence is batched per connection).
    Events {
        events: Vec<Event>,
    },

    // Admin
    MeshCreated {
        req: u64,
        mesh: MeshRef,
        member_id: String,
        role: Role,
    },
    Invites {
        req: u64,
        invites: Vec<InviteInfo>,
    },
    MeshInfo {
        req: u64,
        mesh: MeshRef,
        created_at: u64,
        members: u32,
        online_members: u32,
        sessions: u32,
        services: u32,
    },

    // Services
    /// Reply to `mcp_deploy`/`mcp_update` once the service is running or failed.
    McpDeployResult {
        req: u64,
        name: String,
        status: ServiceStatus,
        #[serde(default)]
        tools: Vec<ToolInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        log_tail: Vec<String>,
    },
    McpLogsResult {
        req: u64,
        name: String,
        lines: Vec<String>,
    },
    McpSchemaResult {
        req: u64,
        name: String,
        tools: Vec<ToolInfo>,
    },
    McpCatalogResult {
        req: u64,
        services: Vec<CatalogEntry>,
    },
    /// The MCP `CallToolResult`, as the service returned it.
    McpCallResult {
        req: u64,
        result: serde_json::Value,
    },
    /// A call for a peer-hosted service, forwarded to its host agent.
    McpCallForward {
        call_id: String,
        service: String,
        tool: String,
        #[serde(default)]
        arguments: serde_json::Value,
        from_member: String,
        timeout_ms: u64,
    },
    UploadReady {
        req: u64,
        upload_id: String,
        chunk_size: u32,
    },
    UploadDone {
        req: u64,
        upload_id: String,
        size: u64,
        sha256: String,
    },

    /// The mesh runner's X25519 public key (32 bytes, base64), for `crypto_box_seal`.
    RunnerKey {
        req: u64,
        public_key: String,
    },

    // Vault
    VaultEntry {
        req: u64,
        entry: VaultEntry,
    },
    VaultEntries {
        req: u64,
        entries: Vec<VaultEntryMeta>,
    },

    // Skills
    Skill {
        req: u64,
        skill: SkillRecord,
    },
    Skills {
        req: u64,
        skills: Vec<SkillSummary>,
    },
}

impl ServerFrame {
    /// Shorthand for an error reply.
    pub fn error(req: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error(ErrorFrame { req, code, message: message.into(), retry_after_ms: None })
    }

    /// The wire `type` of this frame, for metrics and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome { .. } => "welcome",
            ServerFrame::HelloAck { .. } => "hello_ack",
            ServerFrame::Enrolled { .. } => "enrolled",
            ServerFrame::Error(_) => "error",
            ServerFrame::Ok { .. } => "ok",
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Push(_) => "push",
            ServerFrame::MessageStatus { .. } => "message_status",
            ServerFrame::Peers { .. } => "peers",
            ServerFrame::Members { .. } => "members",
            ServerFrame::Event(_) => "event",
            ServerFrame::Events { .. } => "events",
            ServerFrame::MeshCreated { .. } => "mesh_created",
            ServerFrame::Invites { .. } => "invites",
            ServerFrame::MeshInfo { .. } => "mesh_info",
            ServerFrame::McpDeployResult { .. } => "mcp_deploy_result",
            ServerFrame::McpLogsResult { .. } => "mcp_logs_result",
            ServerFrame::McpSchemaResult { .. } => "mcp_schema_result",
            ServerFrame::McpCatalogResult { .. } => "mcp_catalog_result",
            ServerFrame::McpCallResult { .. } => "mcp_call_result",
            ServerFrame::McpCallForward { .. } => "mcp_call_forward",
            ServerFrame::UploadReady { .. } => "upload_ready",
            ServerFrame::UploadDone { .. } => "upload_done",
            ServerFrame::RunnerKey { .. } => "runner_key",
            ServerFrame::VaultEntry { .. } => "vault_entry",
            ServerFrame::VaultEntries { .. } => "vault_entries",
            ServerFrame::Skill { .. } => "skill",
            ServerFrame::Skills { .. } => "skills",
        }
    }

    /// The request id this frame answers, if it is a reply.
    pub fn req(&self) -> Option<u64> {
        match self {
            ServerFrame::Error(e) => e.req,
            ServerFrame::Ok { req }
            | ServerFrame::Ack { req, .. }
            | ServerFrame::MessageStatus { req, .. }
            | ServerFrame::Peers { req, .. }
            | ServerFrame::Members { req, .. }
            | ServerFrame::MeshCreated { req, .. }
            | ServerFrame::Invites { req, .. }
            | ServerFrame::MeshInfo { req, .. }
            | ServerFrame::McpDeployResult { req, .. }
            | ServerFrame::McpLogsResult { req, .. }
            | ServerFrame::McpSchemaResult { req, .. }
            | ServerFrame::McpCatalogResult { req, .. }
            | ServerFrame::McpCallResult { req, .. }
            | ServerFrame::UploadReady { req, .. }
            | ServerFrame::UploadDone { req, .. }
            | ServerFrame::RunnerKey { req, .. }
            | ServerFrame::VaultEntry { req, .. }
            | ServerFrame::VaultEntries { req, .. }
            | ServerFrame::Skill { req, .. }
            | ServerFrame::Skills { req, .. } => Some(*req),
            ServerFrame::Welcome { .. }
            | ServerFrame::HelloAck { .. }
            | ServerFrame::Enrolled { .. }
            | ServerFrame::Push(_)
            | ServerFrame::Event(_)
            | ServerFrame::Events { .. }
            | ServerFrame::McpCallForward { .. } => None,
        }
    }
}
