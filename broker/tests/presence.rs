//! Presence: sessions multiplexed on a member connection, the 90 s reconnect grace (no
//! leave/join flapping), replacement of a connection, liveness, and batched presence events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_broker::testkit::{Client, ClientError};
use claudemesh_protocol::frames::*;
use common::*;

/// Every event received within `ms`, flattening `events` batches; also the frame count.
async fn drain_events(c: &mut Client, ms: u64) -> (Vec<Event>, usize) {
    let mut out = Vec::new();
    let mut frames = 0;
    c.timeout = Duration::from_millis(ms);
    while let Ok(f) = c.recv_match(|f| matches!(f, ServerFrame::Event(_) | ServerFrame::Events { .. })).await
    {
        frames += 1;
        match f {
            ServerFrame::Event(e) => out.push(e),
            ServerFrame::Events { events } => out.extend(events),
            _ => {}
        }
    }
    c.timeout = Duration::from_secs(10);
    (out, frames)
}

fn is_peer_event(e: &Event) -> bool {
    matches!(e, Event::PeerJoined(_) | Event::PeerLeft { .. } | Event::PeerUpdated(_))
}

#[tokio::test]
async fn sessions_show_in_presence_with_every_field() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, _) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    let session = SessionInfo {
        session_id: "5e550000-0000-4000-8000-000000000003".into(),
        display_name: "alice@laptop".into(),
        cwd: Some("/src/app".into()),
        pid: Some(123),
        hostname: Some("laptop".into()),
        peer_type: PeerType::Ai,
        channel: Some("claudemesh".into()),
        model: Some("opus".into()),
        groups: vec![GroupRole::new("backend")],
        status: SessionStatus::Working,
        summary: Some("fixing the router".into()),
    };
    let req = alice.next_req();
    assert_eq!(
        alice.request(&ClientFrame::SessionOpen { req, session: session.clone() }).await.unwrap(),
        ServerFrame::Ok { req }
    );
    let (events, _) = drain_events(&mut bob, 400).await;
    let joined = events
        .iter()
        .find_map(|e| match e {
            Event::PeerJoined(p) => Some(p.clone()),
            _ => None,
        })
        .expect("peer_joined");
    assert_eq!(joined.session, session);
    assert_eq!(joined.member_id, alice_id.member_id);
    assert!(joined.connected_since > 0);
    let req = bob.next_req();
    let ServerFrame::Peers { sessions, .. } =
        bob.request(&ClientFrame::ListPeers { req, cursor: None, limit: None }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session, session);

    // Updates change only what they name, and others see peer_updated.
    let req = alice.next_req();
    let patch = SessionPatch {
        status: Some(SessionStatus::Idle),
        summary: Some("done".into()),
        ..Default::default()
    };
    assert_eq!(
        alice
            .request(&ClientFrame::SessionUpdate {
                req,
                session_id: "5e550000-0000-4000-8000-000000000003".into(),
                patch
            })
            .await
            .unwrap(),
        ServerFrame::Ok { req }
    );
    let (events, _) = drain_events(&mut bob, 400).await;
    let upd = events
        .iter()
        .find_map(|e| match e {
            Event::PeerUpdated(p) => Some(p.clone()),
            _ => None,
        })
        .expect("peer_updated");
    assert_eq!(
        (upd.session.status, upd.session.summary.as_deref(), upd.session.cwd.as_deref()),
        (SessionStatus::Idle, Some("done"), Some("/src/app"))
    );

    // Bad fields are refused; another member cannot touch alice's session.
    let req = alice.next_req();
    let bad = SessionPatch { groups: Some(vec![GroupRole::new("Not Valid")]), ..Default::default() };
    assert_eq!(
        error_code(
            &alice
                .request(&ClientFrame::SessionUpdate {
                    req,
                    session_id: "5e550000-0000-4000-8000-000000000003".into(),
                    patch: bad
                })
                .await
                .unwrap()
        ),
        ErrorCode::Invalid
    );
    let req = bob.next_req();
    assert_eq!(
        error_code(
            &bob.request(&ClientFrame::SessionClose {
                req,
                session_id: "5e550000-0000-4000-8000-000000000003".into()
            })
            .await
            .unwrap()
        ),
        ErrorCode::NotFound
    );
    let req = bob.next_req();
    let steal = SessionInfo {
        session_id: "5e550000-0000-4000-8000-000000000003".into(),
        display_name: "bob".into(),
        ..Default::default()
    };
    assert_eq!(
        error_code(&bob.request(&ClientFrame::SessionOpen { req, session: steal }).await.unwrap()),
        ErrorCode::Conflict
    );

    let req = alice.next_req();
    assert_eq!(
        alice
            .request(&ClientFrame::SessionClose {
                req,
                session_id: "5e550000-0000-4000-8000-000000000003".into()
            })
            .await
            .unwrap(),
        ServerFrame::Ok { req }
    );
    let (events, _) = drain_events(&mut bob, 400).await;
    assert!(events.contains(&Event::PeerLeft {
        member_id: alice_id.member_id.clone(),
        session_id: "5e550000-0000-4000-8000-000000000003".into()
    }));
}

#[tokio::test]
async fn reconnect_within_grace_is_the_same_peer() {
    let h = Harness::start_with(|c| {
        c.reconnect_grace = Duration::from_millis(1500);
        c.sweep_interval = Duration::from_millis(50);
    })
    .await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, _) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000004", "alice", &[]).await;
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000005", "alice-2", &[]).await;
    drain_events(&mut bob, 300).await;
    alice.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut alice, _) = Client::connect_as(h.url(), &alice_id).await.unwrap();
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000004", "alice", &[]).await;
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000005", "alice-2", &[]).await;
    // Well past the grace: nothing about s1/s2 leaving or joining was ever seen.
    let (events, _) = drain_events(&mut bob, 2000).await;
    assert!(!events.iter().any(is_peer_event), "no flapping: {events:?}");
    let req = bob.next_req();
    let ServerFrame::Peers { sessions, .. } =
        bob.request(&ClientFrame::ListPeers { req, cursor: None, limit: None }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(sessions.len(), 2, "no ghost sessions");
}

#[tokio::test]
async fn sessions_leave_after_the_grace() {
    let h = Harness::start_with(|c| {
        c.reconnect_grace = Duration::from_millis(400);
        c.sweep_interval = Duration::from_millis(50);
    })
    .await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, _) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000004", "alice", &[]).await;
    drain_events(&mut bob, 200).await;
    alice.abort();
    let (events, _) = drain_events(&mut bob, 200).await;
    assert!(!events.iter().any(is_peer_event), "still present during the grace: {events:?}");
    let (events, _) = drain_events(&mut bob, 1000).await;
    assert!(
        events.contains(&Event::PeerLeft {
            member_id: alice_id.member_id.clone(),
            session_id: "5e550000-0000-4000-8000-000000000004".into()
        }),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_second_hello_replaces_the_first_connection_with_4000() {
    let h = Harness::start().await;
    let m = mesh_with(&h, "team", 0).await;
    let mut old = m.admin_conn;
    let (_new, ack) = Client::connect_as(h.url(), &m.admin).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }));
    match old.recv_match(|_| false).await {
        Err(ClientError::Closed(Some(r))) => assert!(r.starts_with("4000"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn silent_connections_are_closed_and_live_ones_kept() {
    let h = Harness::start_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let m = mesh_with(&h, "team", 1).await;
    let mut live = m.admin_conn;
    let (_, silent_id) = m.members.into_iter().next().unwrap();
    // A raw TCP peer that completed hello but never reads (so never answers pings).
    let (silent, _) = Client::connect_as(h.url(), &silent_id).await.unwrap();
    // The live client keeps reading, so it answers pings and stays.
    live.timeout = Duration::from_millis(1500);
    let r = live.recv_match(|f| matches!(f, ServerFrame::Ok { .. })).await;
    assert!(matches!(r, Err(ClientError::Timeout)), "live connection kept: {r:?}");
    let req = live.next_req();
    live.timeout = Duration::from_secs(5);
    assert!(
        matches!(
            live.request(&ClientFrame::MeshInfo { req }).await.unwrap(),
            ServerFrame::MeshInfo { online_members: 1, .. }
        ),
        "the silent one was dropped"
    );
    drop(silent);
}

#[tokio::test]
async fn presence_is_batched_not_one_frame_per_event() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 1).await;
    let (mut alice, _) = m.members.pop().unwrap();
    drain_events(&mut m.admin_conn, 200).await;
    for i in 0..40 {
        let req = alice.next_req();
        let session = SessionInfo {
            session_id: format!("5e550000-0000-4000-8000-{i:012x}"),
            display_name: format!("n{i}"),
            ..Default::default()
        };
        alice.send(&ClientFrame::SessionOpen { req, session }).await.unwrap();
    }
    let (events, frames) = drain_events(&mut m.admin_conn, 600).await;
    let joined = events.iter().filter(|e| matches!(e, Event::PeerJoined(_))).count();
    assert_eq!(joined, 40);
    assert!(frames < 10, "40 joins arrived in {frames} frames");
}

#[tokio::test]
async fn session_and_connection_caps_refuse_with_limit() {
    let h = Harness::start_with(|c| {
        c.max_sessions_per_member = 2;
        c.max_connections_per_mesh = 2;
    })
    .await;
    // admin + one member = 2 connections: the cap.
    let mut m = mesh_with(&h, "team", 1).await;
    let (mut alice, _) = m.members.pop().unwrap();
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000004", "a1", &[]).await;
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000005", "a2", &[]).await;
    let req = alice.next_req();
    let third = SessionInfo {
        session_id: "5e550000-0000-4000-8000-000000000006".into(),
        display_name: "a3".into(),
        ..Default::default()
    };
    let r = alice.request(&ClientFrame::SessionOpen { req, session: third }).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::Limit);
    // A third member cannot connect while two are connected...
    let inv = register(&mut m.admin_conn, &m.admin, invite_payload(&m.admin, "team", "cap", 5)).await;
    let key = claudemesh_protocol::crypto::MemberKeypair::generate();
    let mut c = Client::connect(h.url()).await.unwrap();
    let f = c.enroll(inv.token(), &key, "cap", "third").await.unwrap();
    assert_eq!(error_code(&f), ErrorCode::Limit, "{f:?}");
    // ...but a member reconnecting replaces its own connection and is not counted twice.
    let admin = m.admin;
    let (_again, ack) = Client::connect_as(h.url(), &admin).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
}
