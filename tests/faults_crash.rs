//! Crash faults (issue 16 point 4): 10,000 direct messages from alice's session to bob's while
//! the broker process is SIGKILLed twice (restarted on the same redb file and port), then
//! alice's agent, then bob's. Every send alice's agent accepted is shown exactly once to bob's
//! session: none lost, none shown twice, nothing shown that was not sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/broker_proc.rs"]
mod broker_proc;
mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/stream.rs"]
mod stream;

use std::time::{Duration, Instant};

use broker_proc::{BrokerProcess, world_on};
use common::*;
use faults::*;
use stream::{End, Stream};

const N: usize = 10_000;
const ALICE_SID: &str = "000000c1-5e55-4000-8000-000000000000";
const BOB_SID: &str = "000000c2-5e55-4000-8000-000000000000";

/// How long a killed process stays down before it is restarted: long enough for the others to
/// notice (links drop, sends queue up), short enough for the suite's time budget.
const DOWN: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_message_is_shown_once_across_broker_and_agent_crashes() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = BrokerProcess::start(&dir.path().join("broker"), &[]).await;
        let w = world_on(&broker, dir).await;
        let (alice_paths, mut alice, mut a, bob_paths, mut bob, mut b) = two_agents(&w).await;
        register(&mut b, BOB_SID, "bob-desk", &[]).await;
        register(&mut a, ALICE_SID, "alice-desk", &[]).await;
        wait_peer(&mut a, "bob-desk").await;
        drop((a, b));

        let started = Instant::now();
        let from =
            End { paths: alice_paths.clone(), session_id: ALICE_SID.into(), name: "alice-desk".into() };
        let to = End { paths: bob_paths.clone(), session_id: BOB_SID.into(), name: "bob-desk".into() };
        let mut s = Stream::start(from, to, numbered("crash", N), 4);

        for (i, at) in [1_500, 3_500].into_iter().enumerate() {
            s.wait_acked(at).await;
            let (acked, shown) = (s.acked(), s.shown());
            broker.kill9();
            tokio::time::sleep(DOWN).await;
            broker.restart().await;
            eprintln!(
                "broker SIGKILL {} at {acked} accepted, {shown} shown ({:?})",
                i + 1,
                started.elapsed()
            );
            assert!(acked < N && shown < N, "the broker was killed after the stream ended");
        }

        s.wait_acked(5_500).await;
        let (acked, shown) = (s.acked(), s.shown());
        alice.kill9();
        tokio::time::sleep(DOWN).await;
        alice = AgentProcess::start(&alice_paths).await;
        eprintln!("alice's agent SIGKILLed at {acked} accepted, {shown} shown ({:?})", started.elapsed());
        assert!(acked < N, "alice's agent was killed after the stream ended");

        s.wait_acked(7_500).await;
        // The reader stands still (no take or confirm in flight) while bob's agent dies: what it
        // was shown is then known exactly. Pushes keep arriving up to the kill.
        s.pause_reader().await;
        let (acked, shown) = (s.acked(), s.shown());
        bob.kill9();
        tokio::time::sleep(DOWN).await;
        bob = AgentProcess::start(&bob_paths).await;
        s.resume_reader();
        eprintln!("bob's agent SIGKILLed at {acked} accepted, {shown} shown ({:?})", started.elapsed());
        assert!(acked < N && shown < N, "bob's agent was killed after the stream ended");

        let out = s.finish(Duration::from_secs(90)).await;
        eprintln!(
            "{} accepted, {} shown, in {:?}; broker, alice and bob still up: {}",
            out.acked,
            out.shown,
            started.elapsed(),
            broker.running()
        );
        assert_eq!(out.acked, N, "every send is accepted in the end (retried under its key)");
        assert!(
            out.lost.is_empty(),
            "{} accepted messages were never shown (first {:?})",
            out.lost.len(),
            out.lost.first()
        );
        assert!(
            out.doubled.is_empty(),
            "{} messages were shown twice (first {:?})",
            out.doubled.len(),
            out.doubled.first()
        );
        assert!(out.strange.is_empty(), "shown but never sent: {:?}", out.strange.first());
        drop((alice, bob));
    })
    .await;
}
