//! Taken messages are only leased until confirmed (issue 10): a reader that vanishes in the
//! middle of `check_messages`, or an agent SIGKILLed while serving a take, loses nothing; the
//! messages come back unseen and the next take returns each of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use claudemesh_agent::AgentClient;
use claudemesh_protocol::limits::LEASE_MILLIS;
use claudemesh_protocol::local::{AgentCall, InboxParams, InboxReply};
use common::*;
use faults::*;

/// alice and bob as real agent processes, bob with session `000000a0-5e55-4000-8000-000000000000` ("bob-desk", held open by
/// the returned client) and `n` messages from alice waiting unseen for it.
async fn bob_with_waiting(w: &World, n: usize) -> (AgentProcess, AgentProcess, AgentClient, Vec<String>) {
    let (alice_paths, alice, mut a, _, bob, mut b) = two_agents(w).await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob-desk", &[]).await;
    register(&mut a, "000000a1-5e55-4000-8000-000000000000", "alice-desk", &[]).await;
    wait_peer(&mut a, "bob-desk").await;
    let bodies = numbered("m", n);
    let started = Instant::now();
    send_all(&alice_paths, "bob-desk", "000000a1-5e55-4000-8000-000000000000", &bodies, 4).await;
    wait_unseen(&mut b, "000000a0-5e55-4000-8000-000000000000", n, Duration::from_secs(60)).await;
    eprintln!("{n} messages waiting for 000000a0-5e55-4000-8000-000000000000 after {:?}", started.elapsed());
    // Reading without taking marks nothing.
    assert_eq!(
        unseen(&mut b, "000000a0-5e55-4000-8000-000000000000").await.1,
        n,
        "a read without take changed what is unseen"
    );
    (alice, bob, b, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_vanishes_mid_take_loses_nothing() {
    within(120, async {
        let w = World::start().await;
        let (_alice, bob, mut b, bodies) = bob_with_waiting(&w, 200).await;

        // check_messages whose caller goes away: the request is served, the reply never read.
        let vanish = AgentCall::Inbox(InboxParams {
            session: Some("000000a0-5e55-4000-8000-000000000000".into()),
            take: true,
            limit: Some(200),
            ..Default::default()
        });
        call_and_vanish(&bob.paths, vanish, Duration::from_millis(300)).await;
        let gone = Instant::now();

        // A proper reader gets all 200 once the lease ran out (at most LEASE_MILLIS, with slack).
        let want: BTreeSet<String> = bodies.iter().cloned().collect();
        let got = take_until(
            &mut b,
            "000000a0-5e55-4000-8000-000000000000",
            &want,
            Duration::from_millis(LEASE_MILLIS + 5_000),
        )
        .await;
        let (lost, doubled) = lost_and_doubled(&bodies, &got);
        eprintln!("a proper take had {} of 200 after {:?}", got.len(), gone.elapsed());
        assert!(
            lost.is_empty(),
            "{} of 200 messages were lost to a reader that vanished mid-take (first: {:?})",
            lost.len(),
            lost.first()
        );
        assert!(doubled.is_empty(), "confirmed messages were taken again: {doubled:?}");
        assert!(
            drain(&mut b, "000000a0-5e55-4000-8000-000000000000").await.is_empty(),
            "confirmed messages came back"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_a_take_loses_nothing() {
    within(240, async {
        let w = World::start().await;
        let (_alice, bob, b, bodies) = bob_with_waiting(&w, 2000).await;
        let paths = bob.paths.clone();

        // Take in a loop without confirming, as a reader that crashes with the agent would; SIGKILL
        // the agent as soon as the first reply arrived, while the next take is being served.
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<usize>();
        let taker = tokio::spawn({
            let paths = paths.clone();
            async move {
                let Ok(mut c) = AgentClient::connect(&paths, "taker").await else { return };
                let mut first = Some(first_tx);
                loop {
                    let call = AgentCall::Inbox(InboxParams {
                        session: Some("000000a0-5e55-4000-8000-000000000000".into()),
                        take: true,
                        limit: Some(500),
                        ..Default::default()
                    });
                    let Ok(r) = c.request::<InboxReply>(call).await else { return };
                    if let Some(tx) = first.take() {
                        let _ = tx.send(r.messages.len());
                    }
                }
            }
        });
        let first = bounded("the first take before the kill", first_rx).await.unwrap();
        bob.kill9();
        eprintln!("agent killed after a take of {first} messages (none confirmed)");
        let _ = bounded("the taker ending with the agent", taker).await;
        drop(b);

        let bob = AgentProcess::start(&paths).await;
        let mut b = bob.client().await;
        let started = Instant::now();
        register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob-desk", &[]).await;
        let want: BTreeSet<String> = bodies.iter().cloned().collect();
        let got = take_until(
            &mut b,
            "000000a0-5e55-4000-8000-000000000000",
            &want,
            Duration::from_millis(LEASE_MILLIS + 10_000),
        )
        .await;
        let (lost, doubled) = lost_and_doubled(&bodies, &got);
        eprintln!("after the restart: {} taken in {:?}", got.len(), started.elapsed());
        assert!(
            lost.is_empty(),
            "{} of 2000 messages were lost to the crash (first: {:?})",
            lost.len(),
            lost.first()
        );
        assert!(doubled.is_empty(), "messages confirmed once were taken again: {} of them", doubled.len());
    })
    .await;
}
