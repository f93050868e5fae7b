//! One agent under concurrent load (issue 10): eight clients mix `status`, `send`, `hook`,
//! `inbox` takes and `session_register`/`session_close` for `CLAUDEMESH_STRESS_SECS` (30 s by
//! default); every call must answer within 5 s (a stall, e.g. a lock-order inversion between
//! `status` and `send`, fails naming the call), and `status` still answers at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use claudemesh_agent::{AgentClient, ClientError, Paths};
use claudemesh_protocol::frames::{GroupRole, Priority, SessionInfo};
use claudemesh_protocol::local::{AgentCall, HookCall, HookEvent, InboxParams, SessionRegister};
use common::*;
use faults::*;
use serde_json::Value;

/// How long one call may take before the agent counts as stalled.
const STALL: Duration = Duration::from_secs(5);
const CLIENTS: usize = 8;

fn stress_secs() -> u64 {
    std::env::var("CLAUDEMESH_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30)
}

/// A small deterministic generator (no rand in the dev-dependencies).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn register_call(sid: &str, name: &str, groups: &[&str]) -> AgentCall {
    AgentCall::SessionRegister(SessionRegister {
        meshes: vec![],
        session: SessionInfo {
            session_id: sid.into(),
            display_name: name.into(),
            groups: groups.iter().map(|g| GroupRole::new(*g)).collect(),
            ..Default::default()
        },
        claude_pid: None,
        default_name: false,
    })
}

fn hook_call(sid: &str, event: HookEvent) -> AgentCall {
    AgentCall::Hook(HookCall {
        event,
        session_id: Some(sid.into()),
        claude_session_id: None,
        pids: vec![],
        status_only: false,
        claude_pid: None,
    })
}

/// What one client did: calls per method, the slowest, and the first stall or lost connection.
#[derive(Default)]
struct Tally {
    calls: BTreeMap<&'static str, usize>,
    slowest: (Duration, &'static str),
    failure: Option<String>,
}

/// One client's loop until `until`: random calls, each bounded by [`STALL`].
async fn client_loop(paths: Paths, k: usize, until: Instant) -> Tally {
    let mut t = Tally::default();
    let mut c = match AgentClient::connect(&paths, "stress").await {
        Ok(c) => c,
        Err(e) => {
            t.failure = Some(format!("client {k}: cannot connect: {e}"));
            return t;
        }
    };
    let mut rng = Lcg(k as u64 + 1);
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        let (what, call): (&'static str, AgentCall) = match rng.next(12) {
            0..=2 => ("status", AgentCall::Status),
            // Refused without touching the store: the quickest way through `send`'s locks.
            3 | 4 => (
                "send to @ghost",
                send_call(
                    "@ghost",
                    &format!("c{k} {n}"),
                    Priority::Next,
                    Some("000000a2-5e55-4000-8000-000000000000"),
                ),
            ),
            5 => (
                "send to alice",
                send_call(
                    "alice-desk",
                    &format!("c{k} {n}"),
                    Priority::Next,
                    Some("000000a2-5e55-4000-8000-000000000000"),
                ),
            ),
            6 => {
                let from = mine.first().map_or("000000a2-5e55-4000-8000-000000000000", String::as_str);
                (
                    "send to bob-home",
                    send_call("bob-home", &format!("c{k} local {n}"), Priority::Now, Some(from)),
                )
            }
            7 => {
                let sid =
                    mine.last().cloned().unwrap_or_else(|| "000000a2-5e55-4000-8000-000000000000".into());
                let ev = if rng.next(2) == 0 { HookEvent::PostToolUse } else { HookEvent::UserPromptSubmit };
                ("hook", hook_call(&sid, ev))
            }
            8 => {
                n += 1;
                let sid = format!("000000a4-5e55-4000-8000-000000000000{k}-{n}");
                mine.push(sid.clone());
                (
                    "session_register",
                    register_call(&sid, &sid, if n % 2 == 0 { &["backend"][..] } else { &[] }),
                )
            }
            9 if !mine.is_empty() => {
                let sid = mine.remove(rng.next(mine.len() as u64) as usize);
                ("session_close", AgentCall::SessionClose { session_id: sid })
            }
            10 => ("peers", AgentCall::Peers { mesh: None }),
            _ => (
                "inbox take",
                AgentCall::Inbox(InboxParams {
                    session: Some("000000a2-5e55-4000-8000-000000000000".into()),
                    take: true,
                    limit: Some(10),
                    ..Default::default()
                }),
            ),
        };
        n += 1;
        let started = Instant::now();
        let r: Result<Value, ClientError> = match tokio::time::timeout(STALL, c.call(call)).await {
            Ok(r) => r,
            Err(_) => {
                t.failure = Some(format!("client {k}: {what} stalled (no answer in {STALL:?})"));
                return t;
            }
        };
        let took = started.elapsed();
        if took > t.slowest.0 {
            t.slowest = (took, what);
        }
        *t.calls.entry(what).or_default() += 1;
        match &r {
            // Refusals (a hook for a session another client just closed, …) are answers.
            Ok(_) | Err(ClientError::Api(_)) => {}
            Err(e) => {
                t.failure = Some(format!("client {k}: {what} lost the agent: {e}"));
                return t;
            }
        }
        // Confirm what a take or hook leased, as the MCP server and hooks do.
        if let Ok(v) = &r
            && let Some(lease) = v.get("lease").and_then(Value::as_u64)
        {
            match tokio::time::timeout(STALL, c.call(AgentCall::Confirm { lease, msg_ids: None })).await {
                Ok(Ok(_) | Err(ClientError::Api(_))) => {}
                Ok(Err(e)) => {
                    t.failure = Some(format!("client {k}: confirm lost the agent: {e}"));
                    return t;
                }
                Err(_) => {
                    t.failure = Some(format!("client {k}: confirm stalled (no answer in {STALL:?})"));
                    return t;
                }
            }
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_status_send_hook_and_sessions_never_stall_the_agent() {
    let secs = stress_secs();
    within(secs + 120, async {
        let w = World::start().await;
        let (alice_paths, bob_paths) = (w.member("alice").await, w.member("bob").await);
        let alice = AgentProcess::start(&alice_paths).await;
        let mut bob = AgentProcess::start(&bob_paths).await;
        let (mut a, mut b) = (alice.client().await, bob.client().await);
        wait_connected(&mut a).await;
        wait_connected(&mut b).await;
        bounded("register", register(&mut a, "000000a1-5e55-4000-8000-000000000000", "alice-desk", &[]))
            .await;
        bounded(
            "register",
            register(&mut b, "000000a2-5e55-4000-8000-000000000000", "bob-home", &["backend"]),
        )
        .await;
        wait_peer(&mut b, "alice-desk").await;

        let until = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> =
            (0..CLIENTS).map(|k| tokio::spawn(client_loop(bob_paths.clone(), k, until))).collect();
        let mut failures = Vec::new();
        let mut totals: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut slowest = (Duration::ZERO, "");
        for t in tasks {
            let t = t.await.unwrap();
            for (what, n) in t.calls {
                *totals.entry(what).or_default() += n;
            }
            slowest = slowest.max(t.slowest);
            failures.extend(t.failure);
        }
        eprintln!("{secs} s of stress from {CLIENTS} clients: {totals:?}; slowest call {slowest:?}");
        assert!(bob.child.try_wait().unwrap().is_none(), "the agent exited under load");
        let status = tokio::time::timeout(STALL, async {
            let mut c = AgentClient::connect(&bob_paths, "after").await?;
            c.call(AgentCall::Status).await
        })
        .await;
        assert!(
            failures.is_empty(),
            "the agent stalled or dropped clients under load:\n{}",
            failures.join("\n")
        );
        match status {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("status after the stress failed: {e}"),
            Err(_) => panic!("status after the stress did not answer within {STALL:?}"),
        }
    })
    .await;
}
