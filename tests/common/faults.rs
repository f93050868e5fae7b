//! Helpers for the delivery fault tests (leases, routing races, stress): typed takes and
//! confirms with timeouts, bulk sends, and raw socket clients that vanish mid-call. Included by
//! `#[path = "common/faults.rs"] mod faults;` next to `mod common;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use claudemesh_agent::{AgentClient, Paths};
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::limits::AGENT_PROTOCOL_VERSION;
use claudemesh_protocol::local::{
    AgentCall, ClientLine, ConfirmReply, InboxMessage, InboxParams, InboxReply, SendReply,
};
use tokio::io::AsyncWriteExt;

use crate::common::{AgentProcess, World, send_call, wait_connected};

/// alice and bob, each with a running agent connected to the world's broker, and a client of
/// each: `(alice paths, alice, a, bob paths, bob, b)`.
pub async fn two_agents(w: &World) -> (Paths, AgentProcess, AgentClient, Paths, AgentProcess, AgentClient) {
    two_agents_with(w, |_| {}).await
}

/// [`two_agents`], with `prepare` run on each config dir before its agent starts (to point it
/// at a proxy, say).
pub async fn two_agents_with(
    w: &World,
    prepare: impl Fn(&Paths),
) -> (Paths, AgentProcess, AgentClient, Paths, AgentProcess, AgentClient) {
    let (alice_paths, bob_paths) = (w.member("alice").await, w.member("bob").await);
    prepare(&alice_paths);
    prepare(&bob_paths);
    let alice = AgentProcess::start(&alice_paths).await;
    let bob = AgentProcess::start(&bob_paths).await;
    let (mut a, mut b) = (alice.client().await, bob.client().await);
    wait_connected(&mut a).await;
    wait_connected(&mut b).await;
    (alice_paths, alice, a, bob_paths, bob, b)
}

/// Every agent call in these tests is bounded: a stalled agent fails the test, never hangs it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `fut` within `CALL_TIMEOUT`, else a panic naming `what`.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {CALL_TIMEOUT:?}"),
    }
}

/// Runs a whole test body, failing it (instead of hanging CI) after `secs` seconds.
pub async fn within<T>(secs: u64, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), body).await {
        Ok(v) => v,
        Err(_) => panic!("the test did not finish within {secs} s"),
    }
}

/// `inbox {session, take: true, limit}`.
pub async fn take(c: &mut AgentClient, session: &str, limit: u32) -> InboxReply {
    let call = AgentCall::Inbox(InboxParams {
        session: Some(session.into()),
        take: true,
        limit: Some(limit),
        ..Default::default()
    });
    bounded("inbox take", c.request::<InboxReply>(call)).await.unwrap()
}

/// `confirm {lease}`.
pub async fn confirm(c: &mut AgentClient, lease: u64) -> ConfirmReply {
    bounded("confirm", c.request::<ConfirmReply>(AgentCall::Confirm { lease, msg_ids: None })).await.unwrap()
}

/// Takes (and confirms each lease) until the session has nothing left; returns every body
/// taken, in order. A take that holds messages must carry a lease.
pub async fn drain(c: &mut AgentClient, session: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let r = take(c, session, 500).await;
        if r.messages.is_empty() {
            return got;
        }
        let lease = r.lease.unwrap_or_else(|| panic!("a take of {} messages has no lease", r.messages.len()));
        got.extend(r.messages.iter().map(|m| m.body.clone()));
        confirm(c, lease).await;
    }
}

/// Takes and confirms for up to `bound`, until the bodies taken include all of `want`;
/// returns everything taken (duplicates included) for the caller to judge.
pub async fn take_until(
    c: &mut AgentClient,
    session: &str,
    want: &BTreeSet<String>,
    bound: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + bound;
    let mut got: Vec<String> = Vec::new();
    loop {
        let r = take(c, session, 500).await;
        if let Some(lease) = r.lease {
            confirm(c, lease).await;
        }
        got.extend(r.messages.iter().map(|m| m.body.clone()));
        let have: BTreeSet<&String> = got.iter().collect();
        if want.iter().all(|w| have.contains(w)) || Instant::now() >= deadline {
            return got;
        }
        if r.messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The session's unseen messages, read without taking (nothing is marked): the page's length
/// plus what waits beyond it.
pub async fn unseen(c: &mut AgentClient, session: &str) -> (Vec<InboxMessage>, usize) {
    let call = AgentCall::Inbox(InboxParams { session: Some(session.into()), ..Default::default() });
    let r = bounded("inbox read", c.request::<InboxReply>(call)).await.unwrap();
    let n = r.messages.len() + r.more;
    (r.messages, n)
}

/// Polls until `session` has `n` unseen messages (without taking any), for up to `within`.
pub async fn wait_unseen(c: &mut AgentClient, session: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = 0;
    while Instant::now() < deadline {
        last = unseen(c, session).await.1;
        if last >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{session} never had {n} unseen messages (last {last})");
}

/// Sends `bodies` to `to` from session `from` over `conns` connections at once (each body once).
pub async fn send_all(paths: &Paths, to: &str, from: &str, bodies: &[String], conns: usize) {
    let mut tasks = Vec::new();
    for chunk in bodies.chunks(bodies.len().div_ceil(conns).max(1)) {
        let (paths, to, from, chunk) = (paths.clone(), to.to_string(), from.to_string(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut c = AgentClient::connect(&paths, "test-sender").await.unwrap();
            for b in chunk {
                let call = send_call(&to, &b, Priority::Next, Some(&from));
                bounded("send", c.request::<SendReply>(call)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Connects to the agent's socket by hand, writes the hello and `call` as request 1, waits
/// `linger` (so the agent reads and serves it), and closes without reading a byte.
pub async fn call_and_vanish(paths: &Paths, call: AgentCall, linger: Duration) {
    let mut s = tokio::net::UnixStream::connect(paths.socket()).await.unwrap();
    let mut out = String::new();
    for l in [
        ClientLine::Hello { protocol: AGENT_PROTOCOL_VERSION, client: "vanishing".into() },
        ClientLine::Request { id: 1, call },
    ] {
        out.push_str(&serde_json::to_string(&l).unwrap());
        out.push('\n');
    }
    s.write_all(out.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(linger).await;
    drop(s);
}

/// `n` distinct bodies `prefix-0000`, `prefix-0001`, …
pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// The bodies `want` lacks from `got`, and those `got` holds more than once.
pub fn lost_and_doubled(want: &[String], got: &[String]) -> (Vec<String>, Vec<String>) {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for g in got {
        *counts.entry(g.as_str()).or_default() += 1;
    }
    let lost = want.iter().filter(|w| !counts.contains_key(w.as_str())).cloned().collect();
    let doubled = counts.iter().filter(|(_, n)| **n > 1).map(|(b, _)| b.to_string()).collect();
    (lost, doubled)
}
