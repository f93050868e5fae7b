//! claudemesh against real clients that are not written in Rust: Claude Code's own CLI (npm
//! `@anthropic-ai/claude-code`: `claude mcp list` after `claudemesh install`) and the official
//! Python MCP SDK (PyPI `mcp`, driving `claudemesh mcp` from tests/clients/mcp_client.py), each
//! against a real broker and real agents.
//!
//! The tools come from `.ci/install-external-clients` (under `.ci/tools/`), or from
//! `CLAUDEMESH_TEST_CLAUDE` / `CLAUDEMESH_TEST_PYTHON`, or `claude` / `python3` on PATH. With
//! `CLAUDEMESH_EXTERNAL_CLIENTS=required` (set by `.ci/run`) a missing tool fails the test;
//! otherwise the test says why it is skipped and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use claudemesh_agent::Paths;
use claudemesh_protocol::local::Topic;
use common::external::*;
use common::mcp_client::*;
use common::*;
use serde_json::{Value, json};

// ---- Claude Code: `claude mcp list` after `claudemesh install` ----

/// `claude <args>` as a user whose home is `home` and whose claudemesh agent is `paths`, with
/// a minimal environment (nothing of the developer's leaks in) and Claude Code kept offline.
async fn claude_cmd(claude: &Path, home: &Path, paths: &Paths, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(claude);
    cmd.args(args)
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("CLAUDEMESH_NAME", "claude-under-test")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    let what = format!("claude {}", args.join(" "));
    let out = run(&what, &mut cmd, Duration::from_secs(90)).await;
    assert!(out.status.success(), "{what} failed ({}):\n{}\n{}", out.status, stdout(&out), stderr(&out));
    out
}

/// `claudemesh <args>` with HOME = `home`.
async fn claudemesh_in(home: &Path, paths: &Paths, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(EXE);
    cmd.args(args).env("HOME", home).env("CLAUDEMESH_CONFIG_DIR", &paths.dir);
    let what = format!("claudemesh {}", args.join(" "));
    let out = run(&what, &mut cmd, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{what} failed ({}):\n{}\n{}", out.status, stdout(&out), stderr(&out));
    stdout(&out)
}

/// The ids of the sessions named `name` that joined, as `watch` (subscribed to presence) saw
/// them, once every one of them has left again; fails after `limit` with what it saw.
async fn sessions_that_came_and_went(
    watch: &mut claudemesh_agent::AgentClient,
    name: &str,
    limit: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    let (mut joined, mut left, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        if !joined.is_empty() && joined.iter().all(|s| left.contains(s)) {
            return joined;
        }
        let Ok(ev) = tokio::time::timeout_at(deadline, watch.next_event()).await else {
            panic!(
                "within {limit:?}: sessions named {name} joined {joined:?}, left {left:?}; \
                 all presence events seen:\n{seen:#?}"
            );
        };
        let v = serde_json::to_value(ev.unwrap().2).unwrap();
        let e = &v["data"]["event"];
        let sid = e["data"]["session_id"].as_str().unwrap_or_default().to_string();
        match e["kind"].as_str() {
            Some("peer_joined") if e["data"]["display_name"] == name => joined.push(sid),
            Some("peer_left") => left.push(sid),
            _ => {}
        }
        seen.push(v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_lists_the_installed_server_as_connected() {
    let test = "claude_code_lists_the_installed_server_as_connected";
    let Some(claude) = claude(test).await else { return };
    let w = World::start().await;
    let alice = w.member("alice").await;
    let alice_agent = RunningAgent::start(&alice).await;
    wait_connected(&mut alice_agent.client().await).await;
    // bob watches presence: the session Claude Code's health check opens must reach the mesh,
    // which proves `claude` ran our server with the environment it was given.
    let (bob, _b) = connected_agent(&w, "bob").await;
    let mut watch = bob.client().await;
    watch.subscribe(vec![Topic::Presence], None, None).await.unwrap();

    let home = tempfile::tempdir().unwrap();
    let out = claudemesh_in(home.path(), &alice, &["install"]).await;
    assert!(out.contains("added MCP server \"claudemesh\""), "{out}");

    let out = claude_cmd(&claude, home.path(), &alice, &["mcp", "list"]).await;
    let text = stdout(&out);
    eprintln!("claude mcp list:\n{text}\nstderr:\n{}", stderr(&out));
    let exe = std::path::absolute(EXE).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("claudemesh: "))
        .unwrap_or_else(|| panic!("no claudemesh line in `claude mcp list`:\n{text}\n{}", stderr(&out)));
    assert!(line.contains(&format!("{} mcp", exe.display())), "command and args: {line}");
    assert!(
        line.ends_with("Connected") && !line.contains("Failed"),
        "not connected: {line}\n{}",
        stderr(&out)
    );
    // Claude Code reports config it skipped as "MCP config diagnostics" with the reason.
    assert!(
        !text.contains("diagnostics") && !text.contains("invalid") && !text.contains("Skipped"),
        "Claude Code finds the installed config invalid:\n{text}"
    );

    // The scope and shape Claude Code read back.
    let out = claude_cmd(&claude, home.path(), &alice, &["mcp", "get", "claudemesh"]).await;
    let get = stdout(&out);
    eprintln!("claude mcp get claudemesh:\n{get}");
    for want in [
        "Scope: User config".to_string(),
        "Connected".to_string(),
        "Type: stdio".to_string(),
        format!("Command: {}", exe.display()),
        "Args: mcp".to_string(),
    ] {
        assert!(get.contains(&want), "`claude mcp get claudemesh` lacks {want:?}:\n{get}");
    }

    // The health checks registered sessions named by the environment claude passed on, at
    // alice's agent (not at an agent auto-started under the temp HOME), and closed them again.
    let sessions =
        sessions_that_came_and_went(&mut watch, "claude-under-test", Duration::from_secs(20)).await;
    eprintln!("sessions of claude's health checks, seen joining and leaving at bob's agent: {sessions:?}");
    assert!(!home.path().join(".claudemesh").exists(), "an agent was started under the temp HOME");

    let out = claudemesh_in(home.path(), &alice, &["uninstall"]).await;
    assert!(out.contains("removed"), "{out}");
    let out = claude_cmd(&claude, home.path(), &alice, &["mcp", "list"]).await;
    let text = stdout(&out);
    eprintln!("claude mcp list after uninstall:\n{text}");
    assert!(!text.contains("claudemesh"), "still listed after uninstall:\n{text}");
    assert!(text.contains("No MCP servers configured"), "{text}");

    alice_agent.stop().await;
    bob.stop().await;
}

// ---- the Python MCP SDK driving `claudemesh mcp` ----

/// A step's result from the Python client's report, failing with the whole report if it errored.
fn step<'a>(report: &'a Value, key: &str) -> &'a Value {
    let v = &report["session"][key];
    assert!(!v.is_null() && v.get("error").is_none(), "python step {key} failed: {v:#}\nreport: {report:#}");
    v
}

fn ok_text<'a>(report: &'a Value, key: &str) -> &'a str {
    let v = step(report, key);
    assert_eq!(v["is_error"], false, "python step {key} is an error: {v:#}");
    v["text"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_sdk_lists_and_calls_the_tools() {
    let test = "python_mcp_sdk_lists_and_calls_the_tools";
    let Some(python) = python_with_mcp(test).await else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp_client.py");
    let w = World::start().await;
    let alice = w.member("alice").await;
    let alice_agent = RunningAgent::start(&alice).await;
    let mut a = alice_agent.client().await;
    wait_connected(&mut a).await;
    let bob = w.member("bob").await;
    let bob_agent = RunningAgent::start(&bob).await;
    wait_connected(&mut bob_agent.client().await).await;

    // bob's session, driven by rmcp; the Python client is a session of alice's.
    let (cb, mut rx_b) = mcp(&bob, "000000a0-5e55-4000-8000-000000000000", "bob-1", true).await;
    wait_peer(&mut a, "bob-1").await;

    let (body, reply) = ("hello from python", "hello back from rust");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .args([OsStr::new(EXE), OsStr::new("bob-1"), OsStr::new(body), OsStr::new(reply)])
        .env("CLAUDEMESH_CONFIG_DIR", &alice.dir)
        .env("CLAUDEMESH_SESSION_ID", "000000a3-5e55-4000-8000-000000000000")
        .env("CLAUDEMESH_NAME", "py-alice")
        .env_remove("CLAUDEMESH_PUSH")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let python_run =
        tokio::spawn(async move { run("python mcp_client.py", &mut cmd, Duration::from_secs(120)).await });

    // The message the Python client sent arrives at bob's session from the right sender...
    let n = tokio::time::timeout(Duration::from_secs(60), rx_b.recv())
        .await
        .expect("bob's session got no channel notification from the Python client's send_message within 60 s")
        .unwrap();
    assert_eq!(n.method, "notifications/claude/channel");
    let p = n.params.unwrap();
    assert_framed(&p, "alice", Some("py-alice"), body);
    assert_eq!(p["meta"]["from_id"], "000000a3-5e55-4000-8000-000000000000", "{p:#}");
    assert_eq!(p["meta"]["priority"], "now", "{p:#}");
    let r = call(&cb, "check_messages", json!({})).await;
    assert!(
        text(&r).contains(body)
            && text(&r).contains("from alice (")
            && text(&r).contains(") as \"py-alice\" (")
            && text(&r).contains("(from_id: 000000a3-5e55-4000-8000-000000000000,"),
        "{}",
        text(&r)
    );
    // ... and bob's answer to its from_id, sent at once, reaches the Python client's
    // check_messages: the push may overtake the sender's batched `peer_joined`, but bob's agent
    // remembers which member sent it.
    let r =
        call(&cb, "send_message", json!({"to": "000000a3-5e55-4000-8000-000000000000", "message": reply}))
            .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));

    let out = python_run.await.unwrap();
    let (so, se) = (stdout(&out), stderr(&out));
    eprintln!("python mcp_client.py stdout:\n{so}\nstderr:\n{se}");
    assert!(out.status.success(), "mcp_client.py failed ({}):\n{so}\n{se}", out.status);
    let report: Value = serde_json::from_str(so.trim())
        .unwrap_or_else(|e| panic!("mcp_client.py printed no JSON object ({e}):\n{so}\n{se}"));
    assert!(report.get("timed_out_after_s").is_none(), "{report:#}");
    assert!(report["session"].get("fatal").is_none(), "python session failed: {report:#}");

    let init = &report["session"]["initialize"];
    assert_eq!(init["protocol_version"], "2025-11-25", "{init:#}");
    assert_eq!(init["server_info"]["name"], "claudemesh", "{init:#}");
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "{init:#}");
    assert!(init["capabilities"]["experimental"].get("claude/channel").is_some(), "{init:#}");
    assert_eq!(init["has_instructions"], true, "{init:#}");

    let tools = step(&report, "tools").as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, TOOLS);
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t:#}");
        assert!(t["inputSchema"]["properties"].is_object(), "{t:#}");
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()), "{t:#}");
    }
    let prompts = step(&report, "prompts");
    assert!(prompts.as_array().unwrap().iter().any(|p| p == "inbox"), "{prompts}");

    // The caller's own session is listed and marked at once, before the broker's batched
    // presence echoes it.
    let peers = ok_text(&report, "list_peers");
    assert!(peers.contains("as \"bob-1\" (id 000000a0-5e55-4000-8000-000000000000"), "{peers}");
    assert!(peers.contains("as \"py-alice\" (you) (id 000000a3-5e55-4000-8000-000000000000"), "{peers}");
    let sent = ok_text(&report, "send_message");
    assert!(sent.contains("Message id: "), "{sent}");
    ok_text(&report, "message_status");
    let got = ok_text(&report, "check_messages");
    assert!(
        got.contains(reply)
            && got.contains("from bob (")
            && got.contains(") as \"bob-1\" (")
            && got.contains("(from_id: 000000a0-5e55-4000-8000-000000000000,"),
        "{got}"
    );
    assert_eq!(ok_text(&report, "check_messages_again"), "No new messages.");

    // Bad arguments are tool results with isError, which the model can read and act on.
    let bad = step(&report, "bad_arguments");
    assert_eq!(bad["is_error"], true, "{bad:#}");
    assert!(bad["text"].as_str().unwrap().contains("`message` is required"), "{bad:#}");
    assert_eq!(bad["raw"]["isError"], true, "{bad:#}");
    let wrong = step(&report, "wrong_type");
    assert_eq!(wrong["is_error"], true, "{wrong:#}");
    assert!(wrong["text"].as_str().unwrap().contains("`status` must be a string, not 42"), "{wrong:#}");
    // An unknown tool is a JSON-RPC error (invalid params), not a result.
    let unknown = &report["session"]["unknown_tool"];
    assert_eq!(unknown["error"]["code"], -32602, "{unknown:#}");

    // The SDK's high-level Client (default mode "auto": a `server/discover` probe, then the
    // initialize handshake) connects and lists the same tools.
    let auto = &report["auto_client"];
    assert!(
        auto.get("fatal").is_none(),
        "the Python SDK's default Client could not use claudemesh mcp: {auto:#}"
    );
    assert_eq!(auto["protocol_version"], "2025-11-25", "{auto:#}");
    assert_eq!(auto["tools"], json!(TOOLS), "{auto:#}");

    cb.cancel().await.unwrap();
    alice_agent.stop().await;
    bob_agent.stop().await;
}
