//! The per-connection presence budget: a connect storm costs each connection a bounded number
//! of presence events (then one `presence_reset`), membership events are never shed, and a
//! list answers whole and turns presence back on. Online changes travel as the compact
//! `member_online`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use claudemesh_broker::rate::RateRule;
use claudemesh_broker::testkit::Client;
use claudemesh_protocol::frames::*;
use common::*;

const BURST: f64 = 16.0;
const PER_SEC: f64 = 1.0;

/// Every event received within `ms`, flattening `events` batches, and their frames' bytes.
async fn drain(c: &mut Client, ms: u64) -> Vec<Event> {
    let mut out = Vec::new();
    c.timeout = Duration::from_millis(ms);
    while let Ok(f) = c.recv_match(|f| matches!(f, ServerFrame::Event(_) | ServerFrame::Events { .. })).await
    {
        match f {
            ServerFrame::Event(e) => out.push(e),
            ServerFrame::Events { events } => out.extend(events),
            _ => {}
        }
    }
    c.timeout = Duration::from_secs(10);
    out
}

#[tokio::test]
async fn a_connect_storm_costs_each_connection_a_bounded_presence_and_a_list_restores_it() {
    let h = Harness::start_with(|c| c.presence_budget = RateRule { per_sec: PER_SEC, burst: BURST }).await;
    let mut m = mesh_with(&h, "team", 60).await;
    let mut ids = Vec::new();
    for (c, id) in m.members.drain(..) {
        c.close().await;
        ids.push(id);
    }
    // The observer: a fresh connection with a full budget, once the departures are told.
    let (mut obs, _) = Client::connect_as(h.url(), &ids[0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut obs, 300).await;

    // 59 members come back at once.
    let started = Instant::now();
    let mut back = Vec::new();
    for id in &ids[1..] {
        back.push(Client::connect_as(h.url(), id).await.unwrap().0);
    }
    let storm = started.elapsed().as_secs_f64();
    let events = drain(&mut obs, 800).await;
    let online = events.iter().filter(|e| matches!(e, Event::MemberOnline { online: true, .. })).count();
    let resets = events.iter().filter(|e| matches!(e, Event::PresenceReset {})).count();
    let allowed = (BURST + PER_SEC * (storm + 1.0)).ceil() as usize;
    assert!(
        online <= allowed,
        "{online} online events for 59 joins in {storm:.2} s; budget allows {allowed}"
    );
    assert_eq!(resets, 1, "one reset, then silence: {events:?}");
    assert!(
        matches!(events.last(), Some(Event::PresenceReset {})),
        "nothing sheddable after the reset: {events:?}"
    );

    // Membership is never shed: a member joining while the observer is stale is told.
    let inv = register(&mut m.admin_conn, &m.admin, invite_payload(&m.admin, "team", "late", 1)).await;
    let (_late, late_id) = enroll(h.url(), &inv, "late").await;
    let joined = wait_event(&mut obs, |e| matches!(e, Event::MemberJoined(_))).await;
    let Event::MemberJoined(info) = joined else { unreachable!() };
    assert_eq!(info.member_id, late_id.member_id);

    // A list answers whole: everyone who came back is online in it.
    let listed = members(&mut obs).await;
    let on = listed.iter().filter(|x| x.online).count();
    assert_eq!(on, 62, "the 59 who came back, the observer, the late one and the admin");

    // And presence flows again, as the budget refills.
    tokio::time::sleep(Duration::from_millis((1500.0 / PER_SEC) as u64)).await;
    let gone = ids[1].member_id.clone();
    back.remove(0).close().await;
    let e = wait_event(&mut obs, |e| matches!(e, Event::MemberOnline { .. } | Event::PresenceReset {})).await;
    assert_eq!(e, Event::MemberOnline { member_id: gone, online: false });
    let (status, body) = http_get(h.broker.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.lines().any(|l| l.starts_with("claudemesh_presence_resets_total ") && !l.ends_with(" 0")),
        "{body}"
    );
}

#[tokio::test]
async fn online_changes_are_compact_member_online_events() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, _) = m.members.pop().unwrap();
    drain(&mut alice, 300).await;
    bob.close().await;
    let e =
        wait_event(&mut alice, |e| matches!(e, Event::MemberOnline { .. } | Event::MemberUpdated(_))).await;
    assert_eq!(e, Event::MemberOnline { member_id: bob_id.member_id.clone(), online: false });
    let (_bob, _) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    let e =
        wait_event(&mut alice, |e| matches!(e, Event::MemberOnline { .. } | Event::MemberUpdated(_))).await;
    assert_eq!(e, Event::MemberOnline { member_id: bob_id.member_id.clone(), online: true });
    // ~60 bytes on the wire, not the whole member with its statements.
    assert!(encode(&e).len() < 120, "{}", encode(&e));
}

/// Agents older than the broker's protocol are told to upgrade: version 2 cannot decode the
/// presence budget's events; version 3 does not seal resends again, so a push the broker made
/// before a failed commit would come back as a false replay alarm.
#[tokio::test]
async fn agents_of_versions_2_and_3_are_told_to_upgrade() {
    let h = Harness::start().await;
    let m = mesh_with(&h, "team", 1).await;
    let (_, id) = m.members.into_iter().next().unwrap();
    for old in [2, 3] {
        let mut c = Client::connect(h.url()).await.unwrap();
        let signature =
            claudemesh_protocol::crypto::sign_hello(&id.key, &id.mesh_id, &id.member_id, &c.challenge);
        c.send(&ClientFrame::Hello(Hello {
            protocol: old,
            mesh_id: id.mesh_id.clone(),
            member_id: id.member_id.clone(),
            pubkey: id.key.public_hex(),
            signature,
            instance: None,
        }))
        .await
        .unwrap();
        let f = c
            .recv_match(|f| matches!(f, ServerFrame::HelloAck { .. } | ServerFrame::Error(_)))
            .await
            .unwrap();
        let ServerFrame::Error(e) = f else { panic!("a version-{old} hello was accepted: {f:?}") };
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(
            e.message.contains(&format!("speaks {old}")) && e.message.contains("upgrade claudemesh"),
            "{}",
            e.message
        );
    }
}
