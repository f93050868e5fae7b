//! Routing per DESIGN §5/§6: DM, group and broadcast with decryption by the recipient,
//! session targets, envelope validation, idempotent resend, and mesh isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_protocol::frames::*;
use common::*;

#[tokio::test]
async fn dm_is_delivered_and_decrypted() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000003", "alice", &[]).await;
    let ack = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000003",
        Target::Member(bob_id.member_id.clone()),
        &[&bob_id],
        "hi bob",
        "c1",
    )
    .await;
    let ServerFrame::Ack { recipients, online, msg_id, .. } = ack else { panic!("{ack:?}") };
    assert_eq!((recipients, online), (1, 1));
    let (push, plain) = recv_push(&mut bob, &bob_id, &alice_id).await;
    assert_eq!(plain.body, "hi bob");
    assert_eq!(push.msg_id, msg_id);
    assert_eq!(push.from.session_id, "5e550000-0000-4000-8000-000000000003");
    assert_eq!(push.client_msg_id, "c1");
}

#[tokio::test]
async fn group_and_broadcast_reach_exactly_their_members() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 3).await;
    let (mut carol, carol_id) = m.members.pop().unwrap();
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    open_session(&mut alice, "5e550000-0000-4000-8000-000000000007", "alice", &[]).await;
    open_session(&mut bob, "5e550000-0000-4000-8000-000000000008", "bob", &["backend"]).await;
    open_session(&mut carol, "5e550000-0000-4000-8000-000000000009", "carol", &["frontend"]).await;

    // @backend is only bob.
    let ack = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000007",
        Target::Group("backend".into()),
        &[&bob_id],
        "to backend",
        "g1",
    )
    .await;
    assert!(matches!(ack, ServerFrame::Ack { recipients: 1, .. }), "{ack:?}");
    assert_eq!(recv_push(&mut bob, &bob_id, &alice_id).await.1.body, "to backend");
    assert_no_push(&mut carol, 200).await;

    // Envelopes for the wrong members are refused, naming what is missing.
    let bad = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000007",
        Target::Group("backend".into()),
        &[&carol_id],
        "x",
        "g2",
    )
    .await;
    assert_eq!(error_code(&bad), ErrorCode::RecipientsChanged);

    // * is every other member, admin included.
    let ack = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000007",
        Target::Broadcast,
        &[&bob_id, &carol_id, &m.admin],
        "all",
        "b1",
    )
    .await;
    assert!(matches!(ack, ServerFrame::Ack { recipients: 3, .. }), "{ack:?}");
    assert_eq!(recv_push(&mut bob, &bob_id, &alice_id).await.1.body, "all");
    assert_eq!(recv_push(&mut carol, &carol_id, &alice_id).await.1.body, "all");
    assert_eq!(recv_push(&mut m.admin_conn, &m.admin, &alice_id).await.1.body, "all");
    // A broadcast missing one member is refused.
    let bad = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000007",
        Target::Broadcast,
        &[&bob_id],
        "x",
        "b2",
    )
    .await;
    assert_eq!(error_code(&bad), ErrorCode::RecipientsChanged);

    // session: targets route to the session's member.
    let ack = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000007",
        Target::Session("5e550000-0000-4000-8000-000000000009".into()),
        &[&carol_id],
        "to sc",
        "5e550000-0000-4000-8000-000000000004",
    )
    .await;
    assert!(matches!(ack, ServerFrame::Ack { .. }), "{ack:?}");
    assert_eq!(recv_push(&mut carol, &carol_id, &alice_id).await.1.body, "to sc");
    let nf = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000007",
        Target::Session("nope".into()),
        &[&carol_id],
        "x",
        "5e550000-0000-4000-8000-000000000005",
    )
    .await;
    assert_eq!(error_code(&nf), ErrorCode::NotFound);
}

#[tokio::test]
async fn resend_with_same_client_msg_id_is_idempotent() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    let t = Target::Member(bob_id.member_id.clone());
    let a1 = send_to(&mut alice, &alice_id, "", t.clone(), &[&bob_id], "once", "same-id").await;
    let a2 = send_to(&mut alice, &alice_id, "", t, &[&bob_id], "once", "same-id").await;
    let (ServerFrame::Ack { msg_id: id1, .. }, ServerFrame::Ack { msg_id: id2, .. }) = (&a1, &a2) else {
        panic!("{a1:?} {a2:?}")
    };
    assert_eq!(id1, id2, "the original ack is returned");
    recv_push(&mut bob, &bob_id, &alice_id).await;
    assert_no_push(&mut bob, 300).await;
}

#[tokio::test]
async fn meshes_are_isolated() {
    let h = Harness::start().await;
    let mut a = mesh_with(&h, "mesh-a", 1).await;
    let mut b = mesh_with(&h, "mesh-b", 1).await;
    let (mut a1, a1_id) = a.members.pop().unwrap();
    let (mut b1, b1_id) = b.members.pop().unwrap();
    open_session(&mut b1, "5e550000-0000-4000-8000-00000000000a", "b1", &[]).await;
    // A member id of another mesh is unknown here.
    let r = send_to(&mut a1, &a1_id, "", Target::Member(b1_id.member_id.clone()), &[&b1_id], "x", "i1").await;
    assert_eq!(error_code(&r), ErrorCode::NotFound);
    // A session of another mesh is unknown here.
    let r = send_to(
        &mut a1,
        &a1_id,
        "",
        Target::Session("5e550000-0000-4000-8000-00000000000a".into()),
        &[&b1_id],
        "x",
        "i2",
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::NotFound);
    // Broadcast covers only this mesh: envelopes naming the other mesh's member are refused as
    // a recipient set that does not match this mesh's (the agent reseals against its directory).
    let r = send_to(&mut a1, &a1_id, "", Target::Broadcast, &[&a.admin, &b1_id], "x", "i3").await;
    assert_eq!(error_code(&r), ErrorCode::RecipientsChanged);
    // Presence and directory do not leak across meshes.
    let dir = members(&mut a1).await;
    assert!(dir.iter().all(|m| m.member_id != b1_id.member_id));
    let req = a1.next_req();
    let ServerFrame::Peers { sessions, .. } =
        a1.request(&ClientFrame::ListPeers { req, cursor: None, limit: None }).await.unwrap()
    else {
        panic!()
    };
    assert!(sessions.iter().all(|s| s.session.session_id != "5e550000-0000-4000-8000-00000000000a"));
    assert_no_push(&mut b1, 200).await;
    // A member's key cannot hello into another mesh.
    let stolen = claudemesh_broker::testkit::Identity {
        mesh_id: b.admin.mesh_id.clone(),
        member_id: a1_id.member_id.clone(),
        key: claudemesh_protocol::crypto::MemberKeypair::from_secret_hex(&a1_id.key.secret_hex()).unwrap(),
    };
    let (_c, f) = claudemesh_broker::testkit::Client::connect_as(h.url(), &stolen).await.unwrap();
    // Mesh B has no such member: refused as unknown (`not_found`), never acknowledged.
    assert_eq!(error_code(&f), ErrorCode::NotFound);
}
