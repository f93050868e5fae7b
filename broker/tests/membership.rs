//! Membership changes: removal by an admin and `leave`, the former members a `members` reply
//! lists, the directory in pages, display names unique among active members, and `hello`
//! refusals an agent can retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_broker::testkit::{Client, ClientError};
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::*;
use common::*;

#[tokio::test]
async fn former_members_are_listed_newest_first_and_survive_a_restart() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 3).await;
    let ids: Vec<String> = m.members.iter().map(|(_, id)| id.member_id.clone()).collect();
    for id in &ids[..2] {
        let r = remove_member(&mut m.admin_conn, id).await;
        assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
        // Distinct timestamps, so "newest first" is a real order and not a tie.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (members, former) = directory(&mut m.admin_conn).await;
    assert!(members.iter().all(|x| !ids[..2].contains(&x.member_id)), "{members:?}");
    assert_eq!(members.len(), 2, "admin and member2 remain");
    let got: Vec<(&str, &str, RemovalReason)> =
        former.iter().map(|f| (f.member_id.as_str(), f.display_name.as_str(), f.reason)).collect();
    assert_eq!(
        got,
        vec![
            (ids[1].as_str(), "member1", RemovalReason::Removed),
            (ids[0].as_str(), "member0", RemovalReason::Removed)
        ]
    );
    assert!(former[0].at > former[1].at && former[1].at > 0, "{former:?}");

    // Durable: the reason and time come back from the store after a restart.
    let admin = m.admin;
    m.admin_conn.close().await;
    for (c, _) in m.members {
        c.close().await;
    }
    let h = h.restart().await;
    let (mut ac, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    assert_eq!(directory(&mut ac).await.1, former);
}

/// One `list_members` page: (members' ids, former members' ids, next).
async fn page(
    c: &mut Client,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> (Vec<String>, Vec<String>, Option<String>) {
    let req = c.next_req();
    let cursor = cursor.map(str::to_string);
    match c.request(&ClientFrame::ListMembers { req, cursor, limit }).await.unwrap() {
        ServerFrame::Members { members, former, next, .. } => (
            members.into_iter().map(|m| m.member_id).collect(),
            former.into_iter().map(|f| f.member_id).collect(),
            next,
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_directory_comes_in_pages_in_member_id_order() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 5).await;
    let gone = m.members[4].1.member_id.clone();
    assert!(matches!(remove_member(&mut m.admin_conn, &gone).await, ServerFrame::Ok { .. }));
    let (whole, former, next) = page(&mut m.admin_conn, None, None).await;
    assert_eq!(
        (whole.len(), former.clone(), next),
        (5, vec![gone.clone()], None),
        "no limit: all of it at once"
    );
    let mut sorted = whole.clone();
    sorted.sort();

    // Pages of two: every active member once, in order; the former ones on the first page.
    let (mut got, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let (ids, former, next) = page(&mut m.admin_conn, cursor.as_deref(), Some(2)).await;
        assert!(ids.len() <= 2, "{ids:?}");
        assert_eq!(former, if pages == 0 { vec![gone.clone()] } else { vec![] }, "page {pages}");
        got.extend(ids);
        pages += 1;
        match next {
            Some(n) => {
                assert_eq!(Some(&n), got.last(), "next is the page's last id");
                cursor = Some(n);
            }
            None => break,
        }
    }
    assert_eq!((got, pages), (sorted.clone(), 3));
    // A limit of 0 is taken as 1; a cursor past the end gives an empty last page.
    assert_eq!(page(&mut m.admin_conn, None, Some(0)).await.0, sorted[..1]);
    let last = sorted.last().unwrap().clone();
    assert_eq!(page(&mut m.admin_conn, Some(&last), Some(2)).await, (vec![], vec![], None));
}

/// Sends `leave` and returns the reply.
async fn leave(c: &mut Client) -> ServerFrame {
    let req = c.next_req();
    c.request(&ClientFrame::Leave { statement: None, req }).await.unwrap()
}

/// Asserts the connection is closed with `code` and nothing else arrives first.
async fn expect_close(c: &mut Client, code: &str) {
    match c.recv_match(|_| false).await {
        Err(ClientError::Closed(Some(r))) => assert!(r.starts_with(code), "{r}"),
        other => panic!("expected close {code}, got {other:?}"),
    }
}

async fn queue_depth(h: &Harness) -> String {
    let (_, text) = http_get(h.broker.addr, "/metrics").await;
    text.lines().find(|l| l.starts_with("claudemesh_queue_depth ")).unwrap().to_string()
}

#[tokio::test]
async fn leave_takes_the_caller_out_and_tells_the_mesh_why() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 1).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    open_session(&mut bob, "5e550000-0000-4000-8000-000000000002", "bob", &[]).await;
    // A message bob never acknowledges stays queued for him, until he leaves.
    let to_bob = Target::Member(bob_id.member_id.clone());
    let r = send_to(&mut m.admin_conn, &m.admin, "", to_bob, &[&bob_id], "hi", "q1").await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    assert_eq!(queue_depth(&h).await, "claudemesh_queue_depth 1");

    // `ok` first, then a normal close.
    let req = bob.next_req();
    bob.send(&ClientFrame::Leave { statement: None, req }).await.unwrap();
    assert_eq!(bob.recv_match(|f| f.req() == Some(req)).await.unwrap(), ServerFrame::Ok { req });
    expect_close(&mut bob, "1000").await;

    let ev = wait_event(&mut m.admin_conn, |e| matches!(e, Event::MemberRemoved { .. })).await;
    assert_eq!(
        ev,
        Event::MemberRemoved {
            member_id: bob_id.member_id.clone(),
            reason: RemovalReason::Left,
            display_name: "member0".into(),
        }
    );
    let req = m.admin_conn.next_req();
    let ServerFrame::Peers { sessions, .. } =
        m.admin_conn.request(&ClientFrame::ListPeers { req, cursor: None, limit: None }).await.unwrap()
    else {
        panic!()
    };
    assert!(sessions.iter().all(|s| s.member_id != bob_id.member_id), "{sessions:?}");
    let (members, former) = directory(&mut m.admin_conn).await;
    assert!(members.iter().all(|x| x.member_id != bob_id.member_id));
    assert_eq!(
        former.iter().map(|f| (f.member_id.as_str(), f.reason)).collect::<Vec<_>>(),
        vec![(bob_id.member_id.as_str(), RemovalReason::Left)]
    );
    assert_eq!(queue_depth(&h).await, "claudemesh_queue_depth 0");
    // His key no longer logs in.
    let (_c, f) = Client::connect_as(h.url(), &bob_id).await.unwrap();
    assert_eq!(error_code(&f), ErrorCode::Revoked);
}

#[tokio::test]
async fn admin_removal_is_reported_with_its_reason_and_name() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, _) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    assert!(matches!(remove_member(&mut m.admin_conn, &alice_id.member_id).await, ServerFrame::Ok { .. }));
    let f = alice.recv_match(|f| matches!(f, ServerFrame::Error(_))).await.unwrap();
    assert_eq!(error_code(&f), ErrorCode::Revoked);
    expect_close(&mut alice, "1008").await;
    let ev = wait_event(&mut bob, |e| matches!(e, Event::MemberRemoved { .. })).await;
    assert_eq!(
        ev,
        Event::MemberRemoved {
            member_id: alice_id.member_id.clone(),
            reason: RemovalReason::Removed,
            display_name: "member0".into(),
        }
    );
    // Removing someone who is already gone is `not_found`.
    assert_eq!(error_code(&remove_member(&mut m.admin_conn, &alice_id.member_id).await), ErrorCode::NotFound);
}

#[tokio::test]
async fn the_last_admin_leaves_only_after_handing_over_or_when_alone() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 1).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let r = leave(&mut m.admin_conn).await;
    assert_eq!(error_code(&r), ErrorCode::Conflict);
    let ServerFrame::Error(e) = &r else { unreachable!() };
    assert!(e.message.contains("claudemesh member set NAME --role admin"), "{}", e.message);
    assert!(e.message.contains("member0"), "names who could take over: {}", e.message);
    // Still a member, still connected.
    assert_eq!(directory(&mut m.admin_conn).await.0.len(), 2);

    let req = m.admin_conn.next_req();
    let set = ClientFrame::MemberSet {
        statement: None,
        req,
        member_id: bob_id.member_id.clone(),
        role: Some(Role::Admin),
        groups: None,
    };
    assert_eq!(m.admin_conn.request(&set).await.unwrap(), ServerFrame::Ok { req });
    assert!(matches!(leave(&mut m.admin_conn).await, ServerFrame::Ok { .. }));
    expect_close(&mut m.admin_conn, "1000").await;
    let ev = wait_event(&mut bob, |e| matches!(e, Event::MemberRemoved { .. })).await;
    assert!(
        matches!(&ev, Event::MemberRemoved { reason: RemovalReason::Left, display_name, .. } if display_name == "admin"),
        "{ev:?}"
    );
    // Alone in the mesh, the last admin may leave.
    assert!(matches!(leave(&mut bob).await, ServerFrame::Ok { .. }));
    expect_close(&mut bob, "1000").await;
}

#[tokio::test]
async fn two_admins_leaving_at_once_leave_one_admin_behind() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, _) = m.members.pop().unwrap();
    let (alice, alice_id) = m.members.pop().unwrap();
    let req = m.admin_conn.next_req();
    let set = ClientFrame::MemberSet {
        statement: None,
        req,
        member_id: alice_id.member_id.clone(),
        role: Some(Role::Admin),
        groups: None,
    };
    assert_eq!(m.admin_conn.request(&set).await.unwrap(), ServerFrame::Ok { req });
    let (mut a, mut b) = (m.admin_conn, alice);
    let (ra, rb) = tokio::join!(leave(&mut a), leave(&mut b));
    let oks = [&ra, &rb].iter().filter(|r| matches!(r, ServerFrame::Ok { .. })).count();
    assert_eq!(oks, 1, "{ra:?} {rb:?}");
    for r in [&ra, &rb] {
        if let ServerFrame::Error(e) = r {
            assert_eq!(e.code, ErrorCode::Conflict);
        }
    }
    let admins = directory(&mut bob).await.0.into_iter().filter(|x| x.role == Role::Admin).count();
    assert_eq!(admins, 1);
}

/// Enrolls `key` as `name` with `inv`; returns the reply (the connection is closed).
async fn enroll_as(
    h: &Harness,
    inv: &claudemesh_protocol::invite::SignedInvite,
    key: &MemberKeypair,
    name: &str,
) -> ServerFrame {
    let mut c = Client::connect(h.url()).await.unwrap();
    let f = c.enroll(inv.token(), key, &inv.payload.invite_id, name).await.unwrap();
    c.close().await;
    f
}

async fn invite_uses(admin_conn: &mut Client, invite_id: &str) -> u32 {
    let req = admin_conn.next_req();
    match admin_conn.request(&ClientFrame::InviteList { req }).await.unwrap() {
        ServerFrame::Invites { invites, .. } => {
            invites.into_iter().find(|i| i.invite_id == invite_id).unwrap().uses
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn display_names_are_unique_among_active_members() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let (mut ac, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let inv = register(&mut ac, &admin, invite_payload(&admin, "team", "names", 10)).await;
    let (bob_key, other) = (MemberKeypair::generate(), MemberKeypair::generate());
    let first = enroll_as(&h, &inv, &bob_key, "bob").await;
    let ServerFrame::Enrolled { member_id: bob_id, .. } = first else { panic!("{first:?}") };
    assert!(matches!(
        enroll_as(&h, &inv, &MemberKeypair::generate(), "bob-2").await,
        ServerFrame::Enrolled { .. }
    ));

    // Another key asking for a held name, in any case, is refused with a free suggestion and
    // burns no use of the invite.
    let f = enroll_as(&h, &inv, &other, "Bob").await;
    let ServerFrame::Error(e) = &f else { panic!("{f:?}") };
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(e.message, "the name Bob is taken in mesh team; choose another with --name, e.g. Bob-3");
    assert_eq!(invite_uses(&mut ac, "names").await, 2);
    // The same key enrolling again is still idempotent: its member comes back.
    let again = enroll_as(&h, &inv, &bob_key, "bob").await;
    assert!(matches!(&again, ServerFrame::Enrolled { member_id, .. } if *member_id == bob_id), "{again:?}");

    // Once bob is removed, his name is free: a new key takes it without meeting a ghost.
    assert!(matches!(remove_member(&mut ac, &bob_id).await, ServerFrame::Ok { .. }));
    let f = enroll_as(&h, &inv, &other, "bob").await;
    let ServerFrame::Enrolled { member_id: new_bob, .. } = f else { panic!("{f:?}") };
    let (members, former) = directory(&mut ac).await;
    let bobs: Vec<&str> =
        members.iter().filter(|m| m.display_name == "bob").map(|m| m.member_id.as_str()).collect();
    assert_eq!(bobs, vec![new_bob.as_str()]);
    assert_eq!(former.iter().map(|f| f.member_id.as_str()).collect::<Vec<_>>(), vec![bob_id.as_str()]);
}

#[tokio::test]
async fn a_member_who_left_rejoins_under_the_same_name() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let (mut ac, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let inv = register(&mut ac, &admin, invite_payload(&admin, "team", "back", 10)).await;
    let (mut bob, bob_id) = enroll(h.url(), &inv, "bob").await;
    assert!(matches!(leave(&mut bob).await, ServerFrame::Ok { .. }));
    let (_bob2, bob2_id) = enroll(h.url(), &inv, "bob").await;
    assert_ne!(bob2_id.member_id, bob_id.member_id);
    let (members, _) = directory(&mut ac).await;
    assert_eq!(members.iter().filter(|m| m.display_name == "bob").count(), 1);
}

#[tokio::test]
async fn concurrent_enrollments_with_one_name_have_one_winner() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let (mut ac, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let inv = register(&mut ac, &admin, invite_payload(&admin, "team", "race", 100)).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (url, token) = (h.url().to_string(), inv.token().to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await.unwrap();
            c.enroll(&token, &MemberKeypair::generate(), "race", "same-name").await.unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            ServerFrame::Enrolled { .. } => won += 1,
            f => assert_eq!(error_code(&f), ErrorCode::Conflict, "{f:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(invite_uses(&mut ac, "race").await, 1);
}
