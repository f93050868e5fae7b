//! The member directory in pages, end to end: a real broker with more members than one
//! `list_members` page holds (`limits::MAX_MEMBERS_PAGE`) and a real agent, which asks for pages
//! and joins them; every member is listed once and verified from the agent's root of trust.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_broker::testkit::Client;
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::{ClientFrame, ServerFrame};
use claudemesh_protocol::limits::MAX_MEMBERS_PAGE;
use claudemesh_protocol::local::{AgentCall, MemberEntry, TrustState};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_a_directory_longer_than_a_page() {
    let w = World::start().await;
    let extra = MAX_MEMBERS_PAGE + 60;
    let (mut ac, _) = Client::connect_as(&w.url(), &w.admin).await.unwrap();
    let inv = w.invite_payload("inv-many", extra as u32).sign(&w.admin.key).unwrap();
    let req = ac.next_req();
    let r = ac.request(&ClientFrame::InviteRegister { req, invite: inv.token().into() }).await.unwrap();
    assert_eq!(r, ServerFrame::Ok { req });
    for i in 0..extra {
        let mut c = Client::connect(&w.url()).await.unwrap();
        let r =
            c.enroll(inv.token(), &MemberKeypair::generate(), "inv-many", &format!("m{i:04}")).await.unwrap();
        assert!(matches!(r, ServerFrame::Enrolled { .. }), "{r:?}");
        c.abort();
    }
    let bob = AgentProcess::start(&w.member("bob").await).await;
    let mut c = bob.client().await;
    wait_connected(&mut c).await;

    let list: Vec<MemberEntry> = c.request(AgentCall::Members { mesh: None }).await.unwrap();
    // The admin, the members enrolled above, and bob: more than a page holds.
    assert_eq!(list.len(), extra + 2, "every member, each once");
    let mut ids: Vec<&str> = list.iter().map(|m| m.member.member_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), extra + 2, "no member twice");
    let unverified: Vec<&str> = list
        .iter()
        .filter(|m| m.trust.as_ref().is_none_or(|t| t.state != TrustState::Verified))
        .map(|m| m.member.display_name.as_str())
        .collect();
    assert!(unverified.is_empty(), "every member verified from the root: {unverified:?}");
}
