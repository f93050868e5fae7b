//! Broker → agent events (`event{kind, data}`, DESIGN §5) and the batched `events` frame.

use serde::{Deserialize, Serialize};

use super::services::{CatalogEntry, ServiceStatus, SkillAction, ToolInfo};
use super::types::{MemberInfo, PeerSession, ReceiptState, RemovalReason};
use crate::scope::Scope;

/// One event. On the wire: `{"kind":"peer_left","data":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Event {
    PeerJoined(PeerSession),
    PeerUpdated(PeerSession),
    PeerLeft {
        member_id: String,
        session_id: String,
    },
    MemberJoined(MemberInfo),
    MemberUpdated(MemberInfo),
    /// A member's agent connected or disconnected: the compact form of a `member_updated`
    /// whose only change is `online` (~80 bytes instead of the whole member with its
    /// statements), sent on every hello and every drop.
    MemberOnline {
        member_id: String,
        online: bool,
    },
    /// Presence changed faster than this connection's presence budget: the broker dropped
    /// the presence events (`peer_*`, `member_online`) meant for it and sends none until it
    /// lists again (`list_members`, or `list_peers` without a cursor). The client's peers and
    /// online flags are stale until then; it refreshes when it needs them. Keeps a connect
    /// storm O(N) in bytes instead of one event per peer per join. No data.
    PresenceReset {},
    MemberRemoved {
        member_id: String,
        /// Removed by an admin, or left on its own (older brokers: absent, meaning removed).
        #[serde(default)]
        reason: RemovalReason,
        /// Its display name, so peers can say "bob left the mesh" after forgetting it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        display_name: String,
    },
    /// Messages this member sent moved forward for recipient `member_id`: `delivered` (its
    /// agent stored them) or `seen`. Sent once per change, only for messages whose state changed.
    Receipt {
        msg_ids: Vec<String>,
        member_id: String,
        state: ReceiptState,
    },
    /// Messages this member sent expired undelivered for a recipient.
    Expired {
        msg_ids: Vec<String>,
        member_id: String,
    },
    McpDeployed(CatalogEntry),
    McpStatus {
        name: String,
        status: ServiceStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    McpUndeployed {
        name: String,
    },
    McpUpdated(CatalogEntry),
    McpScopeChanged {
        name: String,
        scope: Scope,
    },
    McpCrashed {
        name: String,
        error: String,
    },
    McpToolsChanged {
        name: String,
        tools: Vec<ToolInfo>,
    },
    /// New lines of a followed service's log (`mcp_logs{follow}`), oldest first.
    McpLog {
        name: String,
        lines: Vec<String>,
    },
    SkillChanged {
        name: String,
        action: SkillAction,
    },
}

impl Event {
    /// Presence events are batched per connection; service events go out at once.
    pub fn is_presence(&self) -> bool {
        matches!(
            self,
            Event::PeerJoined(_)
                | Event::PeerUpdated(_)
                | Event::PeerLeft { .. }
                | Event::MemberJoined(_)
                | Event::MemberUpdated(_)
                | Event::MemberOnline { .. }
                | Event::MemberRemoved { .. }
                | Event::PresenceReset {}
        )
    }

    /// Presence a connection can be spared under its presence budget: sessions coming and
    /// going and members' online flags, which a later `list_peers` / `list_members` restores
    /// whole. Membership itself (`member_joined`, `member_updated`, `member_removed`) is
    /// always sent.
    pub fn is_sheddable(&self) -> bool {
        matches!(
            self,
            Event::PeerJoined(_)
                | Event::PeerUpdated(_)
                | Event::PeerLeft { .. }
                | Event::MemberOnline { .. }
        )
    }
}
