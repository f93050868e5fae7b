//! Durable at-least-once delivery: offline queues, redelivery until client_ack, a broker
//! restart between ack and delivery, delivered and seen receipts and status, rate limits, queue caps, expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_broker::testkit::{Client, Identity};
use claudemesh_protocol::frames::*;
use common::*;

async fn ack(c: &mut Client, ids: Vec<String>) {
    c.send(&ClientFrame::ClientAck { msg_ids: ids }).await.unwrap();
}

#[tokio::test]
async fn offline_member_gets_its_queue_on_reconnect_in_order() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    bob.close().await;
    let t = Target::Member(bob_id.member_id.clone());
    for i in 0..5 {
        let r = send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], &format!("m{i}"), &format!("c{i}"))
            .await;
        assert!(matches!(r, ServerFrame::Ack { recipients: 1, online: 0, .. }), "{r:?}");
    }
    let (mut bob, _) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    for i in 0..5 {
        assert_eq!(recv_push(&mut bob, &bob_id, &alice_id).await.1.body, format!("m{i}"));
    }
}

#[tokio::test]
async fn unacked_pushes_are_redelivered_and_acked_ones_are_not() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    let t = Target::Member(bob_id.member_id.clone());
    send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], "first", "c1").await;
    send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], "second", "c2").await;
    let (p1, _) = recv_push(&mut bob, &bob_id, &alice_id).await;
    let (p2, _) = recv_push(&mut bob, &bob_id, &alice_id).await;
    // Bob stores only the first durably, acks it, then his agent dies (no close frame).
    ack(&mut bob, vec![p1.msg_id.clone()]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.abort();
    let (mut bob, _) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    let (again, plain) = recv_push(&mut bob, &bob_id, &alice_id).await;
    assert_eq!(again.msg_id, p2.msg_id, "the unacked message comes back with the same msg_id (dedupe key)");
    assert_eq!(plain.body, "second");
    assert_no_push(&mut bob, 300).await;
    // Once acked it is gone for good.
    ack(&mut bob, vec![again.msg_id]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    reconnect_gets_nothing(&h, bob, &bob_id).await;
}

#[tokio::test]
async fn broker_restart_between_ack_and_delivery_loses_nothing() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    bob.close().await;
    let t = Target::Member(bob_id.member_id.clone());
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = send_to(
            &mut alice,
            &alice_id,
            "",
            t.clone(),
            &[&bob_id],
            &format!("durable {i}"),
            &format!("d{i}"),
        )
        .await;
        let ServerFrame::Ack { msg_id, .. } = r else { panic!("{r:?}") };
        ids.push(msg_id);
    }
    drop(alice);
    drop(m);
    let h = h.restart().await;
    let (mut bob, ack) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "members survive the restart: {ack:?}");
    for (i, id) in ids.iter().enumerate() {
        let (p, plain) = recv_push(&mut bob, &bob_id, &alice_id).await;
        assert_eq!(&p.msg_id, id);
        assert_eq!(plain.body, format!("durable {i}"));
    }
    // Idempotency survives the restart too.
    let (mut alice, _) = Client::connect_as(h.url(), &alice_id).await.unwrap();
    let r = send_to(&mut alice, &alice_id, "", t, &[&bob_id], "durable 0", "d0").await;
    assert!(matches!(&r, ServerFrame::Ack { msg_id, .. } if msg_id == &ids[0]), "{r:?}");
    assert_no_push(&mut bob, 300).await;
}

/// An agent resends what it was not acked for as soon as it is back, possibly before it opens
/// its sessions again: after a broker restart the send names a session the broker has no live
/// entry for. It is the member's own (the owner is remembered), so the send is accepted; another
/// member naming it is refused. (Found by `tests/faults_crash.rs`: the refusal made the agent
/// fail a send it had accepted, a message lost.)
#[tokio::test]
async fn a_resend_after_a_restart_may_name_its_session_before_the_session_is_open_again() {
    const SID: &str = "5e550000-0000-4000-8000-0000000000a1";
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    open_session(&mut alice, SID, "alice-desk", &[]).await;
    let t = Target::Member(bob_id.member_id.clone());
    let r = send_to(&mut alice, &alice_id, SID, t.clone(), &[&bob_id], "before", "r0").await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    drop((alice, bob, m));
    let h = h.restart().await;
    let (mut alice, _) = Client::connect_as(h.url(), &alice_id).await.unwrap();
    let (mut bob, _) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    let r = send_to(&mut alice, &alice_id, SID, t, &[&bob_id], "resent", "r1").await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "its own session, not open yet: {r:?}");
    let alice_t = Target::Member(alice_id.member_id.clone());
    let r = send_to(&mut bob, &bob_id, SID, alice_t.clone(), &[&alice_id], "spoof", "s1").await;
    assert_eq!(error_code(&r), ErrorCode::Invalid, "another member's session: {r:?}");
    let never = "5e550000-0000-4000-8000-0000000000ff";
    let r = send_to(&mut bob, &bob_id, never, alice_t, &[&alice_id], "unknown", "s2").await;
    assert_eq!(error_code(&r), ErrorCode::Invalid, "a session nobody opened: {r:?}");
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001() {
    let h = Harness::start().await;
    let m = mesh_with(&h, "team", 1).await;
    let mut c = m.admin_conn;
    let stop = tokio::spawn(h.broker.stop());
    match c.recv_match(|_| false).await {
        Err(claudemesh_broker::testkit::ClientError::Closed(Some(r))) => {
            assert!(r.starts_with("1001"), "{r}")
        }
        other => panic!("{other:?}"),
    }
    stop.await.unwrap().unwrap();
}

#[tokio::test]
async fn receipts_and_message_status() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 3).await;
    let (carol, carol_id) = m.members.pop().unwrap();
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    carol.close().await;
    let r = send_to(
        &mut alice,
        &alice_id,
        "",
        Target::Broadcast,
        &[&bob_id, &carol_id, &m.admin],
        "status?",
        "st1",
    )
    .await;
    let ServerFrame::Ack { msg_id, .. } = r else { panic!("{r:?}") };
    let (p, _) = recv_push(&mut bob, &bob_id, &alice_id).await;
    let receipt = |state| {
        ServerFrame::Event(Event::Receipt {
            msg_ids: vec![msg_id.clone()],
            member_id: bob_id.member_id.clone(),
            state,
        })
    };
    let is_receipt = |f: &ServerFrame| matches!(f, ServerFrame::Event(Event::Receipt { .. }));
    // Bob's agent stored it: alice learns it was delivered, while it is not seen yet.
    ack(&mut bob, vec![p.msg_id.clone()]).await;
    assert_eq!(alice.recv_match(is_receipt).await.unwrap(), receipt(ReceiptState::Delivered));
    bob.send(&ClientFrame::Receipt { msg_ids: vec![p.msg_id.clone()], state: ReceiptState::Seen })
        .await
        .unwrap();
    assert_eq!(alice.recv_match(is_receipt).await.unwrap(), receipt(ReceiptState::Seen));
    // Nothing changes twice: acknowledging again (a re-push) and seeing again tell alice nothing.
    ack(&mut bob, vec![p.msg_id.clone()]).await;
    bob.send(&ClientFrame::Receipt { msg_ids: vec![p.msg_id.clone()], state: ReceiptState::Seen })
        .await
        .unwrap();
    assert_no_receipt(&mut alice, 300).await;
    let req = alice.next_req();
    let ServerFrame::MessageStatus { recipients, .. } =
        alice.request(&ClientFrame::MessageStatus { req, msg_id: msg_id.clone() }).await.unwrap()
    else {
        panic!()
    };
    let state_of = |id: &str| recipients.iter().find(|r| r.member_id == id).map(|r| r.state);
    assert_eq!(state_of(&bob_id.member_id), Some(DeliveryState::Seen));
    assert_eq!(state_of(&carol_id.member_id), Some(DeliveryState::Queued));
    assert_eq!(recipients.len(), 3);
    // Only the sender sees a message's status.
    let req = bob.next_req();
    let r = bob.request(&ClientFrame::MessageStatus { req, msg_id }).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::NotFound);
}

#[tokio::test]
async fn seen_before_the_client_ack_stays_seen_and_the_copy_still_leaves_the_queue() {
    let h = Harness::start().await;
    let (mut alice, _, mut bob, bob_id, p) = dm_pushed(&h, "read first", "sb1").await;
    let is_receipt = |f: &ServerFrame| matches!(f, ServerFrame::Event(Event::Receipt { .. }));
    // Bob reports it seen while his copy is still queued (no client_ack yet).
    bob.send(&ClientFrame::Receipt { msg_ids: vec![p.msg_id.clone()], state: ReceiptState::Seen })
        .await
        .unwrap();
    let r = alice.recv_match(is_receipt).await.unwrap();
    assert!(matches!(r, ServerFrame::Event(Event::Receipt { state: ReceiptState::Seen, .. })), "{r:?}");
    // The late client_ack takes the copy out of the queue but does not move seen back.
    ack(&mut bob, vec![p.msg_id.clone()]).await;
    assert_no_receipt(&mut alice, 300).await;
    let recipients = status_of(&mut alice, &p.msg_id).await;
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0].state, DeliveryState::Seen);
    reconnect_gets_nothing(&h, bob, &bob_id).await;
}

#[tokio::test]
async fn a_broadcast_to_more_members_than_a_record_lists_keeps_every_state() {
    let h = Harness::start().await;
    // 20 recipients: past the 16 a message record lists, so each gets a row at the send.
    let mut m = mesh_with(&h, "team", 20).await;
    let (mut alice, alice_id) = m.members.remove(0);
    let (mut bob, bob_id) = m.members.remove(0);
    let mut to: Vec<&Identity> = m.members.iter().map(|(_, id)| id).collect();
    to.push(&bob_id);
    to.push(&m.admin);
    let r = send_to(&mut alice, &alice_id, "", Target::Broadcast, &to, "to all", "big1").await;
    let ServerFrame::Ack { msg_id, recipients: 20, .. } = r else { panic!("{r:?}") };
    let (p, _) = recv_push(&mut bob, &bob_id, &alice_id).await;
    ack(&mut bob, vec![p.msg_id.clone()]).await;
    let is_receipt = |f: &ServerFrame| matches!(f, ServerFrame::Event(Event::Receipt { .. }));
    let r = alice.recv_match(is_receipt).await.unwrap();
    assert!(matches!(r, ServerFrame::Event(Event::Receipt { state: ReceiptState::Delivered, .. })), "{r:?}");
    let states = status_of(&mut alice, &msg_id).await;
    assert_eq!(states.len(), 20);
    for s in &states {
        let want =
            if s.member_id == bob_id.member_id { DeliveryState::Delivered } else { DeliveryState::Queued };
        assert_eq!(s.state, want, "{}", s.member_id);
    }
}

#[tokio::test]
async fn a_client_cannot_claim_delivered() {
    let h = Harness::start().await;
    let (mut alice, _, mut bob, _, p) = dm_pushed(&h, "queued", "dl1").await;
    // Delivered means stored by the recipient's agent, which only its client_ack proves.
    bob.send(&ClientFrame::Receipt { msg_ids: vec![p.msg_id.clone()], state: ReceiptState::Delivered })
        .await
        .unwrap();
    let r = bob.recv_match(|f| matches!(f, ServerFrame::Error(_))).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::Invalid, "{r:?}");
    let recipients = status_of(&mut alice, &p.msg_id).await;
    assert_eq!(recipients[0].state, DeliveryState::Queued, "the refused receipt changed nothing");
    assert_no_receipt(&mut alice, 300).await;
}

#[tokio::test]
async fn rate_limit_says_when_to_retry() {
    let h = Harness::start_with(|c| {
        c.send_rate_per_sec = 5.0;
        c.send_burst = 3.0;
    })
    .await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (_bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    let t = Target::Member(bob_id.member_id.clone());
    for i in 0..3 {
        let r = send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], "x", &format!("r{i}")).await;
        assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    }
    let r = send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], "x", "r3").await;
    let ServerFrame::Error(e) = r else { panic!("{r:?}") };
    assert_eq!(e.code, ErrorCode::RateLimited);
    let wait = e.retry_after_ms.unwrap();
    assert!(wait > 0 && wait <= 200, "{wait}");
    tokio::time::sleep(Duration::from_millis(wait + 20)).await;
    let r = send_to(&mut alice, &alice_id, "", t, &[&bob_id], "x", "r3").await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "after waiting, the send goes through: {r:?}");
}

#[tokio::test]
async fn full_queue_is_an_error_to_the_sender_not_a_silent_drop() {
    let h = Harness::start_with(|c| c.max_queue_per_member = 3).await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    bob.close().await;
    let t = Target::Member(bob_id.member_id.clone());
    for i in 0..3 {
        let r = send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], "x", &format!("q{i}")).await;
        assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    }
    let r = send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], "x", "q3").await;
    assert_eq!(error_code(&r), ErrorCode::Limit);
    // Draining the queue makes room again.
    let (mut bob, _) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(recv_push(&mut bob, &bob_id, &alice_id).await.0.msg_id);
    }
    ack(&mut bob, ids).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = send_to(&mut alice, &alice_id, "", t, &[&bob_id], "x", "q3").await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
}

#[tokio::test]
async fn undelivered_messages_expire_and_the_sender_is_told() {
    let h = Harness::start_with(|c| {
        c.queue_ttl = Duration::from_millis(300);
        c.sweep_interval = Duration::from_millis(50);
        c.expiry_interval = Duration::from_millis(100);
    })
    .await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    bob.close().await;
    let r = send_to(
        &mut alice,
        &alice_id,
        "",
        Target::Member(bob_id.member_id.clone()),
        &[&bob_id],
        "too late",
        "e1",
    )
    .await;
    let ServerFrame::Ack { msg_id, .. } = r else { panic!("{r:?}") };
    let ev = alice.recv_match(|f| matches!(f, ServerFrame::Event(Event::Expired { .. }))).await.unwrap();
    assert_eq!(
        ev,
        ServerFrame::Event(Event::Expired { msg_ids: vec![msg_id], member_id: bob_id.member_id.clone() })
    );
    let (mut bob, _) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    assert_no_push(&mut bob, 300).await;
}
