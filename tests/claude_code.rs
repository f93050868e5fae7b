//! Real Claude Code (npm `@anthropic-ai/claude-code`, installed by `.ci/run`): after
//! `claudemesh install`, `claudemesh launch -- -p …` runs the real `claude`, which starts the real
//! `claudemesh mcp` server and runs the real `claudemesh hook` commands. Without an Anthropic
//! login `claude -p` stops after the prompt hooks, which is far enough to prove that the hooks
//! find the session and show a waiting message (the sender sees it `seen`).
//!
//! The `claude` binary is found as in tests/external_clients.rs (`common::external`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use claudemesh_agent::AgentClient;
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::AgentCall;
use common::external::{claude, run, stderr, stdout};
use common::*;
use serde_json::Value;

/// Runs `program args` (argv) as a user whose home is `home` and whose agent dir is `dir`, in
/// `cwd`, with a minimal environment and Claude Code kept offline; `claudemesh launch` finds
/// `claude` through `CLAUDEMESH_CLAUDE`. Returns (exit code, stdout, stderr).
async fn as_user(
    program: &Path,
    args: &[&str],
    home: &Path,
    dir: &Path,
    claude: &Path,
    cwd: &Path,
) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CLAUDEMESH_CONFIG_DIR", dir)
        .env("CLAUDEMESH_CLAUDE", claude)
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    let what = format!("{} {}", program.display(), args.join(" "));
    let out = run(&what, &mut cmd, Duration::from_secs(120)).await;
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

async fn message_status(c: &mut AgentClient, id: &str) -> Value {
    c.call(AgentCall::MessageStatus { msg_id: id.into() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_runs_our_hooks_in_a_launched_session() {
    let Some(claude) = claude("real_claude_runs_our_hooks_in_a_launched_session").await else { return };
    let w = World::start().await;
    let (_alice, mut ac) = connected_agent(&w, "alice").await;
    let bob_paths = w.member("bob").await;
    let bob = RunningAgent::start(&bob_paths).await;
    wait_connected(&mut bob.client().await).await;
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();

    let exe = Path::new(EXE);
    let (code, out, err) =
        as_user(exe, &["install"], home.path(), &bob_paths.dir, &claude, project.path()).await;
    assert_eq!(code, 0, "{out}{err}");

    // Sent while bob has no session: it waits in bob's inbox for the next session.
    // Once through `claudemesh launch`, once through plain `claude` (the session is then found
    // by Claude Code's own session id, which its MCP server and hooks both get).
    let launch: &[&str] = &["launch", "--name", "bob-cc", "--", "-p", "hello"];
    let runs = [(exe.to_path_buf(), launch), (claude.clone(), &["-p", "hello"][..])];
    for (i, (program, args)) in runs.into_iter().enumerate() {
        let body = format!("the build is green, ship it ({i})");
        let id = send_to_bob(&mut ac, &body).await;
        wait_inbox(&mut bob.client().await, None, 1).await;
        let (code, out, err) =
            as_user(&program, args, home.path(), &bob_paths.dir, &claude, project.path()).await;
        eprintln!("{args:?}: claude exited {code}\nstdout: {out}\nstderr: {err}");

        // A hook of that real session showed the message, so bob's agent reported it seen.
        let mut last = Value::Null;
        for _ in 0..400 {
            last = message_status(&mut ac, &id).await;
            if seen(&last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(seen(&last), "{args:?}: never seen: {last}\nclaude stdout: {out}\nstderr: {err}");
    }
}

fn seen(status: &Value) -> bool {
    status["recipient_states"].as_array().is_some_and(|r| r.iter().any(|x| x["state"] == "seen"))
}

/// alice sends `body` to bob's member with priority `now`; returns the message id.
async fn send_to_bob(ac: &mut AgentClient, body: &str) -> String {
    let send = send_call("bob", body, Priority::Now, None);
    for _ in 0..400 {
        // alice's member directory learns of bob a moment after he enrolled.
        if let Ok(v) = ac.call(send.clone()).await {
            return v["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("alice never learned of bob");
}
