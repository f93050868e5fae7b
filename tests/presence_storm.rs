//! An agent whose broker connection went over its presence budget in a storm of joins (the
//! broker sent `presence_reset` and nothing more) still answers `peers` with everyone and still
//! finds a session that joined during the storm by name: it lists again when it needs to.
//! Real broker (tight presence budget), real agents in this process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_agent::AgentClient;
use claudemesh_broker::rate::RateRule;
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::{AgentCall, PeerEntry};
use common::*;

/// The broker's `claudemesh_presence_resets_total`.
async fn resets(addr: &str) -> u64 {
    let body = reqwest_free_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix("claudemesh_presence_resets_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A plain HTTP/1.0 GET, body only.
async fn reqwest_free_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// Starts `n` agents named `{prefix}{i}`, each with one session `{prefix}{i}-task` (which
/// lasts while its client is connected: the client is returned with the agent).
async fn storm(w: &World, prefix: &str, n: usize) -> Vec<(RunningAgent, AgentClient)> {
    let mut agents = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let (agent, mut c) = connected_agent(w, &name).await;
        let id = format!("5e550000-0000-4000-8000-{:04x}{i:08x}", prefix.as_bytes()[0]);
        register(&mut c, &id, &format!("{name}-task"), &[]).await;
        agents.push((agent, c));
    }
    agents
}

/// Waits until the broker sent at least `n` resets, then for the batch interval to pass.
async fn wait_resets(addr: &str, n: u64) {
    for _ in 0..400 {
        if resets(addr).await >= n {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the broker never sent presence_reset");
}

#[tokio::test]
async fn an_agent_past_its_presence_budget_lists_again_when_it_needs_the_peers() {
    let w = World::start_with(|d| {
        let mut c = broker_config(d);
        c.presence_budget = RateRule { per_sec: 0.01, burst: 2.0 };
        c
    })
    .await;
    let (_obs, mut oc) = connected_agent(&w, "obs").await;
    register(&mut oc, "5e550000-0000-4000-8000-00000000ffff", "obs-session", &[]).await;

    // Six agents join, each with a session: far more presence than two events.
    let first = storm(&w, "w", 6).await;
    wait_resets(&w.addr, 1).await;

    // A session that joined during the storm, by name: the agent lists again and finds it.
    let r = oc
        .call(send_call("w5-task", "found you", Priority::Now, Some("5e550000-0000-4000-8000-00000000ffff")))
        .await;
    assert!(r.is_ok(), "send by the name of a session the broker never announced: {r:?}");

    // Another storm (the budget is still empty: a reset at the first event), then `peers`.
    let before = resets(&w.addr).await;
    let second = storm(&w, "x", 4).await;
    wait_resets(&w.addr, before + 1).await;
    let peers: Vec<PeerEntry> = oc.request(AgentCall::Peers { mesh: None }).await.unwrap();
    let mut names: Vec<String> = peers.iter().map(|p| p.peer.session.display_name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "obs-session",
            "w0-task",
            "w1-task",
            "w2-task",
            "w3-task",
            "w4-task",
            "w5-task",
            "x0-task",
            "x1-task",
            "x2-task",
            "x3-task"
        ],
        "peers after the second storm"
    );
    for (a, _) in first.into_iter().chain(second) {
        a.stop().await;
    }
}
