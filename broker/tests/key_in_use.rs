//! Two agents holding one member key (a copied config dir) would replace each other's
//! connection forever; after three replacements between different agent instances within the
//! window, the agent that started later is told `key_in_use` and closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_broker::testkit::{Client, ClientError, Identity};
use claudemesh_protocol::frames::*;
use common::*;

fn instance(id: &str, started_at: u64) -> Option<AgentInstance> {
    Some(AgentInstance { id: id.into(), started_at })
}

/// A mesh with one member; returns it with no connection open.
async fn member(h: &Harness) -> (Mesh, Identity) {
    let mut m = mesh_with(h, "team", 1).await;
    let (c, id) = m.members.pop().unwrap();
    c.close().await;
    (m, id)
}

async fn hello(h: &Harness, id: &Identity, inst: Option<AgentInstance>) -> (Client, ServerFrame) {
    let mut c = Client::connect(h.url()).await.unwrap();
    let f = c.hello_with(id, inst).await.unwrap();
    (c, f)
}

/// Connects, expecting `hello_ack`.
async fn accepted(h: &Harness, id: &Identity, inst: Option<AgentInstance>) -> Client {
    let (c, f) = hello(h, id, inst).await;
    assert!(matches!(f, ServerFrame::HelloAck { .. }), "{f:?}");
    c
}

/// The connection's next frames: any `error` code, then the close code.
async fn closed(c: &mut Client) -> (Option<ErrorFrame>, String) {
    let mut err = None;
    loop {
        match c.recv().await {
            Ok(ServerFrame::Error(e)) => err = Some(e),
            Ok(_) => {}
            Err(ClientError::Closed(Some(r))) => return (err, r),
            Err(e) => panic!("{e}"),
        }
    }
}

async fn still_served(c: &mut Client) {
    assert_eq!(members(c).await.len(), 2);
}

#[tokio::test]
async fn a_later_agent_with_the_same_key_is_refused_and_the_first_keeps_its_link() {
    let h = Harness::start().await;
    let (_m, bob) = member(&h).await;
    let (early, late) = (instance("aaaa", 1_000_000), instance("bbbb", 2_000_000));
    // Two replacements between the agents are ordinary: each closes the other with 4000.
    let mut a1 = accepted(&h, &bob, early.clone()).await;
    let mut b1 = accepted(&h, &bob, late.clone()).await;
    assert!(closed(&mut a1).await.1.starts_with("4000"));
    let mut a2 = accepted(&h, &bob, early.clone()).await;
    assert!(closed(&mut b1).await.1.starts_with("4000"));
    // The third, within the window, stops the agent that started later: here the newcomer.
    let (mut b2, f) = hello(&h, &bob, late).await;
    let ServerFrame::Error(e) = &f else { panic!("{f:?}") };
    assert_eq!(e.code, ErrorCode::KeyInUse);
    assert_eq!(
        e.message,
        format!(
            "the key of member member0 ({}) in mesh team is in use by another agent (started at \
             1970-01-01 00:16:40 UTC); each machine needs its own identity: on this machine run \
             `claudemesh leave team --local-only` and join again with a new invite",
            bob.member_id
        )
    );
    assert!(closed(&mut b2).await.1.starts_with("1008"));
    still_served(&mut a2).await;
}

#[tokio::test]
async fn an_earlier_agent_coming_back_displaces_the_later_one() {
    let h = Harness::start().await;
    let (_m, bob) = member(&h).await;
    let (early, late) = (instance("aaaa", 1_000_000), instance("bbbb", 2_000_000));
    let mut l1 = accepted(&h, &bob, late.clone()).await;
    let mut e1 = accepted(&h, &bob, early.clone()).await;
    assert!(closed(&mut l1).await.1.starts_with("4000"));
    let mut l2 = accepted(&h, &bob, late.clone()).await;
    assert!(closed(&mut e1).await.1.starts_with("4000"));
    // Third replacement: the newcomer started earlier, so the current connection goes.
    let mut e2 = accepted(&h, &bob, early).await;
    let (err, close) = closed(&mut l2).await;
    let err = err.expect("an error frame before the close");
    assert_eq!(err.code, ErrorCode::KeyInUse);
    assert!(err.message.contains("1970-01-01 00:16:40 UTC"), "{}", err.message);
    assert!(close.starts_with("1008"), "{close}");
    still_served(&mut e2).await;
}

#[tokio::test]
async fn reconnects_of_one_agent_and_hellos_without_an_instance_never_count() {
    let h = Harness::start().await;
    let (_m, bob) = member(&h).await;
    let mut prev = accepted(&h, &bob, instance("aaaa", 1)).await;
    for _ in 0..5 {
        let next = accepted(&h, &bob, instance("aaaa", 1)).await;
        assert!(closed(&mut prev).await.1.starts_with("4000"));
        prev = next;
    }
    for i in 0..6 {
        let inst = if i % 2 == 0 { None } else { instance(&format!("x{i}"), i) };
        let next = accepted(&h, &bob, inst).await;
        assert!(closed(&mut prev).await.1.starts_with("4000"));
        prev = next;
    }
    still_served(&mut prev).await;
}

#[tokio::test]
async fn replacements_spread_wider_than_the_window_do_not_add_up() {
    let h = Harness::start_with(|c| c.key_in_use_window = Duration::from_millis(300)).await;
    let (_m, bob) = member(&h).await;
    let (early, late) = (instance("aaaa", 1), instance("bbbb", 2));
    let mut prev = accepted(&h, &bob, early.clone()).await;
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let next = accepted(&h, &bob, if i % 2 == 0 { late.clone() } else { early.clone() }).await;
        assert!(closed(&mut prev).await.1.starts_with("4000"));
        prev = next;
    }
    // The same alternation without the pauses is caught.
    let _e = accepted(&h, &bob, early.clone()).await;
    let _l = accepted(&h, &bob, late.clone()).await;
    let (_c, f) = hello(&h, &bob, early).await;
    let (_c, f2) = hello(&h, &bob, late).await;
    let codes: Vec<_> = [&f, &f2]
        .iter()
        .filter_map(|f| if let ServerFrame::Error(e) = f { Some(e.code) } else { None })
        .collect();
    assert_eq!(codes, vec![ErrorCode::KeyInUse], "{f:?} {f2:?}");
}

#[tokio::test]
async fn an_oversized_instance_id_is_refused() {
    let h = Harness::start().await;
    let (_m, bob) = member(&h).await;
    let (_c, f) = hello(&h, &bob, instance(&"a".repeat(129), 1)).await;
    assert_eq!(error_code(&f), ErrorCode::Invalid);
}
