//! The dashboard's state: plain data, no I/O. What the agent said (snapshot, then events and
//! replies applied by `update`), and what the person is doing (view, mesh scope, selections,
//! filters, the open dialog). Rendering is a pure function of this.

pub mod cursor;
pub mod form;
pub mod messages;
mod modal;
pub mod rate;
pub mod services;
pub mod sharing;

use std::collections::{BTreeMap, VecDeque};

use claudemesh_protocol::local::{LocalSessionStatus, MemberEntry, MeshStatus, PeerEntry};

pub use cursor::Cursor;
pub use form::{Form, FormField, FormKind, Input};
pub use messages::{ConvKey, Messages};
pub use modal::{Compose, ComposeFocus, Confirm, ConfirmAction, Field, Modal, Prompt, PromptKind};
pub use rate::Rate;
pub use services::{Follow, Services};
pub use sharing::{SkillRead, Skills, Vault};

/// Most lines the Events view keeps.
pub const MAX_EVENTS: usize = 2_000;

/// The views, in tab order; the number key of each is its position + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum View {
    #[default]
    Peers,
    Members,
    Messages,
    Events,
    Meshes,
    Services,
    /// This member's vault entries (metadata only, never a value).
    Vault,
    /// The skills shared in the meshes.
    Skills,
}

impl View {
    pub const ALL: [View; 8] = [
        View::Peers,
        View::Members,
        View::Messages,
        View::Events,
        View::Meshes,
        View::Services,
        View::Vault,
        View::Skills,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Peers => "Peers",
            View::Members => "Members",
            View::Messages => "Messages",
            View::Events => "Events",
            View::Meshes => "Meshes",
            View::Services => "Services",
            View::Vault => "Vault",
            View::Skills => "Skills",
        }
    }

    /// A shorter title for the tab bar of a narrow terminal.
    pub fn short_title(self) -> &'static str {
        match self {
            View::Members => "Memb",
            View::Messages => "Msgs",
            View::Events => "Evts",
            View::Meshes => "Mesh",
            View::Services => "Svcs",
            other => other.title(),
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// Where the dashboard stands with its agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AgentConn {
    /// Not connected yet (first start, or reconnecting after `r`).
    #[default]
    Connecting,
    /// Subscribed: `version`, `pid`, and the agent's uptime at the snapshot plus the tick
    /// time then (Unix ms), to show a running uptime.
    Up { version: String, pid: u32, uptime_secs: u64, at_ms: u64 },
    /// The agent went away or could not be reached; the next attempt is at `retry_at_ms`.
    Gone { error: String, retry_at_ms: u64 },
}

/// A line of the Events view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Unix ms.
    pub at: u64,
    /// Mesh slug, empty for the agent's own.
    pub mesh: String,
    /// `link`, `peer`, `member`, `message`, `receipt`, `outbox`, `session`, `agent`, `error`.
    pub kind: &'static str,
    /// Cleaned, one line.
    pub text: String,
}

/// In the Messages view: the conversation list or the thread has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    #[default]
    List,
    Thread,
}

/// A short line in the footer that says what just happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub text: String,
    pub error: bool,
    /// Unix ms after which it is gone.
    pub until_ms: u64,
}

/// What a reply the dashboard waits for is about (the tag of an `Effect::Call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Members,
    Inbox,
    Sent,
    Status,
    /// A send from the compose box into this conversation (if it had one).
    Send {
        conv: Option<ConvKey>,
        to: String,
    },
    /// `message_status` for a message this machine sent (mesh slug, client id).
    MessageStatus {
        mesh: String,
    },
    MarkRead,
    MemberRemove {
        name: String,
    },
    MemberSet {
        name: String,
    },
    /// `member_repin`: the member's entry after it.
    Repin,
    Leave {
        mesh: String,
    },
    InviteCreate,
    Join,
    /// `service_catalog` of one mesh, or of every mesh.
    Catalog(Option<String>),
    /// `service_logs` of the service followed then.
    ServiceLogs(Follow),
    Deploy,
    ServiceUpdate {
        name: String,
    },
    Undeploy {
        mesh: String,
        name: String,
    },
    ServiceScope,
    ServiceCall {
        service: String,
        tool: String,
    },
    /// `vault_list` of one mesh, or of every mesh.
    VaultList(Option<String>),
    /// `vault_set` of this key (typed in the form, or read from a file).
    VaultSet {
        key: String,
    },
    VaultDelete {
        mesh: String,
        key: String,
    },
    /// `skill_list` of one mesh, or of every mesh.
    SkillList(Option<String>),
    /// `skill_get`: the reply opens the reader.
    SkillGet,
    /// `skill_share` from a file or directory.
    SkillShare,
    SkillRemove {
        mesh: String,
        name: String,
    },
}

impl Pending {
    /// Whether this is a vault or skill call (their errors are explained in those words).
    pub fn is_sharing(&self) -> bool {
        matches!(
            self,
            Pending::VaultList(_)
                | Pending::VaultSet { .. }
                | Pending::VaultDelete { .. }
                | Pending::SkillList(_)
                | Pending::SkillGet
                | Pending::SkillShare
                | Pending::SkillRemove { .. }
        )
    }
}

/// The whole dashboard state.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub agent: AgentConn,
    /// The latest tick, Unix ms: every "since" and "ago" is relative to it.
    pub now_ms: u64,
    /// The last event sequence number applied.
    pub seq: u64,
    pub meshes: Vec<MeshStatus>,
    pub sessions: Vec<LocalSessionStatus>,
    pub peers: Vec<PeerEntry>,
    pub members: Vec<MemberEntry>,
    /// Shared MCP services and the followed log (the Services view).
    pub services: Services,
    /// This member's vault entries (the Vault view): metadata only.
    pub vault: Vault,
    /// Shared skills (the Skills view) and the one open in the reader.
    pub skills: Skills,
    pub messages: Messages,
    /// Message rate per mesh slug.
    pub rates: BTreeMap<String, Rate>,
    pub events: VecDeque<LogLine>,
    pub view: View,
    /// The mesh shown (slug), or every mesh.
    pub scope: Option<String>,
    /// The filter of each view (`/`).
    pub filters: BTreeMap<View, String>,
    /// The filter line is being typed.
    pub filtering: bool,
    pub cursors: BTreeMap<View, Cursor>,
    /// The row each view's selection is on ([`crate::rows::key_at`]): when rows move (a
    /// conversation gets a message, a member changes role), the selection stays on its row.
    pub selected_rows: BTreeMap<View, String>,
    /// Messages view: which pane has the keys, and the thread's scroll from its end.
    pub focus: Focus,
    pub thread_scroll: usize,
    pub modal: Option<Modal>,
    pub toast: Option<Toast>,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    /// Colours on (off under NO_COLOR).
    pub color: bool,
    /// The local time zone's offset from UTC, seconds (times are shown in local time).
    pub utc_offset_secs: i32,
    /// The name this user joins meshes as (from config.json), offered in the join dialog.
    pub default_name: String,
    pub(crate) next_tag: u64,
    pub(crate) pending: BTreeMap<u64, Pending>,
}

impl State {
    /// A fresh state for a terminal of `size`.
    pub fn new(size: (u16, u16), color: bool, now_ms: u64) -> Self {
        State { size, color, now_ms, ..State::default() }
    }

    /// The cursor of `view`.
    pub fn cursor(&self, view: View) -> Cursor {
        self.cursors.get(&view).copied().unwrap_or_default()
    }

    /// The filter of the current view, lowercased ("" for none).
    pub fn filter(&self, view: View) -> &str {
        self.filters.get(&view).map_or("", String::as_str)
    }

    /// Whether a row of `mesh` is shown under the current scope.
    pub fn in_scope(&self, mesh: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == mesh)
    }

    /// The mesh with this slug.
    pub fn mesh(&self, slug: &str) -> Option<&MeshStatus> {
        self.meshes.iter().find(|m| m.slug == slug)
    }

    /// A member of `mesh` (slug) by id, when the directory has it.
    pub fn member(&self, mesh: &str, member_id: &str) -> Option<&MemberEntry> {
        self.members.iter().find(|m| m.mesh == mesh && m.member.member_id == member_id)
    }

    /// A mesh's slug from its id.
    pub fn slug_of(&self, mesh_id: &str) -> Option<&str> {
        self.meshes.iter().find(|m| m.id == mesh_id).map(|m| m.slug.as_str())
    }

    /// Whether this user is an admin of `mesh`.
    pub fn is_admin(&self, mesh: &str) -> bool {
        self.mesh(mesh).is_some_and(|m| m.role == claudemesh_protocol::frames::Role::Admin)
    }

    /// A service scope as the CLI takes it (`peer`, `group:ops`, `members:alice,bob`), member
    /// ids shown as their names when the directory of `mesh` has them.
    pub fn scope_cli(&self, mesh: &str, scope: &claudemesh_protocol::scope::Scope) -> String {
        match scope {
            claudemesh_protocol::scope::Scope::Members(ids) => {
                let names: Vec<String> = ids
                    .iter()
                    .map(|id| {
                        self.member(mesh, id).map_or_else(|| id.clone(), |m| m.member.display_name.clone())
                    })
                    .collect();
                format!("members:{}", names.join(","))
            }
            other => other.to_string(),
        }
    }

    /// Whether the agent is connected.
    pub fn agent_up(&self) -> bool {
        matches!(self.agent, AgentConn::Up { .. })
    }

    /// Appends a line to the Events view (the oldest go past [`MAX_EVENTS`]).
    pub fn log(&mut self, mesh: &str, kind: &'static str, text: impl Into<String>) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        let text = claudemesh_protocol::text::one_line(&text.into());
        self.events.push_back(LogLine { at: self.now_ms, mesh: mesh.to_string(), kind, text });
    }

    /// Shows a footer line for a few seconds.
    pub fn toast(&mut self, text: impl Into<String>, error: bool) {
        let text = claudemesh_protocol::text::one_line(&text.into());
        self.toast = Some(Toast { text, error, until_ms: self.now_ms + if error { 8_000 } else { 4_000 } });
    }

    /// A new tag for a call, remembered with what it is for.
    pub(crate) fn tag(&mut self, p: Pending) -> u64 {
        self.next_tag += 1;
        self.pending.insert(self.next_tag, p);
        self.next_tag
    }
}
