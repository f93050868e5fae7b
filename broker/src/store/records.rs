//! Durable records the broker keeps in redb, one JSON value per key.

use claudemesh_protocol::frames::{DeliveryState, GroupRole, Priority, RemovalReason, Role};
use claudemesh_protocol::invite::InvitePayload;
use claudemesh_protocol::trust::SignedStatement;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshRecord {
    pub id: String,
    pub slug: String,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub mesh_id: String,
    pub member_id: String,
    /// ed25519 public key, hex.
    pub pubkey: String,
    pub display_name: String,
    pub role: Role,
    /// Groups granted by invite or admin (these count for service scopes).
    #[serde(default)]
    pub groups: Vec<GroupRole>,
    /// Groups the member's sessions last declared (messaging only), remembered offline.
    #[serde(default)]
    pub declared_groups: Vec<String>,
    #[serde(default)]
    pub removed: bool,
    /// Why it is no longer a member (absent in records written before `leave` existed, and
    /// while it is a member).
    #[serde(default)]
    pub removed_reason: Option<RemovalReason>,
    /// When it was removed or left, Unix milliseconds (0: still a member, or unknown).
    #[serde(default)]
    pub removed_at: u64,
    pub created_at: u64,
    /// The invite it enrolled with (absent for a mesh's creator and records from before
    /// protocol 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_id: Option<String>,
    /// Signed statements about it, relayed to agents with its directory entry: its own
    /// `member` statement, the latest admin `role` statements, its `removal`
    /// ([`MemberRecord::keep_statement`] bounds them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<SignedStatement>,
}

/// Most `role` statements kept per member: the latest few are enough for any reader to find
/// one signed by an admin it trusts.
const MAX_ROLE_STATEMENTS: usize = 4;

impl MemberRecord {
    /// Adds a verified statement of kind `kind` (`"member"`, `"role"`, `"removal"`): one
    /// member and one removal statement are kept (the newest replaces), and the last
    /// [`MAX_ROLE_STATEMENTS`] role statements.
    pub fn keep_statement(&mut self, kind: &str, s: SignedStatement) {
        let kind_of = |x: &SignedStatement| {
            serde_json::from_str::<serde_json::Value>(&x.statement)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        };
        if kind == "role" {
            let roles = self.statements.iter().filter(|x| kind_of(x).as_deref() == Some("role")).count();
            if roles >= MAX_ROLE_STATEMENTS
                && let Some(i) = self.statements.iter().position(|x| kind_of(x).as_deref() == Some("role"))
            {
                self.statements.remove(i);
            }
        } else {
            self.statements.retain(|x| kind_of(x).as_deref() != Some(kind));
        }
        self.statements.push(s);
    }

    /// Whether the member is in messaging group `g` (granted, or declared by a session).
    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x.name == g) || self.declared_groups.iter().any(|x| x == g)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub payload: InvitePayload,
    pub uses: u32,
    pub revoked: bool,
    /// Member id of the admin who signed it.
    pub issuer: String,
    pub registered_at: u64,
}

/// A message's metadata, kept for `message_status` until it expires. Per-recipient state
/// lives in its own rows ([`RecipientState`]) so an ack writes one small row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub msg_id: String,
    pub client_msg_id: String,
    pub from_member: String,
    pub from_session: String,
    pub target: String,
    pub priority: Priority,
    pub sent_at: u64,
    /// Its recipients' member ids, for a send to at most 16 members. One without a
    /// [`RecipientState`] row is queued: the row is written when its state first moves
    /// (delivered, seen, expired), not at the send. Empty for a larger fan-out and in records
    /// written before this field: then every recipient got a `queued` row at the send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

/// One recipient's delivery state of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub state: DeliveryState,
    pub at: u64,
}

impl RecipientState {
    fn rank(s: DeliveryState) -> u8 {
        match s {
            DeliveryState::Queued => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Seen => 2,
            DeliveryState::Expired => 3,
        }
    }

    /// States only move forward (queued → delivered → seen); expired is final.
    pub fn can_become(&self, next: DeliveryState) -> bool {
        self.state != DeliveryState::Expired && Self::rank(next) > Self::rank(self.state)
    }
}

/// What a `send` returned, kept so a repeated `client_msg_id` gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemRecord {
    pub msg_id: String,
    pub recipients: u32,
    pub online: u32,
    pub at: u64,
}
