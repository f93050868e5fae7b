//! `claudemesh hook <event>` fed real Claude Code hook JSON, as real processes, against a real
//! broker, real agents and a real `claudemesh mcp` session. This test process plays the `claude`
//! process: it is the parent of both the MCP server and the hooks, which is how the agent ties
//! a hook to its session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use claudemesh_agent::{AgentClient, Paths};
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::AgentCall;
use common::mcp_client::*;
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// What Claude Code writes to a hook's stdin.
fn input(event: &str, claude_session: &str) -> Value {
    let mut v = json!({
        "session_id": claude_session,
        "transcript_path": format!("/tmp/{claude_session}.jsonl"),
        "cwd": "/work/project",
        "permission_mode": "default",
        "hook_event_name": event,
    });
    match event {
        "UserPromptSubmit" => v["prompt"] = json!("fix the failing test"),
        "PostToolUse" => {
            v["tool_name"] = json!("Bash");
            v["tool_input"] = json!({"command": "cargo test"});
            v["tool_response"] = json!({"stdout": "ok", "stderr": "", "interrupted": false});
        }
        "Stop" => v["stop_hook_active"] = json!(false),
        "SessionStart" => v["source"] = json!("startup"),
        _ => {}
    }
    v
}

/// Starts `claudemesh hook <event>` with `stdin` written and closed.
async fn spawn_hook(paths: &Paths, event: &str, stdin: &[u8], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(EXE);
    cmd.args(["hook", event])
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env_remove("CLAUDEMESH_SESSION_ID")
        .env_remove("CLAUDEMESH_LAUNCH_PID")
        .env_remove("CLAUDE_CODE_ENTRYPOINT")
        .env_remove("CLAUDEMESH_DEBUG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut w = child.stdin.take().unwrap();
    w.write_all(stdin).await.unwrap();
    drop(w);
    child
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

async fn finish(child: Child, within: Duration) -> Ran {
    let start = Instant::now();
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("hook still running after {within:?}"))
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        took: start.elapsed(),
    }
}

/// Runs a hook that should finish quickly.
async fn hook(paths: &Paths, event: &str, claude_session: &str) -> Ran {
    let stdin = input(event, claude_session).to_string();
    finish(spawn_hook(paths, event, stdin.as_bytes(), &[]).await, Duration::from_secs(10)).await
}

/// The `additionalContext` a hook printed, or "" when it printed nothing.
fn context(r: &Ran, event: &str) -> String {
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "");
    if r.stdout.trim().is_empty() {
        return String::new();
    }
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(v["hookSpecificOutput"]["hookEventName"], event, "{v}");
    v["hookSpecificOutput"]["additionalContext"].as_str().unwrap().to_string()
}

async fn agent(w: &World, name: &str) -> RunningAgent {
    let paths = w.member(name).await;
    let a = RunningAgent::start(&paths).await;
    wait_connected(&mut a.client().await).await;
    a
}

/// Sends as the member (no session); returns the local message id.
async fn send(c: &mut AgentClient, to: &str, message: &str, priority: Priority) -> String {
    let v = c.call(send_call(to, message, priority, None)).await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Waits until the broker reports message `id` seen by its recipient.
async fn wait_seen(c: &mut AgentClient, id: &str) {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = c.call(AgentCall::MessageStatus { msg_id: id.into() }).await.unwrap();
        if last["recipient_states"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|x| x["state"] == "seen"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("message {id} never reported seen: {last}");
}

/// Waits until `c` sees peer `name` with `status`.
async fn wait_status(c: &mut AgentClient, name: &str, status: &str) {
    for _ in 0..400 {
        let peers = c.call(AgentCall::Peers { mesh: None }).await.unwrap();
        if peers.as_array().unwrap().iter().any(|p| p["display_name"] == name && p["status"] == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never became {status}");
}

/// Waits until the agent `c` reports a `Stop` hook waiting on session `name` (or none).
async fn wait_hook_waiting(c: &mut AgentClient, name: &str, waiting: bool) {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = c.call(AgentCall::Status).await.unwrap();
        let s =
            last["local_sessions"].as_array().unwrap().iter().find(|s| s["display_name"] == name).cloned();
        if s.is_some_and(|s| s["stop_hook_waiting"] == waiting) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("session {name}: stop_hook_waiting never became {waiting}: {last}");
}

/// alice and bob on two agents; bob's Claude Code session is a real `claudemesh mcp` child of
/// this process, registered without any session id in its environment.
async fn pair(channel: bool) -> (World, RunningAgent, RunningAgent, Mcp, AgentClient) {
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    let b = agent(&w, "bob").await;
    let (cb, _rx) = mcp_with(&b.paths, None, "bob-1", channel).await;
    let mut ac = a.client().await;
    wait_peer(&mut ac, "bob-1").await;
    (w, a, b, cb, ac)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_and_tool_hooks_show_what_is_due_once_and_set_status() {
    let (_w, _a, b, cb, mut ac) = pair(false).await;
    let urgent = send(&mut ac, "bob-1", "urgent: prod is down", Priority::Now).await;
    let review = send(&mut ac, "bob-1", "when you can: review #12", Priority::Next).await;
    send(&mut ac, "bob-1", "fyi: lunch at noon", Priority::Low).await;
    wait_inbox(&mut b.client().await, None, 3).await;

    // A tool call inside a subagent shows nothing: its context ends with its task.
    let mut sub = input("PostToolUse", "claude-1");
    sub["agent_id"] = json!("a1b2c3");
    sub["agent_type"] = json!("general-purpose");
    let r = finish(
        spawn_hook(&b.paths, "PostToolUse", sub.to_string().as_bytes(), &[]).await,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(context(&r, "PostToolUse"), "");

    // Mid-turn, a tool call shows only `now`, and the session turns working.
    let r = hook(&b.paths, "PostToolUse", "claude-1").await;
    let ctx = context(&r, "PostToolUse");
    assert!(ctx.contains("[now] from alice") && ctx.contains("    urgent: prod is down"), "{ctx}");
    assert!(!ctx.contains("review #12") && !ctx.contains("lunch"), "{ctx}");
    assert!(ctx.contains("send_message"), "{ctx}");
    wait_status(&mut ac, "bob-1", "working").await;

    // A new prompt is a turn boundary: `next` is shown; `now` is not repeated; `low` waits.
    let ctx = context(&hook(&b.paths, "UserPromptSubmit", "claude-1").await, "UserPromptSubmit");
    assert!(ctx.contains("[next] from alice") && ctx.contains("review #12"), "{ctx}");
    assert!(!ctx.contains("prod is down") && !ctx.contains("lunch"), "{ctx}");
    assert_eq!(context(&hook(&b.paths, "UserPromptSubmit", "claude-1").await, "UserPromptSubmit"), "");
    assert_eq!(context(&hook(&b.paths, "PostToolUse", "claude-1").await, "PostToolUse"), "");

    // `low` only when the model asks; what hooks showed counts as seen.
    let t = text(&call(&cb, "check_messages", json!({})).await);
    assert!(t.contains("lunch at noon"), "{t}");
    assert!(!t.contains("prod is down") && !t.contains("review #12"), "{t}");

    // The end of a turn turns the session idle (the wait is off here; see the Stop tests).
    let stdin = input("Stop", "claude-1").to_string();
    let r = finish(
        spawn_hook(&b.paths, "Stop", stdin.as_bytes(), &[("CLAUDEMESH_HOOK_WAIT", "0")]).await,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    wait_status(&mut ac, "bob-1", "idle").await;

    // What hooks showed was reported seen to the sender.
    wait_seen(&mut ac, &urgent).await;
    wait_seen(&mut ac, &review).await;
    cb.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_hook_waits_and_wakes_the_idle_session_with_a_next_message() {
    let (_w, _a, b, cb, mut ac) = pair(false).await;
    let stdin = input("Stop", "claude-2").to_string();
    let mut stop = spawn_hook(&b.paths, "Stop", stdin.as_bytes(), &[]).await;
    wait_status(&mut ac, "bob-1", "idle").await;
    let mut bc = b.client().await;
    wait_hook_waiting(&mut bc, "bob-1", true).await;

    // `low` does not wake anyone.
    send(&mut ac, "bob-1", "low news", Priority::Low).await;
    wait_inbox(&mut b.client().await, None, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stop.try_wait().unwrap().is_none(), "the Stop hook ended without a due message");

    // `next` does: exit 2 with the message on stderr (asyncRewake's wake signal).
    let sent = Instant::now();
    send(&mut ac, "bob-1", "are you free to pair?", Priority::Next).await;
    let r = finish(stop, Duration::from_secs(20)).await;
    assert_eq!(r.code, 2, "stdout {} stderr {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("[next] from alice") && r.stderr.contains("    are you free to pair?"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("low news"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    eprintln!("Stop hook woke {:?} after the send", sent.elapsed());

    // Shown by the wake, so never again by a hook or check_messages.
    assert_eq!(context(&hook(&b.paths, "UserPromptSubmit", "claude-2").await, "UserPromptSubmit"), "");
    let t = text(&call(&cb, "check_messages", json!({})).await);
    assert!(t.contains("low news") && !t.contains("pair?"), "{t}");

    // A message already due when the turn ends wakes at once.
    send(&mut ac, "bob-1", "one more thing", Priority::Now).await;
    wait_inbox(&mut b.client().await, None, 1).await;
    let r = finish(spawn_hook(&b.paths, "Stop", stdin.as_bytes(), &[]).await, Duration::from_secs(10)).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("one more thing"), "{}", r.stderr);
    cb.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_stop_hook_takes_over_and_a_killed_one_loses_nothing() {
    let (_w, _a, b, cb, mut ac) = pair(false).await;
    let stdin = input("Stop", "claude-3").to_string();
    let mut bc = b.client().await;
    let first = spawn_hook(&b.paths, "Stop", stdin.as_bytes(), &[]).await;
    wait_hook_waiting(&mut bc, "bob-1", true).await;
    let mut second = spawn_hook(&b.paths, "Stop", stdin.as_bytes(), &[]).await;
    let r = finish(first, Duration::from_secs(10)).await;
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""), "superseded quietly");

    // The waiting hook is killed (Escape in Claude Code); the message that comes next stays unseen.
    wait_hook_waiting(&mut bc, "bob-1", true).await;
    second.kill().await.unwrap();
    wait_hook_waiting(&mut bc, "bob-1", false).await;
    send(&mut ac, "bob-1", "still there?", Priority::Next).await;
    wait_inbox(&mut b.client().await, None, 1).await;
    let ctx = context(&hook(&b.paths, "UserPromptSubmit", "claude-3").await, "UserPromptSubmit");
    assert!(ctx.contains("still there?"), "{ctx}");

    // When the session closes (Claude Code exited), a waiting Stop hook ends quietly.
    let waiting = spawn_hook(&b.paths, "Stop", stdin.as_bytes(), &[]).await;
    wait_hook_waiting(&mut bc, "bob-1", true).await;
    cb.cancel().await.unwrap();
    let r = finish(waiting, Duration::from_secs(10)).await;
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_print_mode_stop_takes_nothing_and_the_message_waits() {
    let (_w, _a, b, cb, mut ac) = pair(false).await;
    send(&mut ac, "bob-1", "for the next prompt", Priority::Next).await;
    wait_inbox(&mut b.client().await, None, 1).await;
    // `claude -p` exits after its Stop hooks: a wake could never reach the model.
    let stdin = input("Stop", "claude-6").to_string();
    let r = finish(
        spawn_hook(&b.paths, "Stop", stdin.as_bytes(), &[("CLAUDE_CODE_ENTRYPOINT", "sdk-cli")]).await,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    wait_status(&mut ac, "bob-1", "idle").await;
    let ctx = context(&hook(&b.paths, "UserPromptSubmit", "claude-6").await, "UserPromptSubmit");
    assert!(ctx.contains("for the next prompt"), "{ctx}");
    cb.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_closed_session_never_saw_goes_to_the_next_session() {
    let (_w, _a, b, cb, mut ac) = pair(false).await;
    // To the member: routed to its live session, bob-1.
    send(&mut ac, "bob", "did you see this?", Priority::Low).await;
    wait_inbox(&mut b.client().await, None, 1).await;
    cb.cancel().await.unwrap(); // Claude Code exits; bob-1 never looked.
    let (next, _rx) = mcp_with(&b.paths, None, "bob-2", false).await;
    check_messages_until(&next, "did you see this?").await;
    next.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_closed_session_never_saw_goes_to_a_session_still_open() {
    let (_w, _a, b, older, mut ac) = pair(false).await;
    let (newer, _rx) = mcp_with(&b.paths, None, "bob-2", false).await;
    wait_peer(&mut ac, "bob-2").await;
    // To the member: routed to its most recently active session, bob-2.
    send(&mut ac, "bob", "whoever is around", Priority::Low).await;
    wait_inbox(&mut b.client().await, None, 1).await;
    newer.cancel().await.unwrap();
    check_messages_until(&older, "whoever is around").await;
    older.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_messages_are_not_repeated_by_hooks() {
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    let b = agent(&w, "bob").await;
    let (cb, mut rx) = mcp_with(&b.paths, None, "bob-1", true).await;
    let mut ac = a.client().await;
    wait_peer(&mut ac, "bob-1").await;
    send(&mut ac, "bob-1", "pushed one", Priority::Now).await;
    let p = next_channel(&mut rx).await;
    assert_framed(&p, "alice", None, "pushed one");
    assert_eq!(context(&hook(&b.paths, "UserPromptSubmit", "claude-4").await, "UserPromptSubmit"), "");
    // …but check_messages still returns it: a dropped notification is never a lost message.
    assert!(text(&call(&cb, "check_messages", json!({})).await).contains("pushed one"));
    cb.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_found_by_launch_id_then_by_claude_session_id() {
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    let b = agent(&w, "bob").await;
    // A session registered by some other client: no claude pid to match.
    let mut bc = b.client().await;
    register(&mut bc, "000000a8-5e55-4000-8000-000000000000", "bob-launched", &[]).await;
    let mut ac = a.client().await;
    wait_peer(&mut ac, "bob-launched").await;
    send(&mut ac, "bob-launched", "first", Priority::Next).await;
    wait_inbox(&mut b.client().await, None, 1).await;

    // Without any way to find it, the hook is silent.
    assert_eq!(context(&hook(&b.paths, "UserPromptSubmit", "claude-5").await, "UserPromptSubmit"), "");

    // A `claude -p` run inside a launched session inherits CLAUDEMESH_SESSION_ID, but its
    // nearest `claude` is not the launched one (CLAUDEMESH_LAUNCH_PID): it is not that session.
    let stdin = input("UserPromptSubmit", "claude-inner").to_string();
    let env =
        [("CLAUDEMESH_SESSION_ID", "000000a8-5e55-4000-8000-000000000000"), ("CLAUDEMESH_LAUNCH_PID", "1")];
    let r = finish(
        spawn_hook(&b.paths, "UserPromptSubmit", stdin.as_bytes(), &env).await,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(context(&r, "UserPromptSubmit"), "", "a nested claude took the launched session's messages");

    // `claudemesh launch` sets CLAUDEMESH_SESSION_ID; the hook reports Claude's session_id too.
    let stdin = input("UserPromptSubmit", "claude-5").to_string();
    let r = finish(
        spawn_hook(
            &b.paths,
            "UserPromptSubmit",
            stdin.as_bytes(),
            &[("CLAUDEMESH_SESSION_ID", "000000a8-5e55-4000-8000-000000000000")],
        )
        .await,
        Duration::from_secs(10),
    )
    .await;
    assert!(context(&r, "UserPromptSubmit").contains("first"));

    // Later hooks of that Claude session are recognized by its session_id alone.
    send(&mut ac, "bob-launched", "second", Priority::Next).await;
    wait_inbox(&mut b.client().await, None, 1).await;
    let ctx = context(&hook(&b.paths, "UserPromptSubmit", "claude-5").await, "UserPromptSubmit");
    assert!(ctx.contains("second") && !ctx.contains("first"), "{ctx}");
    drop(bc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_never_fail_the_session() {
    let empty = tempfile::tempdir().unwrap();
    let no_agent = Paths::new(empty.path().to_path_buf());
    let silent = |r: &Ran, what: &str| {
        assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""), "{what}");
        assert!(r.took < Duration::from_secs(8), "{what} took {:?}", r.took);
    };
    // No agent at all (and none gets started).
    for event in ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"] {
        silent(&hook(&no_agent, event, "c").await, event);
    }
    assert!(!no_agent.socket().exists(), "a hook started an agent");

    // A running agent that has no session for this process.
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    for event in ["UserPromptSubmit", "Stop"] {
        silent(&hook(&a.paths, event, "c").await, event);
    }

    // Bad input of every kind.
    let cases: [(&str, Vec<u8>); 5] = [
        ("UserPromptSubmit", b"not json {".to_vec()),
        ("UserPromptSubmit", vec![0xff, 0xfe, 0x00]),
        ("NoSuchEvent", input("UserPromptSubmit", "c").to_string().into_bytes()),
        ("--weird-flag", Vec::new()),
        ("PostToolUse", vec![b'x'; 6 << 20]),
    ];
    for (event, stdin) in cases {
        let r = finish(spawn_hook(&a.paths, event, &stdin, &[]).await, Duration::from_secs(10)).await;
        silent(&r, event);
    }
    // No event argument: taken from the input.
    let mut cmd = Command::new(EXE);
    cmd.arg("hook").env("CLAUDEMESH_CONFIG_DIR", &a.paths.dir).stdin(Stdio::null());
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    // stdin held open by a hung writer: the hook gives up on it and still ends in time.
    let mut held = Command::new(EXE)
        .args(["hook", "UserPromptSubmit"])
        .env("CLAUDEMESH_CONFIG_DIR", &a.paths.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _open = held.stdin.take();
    let out = tokio::time::timeout(Duration::from_secs(10), held.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}
