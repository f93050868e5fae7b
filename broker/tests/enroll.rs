//! Enrollment and hello exactly as DESIGN §4/§5, every refusal, and the admin verbs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_broker::testkit::{Client, ClientError, Identity};
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::*;
use common::*;

/// The refusal of a failed enroll or hello: an error frame, then close 1008.
async fn expect_refusal(c: &mut Client, f: ServerFrame, code: ErrorCode) {
    assert_eq!(error_code(&f), code, "{f:?}");
    match c.recv().await {
        Err(ClientError::Closed(Some(reason))) => assert!(reason.starts_with("1008"), "{reason}"),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

async fn try_enroll(url: &str, token: &str, invite_id: &str, key: &MemberKeypair) -> (Client, ServerFrame) {
    let mut c = Client::connect(url).await.unwrap();
    let f = c.enroll(token, key, invite_id, "newcomer").await.unwrap();
    (c, f)
}

#[tokio::test]
async fn happy_path_then_hello_with_the_new_key() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let (mut ac, ack) = Client::connect_as(h.url(), &admin).await.unwrap();
    let ServerFrame::HelloAck { role, mesh, .. } = ack else { panic!("{ack:?}") };
    assert_eq!((role, mesh.slug.as_str()), (Role::Admin, "team"));
    let mut p = invite_payload(&admin, "team", "inv1", 1);
    p.groups = vec![GroupRole { name: "ops".into(), role: Some("lead".into()) }];
    let inv = register(&mut ac, &admin, p).await;
    let (c, id) = enroll(h.url(), &inv, "bob").await;
    c.close().await;
    let (_c2, ack) = Client::connect_as(h.url(), &id).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { role: Role::Member, .. }), "{ack:?}");
    let bob = members(&mut ac).await.into_iter().find(|m| m.member_id == id.member_id).unwrap();
    assert_eq!(bob.display_name, "bob");
    assert_eq!(
        bob.groups,
        vec![GroupRole { name: "ops".into(), role: Some("lead".into()) }],
        "invite grants its groups"
    );
    assert!(bob.online);
}

#[tokio::test]
async fn every_enroll_refusal_has_a_stable_code() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let (mut ac, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let key = MemberKeypair::generate();

    // Not registered.
    let unregistered = invite_payload(&admin, "team", "never-registered", 5).sign(&admin.key).unwrap();
    let (mut c, f) = try_enroll(h.url(), unregistered.token(), "never-registered", &key).await;
    expect_refusal(&mut c, f, ErrorCode::Forbidden).await;

    // Revoked.
    let inv = register(&mut ac, &admin, invite_payload(&admin, "team", "to-revoke", 5)).await;
    let req = ac.next_req();
    assert_eq!(
        ac.request(&ClientFrame::InviteRevoke { req, invite_id: "to-revoke".into() }).await.unwrap(),
        ServerFrame::Ok { req }
    );
    let (mut c, f) = try_enroll(h.url(), inv.token(), "to-revoke", &key).await;
    expect_refusal(&mut c, f, ErrorCode::Revoked).await;

    // Expired: registered while valid with a 1-second lifetime, used after it ran out; and
    // an already-expired invite cannot even be registered.
    let mut p = invite_payload(&admin, "team", "short", 5);
    p.expires_at = now_s() + 1;
    let short = register(&mut ac, &admin, p).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (mut c, f) = try_enroll(h.url(), short.token(), "short", &key).await;
    expect_refusal(&mut c, f, ErrorCode::Expired).await;
    let mut p = invite_payload(&admin, "team", "past", 5);
    p.expires_at = now_s() - 10;
    let past = p.sign(&admin.key).unwrap();
    let req = ac.next_req();
    let r = ac.request(&ClientFrame::InviteRegister { req, invite: past.token().into() }).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::Expired);

    // Uses exhausted.
    let one = register(&mut ac, &admin, invite_payload(&admin, "team", "one-use", 1)).await;
    let (c1, _) = enroll(h.url(), &one, "first").await;
    c1.close().await;
    let (mut c, f) = try_enroll(h.url(), one.token(), "one-use", &MemberKeypair::generate()).await;
    expect_refusal(&mut c, f, ErrorCode::Limit).await;

    // Tampered invite: bad signature.
    let good = register(&mut ac, &admin, invite_payload(&admin, "team", "good", 5)).await;
    let (p64, s64) = good.token().split_once('.').unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&claudemesh_protocol::codec::from_b64url("p", p64).unwrap()).unwrap();
    json["role"] = "admin".into();
    let forged = format!("{}.{s64}", claudemesh_protocol::codec::to_b64url(json.to_string().as_bytes()));
    let (mut c, f) = try_enroll(h.url(), &forged, "good", &key).await;
    expect_refusal(&mut c, f, ErrorCode::BadSignature).await;

    // Enroll signature by another key than the one enrolled.
    let mut c = Client::connect(h.url()).await.unwrap();
    let other = MemberKeypair::generate();
    let signature = claudemesh_protocol::crypto::sign_enroll(&other, "good", &c.challenge);
    c.send(&ClientFrame::Enroll(Enroll {
        statement: None,
        protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
        invite: good.token().into(),
        pubkey: key.public_hex(),
        display_name: "x".into(),
        signature,
    }))
    .await
    .unwrap();
    let f = c.recv().await.unwrap();
    expect_refusal(&mut c, f, ErrorCode::BadSignature).await;

    // Signature over an old challenge (replay) fails.
    let old = Client::connect(h.url()).await.unwrap();
    let replayed = claudemesh_protocol::crypto::sign_enroll(&key, "good", &old.challenge);
    let mut c = Client::connect(h.url()).await.unwrap();
    c.send(&ClientFrame::Enroll(Enroll {
        statement: None,
        protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
        invite: good.token().into(),
        pubkey: key.public_hex(),
        display_name: "x".into(),
        signature: replayed,
    }))
    .await
    .unwrap();
    let f = c.recv().await.unwrap();
    expect_refusal(&mut c, f, ErrorCode::BadSignature).await;

    // Signed by a member who is not an admin: registration refused, enrollment refused.
    let (mc, member) = enroll(h.url(), &good, "plain-member").await;
    mc.close().await;
    let not_admin = invite_payload(&member, "team", "by-member", 5).sign(&member.key).unwrap();
    let (mut c, f) = try_enroll(h.url(), not_admin.token(), "by-member", &key).await;
    expect_refusal(&mut c, f, ErrorCode::Forbidden).await;
    let req = ac.next_req();
    let r = ac.request(&ClientFrame::InviteRegister { req, invite: not_admin.token().into() }).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::Forbidden);

    // Malformed invite and unknown mesh.
    let (mut c, f) = try_enroll(h.url(), "not-an-invite", "x", &key).await;
    expect_refusal(&mut c, f, ErrorCode::Invalid).await;
    let mut ghost = invite_payload(&admin, "team", "ghost", 5);
    ghost.mesh_id = "mesh_nope".into();
    let ghost = ghost.sign(&admin.key).unwrap();
    let (mut c, f) = try_enroll(h.url(), ghost.token(), "ghost", &key).await;
    expect_refusal(&mut c, f, ErrorCode::NotFound).await;

    // Bad display name.
    let mut c = Client::connect(h.url()).await.unwrap();
    let f = c.enroll(good.token(), &key, "good", "bad\nname").await.unwrap();
    expect_refusal(&mut c, f, ErrorCode::Invalid).await;
}

#[tokio::test]
async fn concurrent_enrolls_on_a_one_use_invite_have_one_winner() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let (mut ac, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let inv = register(&mut ac, &admin, invite_payload(&admin, "team", "race", 1)).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (url, token) = (h.url().to_string(), inv.token().to_string());
        tasks.push(tokio::spawn(async move {
            let key = MemberKeypair::generate();
            let mut c = Client::connect(&url).await.unwrap();
            c.enroll(&token, &key, "race", "racer").await.unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            ServerFrame::Enrolled { .. } => won += 1,
            f => assert_eq!(error_code(&f), ErrorCode::Limit),
        }
    }
    assert_eq!(won, 1, "exactly one enroll wins a 1-use invite");
}

#[tokio::test]
async fn re_enrolling_the_same_key_is_idempotent_and_burns_no_use() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let (mut ac, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let inv = register(&mut ac, &admin, invite_payload(&admin, "team", "two", 2)).await;
    let key = MemberKeypair::generate();
    let (c, f1) = try_enroll(h.url(), inv.token(), "two", &key).await;
    c.close().await;
    let (c, f2) = try_enroll(h.url(), inv.token(), "two", &key).await;
    c.close().await;
    let (ServerFrame::Enrolled { member_id: a, .. }, ServerFrame::Enrolled { member_id: b, .. }) = (&f1, &f2)
    else {
        panic!("{f1:?} {f2:?}")
    };
    assert_eq!(a, b);
    let req = ac.next_req();
    let ServerFrame::Invites { invites, .. } = ac.request(&ClientFrame::InviteList { req }).await.unwrap()
    else {
        panic!()
    };
    let two = invites.iter().find(|i| i.invite_id == "two").unwrap();
    assert_eq!((two.uses, two.max_uses), (1, 2));
    // The second use is still available to someone else (under another name).
    let mut c = Client::connect(h.url()).await.unwrap();
    let f3 = c.enroll(inv.token(), &MemberKeypair::generate(), "two", "someone-else").await.unwrap();
    assert!(matches!(f3, ServerFrame::Enrolled { .. }), "{f3:?}");
}

#[tokio::test]
async fn hello_refusals() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    // Wrong key for the member.
    let wrong = Identity {
        mesh_id: admin.mesh_id.clone(),
        member_id: admin.member_id.clone(),
        key: MemberKeypair::generate(),
    };
    let (mut c, f) = Client::connect_as(h.url(), &wrong).await.unwrap();
    expect_refusal(&mut c, f, ErrorCode::Unauthorized).await;
    // Right key, signature over another challenge.
    let mut c = Client::connect(h.url()).await.unwrap();
    let sig = claudemesh_protocol::crypto::sign_hello(
        &admin.key,
        &admin.mesh_id,
        &admin.member_id,
        &"00".repeat(32),
    );
    c.send(&ClientFrame::Hello(Hello {
        protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
        mesh_id: admin.mesh_id.clone(),
        member_id: admin.member_id.clone(),
        pubkey: admin.key.public_hex(),
        signature: sig,
        instance: None,
    }))
    .await
    .unwrap();
    let f = c.recv().await.unwrap();
    expect_refusal(&mut c, f, ErrorCode::BadSignature).await;
    // Unknown mesh, and unknown member of a known mesh: `not_found`, which an agent may retry
    // (a broker restored from an older backup), unlike `unauthorized` and `revoked`.
    let ghost = Identity {
        mesh_id: "mesh_x".into(),
        member_id: admin.member_id.clone(),
        key: MemberKeypair::generate(),
    };
    let (mut c, f) = Client::connect_as(h.url(), &ghost).await.unwrap();
    let ServerFrame::Error(e) = &f else { panic!("{f:?}") };
    assert!(e.message.contains("mesh_x") && e.message.contains("new invite"), "{}", e.message);
    expect_refusal(&mut c, f, ErrorCode::NotFound).await;
    let stranger = Identity {
        mesh_id: admin.mesh_id.clone(),
        member_id: "m_nobody".into(),
        key: MemberKeypair::generate(),
    };
    let (mut c, f) = Client::connect_as(h.url(), &stranger).await.unwrap();
    let ServerFrame::Error(e) = &f else { panic!("{f:?}") };
    assert!(e.message.contains("m_nobody") && e.message.contains("team"), "{}", e.message);
    expect_refusal(&mut c, f, ErrorCode::NotFound).await;
}

#[tokio::test]
async fn admin_verbs_are_admin_only_and_member_remove_closes_and_refuses() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();

    // A plain member cannot use admin verbs.
    for f in [
        ClientFrame::InviteList { req: 1 },
        ClientFrame::InviteRevoke { req: 1, invite_id: "inv-all".into() },
        ClientFrame::MemberRemove { statement: None, req: 1, member_id: bob_id.member_id.clone() },
        ClientFrame::MemberSet {
            statement: None,
            req: 1,
            member_id: bob_id.member_id.clone(),
            role: Some(Role::Admin),
            groups: None,
        },
    ] {
        let r = alice.request(&f).await.unwrap();
        assert_eq!(error_code(&r), ErrorCode::Forbidden, "{f:?}");
    }
    // mesh_info is for every member.
    let r = alice.request(&ClientFrame::MeshInfo { req: 2 }).await.unwrap();
    assert!(matches!(r, ServerFrame::MeshInfo { members: 3, online_members: 3, .. }), "{r:?}");

    // member_set grants groups and roles; the last admin cannot be demoted or removed.
    let req = m.admin_conn.next_req();
    let r = m
        .admin_conn
        .request(&ClientFrame::MemberSet {
            statement: None,
            req,
            member_id: m.admin.member_id.clone(),
            role: Some(Role::Member),
            groups: None,
        })
        .await
        .unwrap();
    assert_eq!(error_code(&r), ErrorCode::Conflict);
    let req = m.admin_conn.next_req();
    let r = m
        .admin_conn
        .request(&ClientFrame::MemberRemove { statement: None, req, member_id: m.admin.member_id.clone() })
        .await
        .unwrap();
    assert_eq!(error_code(&r), ErrorCode::Conflict);
    let req = m.admin_conn.next_req();
    let r = m
        .admin_conn
        .request(&ClientFrame::MemberSet {
            statement: None,
            req,
            member_id: alice_id.member_id.clone(),
            role: Some(Role::Admin),
            groups: Some(vec![GroupRole::new("ops")]),
        })
        .await
        .unwrap();
    assert_eq!(r, ServerFrame::Ok { req });
    let a = members(&mut bob).await.into_iter().find(|x| x.member_id == alice_id.member_id).unwrap();
    assert_eq!((a.role, a.groups), (Role::Admin, vec![GroupRole::new("ops")]));

    // Removing bob: his connection gets `revoked` and is closed; his hello is refused after.
    let req = m.admin_conn.next_req();
    let r = m
        .admin_conn
        .request(&ClientFrame::MemberRemove { statement: None, req, member_id: bob_id.member_id.clone() })
        .await
        .unwrap();
    assert_eq!(r, ServerFrame::Ok { req });
    let f = bob.recv_match(|f| matches!(f, ServerFrame::Error(_))).await.unwrap();
    assert_eq!(error_code(&f), ErrorCode::Revoked);
    assert!(matches!(bob.recv_match(|_| false).await, Err(ClientError::Closed(_))));
    let (mut c, f) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    expect_refusal(&mut c, f, ErrorCode::Revoked).await;
    assert!(members(&mut alice).await.iter().all(|x| x.member_id != bob_id.member_id));
    // ...and re-enrolling the removed key with a fresh invite is refused too.
    let inv = register(&mut m.admin_conn, &m.admin, invite_payload(&m.admin, "team", "again", 5)).await;
    let (mut c, f) = try_enroll(h.url(), inv.token(), "again", &bob_id.key).await;
    expect_refusal(&mut c, f, ErrorCode::Revoked).await;
}

#[tokio::test]
async fn mesh_create_checks_token_slug_and_key() {
    let h = Harness::start().await;
    let mut c = Client::connect(h.url()).await.unwrap();
    let r = c.mesh_create("wrong-token", "team", "a").await.unwrap();
    assert_eq!(error_code(&r.unwrap_err()), ErrorCode::Unauthorized);
    let r = c.mesh_create(&h.broker.admin_token, "Bad Slug", "a").await.unwrap();
    assert_eq!(error_code(&r.unwrap_err()), ErrorCode::Invalid);
    assert!(c.mesh_create(&h.broker.admin_token, "team", "a").await.unwrap().is_ok());
    let r = c.mesh_create(&h.broker.admin_token, "team", "a").await.unwrap();
    assert_eq!(error_code(&r.unwrap_err()), ErrorCode::Conflict);
    let f = ClientFrame::MeshCreate {
        req: 9,
        slug: "other".into(),
        admin_token: Secret(h.broker.admin_token.clone()),
        pubkey: "ff".repeat(32),
        display_name: "a".into(),
    };
    assert_eq!(error_code(&c.request(&f).await.unwrap()), ErrorCode::Invalid);
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.broker.data_dir.join("admin.token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
