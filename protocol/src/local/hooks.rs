//! Agent-socket types of Claude Code's hooks: which hook fired (`hook`), which session it
//! belongs to, and why a `hook_wait` returned.

use serde::{Deserialize, Serialize};

/// The Claude Code hook events claudemesh handles, plus `rewake` (the `Stop` hook taking what
/// became due while it waited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    SessionStart,
    UserPromptSubmit,
    PostToolUse,
    Stop,
    Rewake,
}

/// `hook`: which session the hook belongs to, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookCall {
    pub event: HookEvent,
    /// `CLAUDEMESH_SESSION_ID` when `claudemesh launch` set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Claude Code's `session_id` from the hook input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_session_id: Option<String>,
    /// The hook's ancestor pids, nearest first: one of them is the `claude` process.
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Only apply the status change; take no message (a `Stop` in print mode, whose process
    /// exits before anything it printed could reach the model).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub status_only: bool,
    /// The pid of the `claude` process the hook runs under (its nearest `claude` ancestor),
    /// when known. A hook whose `claude` is not the session's (a `claude -p` run inside a
    /// launched session inherits its `CLAUDEMESH_SESSION_ID`) does not act as that session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_pid: Option<u32>,
}

/// Why a `hook_wait` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitOutcome {
    /// A message is due: take it with `hook {event: "rewake"}`.
    Ready,
    Timeout,
    /// A newer `hook_wait` for the same session took over.
    Superseded,
    /// The session closed (its Claude Code exited).
    Closed,
}
