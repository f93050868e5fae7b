//! Where a received message goes inside the agent (issue 10): a DM arriving while a session
//! registers is never stranded, and groups granted to the member (by its invite or by an
//! admin's `member set`) reach every session that did not leave them, with `join_group`
//! picking up what waited for the group meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use claudemesh_agent::{AgentClient, Paths};
use claudemesh_protocol::frames::{GroupRole, Priority, Role, SessionPatch};
use claudemesh_protocol::local::{AgentCall, InviteCreate, InviteReply, SendReply};
use common::*;
use faults::*;
use serde_json::Value;

/// How many DMs each trial sends while the session registers.
const BURST: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_arriving_while_a_session_registers_reaches_it() {
    within(240, async {
        let w = World::start().await;
        let (alice_paths, _alice, mut a, bob_paths, _bob, _b) = two_agents(&w).await;
        bounded("register", register(&mut a, "000000a1-5e55-4000-8000-000000000000", "alice-desk", &[]))
            .await;

        let mut failures = Vec::new();
        for trial in 0..20u64 {
            // bob has no session open: DMs to the member wait for the next one. Race a burst of
            // them with that session's registration, shifting the start a little each trial.
            let want = numbered(&format!("race-{trial}"), BURST);
            let send = {
                let (paths, want) = (alice_paths.clone(), want.clone());
                tokio::spawn(async move {
                    send_all(&paths, "bob", "000000a1-5e55-4000-8000-000000000000", &want, 1).await
                })
            };
            tokio::time::sleep(Duration::from_millis(trial % 10 * 3)).await;
            let sid = format!("000000b0-5e55-4000-8000-{trial:012}");
            let mut holder = AgentClient::connect(&bob_paths, "test").await.unwrap();
            bounded("register", register(&mut holder, &sid, &format!("bob-{trial}"), &[])).await;
            bounded("the sends", send).await.unwrap();
            let got =
                take_until(&mut holder, &sid, &want.iter().cloned().collect(), Duration::from_secs(4)).await;
            let (lost, _) = lost_and_doubled(&want, &got);
            if !lost.is_empty() {
                failures.push(format!("trial {trial}: {sid} never got {lost:?}"));
            }
            bounded("close", holder.call(AgentCall::SessionClose { session_id: sid })).await.unwrap();
        }
        assert!(
            failures.is_empty(),
            "{}/20 trials stranded a message:\n{}",
            failures.len(),
            failures.join("\n")
        );
    })
    .await;
}

/// `send` from `from`, retried while the sender's directory does not yet know the group.
async fn send_to_group(a: &mut AgentClient, group: &str, body: &str, from: &str) -> SendReply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r =
            bounded("send", a.request::<SendReply>(send_call(group, body, Priority::Next, Some(from)))).await;
        match r {
            Ok(r) if r.recipients > 0 => return r,
            other if Instant::now() >= deadline => {
                panic!("sending to {group} never reached a member: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The groups `status` lists for local session `sid` (declared, plus granted and not left).
async fn session_groups(c: &mut AgentClient, sid: &str) -> Vec<String> {
    let st = bounded("status", c.call(AgentCall::Status)).await.unwrap();
    let s = st["local_sessions"].as_array().unwrap().iter().find(|s| s["session_id"] == sid).cloned();
    let s = s.unwrap_or_else(|| panic!("{sid} is not in status: {st}"));
    s["groups"]
        .as_array()
        .map_or_else(Vec::new, |g| g.iter().filter_map(|x| x.as_str().map(Into::into)).collect())
}

async fn set_groups(c: &mut AgentClient, sid: &str, groups: &[String]) -> Value {
    let patch =
        SessionPatch { groups: Some(groups.iter().map(GroupRole::new).collect()), ..Default::default() };
    bounded("session_update", c.call(AgentCall::SessionUpdate { session_id: sid.into(), patch }))
        .await
        .unwrap()
}

/// Waits until bob's agent holds `n` messages in its inbox (seen or not, routed or waiting).
async fn wait_inbox_count(c: &mut AgentClient, n: u64) {
    for _ in 0..200 {
        if mesh_status(c).await.inbox as u64 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bob's agent never held {n} messages");
}

/// bob's session `000000a0-5e55-4000-8000-000000000000` (no declared groups) gets `@backend`, leaves it, misses the next one
/// (which waits in the inbox), and joins again to get what waited.
async fn granted_group_round(bob_paths: &Paths, alice_paths: &Paths) {
    let bob = AgentProcess::start(bob_paths).await;
    let alice = AgentProcess::start(alice_paths).await;
    let (mut a, mut b) = (alice.client().await, bob.client().await);
    wait_connected(&mut a).await;
    wait_connected(&mut b).await;
    bounded("register", register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob-desk", &[])).await;
    bounded("register", register(&mut a, "000000a1-5e55-4000-8000-000000000000", "alice-desk", &[])).await;
    wait_peer(&mut a, "bob-desk").await;

    send_to_group(&mut a, "@backend", "backend one", "000000a1-5e55-4000-8000-000000000000").await;
    let want: BTreeSet<String> = ["backend one".to_string()].into();
    let got =
        take_until(&mut b, "000000a0-5e55-4000-8000-000000000000", &want, Duration::from_secs(10)).await;
    assert!(
        got.contains(&"backend one".to_string()),
        "a session that declared no groups did not get @backend, granted to its member; took {got:?}"
    );

    // The session leaves the group: a new @backend message waits for another session.
    let mut groups = session_groups(&mut b, "000000a0-5e55-4000-8000-000000000000").await;
    assert!(groups.contains(&"backend".to_string()), "status does not show the granted group: {groups:?}");
    groups.retain(|g| g != "backend");
    set_groups(&mut b, "000000a0-5e55-4000-8000-000000000000", &groups).await;
    assert!(
        !session_groups(&mut b, "000000a0-5e55-4000-8000-000000000000")
            .await
            .contains(&"backend".to_string()),
        "leaving did not stick"
    );
    send_to_group(&mut a, "@backend", "backend two", "000000a1-5e55-4000-8000-000000000000").await;
    wait_inbox_count(&mut b, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = take(&mut b, "000000a0-5e55-4000-8000-000000000000", 100).await;
    let bodies: Vec<&str> = r.messages.iter().map(|m| m.body.as_str()).collect();
    assert!(!bodies.contains(&"backend two"), "a session that left @backend still got it");

    // Joining again picks up what waited for the group.
    let reply = set_groups(&mut b, "000000a0-5e55-4000-8000-000000000000", &["backend".to_string()]).await;
    assert!(reply["rerouted"].as_u64().unwrap_or(0) >= 1, "join_group rerouted nothing: {reply}");
    let want: BTreeSet<String> = ["backend two".to_string()].into();
    let got = take_until(&mut b, "000000a0-5e55-4000-8000-000000000000", &want, Duration::from_secs(5)).await;
    assert!(got.contains(&"backend two".to_string()), "join_group did not deliver what waited: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_granted_by_the_invite_reaches_sessions_that_did_not_declare_it() {
    within(120, async {
        let w = World::start().await;
        let alice_paths = w.member("alice").await;
        let admin = AgentProcess::start(&w.admin_paths()).await;
        let mut ad = admin.client().await;
        wait_connected(&mut ad).await;
        let create = AgentCall::InviteCreate(InviteCreate {
            mesh: None,
            role: Role::Member,
            groups: vec![GroupRole::new("backend")],
            max_uses: 1,
            expires_in_secs: 3600,
            broker_url: None,
        });
        let inv = bounded("invite_create", ad.request::<InviteReply>(create)).await.unwrap();
        let bob_paths = Paths::new(w.dir.path().join("agent-bob"));
        let invite = claudemesh_protocol::invite::parse_invite(&inv.url).unwrap();
        assert_eq!(invite.payload.groups, vec![GroupRole::new("backend")], "the invite grants @backend");
        bounded("join", claudemesh_agent::enroll::join(&bob_paths, &invite, "bob", false)).await.unwrap();
        granted_group_round(&bob_paths, &alice_paths).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_granted_by_member_set_reaches_sessions_that_did_not_declare_it() {
    within(120, async {
        let w = World::start().await;
        let (alice_paths, bob_paths) = (w.member("alice").await, w.member("bob").await);
        let admin = AgentProcess::start(&w.admin_paths()).await;
        let mut ad = admin.client().await;
        wait_connected(&mut ad).await;
        let set = AgentCall::MemberSet {
            member: "bob".into(),
            mesh: None,
            role: None,
            groups: Some(vec![GroupRole::new("backend")]),
        };
        let r = bounded("member_set", ad.call(set)).await.unwrap();
        assert_eq!(r["groups"][0]["name"], "backend", "{r}");
        granted_group_round(&bob_paths, &alice_paths).await;
    })
    .await;
}
