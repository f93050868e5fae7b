//! `claudemesh mcp` stays a working MCP server whatever state its agent is in: it answers
//! `initialize` while the agent is stopped (`kill -STOP`, what Ctrl-Z does to `agent run`), and
//! after an agent restart it registers its session again on its own within about 3 s, with no
//! tool call (it is back in the agent's `status` and `peers`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mcp_client::*;
use common::*;

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

async fn local_session_ids(paths: &claudemesh_agent::Paths) -> Vec<String> {
    let Ok(mut c) = claudemesh_agent::AgentClient::connect(paths, "test").await else { return vec![] };
    let st = c.call(claudemesh_protocol::local::AgentCall::Status).await.unwrap();
    st["local_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_is_answered_while_the_agent_is_stopped() {
    let w = World::start().await;
    let paths = w.member("bob").await;
    let agent = AgentProcess::start(&paths).await;
    signal(agent.child.id(), "-STOP");
    let mut mcp = Command::new(EXE)
        .arg("mcp")
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("CLAUDEMESH_SESSION_ID", "000000ab-5e55-4000-8000-000000000000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = mcp.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"probe","version":"1"}}}}}}"#
    )
    .unwrap();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = mcp.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    // Before: no answer in 35 s, and `claude mcp list` reported the server failed.
    let line =
        rx.recv_timeout(Duration::from_secs(10)).expect("initialize answered while the agent is stopped");
    eprintln!("initialize answered in {:?} with the agent stopped", started.elapsed());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], 1, "{v}");
    assert!(v["result"]["serverInfo"].is_object(), "{v}");
    signal(agent.child.id(), "-CONT");
    drop(stdin);
    // With stdin closed and the agent back, the server closes its session and exits.
    let deadline = Instant::now() + Duration::from_secs(20);
    while mcp.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "claudemesh mcp did not exit after stdin closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `sid` is back both as a local session in `status` and as a peer in `peers`.
async fn session_visible(paths: &claudemesh_agent::Paths, sid: &str) -> (bool, bool) {
    let local = local_session_ids(paths).await.iter().any(|s| s == sid);
    let Ok(mut c) = claudemesh_agent::AgentClient::connect(paths, "test").await else {
        return (local, false);
    };
    let peers = c.call(claudemesh_protocol::local::AgentCall::Peers { mesh: None }).await.unwrap();
    let peer = peers.as_array().unwrap().iter().any(|p| p["session_id"] == sid);
    (local, peer)
}

/// Polls until `sid` is in the agent's `status` and `peers`; panics after `bound`. Returns how
/// long it took.
async fn wait_visible(paths: &claudemesh_agent::Paths, sid: &str, bound: Duration, what: &str) -> Duration {
    let started = Instant::now();
    let mut last = (false, false);
    while started.elapsed() < bound {
        last = session_visible(paths, sid).await;
        if last == (true, true) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: {sid} was not back within {bound:?} (in status: {}, in peers: {})", last.0, last.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_registered_again_after_an_agent_restart_without_a_tool_call() {
    let w = World::start().await;
    let paths = w.member("bob").await;
    let agent = AgentProcess::start(&paths).await;
    let (client, _rx) = mcp(&paths, "000000a7-5e55-4000-8000-000000000000", "bob", false).await;
    wait_visible(&paths, "000000a7-5e55-4000-8000-000000000000", Duration::from_secs(10), "at start").await;
    agent.kill9();
    let again = AgentProcess::start(&paths).await;
    // No tool call: the server notices the new agent (it keeps its connection alive every
    // MCP_KEEPALIVE_MILLIS) and registers the session again within about 3 s.
    let took = wait_visible(
        &paths,
        "000000a7-5e55-4000-8000-000000000000",
        Duration::from_secs(3),
        "after the agent restart",
    )
    .await;
    eprintln!("the session was back {took:?} after the new agent answered");
    let r = tokio::time::timeout(Duration::from_secs(15), call(&client, "list_peers", serde_json::json!({})))
        .await
        .expect("list_peers answered after the restart");
    assert!(!is_error(&r), "{}", text(&r));
    client.cancel().await.unwrap();
    drop(again);
}
