//! Agent-socket request parameters of the messaging and membership calls: `invite_create`,
//! `send`, `inbox` and `session_register` (the service calls' are in `services.rs`).

use serde::{Deserialize, Serialize};

use crate::frames::{Priority, SessionInfo};

/// `invite_create`: what the invite grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    #[serde(default)]
    pub role: crate::frames::Role,
    #[serde(default)]
    pub groups: Vec<crate::frames::GroupRole>,
    /// How many people may join with it.
    pub max_uses: u32,
    /// Lifetime in seconds.
    pub expires_in_secs: u64,
    /// The broker address the invite carries (`ws://` or `wss://`), overriding the broker's
    /// announced public URL and the address this member uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_url: Option<String>,
}

/// `send`: the agent resolves `to`, encrypts per recipient, stores, and returns at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendParams {
    /// A session or member name or id, `@group`, or `*`.
    pub to: String,
    pub message: String,
    #[serde(default)]
    pub priority: Priority,
    /// Mesh slug; required when the client is in several meshes and `to` is ambiguous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// The sending session; absent for the CLI (sent as the member itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// A key the caller chooses (at most [`crate::limits::MAX_IDEMPOTENCY_KEY_BYTES`]): a second
    /// send with the same key (a retry after a lost connection) returns the first one's reply
    /// with `duplicate: true` and sends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `inbox`: messages for a session (or all of this user's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InboxParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// Include messages already seen.
    #[serde(default)]
    pub all: bool,
    /// Take the returned unseen messages for `session` under a lease (see [`InboxReply`]);
    /// they become seen on `confirm`. (`mark_seen` is the older name.)
    #[serde(default, alias = "mark_seen")]
    pub take: bool,
    /// Most messages in the reply (the oldest first when taking, the newest otherwise).
    /// Taking defaults to [`crate::limits::CHECK_MESSAGES_DEFAULT_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Most characters of message bodies in one reply (at least one message is always
    /// returned). Taking defaults to [`crate::limits::CHECK_MESSAGES_MAX_CHARS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u32>,
    /// Only this message (seen or not): how a model reads whole a message a hook cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// Page forward, oldest first, through a read (no `take`): the messages after this cursor
    /// (`""` for the very first), at most `limit` (default and cap
    /// [`crate::limits::INBOX_PAGE_MAX`]); the reply's `next` continues. Without it a read
    /// returns the newest `limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `session_register`: a Claude Code session (or other local peer) comes online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRegister {
    /// Mesh slugs to open the session on; empty means every joined mesh.
    #[serde(default)]
    pub meshes: Vec<String>,
    #[serde(flatten)]
    pub session: SessionInfo,
    /// pid of the `claude` process the session belongs to, to tie hooks to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_pid: Option<u32>,
    /// The display name was derived (from the directory), not chosen: the agent makes it
    /// distinct from this member's other open sessions (`repo`, `repo-2`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_name: bool,
}
