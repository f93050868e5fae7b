//! Membership changes: removal by an admin and `leave`, the former members a `members` reply
//! lists, display names unique among active members, and `hello` refusals an agent can retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_broker::testkit::Client;
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
