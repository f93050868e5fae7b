//! `claudemesh mcp` as Claude Code uses it: a child process driven over stdio by an rmcp client,
//! against real agents and a real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::mcp_client::*;
use common::*;
use rmcp::model::ProtocolVersion;
use serde_json::json;

async fn agent(w: &World, name: &str) -> RunningAgent {
    let paths = w.member(name).await;
    let a = RunningAgent::start(&paths).await;
    wait_connected(&mut a.client().await).await;
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_and_handshake() {
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    let (c, _rx) = mcp(&a.paths, "000000a1-5e55-4000-8000-000000000000", "alice-1", true).await;

    let info = c.peer_info().unwrap();
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    assert_eq!(info.capabilities.tools.as_ref().unwrap().list_changed, Some(true));
    assert!(info.capabilities.prompts.is_some());
    assert!(info.capabilities.experimental.as_ref().unwrap().contains_key("claude/channel"));
    assert!(info.instructions.as_deref().unwrap().contains("send_message"));

    let mut names: Vec<String> =
        c.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, TOOLS);
    let prompts = c.list_all_prompts().await.unwrap();
    assert!(prompts.iter().any(|p| p.name == "inbox"));

    // The session is registered under the given id and name.
    wait_peer(&mut a.client().await, "alice-1").await;
    let r = call(&c, "list_peers", json!({})).await;
    assert!(!is_error(&r));
    assert!(
        text(&r).contains("as \"alice-1\" (you) (id 000000a1-5e55-4000-8000-000000000000"),
        "{}",
        text(&r)
    );
    // Another session of the same user on this agent is listed at once, and told apart.
    let mut other = a.client().await;
    register(&mut other, "000000c2-5e55-4000-8000-000000000000", "alice-2", &[]).await;
    let r = call(&c, "list_peers", json!({})).await;
    assert!(
        text(&r).contains("as \"alice-2\" (your other session) (id 000000c2-5e55-4000-8000-000000000000"),
        "{}",
        text(&r)
    );
    drop(other);

    // Failures are results the model can act on.
    let r = call(&c, "send_message", json!({"to": "nobody-here", "message": "hi"})).await;
    assert!(is_error(&r), "{}", text(&r));
    assert!(text(&r).contains("list_peers"), "{}", text(&r));
    let r = call(&c, "send_message", json!({"to": "alice-1"})).await;
    assert!(is_error(&r) && text(&r).contains("`message` is required"), "{}", text(&r));
    let r = call(&c, "leave_group", json!({"name": "nope"})).await;
    assert!(is_error(&r) && text(&r).contains("not in @nope"), "{}", text(&r));
    let r = call(&c, "set_status", json!({"status": "asleep"})).await;
    assert!(is_error(&r));

    // Closing stdin ends the server and closes its session.
    c.cancel().await.unwrap();
    let mut ac = a.client().await;
    for _ in 0..200 {
        let peers = ac.call(claudemesh_protocol::local::AgentCall::Peers { mesh: None }).await.unwrap();
        if !peers.as_array().unwrap().iter().any(|p| p["display_name"] == "alice-1") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("session still listed after the MCP server exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_between_sessions_on_two_agents() {
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    let b = agent(&w, "bob").await;
    let (ca, mut rx_a) = mcp(&a.paths, "000000a5-5e55-4000-8000-000000000000", "alice-1", true).await;
    let (cb, mut rx_b) = mcp(&b.paths, "000000a6-5e55-4000-8000-000000000000", "bob-1", true).await;
    wait_peer(&mut a.client().await, "bob-1").await;
    wait_peer(&mut b.client().await, "alice-1").await;

    // alice → bob: pushed as a channel notification with string-only meta.
    let r = call(&ca, "send_message", json!({"to": "bob-1", "message": "hi bob", "priority": "now"})).await;
    assert!(!is_error(&r), "{}", text(&r));
    let p = next_channel(&mut rx_b).await;
    assert_framed(&p, "alice", Some("alice-1"), "hi bob");
    assert_eq!(p["meta"]["from_id"], "000000a5-5e55-4000-8000-000000000000");
    assert_eq!(p["meta"]["priority"], "now");
    assert_eq!(p["meta"]["kind"], "message");

    // check_messages returns the pushed-but-unseen message once, then never again.
    let r = call(&cb, "check_messages", json!({})).await;
    assert!(!is_error(&r));
    assert!(
        text(&r).contains("hi bob") && text(&r).contains("from_id: 000000a5-5e55-4000-8000-000000000000"),
        "{}",
        text(&r)
    );
    let r = call(&cb, "check_messages", json!({})).await;
    assert_eq!(text(&r), "No new messages.");
    let r = call(&cb, "check_messages", json!({"include_seen": true})).await;
    assert!(text(&r).contains("hi bob") && text(&r).contains("seen before"), "{}", text(&r));
    let r = call(&cb, "check_messages", json!({})).await;
    assert_eq!(text(&r), "No new messages.");

    // bob replies to from_id; alice gets it pushed.
    let r = call(
        &cb,
        "send_message",
        json!({"to": "000000a5-5e55-4000-8000-000000000000", "message": "hi alice"}),
    )
    .await;
    assert!(!is_error(&r), "{}", text(&r));
    let p = next_channel(&mut rx_a).await;
    assert_framed(&p, "bob", Some("bob-1"), "hi alice");
    assert_eq!(p["meta"]["priority"], "next");

    // Groups: bob joins @reviewers; alice's message to the group reaches him.
    let r = call(&cb, "join_group", json!({"name": "reviewers", "role": "lead"})).await;
    assert!(!is_error(&r), "{}", text(&r));
    let mut ac = a.client().await;
    let mut sent = false;
    for _ in 0..200 {
        let r = call(&ca, "send_message", json!({"to": "@reviewers", "message": "please review"})).await;
        if !is_error(&r) {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(sent, "alice never saw bob in @reviewers");
    let p = next_channel(&mut rx_b).await;
    assert_framed(&p, "alice", Some("alice-1"), "please review");
    let r = call(&cb, "leave_group", json!({"name": "reviewers"})).await;
    assert!(!is_error(&r), "{}", text(&r));

    // Summary and status reach the other agent.
    let r = call(&cb, "set_summary", json!({"summary": "reviewing auth.rs"})).await;
    assert!(!is_error(&r));
    let r = call(&cb, "set_status", json!({"status": "working"})).await;
    assert!(!is_error(&r));
    let mut ok = false;
    for _ in 0..200 {
        let peers = ac.call(claudemesh_protocol::local::AgentCall::Peers { mesh: None }).await.unwrap();
        if peers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["summary"] == "reviewing auth.rs" && p["status"] == "working")
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ok, "summary/status never reached alice's agent");

    // message_status answers for a message alice sent.
    let r = call(&ca, "send_message", json!({"to": "bob-1", "message": "status?", "priority": "low"})).await;
    let id = text(&r).split("Message id: ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    let r = call(&ca, "message_status", json!({"id": id})).await;
    assert!(!is_error(&r), "{}", text(&r));

    ca.cancel().await.unwrap();
    cb.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_channel_messages_wait_for_check_messages() {
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    let b = agent(&w, "bob").await;
    let (ca, _rx_a) = mcp(&a.paths, "000000a5-5e55-4000-8000-000000000000", "alice-1", true).await;
    let (cb, mut rx_b) = mcp(&b.paths, "000000a6-5e55-4000-8000-000000000000", "bob-1", false).await;
    wait_peer(&mut a.client().await, "bob-1").await;

    let r =
        call(&ca, "send_message", json!({"to": "bob-1", "message": "quiet one", "priority": "now"})).await;
    assert!(!is_error(&r), "{}", text(&r));
    check_messages_until(&cb, "quiet one").await;
    assert!(rx_b.try_recv().is_err(), "pushed although the client declared no channel");
    assert_eq!(text(&call(&cb, "check_messages", json!({})).await), "No new messages.");
    ca.cancel().await.unwrap();
    cb.cancel().await.unwrap();
}

/// The local sessions' names, sorted, from the agent's status.
async fn local_names(c: &mut claudemesh_agent::AgentClient) -> Vec<String> {
    let st = c.call(claudemesh_protocol::local::AgentCall::Status).await.unwrap();
    let mut v: Vec<String> = st["local_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["display_name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_started_in_the_same_directory_get_distinct_names() {
    use claudemesh_protocol::frames::SessionInfo;
    use claudemesh_protocol::local::{AgentCall, SessionRegister};
    let w = World::start().await;
    let a = agent(&w, "alice").await;
    let repo = w.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let mut ac = a.client().await;
    let c1 = mcp_unnamed(&a.paths, "00000001-5e55-4000-8000-000000000051", &repo).await;
    let c2 = mcp_unnamed(&a.paths, "00000002-5e55-4000-8000-000000000052", &repo).await;
    let mut names = Vec::new();
    for _ in 0..400 {
        names = local_names(&mut ac).await;
        if names.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The default name is the configured one, "alice": the second session gets "alice-2".
    assert_eq!(names, ["alice", "alice-2"]);
    let me = |r: &rmcp::model::CallToolResult| {
        text(r).lines().find(|l| l.contains("(you)")).unwrap_or_default().to_string()
    };
    let (l1, l2) =
        (me(&call(&c1, "list_peers", json!({})).await), me(&call(&c2, "list_peers", json!({})).await));
    assert_ne!(l1.split(" (you)").next(), l2.split(" (you)").next(), "{l1} / {l2}");

    // At the socket: a third default-named session is alice-3; a bad chosen name is refused.
    let reg = |sid: &str, name: &str, default_name: bool| {
        AgentCall::SessionRegister(SessionRegister {
            meshes: vec![],
            session: SessionInfo { session_id: sid.into(), display_name: name.into(), ..Default::default() },
            claude_pid: None,
            default_name,
        })
    };
    let r = ac.call(reg("00000003-5e55-4000-8000-000000000053", "alice", true)).await.unwrap();
    assert_eq!(r["display_name"], "alice-3");
    let e = ac
        .call(reg("00000004-5e55-4000-8000-000000000054", "alice\u{7}", false))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("session name") && e.contains("control"), "{e}");
    // Once alice-2 closes, its name is free for the next session.
    c2.cancel().await.unwrap();
    for _ in 0..400 {
        if !local_names(&mut ac).await.contains(&"alice-2".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut other = a.client().await;
    let r = other.call(reg("00000005-5e55-4000-8000-000000000055", "alice", true)).await.unwrap();
    assert_eq!(r["display_name"], "alice-2");
    drop(c1);
}

#[test]
fn launch_refuses_a_bad_session_name_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(EXE);
        c.args(args)
            .env("HOME", dir.path())
            .env("CLAUDEMESH_CONFIG_DIR", dir.path().join("cm"))
            .env_remove("CLAUDEMESH_NAME");
        if let Some(n) = env {
            c.env("CLAUDEMESH_NAME", n);
        }
        let out = c.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    // (Nothing is installed in this HOME either: the name is what is reported, first.)
    let (code, err) = run(&["launch", "--name", "tab\there"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("--name") && err.contains("cannot be a session name"), "{err}");
    let long = "n".repeat(65);
    let (code, err) = run(&["launch"], Some(&long));
    assert_ne!(code, Some(0));
    assert!(err.contains("CLAUDEMESH_NAME") && err.contains("at most 64"), "{err}");
    let (code, err) = run(&["launch", "--name", "fine-name"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("claudemesh install"), "a good name passes on to the next check: {err}");
}
