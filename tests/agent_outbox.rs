//! The outbox under the broker's shipped rate limit: it waits as the broker says
//! (`retry_after_ms`) and then goes at the broker's pace, so a backlog costs about one `send`
//! frame per message instead of the whole backlog again on every new local send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use claudemesh_broker::BrokerConfig;
use claudemesh_protocol::frames::Priority;
use common::*;

/// One Prometheus counter from the broker's `/metrics`.
fn metric(addr: &str, name: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_under_the_shipped_rate_limit_costs_one_send_per_message() {
    // The limits `claudemesh-broker serve` ships with: 50 sends/s, bursts of 200.
    let w = World::start_with(|dir| BrokerConfig::new(dir.join("broker"))).await;
    let _bob = w.member("bob").await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    const N: usize = 500;
    for i in 0..N {
        a.call(send_call("bob", &format!("message {i}"), Priority::Low, None)).await.unwrap();
    }
    let mut outbox = usize::MAX;
    for _ in 0..1200 {
        outbox = mesh_status(&mut a).await.outbox;
        if outbox == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(outbox, 0, "every message was accepted");
    let sends = metric(&w.addr, "claudemesh_frames_in_total{type=\"send\"}");
    let refused = metric(&w.addr, "claudemesh_errors_total{code=\"rate_limited\"}");
    let routed = metric(&w.addr, "claudemesh_messages_queued_total");
    eprintln!("{N} messages: {sends} send frames, {refused} refused as rate-limited");
    assert_eq!(routed, N as u64, "each message stored once");
    // Each refusal is counted once: accepted + refused = frames.
    assert_eq!(sends - refused, N as u64);
    // The first burst may overshoot the bucket by what was in flight; after that, one frame
    // per message (before: 46,535 frames for 500 messages).
    assert!(sends <= (N + N / 4) as u64, "{sends} send frames for {N} messages");
}
