//! Two and three agents on one real broker: DMs, groups and broadcasts end to end, sends while
//! the broker is down, sessions surviving a broker restart, and the config watch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::{AgentCall, LinkState, Topic};
use common::*;

fn send(to: &str, message: &str, from: &str) -> AgentCall {
    send_call(to, message, Priority::Next, Some(from))
}

#[tokio::test]
async fn dm_between_two_agents_end_to_end() {
    let w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (_bob, mut b) = connected_agent(&w, "bob").await;
    register(&mut a, "000000a1-5e55-4000-8000-000000000000", "alice-laptop", &[]).await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob-desktop", &[]).await;
    wait_peer(&mut a, "bob-desktop").await;

    let r = a
        .call(send("bob-desktop", "hello from alice", "000000a1-5e55-4000-8000-000000000000"))
        .await
        .unwrap();
    assert_eq!(r["target"], "session:000000a0-5e55-4000-8000-000000000000");
    let id = r["id"].as_str().unwrap().to_string();
    let inbox = wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 1).await;
    let m = &inbox.messages[0];
    assert_eq!(m.body, "hello from alice");
    assert_eq!(m.from_name, "alice", "the verified member name");
    assert_eq!(m.session_name.as_deref(), Some("alice-laptop"), "the session's name, a claim");
    assert_eq!(m.from_session, "000000a1-5e55-4000-8000-000000000000");
    assert!(m.error.is_none());

    // Reading (taking, then confirming) marks it seen, the sender learns: accepted by the
    // broker, seen by bob.
    take_and_confirm(&mut b, "000000a0-5e55-4000-8000-000000000000").await;
    let mut seen = false;
    for _ in 0..200 {
        let st = a.call(AgentCall::MessageStatus { msg_id: id.clone() }).await.unwrap();
        if st["state"] == "accepted" && st["recipient_states"][0]["state"] == "seen" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "message_status never showed seen");
    let unseen = read_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000")).await;
    assert!(unseen.messages.is_empty(), "seen messages are not shown again");

    // Unknown and ambiguous targets say what would work.
    let e =
        a.call(send("nobody", "x", "000000a1-5e55-4000-8000-000000000000")).await.unwrap_err().to_string();
    assert!(e.contains("bob-desktop"), "{e}");
}

#[tokio::test]
async fn group_and_broadcast_between_three_agents() {
    let w = World::start().await;
    let agents = [
        RunningAgent::start(&w.member("a").await).await,
        RunningAgent::start(&w.member("b").await).await,
        RunningAgent::start(&w.member("c").await).await,
    ];
    let mut cs = Vec::new();
    for ag in &agents {
        let mut c = ag.client().await;
        wait_connected(&mut c).await;
        cs.push(c);
    }
    register(&mut cs[0], "000000fa-5e55-4000-8000-000000000000", "sa", &[]).await;
    register(&mut cs[1], "000000fb-5e55-4000-8000-000000000000", "sb", &["backend"]).await;
    register(&mut cs[2], "000000fc-5e55-4000-8000-000000000000", "sc", &["frontend"]).await;
    wait_peer(&mut cs[0], "sb").await;
    wait_peer(&mut cs[0], "sc").await;
    // The broker's directory learns declared groups; wait until ours does too.
    for _ in 0..200 {
        let m = cs[0].call(AgentCall::Members { mesh: None }).await.unwrap();
        if m.as_array()
            .unwrap()
            .iter()
            .any(|x| x["declared_groups"].as_array().is_some_and(|g| g.contains(&"backend".into())))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let r =
        cs[0].call(send("@backend", "backend only", "000000fa-5e55-4000-8000-000000000000")).await.unwrap();
    assert_eq!(r["recipients"], 1);
    assert_eq!(
        bodies(&wait_inbox(&mut cs[1], Some("000000fb-5e55-4000-8000-000000000000"), 1).await),
        ["backend only"]
    );
    let r = cs[0].call(send("*", "everyone", "000000fa-5e55-4000-8000-000000000000")).await.unwrap();
    assert_eq!(r["recipients"], 3, "b, c and the admin member");
    assert_eq!(
        bodies(&wait_inbox(&mut cs[2], Some("000000fc-5e55-4000-8000-000000000000"), 1).await),
        ["everyone"]
    );
    assert_eq!(
        bodies(&wait_inbox(&mut cs[1], Some("000000fb-5e55-4000-8000-000000000000"), 2).await),
        ["backend only", "everyone"]
    );
}

#[tokio::test]
async fn sends_while_the_broker_is_down_arrive_after_it_returns() {
    let mut w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (_bob, mut b) = connected_agent(&w, "bob").await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob", &[]).await;
    wait_peer(&mut a, "bob").await;
    w.stop_broker().await;
    for _ in 0..100 {
        if link_state(&mut a).await != LinkState::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Accepted locally at once, though the broker is gone.
    let r = a.call(send_p("bob", "while you were out", Priority::Now)).await.unwrap();
    let st = a.call(AgentCall::MessageStatus { msg_id: r["id"].as_str().unwrap().into() }).await.unwrap();
    assert_eq!(st["state"], "pending");
    w.start_broker().await;
    let inbox = wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 1).await;
    assert_eq!(bodies(&inbox), ["while you were out"]);
}

#[tokio::test]
async fn a_session_survives_a_short_broker_restart_without_leaving() {
    let mut w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (bob, mut b) = connected_agent(&w, "bob").await;
    register(&mut a, "000000a1-5e55-4000-8000-000000000000", "alice", &[]).await;
    wait_peer(&mut b, "alice").await;
    let mut watch = bob.client().await;
    watch.subscribe(vec![Topic::Presence], None, None).await.unwrap();
    w.stop_broker().await;
    w.start_broker().await;
    wait_connected(&mut a).await;
    wait_connected(&mut b).await;
    wait_peer(&mut b, "alice").await;
    // Drain presence for a moment: alice's session never left.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Ok((_, _, ev))) = tokio::time::timeout_at(deadline, watch.next_event()).await {
        let s = serde_json::to_string(&ev).unwrap();
        assert!(
            !(s.contains("peer_left") && s.contains("000000a1-5e55-4000-8000-000000000000")),
            "alice flapped: {s}"
        );
    }
}

#[tokio::test]
async fn joining_a_mesh_in_the_config_connects_it_live() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    let cfg = claudemesh_agent::Config::load(&paths).unwrap();
    // Start with no mesh, then write the mesh in as `claudemesh join` would.
    claudemesh_agent::Config { meshes: vec![], ..cfg.clone() }.save(&paths).unwrap();
    let alice = RunningAgent::start(&paths).await;
    let mut a = alice.client().await;
    assert_eq!(a.call(AgentCall::Meshes).await.unwrap().as_array().unwrap().len(), 0);
    cfg.save(&paths).unwrap();
    wait_connected(&mut a).await;
    // And leaving drops it.
    claudemesh_agent::Config { meshes: vec![], ..cfg }.save(&paths).unwrap();
    for _ in 0..200 {
        if a.call(AgentCall::Meshes).await.unwrap().as_array().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("mesh was not dropped after leaving");
}

fn send_p(to: &str, message: &str, priority: Priority) -> AgentCall {
    send_call(to, message, priority, None)
}

/// Bodies pushed on a `messages` subscription within `ms`.
async fn pushed(c: &mut claudemesh_agent::AgentClient, ms: u64) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Ok((_, _, ev))) = tokio::time::timeout_at(deadline, c.next_event()).await {
        if let claudemesh_protocol::local::LocalEvent::Messages(m) = ev {
            out.push(m.body);
        }
    }
    out
}

#[tokio::test]
async fn pushes_to_a_session_follow_priority_and_status() {
    use claudemesh_protocol::frames::{SessionPatch, SessionStatus};
    let w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (bob, mut b) = connected_agent(&w, "bob").await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob", &[]).await;
    b.call(AgentCall::SessionUpdate {
        session_id: "000000a0-5e55-4000-8000-000000000000".into(),
        patch: SessionPatch { status: Some(SessionStatus::Working), ..Default::default() },
    })
    .await
    .unwrap();
    let mut sub = bob.client().await;
    sub.subscribe(vec![Topic::Messages], Some("000000a0-5e55-4000-8000-000000000000".into()), None)
        .await
        .unwrap();
    wait_peer(&mut a, "bob").await;
    a.call(send_p("bob", "urgent", Priority::Now)).await.unwrap();
    a.call(send_p("bob", "when idle", Priority::Next)).await.unwrap();
    a.call(send_p("bob", "whenever", Priority::Low)).await.unwrap();
    wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 3).await;
    assert_eq!(pushed(&mut sub, 400).await, ["urgent"], "working: only `now` interrupts");
    b.call(AgentCall::SessionUpdate {
        session_id: "000000a0-5e55-4000-8000-000000000000".into(),
        patch: SessionPatch { status: Some(SessionStatus::Idle), ..Default::default() },
    })
    .await
    .unwrap();
    assert_eq!(
        pushed(&mut sub, 400).await,
        ["when idle"],
        "idle: `next` arrives; `low` waits to be asked for"
    );
    // dnd holds everything but now.
    b.call(AgentCall::SessionUpdate {
        session_id: "000000a0-5e55-4000-8000-000000000000".into(),
        patch: SessionPatch { status: Some(SessionStatus::Dnd), ..Default::default() },
    })
    .await
    .unwrap();
    a.call(send_p("bob", "later please", Priority::Next)).await.unwrap();
    a.call(send_p("bob", "fire", Priority::Now)).await.unwrap();
    assert_eq!(pushed(&mut sub, 600).await, ["fire"]);
    // Nothing was lost: the inbox holds every unseen message, pushed or not.
    let all = wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 5).await;
    let mut got = bodies(&all);
    got.sort();
    assert_eq!(got, ["fire", "later please", "urgent", "when idle", "whenever"]);
}

#[tokio::test]
async fn undecryptable_messages_are_kept_with_the_reason() {
    use claudemesh_broker::testkit::{Client, Identity};
    use claudemesh_protocol::frames::{ClientFrame, Envelope, Send, Target};
    let w = World::start().await;
    let mallory_paths = w.member("mallory").await;
    let bob = RunningAgent::start(&w.member("bob").await).await;
    let mut b = bob.client().await;
    wait_connected(&mut b).await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob", &[]).await;
    let bob_id = b.call(AgentCall::Meshes).await.unwrap()[0]["member_id"].as_str().unwrap().to_string();
    let cfg = claudemesh_agent::Config::load(&mallory_paths).unwrap();
    let m = &cfg.meshes[0];
    let me = Identity { mesh_id: m.id.clone(), member_id: m.member_id.clone(), key: m.keypair().unwrap() };
    let (mut raw, _) = Client::connect_as(&w.url(), &me).await.unwrap();
    let req = raw.next_req();
    let garbage = Envelope {
        member_id: bob_id.clone(),
        nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        ciphertext: "bm90IGEgYm94IGF0IGFsbA==".into(),
    };
    let r = raw
        .request(&ClientFrame::Send(Send {
            req,
            client_msg_id: "bad-1".into(),
            from_session: String::new(),
            target: Target::Member(bob_id),
            priority: Priority::Now,
            envelopes: vec![garbage],
        }))
        .await
        .unwrap();
    assert!(matches!(r, claudemesh_protocol::frames::ServerFrame::Ack { .. }), "{r:?}");
    let inbox = wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 1).await;
    let msg = &inbox.messages[0];
    assert_eq!(msg.body, "");
    assert!(msg.error.as_deref().unwrap().contains("wrong key or tampered"), "{msg:?}");
    assert_eq!(msg.from_member, me.member_id);
}

#[tokio::test]
async fn ambiguous_names_list_the_candidates() {
    let w = World::start().await;
    let alice = RunningAgent::start(&w.member("alice").await).await;
    let bob = RunningAgent::start(&w.member("bob").await).await;
    let carol = RunningAgent::start(&w.member("carol").await).await;
    let mut a = alice.client().await;
    let (mut b, mut c) = (bob.client().await, carol.client().await);
    for x in [&mut a, &mut b, &mut c] {
        wait_connected(x).await;
    }
    register(&mut b, "000000a6-5e55-4000-8000-000000000000", "reviewer", &[]).await;
    register(&mut c, "000000a4-5e55-4000-8000-000000000000", "Reviewer", &[]).await;
    wait_peer(&mut a, "reviewer").await;
    wait_peer(&mut a, "Reviewer").await;
    let e = a.call(send_p("reviewer", "x", Priority::Next)).await.unwrap_err().to_string();
    assert!(
        e.contains("ambiguous") && e.contains("session:000000a6") && e.contains("session:000000a4"),
        "{e}"
    );
    // An id always works.
    a.call(send_p("000000a4-5e55-4000-8000-000000000000", "to carol", Priority::Next)).await.unwrap();
    assert_eq!(
        bodies(&wait_inbox(&mut c, Some("000000a4-5e55-4000-8000-000000000000"), 1).await),
        ["to carol"]
    );
}

#[tokio::test]
async fn agents_speak_wss_to_a_broker_with_a_private_ca() {
    use claudemesh_broker::testkit::{Client, RunningBroker};
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let tls = claudemesh_broker::TlsFiles { cert: cert.clone(), key };
    let b = RunningBroker::start_with_tls("127.0.0.1:0", broker_config(dir.path()), Some(tls)).await.unwrap();
    let url = format!("wss://localhost:{}/ws", b.addr.port());
    let mut c = Client::connect_tls(&url, ck.cert.pem().as_bytes()).await.unwrap();
    let admin = c.mesh_create(&b.admin_token, "team", "admin").await.unwrap().unwrap();
    let paths = claudemesh_agent::Paths::new(dir.path().join("agent"));
    common::one_mesh_config(
        None,
        admin.mesh_id.clone(),
        url,
        admin.member_id.clone(),
        claudemesh_protocol::frames::Role::Admin,
        admin.key.secret_hex().to_string(),
        "admin",
    )
    .save(&paths)
    .unwrap();
    // The agent reads CLAUDEMESH_CA_FILE; run it as a process so the variable is its own.
    let log = std::fs::File::create(dir.path().join("agent.out")).unwrap();
    let mut child = std::process::Command::new(EXE)
        .args(["agent", "run"])
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("CLAUDEMESH_CA_FILE", &cert)
        .stderr(log)
        .spawn()
        .unwrap();
    let mut connected = false;
    for _ in 0..400 {
        if let Ok(mut a) = claudemesh_agent::AgentClient::connect(&paths, "t").await
            && link_state(&mut a).await == LinkState::Connected
        {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        connected,
        "agent never connected over wss: {}",
        std::fs::read_to_string(dir.path().join("agent.out")).unwrap_or_default()
    );
}

#[tokio::test]
async fn link_state_changes_stream_to_subscribers() {
    let mut w = World::start().await;
    let (alice, _a) = connected_agent(&w, "alice").await;
    let mut watch = alice.client().await;
    watch.subscribe(vec![Topic::Links], None, None).await.unwrap();
    w.stop_broker().await;
    w.start_broker().await;
    let mut states = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Ok((_, _, ev))) = tokio::time::timeout_at(deadline, watch.next_event()).await {
        if let claudemesh_protocol::local::LocalEvent::Links { state, mesh, .. } = ev {
            assert_eq!(mesh, "team");
            states.push(state);
            if state == claudemesh_protocol::local::LinkState::Connected && states.len() > 1 {
                break;
            }
        }
    }
    use claudemesh_protocol::local::LinkState::*;
    assert!(states.contains(&Disconnected), "{states:?}");
    assert_eq!(states.last(), Some(&Connected), "{states:?}");
}

#[tokio::test]
async fn group_and_broadcast_reach_the_senders_other_sessions_too() {
    let w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (_bob, mut b) = connected_agent(&w, "bob").await;
    register(&mut a, "000000a1-5e55-4000-8000-000000000000", "alice-1", &["backend"]).await;
    register(&mut a, "000000a2-5e55-4000-8000-000000000000", "alice-2", &["backend"]).await;
    register(&mut a, "000000a3-5e55-4000-8000-000000000000", "alice-3", &[]).await;
    register(&mut b, "000000b1-5e55-4000-8000-000000000000", "bob-1", &["backend"]).await;
    wait_peer(&mut a, "bob-1").await;
    for _ in 0..200 {
        let m = a.call(AgentCall::Members { mesh: None }).await.unwrap();
        if m.as_array().unwrap().iter().any(|x| {
            x["declared_groups"].as_array().is_some_and(|g| g.contains(&"backend".into())) && x["me"] == false
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let r = a.call(send("@backend", "standup in 5", "000000a1-5e55-4000-8000-000000000000")).await.unwrap();
    assert_eq!((r["recipients"].as_u64(), r["local"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(
        bodies(&wait_inbox(&mut b, Some("000000b1-5e55-4000-8000-000000000000"), 1).await),
        ["standup in 5"]
    );
    assert_eq!(
        bodies(&wait_inbox(&mut a, Some("000000a2-5e55-4000-8000-000000000000"), 1).await),
        ["standup in 5"],
        "sibling in the group"
    );
    let none = read_inbox(&mut a, Some("000000a3-5e55-4000-8000-000000000000")).await;
    assert!(none.messages.is_empty(), "a3 is not in @backend");
    let mine = read_inbox(&mut a, Some("000000a1-5e55-4000-8000-000000000000")).await;
    assert!(mine.messages.is_empty(), "the sender does not get its own message");
    let r = a.call(send("*", "lunch?", "000000a1-5e55-4000-8000-000000000000")).await.unwrap();
    assert_eq!(r["local"], 2, "{r}");
    assert_eq!(
        bodies(&wait_inbox(&mut a, Some("000000a3-5e55-4000-8000-000000000000"), 1).await),
        ["lunch?"]
    );
}
