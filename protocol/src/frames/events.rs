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
                | Event::MemberRemoved { .. }
        )
    }
}
