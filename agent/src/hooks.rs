//! The hook rung of the delivery ladder (DESIGN §6): ties a Claude Code hook to its session (by
//! `CLAUDEMESH_SESSION_ID`, Claude Code's `session_id`, or the `claude` process both share),
//! applies the working/idle status the hook implies, and hands out the messages a hook may show:
//! each once, never one already pushed or shown. `hook_wait` lets the `Stop` hook sleep until one
//! is due.

use std::sync::Arc;
use std::time::Duration;

use claudemesh_protocol::frames::{ErrorCode, Priority, SessionPatch, SessionStatus};
use claudemesh_protocol::local::{HookCall, HookEvent, InboxMessage, WaitOutcome};
use serde_json::{Value, json};

use crate::api::{ApiError, mark_seen_where};
use crate::inbox::touch;
use crate::state::Agent;
use crate::store::InboxRecord;

/// The longest a `hook_wait` may last (the `Stop` hook is installed with a one-day timeout).
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

fn internal(e: impl std::fmt::Display) -> ApiError {
    (ErrorCode::Internal, e.to_string())
}

/// Whether a hook of `event` may show a message of `priority` to a session in `status`: `now`
/// always; `next` at a turn boundary (session start, a new prompt, the end of a turn) or while
/// idle, unless the session is `dnd`; `low` never (the model asks with `check_messages`).
pub fn due(event: HookEvent, priority: Priority, status: SessionStatus) -> bool {
    match priority {
        Priority::Now => true,
        Priority::Low => false,
        Priority::Next => {
            status != SessionStatus::Dnd
                && (status == SessionStatus::Idle
                    || matches!(
                        event,
                        HookEvent::SessionStart | HookEvent::UserPromptSubmit | HookEvent::Stop
                    ))
        }
    }
}

/// The status a hook implies: a prompt or a tool call means working, the start of a session or
/// the end of a turn means idle. `dnd` is the session's own choice and no hook overrides it.
pub fn implied_status(event: HookEvent, current: SessionStatus) -> Option<SessionStatus> {
    let want = match event {
        _ if current == SessionStatus::Dnd => return None,
        HookEvent::SessionStart | HookEvent::Stop => SessionStatus::Idle,
        HookEvent::UserPromptSubmit | HookEvent::PostToolUse => SessionStatus::Working,
        HookEvent::Rewake => return None,
    };
    (want != current).then_some(want)
}

/// The registered session a hook belongs to: the one `claudemesh launch` named, else the one
/// Claude Code's `session_id` was seen with (or equals), else the newest one whose `claude`
/// process is an ancestor of the hook.
pub fn find_session(agent: &Agent, call: &HookCall) -> Option<String> {
    let mut sessions = agent.sessions();
    let newest = |f: &dyn Fn(&crate::state::LocalSession) -> bool| {
        sessions.values().filter(|s| f(s)).max_by_key(|s| s.last_active).map(|s| s.info.session_id.clone())
    };
    let found = call
        .session_id
        .as_ref()
        .filter(|id| sessions.contains_key(*id))
        .cloned()
        .or_else(|| {
            let c = call.claude_session_id.as_deref()?;
            if sessions.contains_key(c) {
                return Some(c.to_string());
            }
            newest(&|s| s.claude_session.as_deref() == Some(c))
        })
        .or_else(|| {
            call.pids.iter().filter(|p| **p > 1).find_map(|pid| newest(&|s| s.claude_pid == Some(*pid)))
        })?;
    if let (Some(c), Some(s)) = (&call.claude_session_id, sessions.get_mut(&found)) {
        s.claude_session = Some(c.clone());
    }
    Some(found)
}

/// `hook`: status change, then the messages this hook shows (marked seen by the session).
pub fn hook(agent: &Agent, call: &HookCall) -> Result<Value, ApiError> {
    let sid = find_session(agent, call).ok_or_else(|| {
        (
            ErrorCode::NotFound,
            "no claudemesh session belongs to this Claude Code process; is the claudemesh MCP server \
             configured (`claudemesh install`) and running?"
                .to_string(),
        )
    })?;
    let current = agent.sessions().get(&sid).map(|s| s.info.status).unwrap_or_default();
    let status = match implied_status(call.event, current) {
        Some(next) => {
            crate::sessions::update(agent, &sid, SessionPatch { status: Some(next), ..Default::default() })?;
            next
        }
        None => current,
    };
    if matches!(call.event, HookEvent::UserPromptSubmit | HookEvent::PostToolUse) {
        touch(agent, &sid);
    }
    let messages = if call.status_only { Vec::new() } else { take(agent, &sid, call.event, status)? };
    Ok(json!({ "session_id": sid, "status": status, "messages": messages }))
}

/// The unseen, unpushed messages of `sid` that `event` may show; chosen and marked seen under the
/// delivery lock, so no push or other hook shows them too.
fn take(
    agent: &Agent,
    sid: &str,
    event: HookEvent,
    status: SessionStatus,
) -> Result<Vec<InboxMessage>, ApiError> {
    mark_seen_where(agent, Some(sid), |r| waiting_for(r, sid) && due(event, r.message.priority, status))
}

/// Routed to `sid`, and neither shown to it nor pushed to it.
fn waiting_for(r: &InboxRecord, sid: &str) -> bool {
    r.deliveries.get(sid).is_some_and(|d| !d.seen && !d.pushed)
}

fn has_due(agent: &Agent, sid: &str, status: SessionStatus) -> Result<bool, ApiError> {
    Ok(agent
        .store
        .inbox_unseen(sid)
        .map_err(internal)?
        .iter()
        .any(|r| waiting_for(r, sid) && due(HookEvent::Rewake, r.message.priority, status)))
}

/// `hook_wait`: returns `ready` as soon as `sid` has a message due (taking nothing, so a hook
/// killed while waiting loses nothing), or why it stopped waiting.
pub async fn wait(agent: &Arc<Agent>, sid: &str, timeout_ms: u64) -> Result<Value, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms).min(MAX_WAIT);
    let mut changes = agent.watch_changes();
    let generation = {
        let mut sessions = agent.sessions();
        let s = sessions
            .get_mut(sid)
            .ok_or_else(|| (ErrorCode::NotFound, format!("no session {sid} registered with this agent")))?;
        s.waiter += 1;
        s.waiting = true;
        s.waiter
    };
    let _waiting = WaitingMark { agent, sid, generation };
    // Wakes the previous waiter of this session, which now sees it was superseded.
    agent.bump();
    let outcome = loop {
        let status = match agent.sessions().get(sid) {
            None => break Ok(WaitOutcome::Closed),
            Some(s) if s.waiter != generation => break Ok(WaitOutcome::Superseded),
            Some(s) => s.info.status,
        };
        match has_due(agent, sid, status) {
            Ok(true) => break Ok(WaitOutcome::Ready),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { break Ok(WaitOutcome::Closed) },
            () = tokio::time::sleep_until(deadline) => break Ok(WaitOutcome::Timeout),
            () = agent.shutdown.cancelled() => break Ok(WaitOutcome::Closed),
        }
    };
    let outcome = outcome?;
    Ok(json!({ "session_id": sid, "outcome": outcome }))
}

/// Clears the session's "a Stop hook is waiting" mark when this waiter ends, however it ends
/// (including its client going away mid-wait), unless a newer waiter took over.
struct WaitingMark<'a> {
    agent: &'a Agent,
    sid: &'a str,
    generation: u64,
}

impl Drop for WaitingMark<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.agent.sessions().get_mut(self.sid).filter(|s| s.waiter == self.generation) {
            s.waiting = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_hook_may_show() {
        use HookEvent::*;
        use Priority::*;
        use SessionStatus::*;
        // (event, priority, status, due)
        let table = [
            (UserPromptSubmit, Now, Working, true),
            (UserPromptSubmit, Next, Working, true),
            (UserPromptSubmit, Low, Working, false),
            (UserPromptSubmit, Next, Dnd, false),
            (UserPromptSubmit, Now, Dnd, true),
            (PostToolUse, Now, Working, true),
            (PostToolUse, Next, Working, false),
            (PostToolUse, Next, Idle, true),
            (Stop, Next, Idle, true),
            (Stop, Next, Dnd, false),
            (SessionStart, Next, Idle, true),
            (Rewake, Next, Working, false),
            (Rewake, Next, Idle, true),
            (Rewake, Now, Working, true),
            (Rewake, Low, Idle, false),
        ];
        for (e, p, s, want) in table {
            assert_eq!(due(e, p, s), want, "{e:?} {p:?} {s:?}");
        }
    }

    #[test]
    fn hooks_set_working_and_idle_but_never_override_dnd() {
        use HookEvent::*;
        use SessionStatus::*;
        assert_eq!(implied_status(UserPromptSubmit, Idle), Some(Working));
        assert_eq!(implied_status(PostToolUse, Idle), Some(Working));
        assert_eq!(implied_status(PostToolUse, Working), None);
        assert_eq!(implied_status(Stop, Working), Some(Idle));
        assert_eq!(implied_status(SessionStart, Idle), None);
        assert_eq!(implied_status(Rewake, Working), None);
        for e in [SessionStart, UserPromptSubmit, PostToolUse, Stop, Rewake] {
            assert_eq!(implied_status(e, Dnd), None, "{e:?}");
        }
    }
}
