//! Broker wire frames (DESIGN §5): one enum per direction, tagged by `type`, snake_case,
//! unknown fields ignored, and a typed decode error for anything that is not a known frame.

mod client;
mod events;
mod server;
mod services;
mod types;

pub use client::{AgentInstance, ClientFrame, Enroll, Hello, McpDeploy, McpUpdate, Send};
pub use events::Event;
pub use server::{ErrorCode, ErrorFrame, InviteInfo, Push, PushFrom, RecipientStatus, ServerFrame};
pub use services::{
    CatalogEntry, HostedBy, SealedSecret, ServiceSource, ServiceStatus, Skill, SkillAction, SkillRecord,
    SkillSummary, ToolInfo, VaultEntry, VaultEntryMeta, VaultKind,
};
pub use types::{
    DeliveryState, Envelope, FormerMember, GroupRole, MemberInfo, MeshRef, PeerSession, PeerType, Priority,
    ReceiptState, RemovalReason, Role, Secret, SessionInfo, SessionPatch, SessionStatus, Target, TargetError,
};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_FRAME_BYTES;

/// Why a frame could not be decoded. Carries the `req` when one could be read, so the
/// error reply can be matched to the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is {size} bytes, at most {max} allowed")]
    TooLarge { size: usize, max: usize, req: Option<u64> },
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    #[error("frame must be a JSON object with a \"type\" field")]
    MissingType,
    #[error("unknown frame type {ty:?}")]
    UnknownType { ty: String, req: Option<u64> },
    #[error("invalid {ty} frame: {message}")]
    Invalid { ty: String, req: Option<u64>, message: String },
}

impl DecodeError {
    /// The request id of the offending frame, when it had a readable one.
    pub fn req(&self) -> Option<u64> {
        match self {
            DecodeError::UnknownType { req, .. }
            | DecodeError::Invalid { req, .. }
            | DecodeError::TooLarge { req, .. } => *req,
            _ => None,
        }
    }

    /// The stable error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::Invalid,
        }
    }

    /// The `error` frame that answers this failure.
    pub fn to_error_frame(&self) -> ServerFrame {
        ServerFrame::error(self.req(), self.code(), self.to_string())
    }
}

/// Just enough of a frame to read the `req` of one too large to decode.
#[derive(Deserialize)]
struct Probe {
    req: Option<serde_json::Value>,
}

/// Whether `text` starts (after JSON whitespace) as an object does. Nothing else is a frame:
/// serde would otherwise take an array such as `["ok",1]` for one (its first element as the tag).
fn is_object_text(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{')
}

fn decode<T: DeserializeOwned>(text: &str, known: &dyn Fn(&str) -> bool) -> Result<T, DecodeError> {
    if text.len() > MAX_FRAME_BYTES {
        // Not decoded, only scanned for its `req` so the error reaches the right request.
        let req = Some(text)
            .filter(|t| is_object_text(t))
            .and_then(|t| serde_json::from_str::<Probe>(t).ok())
            .and_then(|p| p.req)
            .and_then(|r| r.as_u64());
        return Err(DecodeError::TooLarge { size: text.len(), max: MAX_FRAME_BYTES, req });
    }
    let first = if is_object_text(text) {
        match serde_json::from_str::<T>(text) {
            Ok(f) => return Ok(f),
            Err(e) => Some(e),
        }
    } else {
        None
    };
    // Classified from the whole document, as any JSON reader sees it (the last of duplicate keys
    // wins), so that `type` and `req` are the ones the sender meant.
    let doc =
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let (Some(e), Some(serde_json::Value::String(ty))) = (first, doc.get("type")) else {
        return Err(DecodeError::MissingType);
    };
    let (ty, req) = (ty.clone(), doc.get("req").and_then(serde_json::Value::as_u64));
    if known(&ty) {
        Err(DecodeError::Invalid { ty, req, message: e.to_string() })
    } else {
        Err(DecodeError::UnknownType { ty, req })
    }
}

/// Every `type` a client may send.
pub const CLIENT_TYPES: &[&str] = &[
    "hello",
    "enroll",
    "session_open",
    "session_update",
    "session_close",
    "send",
    "client_ack",
    "receipt",
    "message_status",
    "list_peers",
    "list_members",
    "mesh_create",
    "invite_register",
    "invite_revoke",
    "invite_list",
    "member_remove",
    "member_set",
    "mesh_info",
    "leave",
    "statement",
    "mcp_deploy",
    "mcp_undeploy",
    "mcp_update",
    "mcp_logs",
    "mcp_logs_unfollow",
    "mcp_scope",
    "mcp_schema",
    "mcp_catalog",
    "mcp_call",
    "mcp_register",
    "mcp_unregister",
    "mcp_call_response",
    "upload_begin",
    "upload_chunk",
    "upload_end",
    "mcp_runner_key",
    "vault_set",
    "vault_get",
    "vault_list",
    "vault_delete",
    "skill_share",
    "skill_get",
    "skill_list",
    "skill_remove",
];

/// Every `type` a broker may send.
pub const SERVER_TYPES: &[&str] = &[
    "welcome",
    "hello_ack",
    "enrolled",
    "error",
    "ok",
    "ack",
    "push",
    "message_status",
    "peers",
    "members",
    "event",
    "events",
    "mesh_created",
    "invites",
    "mesh_info",
    "mcp_deploy_result",
    "mcp_logs_result",
    "mcp_schema_result",
    "mcp_catalog_result",
    "mcp_call_result",
    "mcp_call_forward",
    "upload_ready",
    "upload_done",
    "runner_key",
    "vault_entry",
    "vault_entries",
    "skill",
    "skills",
];

/// Decodes a frame a client sent (the broker's side).
pub fn decode_client(text: &str) -> Result<ClientFrame, DecodeError> {
    decode(text, &|t| CLIENT_TYPES.contains(&t))
}

/// Decodes a frame a broker sent (the agent's side).
pub fn decode_server(text: &str) -> Result<ServerFrame, DecodeError> {
    decode(text, &|t| SERVER_TYPES.contains(&t))
}

/// Encodes any frame as the JSON text of one WebSocket message.
pub fn encode<T: serde::Serialize>(frame: &T) -> String {
    // Serializing these types cannot fail: every map key is a string and no type has a
    // fallible Serialize; an impossible failure still yields a valid (empty) JSON object.
    serde_json::to_string(frame).unwrap_or_else(|_| "{}".to_string())
}
