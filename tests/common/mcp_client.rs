//! An rmcp client standing in for Claude Code: starts `claudemesh mcp` as a child process,
//! records the custom notifications it receives, and calls tools.
#![allow(dead_code)]

use std::time::Duration;

use claudemesh_agent::Paths;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, CustomNotification,
    Implementation, JsonObject, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::EXE;

/// The tools `claudemesh mcp` serves, sorted.
pub const TOOLS: [&str; 21] = [
    "check_messages",
    "join_group",
    "leave_group",
    "list_peers",
    "mesh_deploy",
    "mesh_logs",
    "mesh_schema",
    "mesh_scope",
    "mesh_services",
    "mesh_tool_call",
    "mesh_undeploy",
    "message_status",
    "send_message",
    "set_status",
    "set_summary",
    "skill_get",
    "skill_list",
    "skill_share",
    "vault_delete",
    "vault_list",
    "vault_set",
];

/// A client that records custom notifications (and, given `prompts` or `tools`, each
/// `notifications/prompts/list_changed` or `notifications/tools/list_changed`); declares
/// `claude/channel` when `channel`.
pub struct Claude {
    pub channel: bool,
    pub tx: mpsc::UnboundedSender<CustomNotification>,
    pub prompts: Option<mpsc::UnboundedSender<()>>,
    pub tools: Option<mpsc::UnboundedSender<()>>,
}

impl ClientHandler for Claude {
    fn get_info(&self) -> ClientConfig {
        let mut caps = ClientCapabilities::default();
        if self.channel {
            caps.experimental =
                Some([("claude/channel".to_string(), JsonObject::new())].into_iter().collect());
        }
        ClientConfig::new(caps, Implementation::new("test-claude", "0"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_custom_notification(&self, n: CustomNotification, _: NotificationContext<RoleClient>) {
        let _ = self.tx.send(n);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        if let Some(tx) = &self.prompts {
            let _ = tx.send(());
        }
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        if let Some(tx) = &self.tools {
            let _ = tx.send(());
        }
    }
}

pub type Mcp = RunningService<RoleClient, Claude>;

/// Starts `claudemesh mcp` for `paths` as session `sid` named `name`.
pub async fn mcp(
    paths: &Paths,
    sid: &str,
    name: &str,
    channel: bool,
) -> (Mcp, mpsc::UnboundedReceiver<CustomNotification>) {
    mcp_with(paths, Some(sid), name, channel).await
}

/// `claudemesh mcp` for `paths` as Claude Code starts it: session `sid` and name `name` when
/// given (else unset), no push, none of Claude Code's own session variables.
fn mcp_command(paths: &Paths, sid: Option<&str>, name: Option<&str>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(EXE);
    c.arg("mcp")
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env_remove("CLAUDEMESH_PUSH")
        .env_remove("CLAUDE_SESSION_ID")
        .env_remove("CLAUDE_CODE_SESSION_ID");
    match sid {
        Some(sid) => c.env("CLAUDEMESH_SESSION_ID", sid),
        None => c.env_remove("CLAUDEMESH_SESSION_ID"),
    };
    match name {
        Some(n) => c.env("CLAUDEMESH_NAME", n),
        None => c.env_remove("CLAUDEMESH_NAME"),
    };
    c
}

/// Starts `claudemesh mcp` as Claude Code does: a child of this process (which thus plays the
/// `claude` process), with `CLAUDEMESH_SESSION_ID` only when `sid` is given.
pub async fn mcp_with(
    paths: &Paths,
    sid: Option<&str>,
    name: &str,
    channel: bool,
) -> (Mcp, mpsc::UnboundedReceiver<CustomNotification>) {
    let cmd = mcp_command(paths, sid, Some(name));
    let transport = TokioChildProcess::new(cmd).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Claude { channel, tx, prompts: None, tools: None }.serve(transport).await.unwrap();
    (client, rx)
}

/// Starts `claudemesh mcp` for `paths` as session `sid` named `name`, without channels;
/// the receiver gets one `()` per `notifications/prompts/list_changed`.
pub async fn mcp_watching_prompts(
    paths: &Paths,
    sid: &str,
    name: &str,
) -> (Mcp, mpsc::UnboundedReceiver<()>) {
    let cmd = mcp_command(paths, Some(sid), Some(name));
    let transport = TokioChildProcess::new(cmd).unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let (ptx, prx) = mpsc::unbounded_channel();
    let client =
        Claude { channel: false, tx, prompts: Some(ptx), tools: None }.serve(transport).await.unwrap();
    (client, prx)
}

/// Starts `claudemesh mcp` as session `sid` in directory `cwd` with no chosen name
/// (`CLAUDEMESH_NAME` unset), as a Claude Code started there without `launch --name` does.
pub async fn mcp_unnamed(paths: &Paths, sid: &str, cwd: &std::path::Path) -> Mcp {
    let mut cmd = mcp_command(paths, Some(sid), None);
    cmd.current_dir(cwd);
    let transport = TokioChildProcess::new(cmd).unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    Claude { channel: false, tx, prompts: None, tools: None }.serve(transport).await.unwrap()
}

/// `claudemesh mcp` for `paths` as session `sid` named `name`, declaring channels when
/// `channel`: its custom notifications, and one `()` per `notifications/tools/list_changed`.
pub async fn mcp_watching_tools(
    paths: &Paths,
    sid: &str,
    name: &str,
    channel: bool,
) -> (Mcp, mpsc::UnboundedReceiver<CustomNotification>, mpsc::UnboundedReceiver<()>) {
    let cmd = mcp_command(paths, Some(sid), Some(name));
    let transport = TokioChildProcess::new(cmd).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ttx, trx) = mpsc::unbounded_channel();
    let client = Claude { channel, tx, prompts: None, tools: Some(ttx) }.serve(transport).await.unwrap();
    (client, rx, trx)
}

/// `claudemesh mcp --service …` as a child of this test, its stdio the MCP channel and its
/// stderr kept, so that a test can see how it exits.
pub struct ServiceMcp {
    pub client: Mcp,
    /// One `()` per `notifications/tools/list_changed`.
    pub tools_changed: mpsc::UnboundedReceiver<()>,
    pub child: tokio::process::Child,
}

impl ServiceMcp {
    /// Starts `claudemesh mcp --service service --mesh mesh --launch-pid 4242` for `paths`.
    pub async fn start(paths: &Paths, service: &str, mesh: &str) -> Self {
        let mut child = tokio::process::Command::new(EXE)
            .args(["mcp", "--service", service, "--mesh", mesh, "--launch-pid", "4242"])
            .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
            .env_remove("CLAUDEMESH_SESSION_ID")
            .env_remove("CLAUDEMESH_NAME")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let (tx, _rx) = mpsc::unbounded_channel();
        let (ttx, tools_changed) = mpsc::unbounded_channel();
        let client = Claude { channel: false, tx, prompts: None, tools: Some(ttx) }.serve(io).await.unwrap();
        Self { client, tools_changed, child }
    }

    /// Waits (15 s at most) for the process to exit on its own: its exit code and stderr.
    pub async fn exited(mut self) -> (Option<i32>, String) {
        use tokio::io::AsyncReadExt;
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("claudemesh mcp --service did not exit")
            .unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        (status.code(), err)
    }
}

/// Waits for one `()` on `rx` (15 s at most).
pub async fn changed(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    tokio::time::timeout(Duration::from_secs(15), rx.recv()).await.is_ok_and(|r| r.is_some())
}

pub async fn call(c: &Mcp, name: &'static str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else { panic!("args must be an object") };
    c.call_tool(CallToolRequestParams::new(name).with_arguments(args)).await.unwrap()
}

/// Calls `check_messages` until its text contains `needle` (10 s at most); returns that text.
pub async fn check_messages_until(c: &Mcp, needle: &str) -> String {
    let mut got = String::new();
    for _ in 0..400 {
        got = text(&call(c, "check_messages", serde_json::json!({})).await);
        if got.contains(needle) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("check_messages never returned {needle:?}; last: {got}");
}

pub fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

pub fn is_error(r: &CallToolResult) -> bool {
    r.is_error == Some(true)
}

pub async fn next_channel(rx: &mut mpsc::UnboundedReceiver<CustomNotification>) -> Value {
    let n = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("no channel notification")
        .unwrap();
    assert_eq!(n.method, "notifications/claude/channel");
    let p = n.params.unwrap();
    let meta = p["meta"].as_object().expect("meta is an object");
    for (k, v) in meta {
        assert!(!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "meta key {k:?}");
        assert!(!k.starts_with(|c: char| c.is_ascii_digit()), "meta key {k:?}");
        assert!(v.is_string(), "meta value for {k} is not a string: {v}");
    }
    for k in ["from", "from_id", "mesh", "priority", "msg_id", "kind"] {
        assert!(meta.contains_key(k), "meta lacks {k}: {p}");
    }
    p
}

/// Asserts a channel notification's `content` is the shared framing: a header line naming
/// the verified member name `from` (then its short member id, then the session's own name as a
/// quoted claim when given), and `body` with every line indented by four spaces.
pub fn assert_framed(p: &Value, from: &str, claim: Option<&str>, body: &str) {
    let c = p["content"].as_str().expect("content is a string");
    let (head, rest) = c.split_once('\n').unwrap_or_else(|| panic!("no header line: {c:?}"));
    assert!(
        head.starts_with('[') && head.contains(&format!("] from {from} (")) && head.ends_with("):"),
        "{c:?}"
    );
    if let Some(claim) = claim {
        assert!(head.contains(&format!(") as \"{claim}\" (")), "{c:?}");
    }
    assert_eq!(rest, claudemesh_protocol::text::indent(body, "    "), "{c:?}");
    assert!(p["meta"]["from"].as_str().is_some_and(|f| f.starts_with(&format!("{from} ("))), "{p}");
}
