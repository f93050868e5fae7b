//! `claudemesh hook <event>`: the hook rung of the delivery ladder (DESIGN §6). Claude Code runs
//! it with the hook's JSON on stdin. `SessionStart`, `UserPromptSubmit` and `PostToolUse` print
//! the messages due as `additionalContext`; `Stop` (installed with `asyncRewake`) marks the
//! session idle, then waits on the agent for a `now`/`next` message and wakes the session with it
//! (stderr, exit 2). Every hook also tells the agent whether the session is working or idle.
//! Hooks fired inside a subagent (input with `agent_id`) show nothing: the subagent's context
//! ends with its task, so messages wait for the main conversation.
//!
//! What a hook shows counts as seen only once it was written (DESIGN §6): the agent holds the
//! messages under a lease, and the hook confirms it after its output was flushed. Messages that
//! did not fit [`HOOK_CONTEXT_MAX_CHARS`] are not confirmed: they wait for the next hook or
//! `check_messages`.
//!
//! A hook never fails the user's session: any error, panic or timeout ends with exit 0 and
//! nothing printed (details on stderr only with `CLAUDEMESH_DEBUG=1`).

pub(crate) mod ancestry;
mod format;

use std::process::ExitCode;
use std::time::Duration;

use claudemesh_agent::{AgentClient, Paths};
use claudemesh_protocol::limits::HOOK_CONTEXT_MAX_CHARS;
use claudemesh_protocol::local::{
    AgentCall, ConfirmReply, HookCall, HookEvent, HookReply, WaitOutcome, WaitReply,
};
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, timeout};

#[cfg(test)]
pub(crate) use format::tests::msg as sample_message;
pub use format::{Shown, additional_context, message_text, messages_text};

/// Time budget of the hooks Claude Code waits for (they are installed with a 10 s timeout).
const SYNC_BUDGET: Duration = Duration::from_secs(5);

/// How long reading the hook input may take.
const INPUT_BUDGET: Duration = Duration::from_secs(2);

/// How long the `Stop` hook waits for a message: under its installed 24 h timeout.
const STOP_WAIT: Duration = Duration::from_secs(24 * 3600 - 600);

/// Hook input beyond this is read and dropped (a `PostToolUse` input carries the tool's output).
const MAX_INPUT: usize = 4 << 20;

/// What the hook ends with.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Exit 0, print nothing.
    Nothing,
    /// Exit 0 with this hook JSON on stdout.
    Context(serde_json::Value),
    /// Exit 2 with this text on stderr: an `asyncRewake` hook wakes the model with it.
    Wake(String),
}

/// The fields of Claude Code's hook input that claudemesh reads.
#[derive(Debug, Default)]
struct Input {
    session_id: Option<String>,
    hook_event_name: Option<String>,
    /// Set when the hook fires inside a subagent (the Task tool), not the main conversation.
    agent_id: Option<String>,
}

impl Input {
    fn parse(bytes: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Input {
            session_id: field("session_id"),
            hook_event_name: field("hook_event_name"),
            agent_id: field("agent_id").filter(|a| !a.is_empty()),
        }
    }
}

/// What the hook ends with, and what to mark seen once that was written.
#[derive(Debug)]
struct Done {
    outcome: Outcome,
    ack: Option<Ack>,
}

impl Done {
    fn nothing() -> Self {
        Done { outcome: Outcome::Nothing, ack: None }
    }
}

/// Marks seen what a hook showed, once its output was written: the whole lease when every
/// message it held was shown, else only the ones shown (the rest are released at once).
#[derive(Debug)]
struct Ack {
    client: AgentClient,
    lease: u64,
    /// The ids shown, when fewer than the lease holds.
    partial: Option<Vec<String>>,
}

impl Ack {
    async fn send(mut self) -> Result<(), claudemesh_agent::ClientError> {
        // Only what was shown becomes seen; the rest of the lease is released at once.
        let r: ConfirmReply = self
            .client
            .request(AgentCall::Confirm { lease: self.lease, msg_ids: self.partial.take() })
            .await?;
        if r.expired {
            debug("the lease ran out before the hook confirmed it; the messages will be offered again");
        }
        Ok(())
    }
}

/// Runs the hook and maps its outcome to output and exit code; never fails. The lease is
/// confirmed only after the output was written and flushed.
pub fn run(event: Option<&str>) -> ExitCode {
    // This process exists only for this hook: a panic must print nothing and exit 0.
    std::panic::set_hook(Box::new(|info| debug(&format!("panic: {info}"))));
    let outcome = std::panic::catch_unwind(|| {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let code = match rt.block_on(handle(event)) {
            Ok(done) => finish(&rt, done),
            Err(e) => {
                debug(&e);
                ExitCode::SUCCESS
            }
        };
        // A stdin read may still block a runtime thread (a writer that never closes): leave it.
        rt.shutdown_background();
        Ok::<_, String>(code)
    });
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            debug(&e);
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::SUCCESS,
    }
}

/// Writes the outcome, then (only if that worked) confirms what it showed.
fn finish(rt: &tokio::runtime::Runtime, done: Done) -> ExitCode {
    let (written, code) = match done.outcome {
        // `outln!` flushes. A reader that went away (Claude Code gave up on the hook) is no
        // reason to fail, but then nothing was shown.
        Outcome::Context(v) => (crate::out::outln!("{v}").is_ok(), ExitCode::SUCCESS),
        Outcome::Wake(text) => {
            use std::io::Write;
            let mut err = std::io::stderr().lock();
            (err.write_all(text.as_bytes()).and_then(|()| err.flush()).is_ok(), ExitCode::from(2))
        }
        Outcome::Nothing => (false, ExitCode::SUCCESS),
    };
    if written && let Some(ack) = done.ack {
        // The timer must be made inside the runtime.
        match rt.block_on(async { timeout(SYNC_BUDGET, ack.send()).await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug(&format!("cannot confirm what was shown: {e}")),
            Err(_) => debug("the agent did not confirm in time"),
        }
    }
    code
}

fn debug(msg: &str) {
    if std::env::var("CLAUDEMESH_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!("claudemesh hook: {msg}");
    }
}

/// Maps a Claude Code hook event name (or its snake_case form) to ours.
pub fn parse_event(name: &str) -> Option<HookEvent> {
    let squashed: String = name.chars().filter(|c| *c != '_' && *c != '-').collect();
    match squashed.to_ascii_lowercase().as_str() {
        "sessionstart" => Some(HookEvent::SessionStart),
        "userpromptsubmit" => Some(HookEvent::UserPromptSubmit),
        "posttooluse" => Some(HookEvent::PostToolUse),
        "stop" => Some(HookEvent::Stop),
        _ => None,
    }
}

/// Claude Code's name for `event`, as `hookSpecificOutput.hookEventName` must say it.
fn claude_name(event: HookEvent) -> &'static str {
    match event {
        HookEvent::SessionStart => "SessionStart",
        HookEvent::UserPromptSubmit => "UserPromptSubmit",
        HookEvent::PostToolUse => "PostToolUse",
        HookEvent::Stop | HookEvent::Rewake => "Stop",
    }
}

/// Whether the `Stop` hook should wait for messages: only in an interactive session. In print
/// or SDK mode Claude Code would hold its exit for a waiting `asyncRewake` hook.
fn interactive() -> bool {
    if std::env::var("CLAUDEMESH_HOOK_WAIT").is_ok_and(|v| v == "0") {
        return false;
    }
    match std::env::var("CLAUDE_CODE_ENTRYPOINT") {
        Ok(e) => !(e.starts_with("sdk") || e == "mcp" || e.contains("github-action")),
        Err(_) => true,
    }
}

/// Reads the hook input to its end (so Claude Code never writes into a closed pipe), keeping
/// at most [`MAX_INPUT`] bytes; unreadable or oversized input yields an empty one.
async fn read_input() -> Input {
    let mut stdin = tokio::io::stdin();
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut overflow = false;
    let read = async {
        loop {
            match stdin.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) if kept.len() + n <= MAX_INPUT => kept.extend_from_slice(&chunk[..n]),
                Ok(_) => overflow = true,
            }
        }
    };
    if timeout(INPUT_BUDGET, read).await.is_err() {
        debug("hook input not closed in time; going on without it");
    }
    if overflow {
        debug("hook input too large; going on without it");
        return Input::default();
    }
    Input::parse(&kept)
}

/// The outcome showing `r`'s messages (made by `make` from their text), with the ack for what
/// fits the budget; nothing when there is nothing to show.
fn show(client: AgentClient, r: HookReply, make: impl FnOnce(String) -> Outcome) -> Done {
    if r.messages.is_empty() {
        return Done::nothing();
    }
    let Shown { text, shown } = messages_text(&r.messages, r.more, HOOK_CONTEXT_MAX_CHARS);
    let partial =
        (shown < r.messages.len()).then(|| r.messages[..shown].iter().map(|m| m.msg_id.clone()).collect());
    let ack = r.lease.map(|lease| Ack { client, lease, partial });
    Done { outcome: make(text), ack }
}

async fn handle(event_arg: Option<&str>) -> Result<Done, String> {
    let input = read_input().await;
    let name = event_arg.or(input.hook_event_name.as_deref()).ok_or("no hook event named")?;
    let event = parse_event(name).ok_or_else(|| format!("not a hook claudemesh handles: {name}"))?;
    if input.agent_id.is_some() {
        // A subagent's context ends with its task: messages wait for the main conversation.
        return Ok(Done::nothing());
    }
    let pids = ancestry::ancestors();
    let claude_pid = ancestry::nearest_claude(&ancestry::System, &pids);
    let call = HookCall {
        event,
        // Only when this hook runs under the `claude` that `claudemesh launch` started.
        session_id: ancestry::inherited_session(claude_pid),
        claude_session_id: input
            .session_id
            .filter(|s| !s.is_empty() && s.len() <= claudemesh_protocol::limits::MAX_SESSION_ID_BYTES),
        pids,
        // In print mode nothing a Stop hook prints reaches the model: leave messages waiting.
        status_only: event == HookEvent::Stop && !interactive(),
        claude_pid,
    };
    let paths = Paths::from_env();
    // Hooks never start the agent: without one there is no session to serve.
    let mut client = timeout(SYNC_BUDGET, AgentClient::connect(&paths, "hook"))
        .await
        .map_err(|_| "agent did not answer in time")?
        .map_err(|e| e.to_string())?;
    let reply: HookReply = timeout(SYNC_BUDGET, client.request(AgentCall::Hook(call)))
        .await
        .map_err(|_| "agent did not answer in time")?
        .map_err(|e| e.to_string())?;
    if event != HookEvent::Stop {
        return Ok(show(client, reply, |text| {
            Outcome::Context(additional_context(claude_name(event), &text))
        }));
    }
    if !reply.messages.is_empty() {
        return Ok(show(client, reply, Outcome::Wake));
    }
    if !interactive() {
        return Ok(Done::nothing());
    }
    wait_for_wake(client, reply.session_id, claude_pid).await
}

/// The idle half of `Stop`: wait for a due message, take it, and wake the session with it.
async fn wait_for_wake(
    mut client: AgentClient,
    sid: String,
    claude_pid: Option<u32>,
) -> Result<Done, String> {
    let deadline = Instant::now() + STOP_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Done::nothing());
        }
        let call = AgentCall::HookWait { session_id: sid.clone(), timeout_ms: left.as_millis() as u64 };
        let r: WaitReply = timeout(left + SYNC_BUDGET, client.request(call))
            .await
            .map_err(|_| "agent kept the wait past its deadline")?
            .map_err(|e| e.to_string())?;
        if r.outcome != WaitOutcome::Ready {
            debug(&format!("stopped waiting: {:?}", r.outcome));
            return Ok(Done::nothing());
        }
        let take = HookCall {
            event: HookEvent::Rewake,
            session_id: Some(sid.clone()),
            claude_session_id: None,
            pids: Vec::new(),
            status_only: false,
            claude_pid,
        };
        let reply: HookReply = timeout(SYNC_BUDGET, client.request(AgentCall::Hook(take)))
            .await
            .map_err(|_| "agent did not answer in time")?
            .map_err(|e| e.to_string())?;
        // Another hook may have shown it first; then wait again.
        if !reply.messages.is_empty() {
            return Ok(show(client, reply, Outcome::Wake));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert_eq!(parse_event("UserPromptSubmit"), Some(HookEvent::UserPromptSubmit));
        assert_eq!(parse_event("user_prompt_submit"), Some(HookEvent::UserPromptSubmit));
        assert_eq!(parse_event("PostToolUse"), Some(HookEvent::PostToolUse));
        assert_eq!(parse_event("stop"), Some(HookEvent::Stop));
        assert_eq!(parse_event("SessionStart"), Some(HookEvent::SessionStart));
        assert_eq!(parse_event("PreToolUse"), None);
        assert_eq!(parse_event("rewake"), None, "internal, not a hook");
    }
}
