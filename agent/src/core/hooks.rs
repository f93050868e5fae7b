//! The hook rung of the delivery ladder (DESIGN §6): ties a Claude Code hook to its session (by
//! `CLAUDEMESH_SESSION_ID`, Claude Code's `session_id`, or the `claude` process both share, and
//! never a nested `claude` as its outer session), applies the working/idle status the hook
//! implies, and takes the messages a hook may show under a lease: each once, never one pushed
//! within the grace or held by another take. `hook_wait` lets the `Stop` hook sleep until one
//! is due.

use std::time::Instant;

use claudemesh_protocol::frames::{ErrorCode, Priority, SessionPatch, SessionStatus};
use claudemesh_protocol::limits::{HOOK_CONTEXT_MAX_CHARS, PUSH_GRACE_MILLIS};
use claudemesh_protocol::local::{HookCall, HookEvent, HookReply, WaitOutcome};
use serde_json::Value;
use tokio::sync::oneshot;

use super::calls::to_value;
use super::delivery::Page;
use super::state::Waiter;
use super::{Core, Effect, now_ms};
use crate::error::ApiError;
use crate::store::Delivery;

/// Most messages one hook shows.
const HOOK_PAGE: usize = 20;

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

/// Whether a hook may show this delivery: not shown, and not pushed (or pushed longer than
/// the grace ago without being seen: the notification may have been dropped).
fn hook_may_show(d: &Delivery, now_ms: u64) -> bool {
    !d.seen && (!d.pushed || d.pushed_at.is_none_or(|at| now_ms.saturating_sub(at) >= PUSH_GRACE_MILLIS))
}

impl Core {
    /// The registered session a hook belongs to: the one `claudemesh launch` named, else the
    /// one Claude Code's `session_id` was seen with (or equals), else the newest one whose
    /// `claude` process is an ancestor of the hook. A session whose `claude` is known and is not
    /// the hook's `claude` is not the hook's, whatever id the hook inherited.
    pub(crate) fn find_session(&mut self, call: &HookCall) -> Option<String> {
        let sessions = &self.state.sessions;
        let same_claude = |sid: &str| match (sessions.get(sid).and_then(|s| s.claude_pid), call.claude_pid) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let newest = |f: &dyn Fn(&super::state::LocalSession) -> bool| {
            sessions
                .values()
                .filter(|s| f(s))
                .max_by_key(|s| s.last_active)
                .map(|s| s.info.session_id.clone())
        };
        let found = call
            .session_id
            .as_ref()
            .filter(|id| sessions.contains_key(*id) && same_claude(id))
            .cloned()
            .or_else(|| {
                let c = call.claude_session_id.as_deref()?;
                if sessions.contains_key(c) && same_claude(c) {
                    return Some(c.to_string());
                }
                newest(&|s| s.claude_session.as_deref() == Some(c))
            })
            .or_else(|| match call.claude_pid {
                // The hook's own `claude`: an outer one further up is another session's.
                Some(own) => newest(&|s| s.claude_pid == Some(own)),
                None => call
                    .pids
                    .iter()
                    .filter(|p| **p > 1)
                    .find_map(|pid| newest(&|s| s.claude_pid == Some(*pid))),
            })?;
        if let (Some(c), Some(s)) = (&call.claude_session_id, self.state.sessions.get_mut(&found)) {
            s.claude_session = Some(c.clone());
        }
        Some(found)
    }

    /// `hook`: the status change, then the messages this hook shows, under a lease.
    pub(crate) fn hook(&mut self, call: &HookCall, now: Instant) -> Result<Value, ApiError> {
        let sid = self.find_session(call).ok_or_else(|| {
            (
                ErrorCode::NotFound,
                "no claudemesh session belongs to this Claude Code process; is the claudemesh MCP server \
                 configured (`claudemesh install`) and running?"
                    .to_string(),
            )
        })?;
        let current = self.state.sessions.get(&sid).map(|s| s.info.status).unwrap_or_default();
        let status = match implied_status(call.event, current) {
            Some(next) => {
                self.update(&sid, SessionPatch { status: Some(next), ..Default::default() }, now)?;
                next
            }
            None => current,
        };
        if matches!(call.event, HookEvent::UserPromptSubmit | HookEvent::PostToolUse)
            && let Some(s) = self.state.sessions.get_mut(&sid)
        {
            s.last_active = now;
        }
        let (messages, lease, more) = if call.status_only {
            (Vec::new(), None, 0)
        } else {
            let now_ms = now_ms();
            let event = call.event;
            let keys = self
                .candidates(&sid, |r, d| hook_may_show(d, now_ms) && due(event, r.message.priority, status));
            self.take(&sid, keys, &Page { limit: HOOK_PAGE, max_chars: HOOK_CONTEXT_MAX_CHARS }, now)
        };
        to_value(&HookReply { session_id: sid, status, messages, lease, more })
    }

    /// Whether `sid` has a message a `rewake` hook would take now.
    fn has_due(&self, sid: &str) -> bool {
        let Some(status) = self.state.sessions.get(sid).map(|s| s.info.status) else { return false };
        let now_ms = now_ms();
        // Existence only: no list, no sort (this runs for every waiter on every turn).
        self.state.unseen_of(sid).any(|(k, r)| {
            r.deliveries.get(sid).is_some_and(|d| {
                !d.seen && hook_may_show(d, now_ms) && due(HookEvent::Rewake, r.message.priority, status)
            }) && !self.state.is_leased(k, sid)
        })
    }

    /// `hook_wait` starts: a newer waiter supersedes the older one, which is told so.
    pub(crate) fn wait(&mut self, sid: &str) -> Result<(u64, oneshot::Receiver<WaitOutcome>), ApiError> {
        let Some(s) = self.state.sessions.get_mut(sid) else {
            return Err((ErrorCode::NotFound, format!("no session {sid} registered with this agent")));
        };
        s.waiter += 1;
        s.waiting = true;
        let generation = s.waiter;
        let (tx, rx) = oneshot::channel();
        if let Some(old) = self.state.waiters.insert(sid.to_string(), Waiter { generation, tx }) {
            self.effect(Effect::Woken(old.tx, WaitOutcome::Superseded));
        }
        self.changed();
        Ok((generation, rx))
    }

    /// A waiter ended on its side (timeout, client gone): forget it unless a newer one took over.
    pub(crate) fn wait_ended(&mut self, sid: &str, generation: u64) {
        if self.state.waiters.get(sid).is_some_and(|w| w.generation == generation) {
            self.state.waiters.remove(sid);
        }
        if let Some(s) = self.state.sessions.get_mut(sid).filter(|s| s.waiter == generation) {
            s.waiting = false;
            self.changed();
        }
    }

    /// Wakes each waiter whose session now has a message due (it takes nothing: the hook then
    /// calls `hook {event: rewake}`).
    pub(crate) fn wake_waiters(&mut self) {
        let ready: Vec<String> = self.state.waiters.keys().filter(|sid| self.has_due(sid)).cloned().collect();
        for sid in ready {
            if let Some(w) = self.state.waiters.remove(&sid) {
                self.effect(Effect::Woken(w.tx, WaitOutcome::Ready));
            }
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
