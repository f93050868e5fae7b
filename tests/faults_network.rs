//! Network faults (issue 16 point 4): both agents reach the broker through a TCP proxy the
//! test owns, which resets every connection (RST) and stalls (forwards nothing, connections
//! left open) several times while 3,000 direct messages flow from alice's session to bob's.
//! The links recover on their own; every accepted send is shown once, none twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/broker_proc.rs"]
mod broker_proc;
mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/stream.rs"]
mod stream;

use std::time::{Duration, Instant};

use broker_proc::set_broker_url;
use claudemesh_protocol::local::LinkState;
use common::*;
use faults::*;
use proxy::Proxy;
use stream::{End, Stream};

const N: usize = 3_000;
const ALICE_SID: &str = "000000d1-5e55-4000-8000-000000000000";
const BOB_SID: &str = "000000d2-5e55-4000-8000-000000000000";

/// How long a stall lasts: well under the link's 75 s idle timeout, so the links must ride it
/// out on the same connections.
const STALL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_recover_from_resets_and_stalls_with_nothing_lost_or_doubled() {
    within(240, async {
        let w = World::start().await;
        let proxy = Proxy::start(&w.addr).await;
        let (alice_paths, _alice, mut a, bob_paths, _bob, mut b) =
            two_agents_with(&w, |p| set_broker_url(p, &proxy.url())).await;
        register(&mut b, BOB_SID, "bob-desk", &[]).await;
        register(&mut a, ALICE_SID, "alice-desk", &[]).await;
        wait_peer(&mut a, "bob-desk").await;

        let started = Instant::now();
        let from =
            End { paths: alice_paths.clone(), session_id: ALICE_SID.into(), name: "alice-desk".into() };
        let to = End { paths: bob_paths.clone(), session_id: BOB_SID.into(), name: "bob-desk".into() };
        let s = Stream::start(from, to, numbered("net", N), 4);

        // Resets at 400 and 1,400 accepted; a stall at 900; a stall ended by a reset at 1,900
        // (a black hole the links only leave by reconnecting); a reset at 2,400.
        for (at, fault) in
            [(400, "reset"), (900, "stall"), (1_400, "reset"), (1_900, "stall+reset"), (2_400, "reset")]
        {
            s.wait_acked(at).await;
            let before = proxy.accepted();
            let (acked, shown) = (s.acked(), s.shown());
            if fault.starts_with("stall") {
                proxy.stall(true);
                tokio::time::sleep(STALL).await;
                if fault.ends_with("reset") {
                    proxy.reset_all();
                }
                proxy.stall(false);
            } else {
                proxy.reset_all();
            }
            eprintln!("{fault} at {acked} accepted, {shown} shown ({:?})", started.elapsed());
            // Mid-stream means messages still on their way to bob: the sender may already be
            // done (sends are accepted faster than a reader confirms them).
            assert!(shown < N, "the {fault} came after every message was shown ({acked} accepted)");
            if fault.ends_with("reset") {
                // Both links come back through the proxy.
                wait_mesh_status(&mut a, "alice reconnected", |m| m.link == LinkState::Connected).await;
                wait_mesh_status(&mut b, "bob reconnected", |m| m.link == LinkState::Connected).await;
                let deadline = Instant::now() + Duration::from_secs(20);
                while proxy.accepted() < before + 2 {
                    assert!(Instant::now() < deadline, "the agents did not reconnect after a reset");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }

        let out = s.finish(Duration::from_secs(60)).await;
        eprintln!(
            "{} accepted, {} shown in {:?}; {} connections through the proxy",
            out.acked,
            out.shown,
            started.elapsed(),
            proxy.accepted()
        );
        assert_eq!(out.acked, N);
        assert!(
            out.lost.is_empty(),
            "{} accepted messages never shown (first {:?})",
            out.lost.len(),
            out.lost.first()
        );
        assert!(
            out.doubled.is_empty(),
            "{} shown twice (first {:?})",
            out.doubled.len(),
            out.doubled.first()
        );
        assert!(out.strange.is_empty(), "shown but never sent: {:?}", out.strange.first());
        assert_eq!(mesh_status(&mut a).await.link, LinkState::Connected, "alice's link is up at the end");
        assert_eq!(mesh_status(&mut b).await.link, LinkState::Connected, "bob's link is up at the end");
    })
    .await;
}
