//! The mesh tools: their descriptions and JSON schemas, and what each call asks of the agent.
//! Failures come back as `isError: true` results that say what to do next.

use std::sync::Arc;

use claudemesh_agent::ClientError;
use claudemesh_protocol::frames::{ErrorCode, GroupRole, Priority, SessionPatch, SessionStatus};
use claudemesh_protocol::local::{AgentCall, MessageStatusReply, PeerEntry, SendParams, SendReply};
use claudemesh_protocol::text;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, RequestId, Tool};
use serde_json::{Value, json};

use super::{Leases, Shared, inbox};

/// Where a tool call files a lease to confirm once its result was written: the registry and
/// the JSON-RPC id of the call.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub leases: &'a Leases,
    pub request: &'a RequestId,
}

pub fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let schema = match schema {
        Value::Object(o) => o,
        _ => JsonObject::new(),
    };
    Tool::new(name, description, Arc::new(schema))
}

pub fn object(props: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false })
}

/// Every tool this server offers.
pub fn all() -> Vec<Tool> {
    let mut tools = messaging();
    tools.extend(super::services::all());
    tools.extend(super::sharing::all());
    tools
}

/// The messaging tools.
fn messaging() -> Vec<Tool> {
    vec![
        tool(
            "send_message",
            "Send a message to other Claude Code sessions or people in your mesh. `to` is a peer \
             session's name or id (from list_peers), a member's name, `@group` for everyone in a \
             group, or `*` for everyone. Returns the message id; use message_status(id) to see \
             whether it was delivered and seen. To reply to a message, send to its `from_id`.",
            object(
                json!({
                    "to": {"type": "string", "description": "Session or member name or id, @group, or *"},
                    "message": {"type": "string", "description": "The message text, at most 64 KiB (less if full of quotes, backslashes or control characters)"},
                    "priority": {"type": "string", "enum": ["now", "next", "low"], "default": "next",
                        "description": "now: interrupts the recipient; next: at its next turn boundary (default); low: only when it checks messages"}
                }),
                &["to", "message"],
            ),
        ),
        tool(
            "list_peers",
            "List the sessions online in your meshes: name, id, status (idle/working/dnd), \
             summary of what each is doing, groups, host and mesh. Your own session is marked.",
            object(json!({}), &[]),
        ),
        tool(
            "check_messages",
            "Return the mesh messages for this session that you have not seen yet, oldest first, \
             and mark them seen (a message is never returned twice). One call returns a page; \
             when it says more are waiting, call again. Set include_seen to also get earlier \
             ones, or msg_id to read one message whole (a hook shows long ones cut).",
            object(
                json!({"include_seen": {"type": "boolean", "default": false,
                    "description": "Also return messages already seen (history)"},
                       "msg_id": {"type": "string",
                    "description": "Return only this message, whole (seen or not)"}}),
                &[],
            ),
        ),
        tool(
            "message_status",
            "Show the delivery state of a message you sent (by the id send_message returned): \
             queued, delivered to the recipient's machine, or seen, per recipient.",
            object(json!({"id": {"type": "string", "description": "The id send_message returned"}}), &["id"]),
        ),
        tool(
            "set_summary",
            "Tell your peers in one line what you are working on; list_peers shows it to them.",
            object(
                json!({"summary": {"type": "string", "description": "One line, e.g. 'fixing the login bug in auth.rs'"}}),
                &["summary"],
            ),
        ),
        tool(
            "set_status",
            "Set your availability: idle (messages arrive at once), working (`next` messages wait \
             for a turn boundary), dnd (only `now` messages interrupt; the rest wait).",
            object(json!({"status": {"type": "string", "enum": ["idle", "working", "dnd"]}}), &["status"]),
        ),
        tool(
            "join_group",
            "Join a group so messages sent to `@name` reach you, optionally with a role in it \
             (e.g. lead, reviewer).",
            object(
                json!({"name": {"type": "string", "description": "Group name, without the @"},
                       "role": {"type": "string", "description": "Your role in the group (optional)"}}),
                &["name"],
            ),
        ),
        tool(
            "leave_group",
            "Leave a group you joined; messages to `@name` stop reaching you.",
            object(
                json!({"name": {"type": "string", "description": "Group name, without the @"}}),
                &["name"],
            ),
        ),
    ]
}

pub fn ok(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn fail(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// An agent error as a result the model can act on.
pub fn agent_error(e: &ClientError) -> CallToolResult {
    match e {
        ClientError::Api(le) => {
            let hint = match le.code {
                ErrorCode::NotFound => " Call list_peers to see who is online and the exact names.",
                ErrorCode::Conflict => " Use a session id from list_peers instead of a name.",
                ErrorCode::TooLarge => " Shorten the message or split it.",
                ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Timeout => " Try again shortly.",
                _ => "",
            };
            // The agent's words can quote peers' names and hosts (an ambiguity): one line.
            let message = text::one_line(&le.message);
            let stop = if message.ends_with(['.', '!', '?']) { "" } else { "." };
            fail(format!("{message}{stop}{hint}"))
        }
        other => fail(format!(
            "The claudemesh agent is not reachable ({other}). Ask the user to run `claudemesh status` \
             or `claudemesh agent start`, then try again."
        )),
    }
}

pub type Args = JsonObject;

// `CallToolResult` is large once serde_json keeps key order (`preserve_order`); this is a cold path.
#[allow(clippy::result_large_err)]
pub fn str_arg(args: &Args, key: &str) -> Result<String, CallToolResult> {
    match args.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => Err(fail(format!("`{key}` is required (a non-empty string)."))),
        Some(Value::String(_)) => Err(fail(format!("`{key}` must not be empty."))),
        Some(other) => Err(fail(format!("`{key}` must be a string, not {other}."))),
    }
}

pub fn opt_str(args: &Args, key: &str) -> Option<String> {
    args.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

/// Runs tool `name`; `None` when there is no such tool.
pub async fn call(link: &Shared, held: Held<'_>, name: &str, args: &Args) -> Option<CallToolResult> {
    let r = match name {
        "send_message" => send_message(link, args).await,
        "list_peers" => list_peers(link).await,
        "check_messages" => inbox::check_messages(link, held, args).await,
        "message_status" => message_status(link, args).await,
        "set_summary" => set_summary(link, args).await,
        "set_status" => set_status(link, args).await,
        "join_group" => join_group(link, args).await,
        "leave_group" => leave_group(link, args).await,
        other => match super::services::call(link, other, args).await {
            Some(r) => return Some(r),
            None => return super::sharing::call(link, other, args).await,
        },
    };
    Some(r.unwrap_or_else(|e| e))
}

pub type ToolResult = Result<CallToolResult, CallToolResult>;

async fn send_message(link: &Shared, args: &Args) -> ToolResult {
    let (to, message) = (str_arg(args, "to")?, str_arg(args, "message")?);
    let priority = match opt_str(args, "priority").as_deref() {
        None | Some("next") => Priority::Next,
        Some("now") => Priority::Now,
        Some("low") => Priority::Low,
        Some(p) => return Err(fail(format!("priority {p:?} is not one of now, next, low."))),
    };
    let mut l = link.lock().await;
    let from_session = Some(l.session_id().to_string());
    // One key per tool call: the retry after a broken connection cannot send twice.
    let idempotency_key = Some(uuid::Uuid::new_v4().to_string());
    let p = SendParams { to, message, priority, mesh: None, from_session, reply_to: None, idempotency_key };
    let r: SendReply = l.request_retry(AgentCall::Send(p)).await.map_err(|e| agent_error(&e))?;
    let recipients = r.recipients + r.local;
    let Some(id) = r.id else {
        return Ok(ok(format!(
            "Sent to {} ({recipients} session(s) on this machine) on mesh {}.",
            r.target, r.mesh
        )));
    };
    Ok(ok(format!(
        "Sent to {} ({recipients} recipient(s)) on mesh {}. Message id: {id} — message_status(\"{id}\") \
         tells whether it was seen.",
        r.target, r.mesh,
    )))
}

fn status_str(s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Idle => "idle",
        SessionStatus::Working => "working",
        SessionStatus::Dnd => "dnd",
    }
}

/// One line of `list_peers`: the session as [`text::sender`] names it (the member's directory
/// name and short id, the session's own name as a quoted claim), its id, state, mesh, host and
/// working directory, groups and summary; every peer-chosen field folded to one line and capped.
fn peer_line(p: &PeerEntry, own: &str) -> String {
    let s = &p.peer.session;
    let groups: Vec<String> = s.groups.iter().map(|g| format!("@{}", text::name(&g.name))).collect();
    let me = match (s.session_id == own, p.me) {
        (true, _) => " (you)",
        (false, true) => " (your other session)",
        _ => "",
    };
    let summary = s.summary.as_deref().map(|x| format!(" — {}", text::meta_value(x))).unwrap_or_default();
    let groups = if groups.is_empty() { String::new() } else { format!(" [{}]", groups.join(" ")) };
    let who = text::sender(p.member_name.as_deref().unwrap_or("?"), &p.peer.member_id, Some(&s.display_name));
    format!(
        "- {who}{me} (id {}, {}, mesh {}, host {}, cwd {}){groups}{summary}",
        text::name(&s.session_id),
        status_str(s.status),
        text::name(&p.mesh),
        text::name(s.hostname.as_deref().unwrap_or("?")),
        text::meta_value(s.cwd.as_deref().unwrap_or("?")),
    )
}

async fn list_peers(link: &Shared) -> ToolResult {
    let (peers, own) = {
        let mut l = link.lock().await;
        let peers: Vec<PeerEntry> =
            l.request_retry(AgentCall::Peers { mesh: None }).await.map_err(|e| agent_error(&e))?;
        (peers, l.session_id().to_string())
    };
    if peers.is_empty() {
        return Ok(ok("Nobody is online in your meshes right now."));
    }
    Ok(ok(peers.iter().map(|p| peer_line(p, &own)).collect::<Vec<_>>().join("\n")))
}

async fn message_status(link: &Shared, args: &Args) -> ToolResult {
    let msg_id = str_arg(args, "id")?;
    let r: MessageStatusReply = link
        .lock()
        .await
        .request_retry(AgentCall::MessageStatus { msg_id })
        .await
        .map_err(|e| agent_error(&e))?;
    Ok(ok(serde_json::to_string_pretty(&r).unwrap_or_default()))
}

async fn set_summary(link: &Shared, args: &Args) -> ToolResult {
    let summary = str_arg(args, "summary")?;
    let patch = SessionPatch { summary: Some(summary), ..Default::default() };
    link.lock().await.update(patch).await.map_err(|e| agent_error(&e))?;
    Ok(ok("Summary set; peers see it in list_peers."))
}

async fn set_status(link: &Shared, args: &Args) -> ToolResult {
    let status = match str_arg(args, "status")?.as_str() {
        "idle" => SessionStatus::Idle,
        "working" => SessionStatus::Working,
        "dnd" => SessionStatus::Dnd,
        s => return Err(fail(format!("status {s:?} is not one of idle, working, dnd."))),
    };
    let patch = SessionPatch { status: Some(status), ..Default::default() };
    link.lock().await.update(patch).await.map_err(|e| agent_error(&e))?;
    Ok(ok("Status set."))
}

async fn join_group(link: &Shared, args: &Args) -> ToolResult {
    let name = str_arg(args, "name")?;
    let name = name.trim_start_matches('@').to_string();
    if let Err(e) = claudemesh_protocol::names::validate_group_name(&name) {
        return Err(fail(format!("{name:?} is not a valid group name: {e}")));
    }
    let mut l = link.lock().await;
    // The whole set the session is in (granted groups included), with this one added.
    let mut groups = l.groups().to_vec();
    groups.retain(|g| g.name != name);
    groups.push(GroupRole { name: name.clone(), role: opt_str(args, "role") });
    let patch = SessionPatch { groups: Some(groups), ..Default::default() };
    l.update(patch).await.map_err(|e| agent_error(&e))?;
    Ok(ok(format!("Joined @{name}; messages to @{name} now reach you.")))
}

async fn leave_group(link: &Shared, args: &Args) -> ToolResult {
    let name = str_arg(args, "name")?.trim_start_matches('@').to_string();
    let mut l = link.lock().await;
    // Leaving a group granted to the member works too: the patch is the whole set without it.
    let mut groups = l.groups().to_vec();
    let before = groups.len();
    groups.retain(|g| g.name != name);
    if groups.len() == before {
        let current: Vec<String> = groups.iter().map(|g| format!("@{}", g.name)).collect();
        return Err(fail(format!(
            "You are not in @{name}. Your groups: {}.",
            if current.is_empty() { "none".to_string() } else { current.join(", ") }
        )));
    }
    let patch = SessionPatch { groups: Some(groups), ..Default::default() };
    l.update(patch).await.map_err(|e| agent_error(&e))?;
    Ok(ok(format!("Left @{name}.")))
}
