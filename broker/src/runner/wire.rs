//! The runner's wire: JSON lines over the runner's stdin (broker → runner, [`ToRunner`]) and
//! stdout (runner → broker, [`FromRunner`]), DESIGN §7. One JSON object per line, at most
//! [`MAX_LINE_BYTES`]; the runner's stderr is its own log (tracing), never protocol.
//!
//! Order: the runner writes [`FromRunner::Ready`] first. Every `load` is answered by exactly one
//! `loaded` or `load_failed` (with `status` events before it), every `unload` by `unloaded`,
//! every `call` by exactly one `result` or `call_error` (also after `cancel`, then with
//! [`CallErrorCode::Cancelled`]), every `ping` by `pong`. Events (`status`, `tools_changed`,
//! `crashed`, `log`) may come at any time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use claudemesh_protocol::frames::{SealedSecret, ServiceStatus, ToolInfo};
use serde::{Deserialize, Serialize};

/// Longest line either side writes (a call's arguments or result, cut to 1 MiB, plus framing).
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Largest `CallToolResult` passed on whole; a bigger one is cut with a notice (DESIGN §7).
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// Broker → runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToRunner {
    /// Prepare (as `spec.prepare` says) and start a service, replacing a loaded one of the same
    /// name. Answered by `loaded` (it answered `initialize` and listed its tools) or
    /// `load_failed`; `status` events (`preparing`, `starting`) come before.
    Load { spec: Box<ServiceSpec> },
    /// Stop a service (its whole process group is killed) and forget it. Answered by
    /// `unloaded`, also when it was not loaded.
    Unload { name: String },
    /// Call a tool (MCP `tools/call`). `caller` is the calling member id (for logs only; the
    /// broker checked the scope). Answered by one `result` or `call_error`.
    Call {
        id: u64,
        name: String,
        tool: String,
        #[serde(default)]
        arguments: serde_json::Value,
        timeout_ms: u64,
        caller: String,
    },
    /// The caller went away: cancel call `id` (MCP `notifications/cancelled` to the child);
    /// the call is answered with `call_error{code: cancelled}` if it was still running.
    Cancel { id: u64 },
    /// Liveness of the runner itself; answered by `pong`.
    Ping { id: u64 },
    /// Stop every service (killing their process groups), then exit 0.
    Shutdown,
}

/// Everything the runner needs to prepare and run one service. Holds the service's
/// environment, which may carry secrets: never log it (its `Debug` redacts values).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// A validated service name (`protocol::names`), safe as a path component.
    pub name: String,
    /// `<data>/services/<mesh_id>/<name>/`: created by the broker (0700), the child's cwd
    /// and `HOME`.
    pub dir: PathBuf,
    pub source: PrepareSource,
    /// Extra arguments appended to the entry command.
    #[serde(default)]
    pub args: Vec<String>,
    /// Explicit entry command (git and bundle sources), overriding runtime detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Vec<String>>,
    /// The service's own environment, added to the cleared base (PATH, HOME, LANG). Values may
    /// be `$vault:` references (`protocol::vault_ref`), resolved from `secrets` at each start.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The referenced vault values, sealed to this runner's key (only the runner opens them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SealedSecret>,
    pub prepare: PrepareMode,
    pub limits: ChildLimits,
    pub health: HealthPolicy,
    pub restart: RestartPolicy,
}

impl std::fmt::Debug for ServiceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSpec")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("source", &self.source)
            .field("args", &self.args)
            .field("entry", &self.entry)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.iter().map(|s| &s.key).collect::<Vec<_>>())
            .field("prepare", &self.prepare)
            .finish_non_exhaustive()
    }
}

/// Where the code comes from, as the runner prepares it (DESIGN §7 "Sources").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrepareSource {
    /// npm package, run with node from an `npm install` in the service dir.
    Npx {
        package: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// PyPI package, installed with uv into the service dir.
    Uvx {
        package: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// A git repository at a branch, tag or commit (default: the remote's HEAD).
    Git {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rev: Option<String>,
    },
    /// An uploaded zip (already checked by the broker), extracted into the service dir.
    Bundle { zip: PathBuf },
    /// An executable on the broker host and its arguments (broker admins only).
    Command { argv: Vec<String> },
}

/// Whether preparation fetches again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrepareMode {
    /// Deploy or update: fetch, resolve versions again, build.
    Fresh,
    /// Restart or boot restore: reuse what an earlier preparation left in the service dir,
    /// preparing afresh only when it is missing.
    Reuse,
}

/// Resource limits of a service's child process (setrlimit, inherited by its children).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildLimits {
    /// Data segment (RLIMIT_DATA: writable private memory) in bytes; 512 MiB by default.
    pub memory_bytes: u64,
    /// Open files (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Processes of the user (RLIMIT_NPROC; counted per uid by the kernel).
    pub processes: u64,
    /// Longest a preparation step may run, in milliseconds.
    pub prepare_timeout_ms: u64,
}

/// Health checks (DESIGN §7: ping every 30 s, 5 s timeout, 3 misses → restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthPolicy {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub misses: u32,
    /// Longest `initialize` plus `tools/list` may take after a start.
    pub start_timeout_ms: u64,
}

/// Restarts (DESIGN §7: back off 1 s, 2 s, 4 s … 60 s; 5 crashes within 10 minutes →
/// `crashed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub max_crashes: u32,
    pub crash_window_ms: u64,
}

/// What a preparation settled on, recorded by the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The package version installed (npx, uvx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The commit checked out (git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// The command started (argv), for `catalog` and logs. Never holds env values.
    #[serde(default)]
    pub command: Vec<String>,
}

/// Runner → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum FromRunner {
    /// First line: the runner is up. `public_key` is its X25519 key (base64), which deployers
    /// seal secrets to; absent with `key_error` when its key file could not be read or made.
    Ready {
        version: String,
        pid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_error: Option<String>,
    },
    /// A service's lifecycle moved (DESIGN §7 "Status").
    Status {
        name: String,
        status: ServiceStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Loaded {
        name: String,
        tools: Vec<ToolInfo>,
        resolved: Resolved,
    },
    /// Preparation or the first start failed: `step` names what failed (`npm install`,
    /// `git clone`, `unzip`, `initialize`, …), `log_tail` is the end of its output.
    LoadFailed {
        name: String,
        step: String,
        error: String,
        log_tail: Vec<String>,
    },
    Unloaded {
        name: String,
    },
    /// The child sent `notifications/tools/list_changed`; this is the new list (all pages).
    ToolsChanged {
        name: String,
        tools: Vec<ToolInfo>,
    },
    /// The restart policy gave up (too many crashes in the window); the service stays down.
    Crashed {
        name: String,
        error: String,
    },
    /// Lines of a service's stderr, stray stdout, or preparation output, in order.
    Log {
        name: String,
        lines: Vec<String>,
    },
    /// A call's MCP `CallToolResult`, as the child returned it (cut to [`MAX_RESULT_BYTES`]).
    Result {
        id: u64,
        result: serde_json::Value,
    },
    CallError {
        id: u64,
        code: CallErrorCode,
        message: String,
    },
    Pong {
        id: u64,
    },
}

/// Why a call has no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallErrorCode {
    /// No service of that name is loaded.
    NotLoaded,
    /// The service is loaded but not running now (restarting, crashed).
    NotRunning,
    /// The child did not answer within `timeout_ms`.
    Timeout,
    /// The child exited while the call was in flight.
    Crashed,
    /// The child answered with a JSON-RPC error (unknown tool, bad arguments…).
    Tool,
    /// The broker cancelled it (the caller went away).
    Cancelled,
}
