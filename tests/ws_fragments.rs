//! Large frames go over the wire as WebSocket fragments (RFC 6455 §5.4) of at most
//! `protocol::ws::FRAGMENT_BYTES` both ways, so neither end's per-connection buffers grow to
//! the largest frame (docs/performance.md): two real agents reach the broker through a
//! recording TCP proxy; alice sends bob a 40 KB message; the test parses the bytes that went
//! each way and checks the frames' sizes and fragment order, and that bob got the body whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/broker_proc.rs"]
mod broker_proc;
mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/proxy.rs"]
mod proxy;

use broker_proc::set_broker_url;
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::ws::FRAGMENT_BYTES;
use common::*;
use faults::{two_agents_with, within};
use proxy::Proxy;

/// One WebSocket frame's header as it went over the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: u8,
    len: usize,
}

/// The frames in `bytes`: the HTTP head (up to the blank line) is skipped; a frame cut off at the
/// end is left out. Client frames are masked (4 key bytes after the length).
fn frames(bytes: &[u8]) -> Vec<Head> {
    let Some(start) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { return vec![] };
    let mut at = start + 4;
    let mut out = Vec::new();
    while at + 2 <= bytes.len() {
        let (b0, b1) = (bytes[at], bytes[at + 1]);
        let (mut len, mut head) = (usize::from(b1 & 0x7f), 2);
        if len == 126 {
            if at + 4 > bytes.len() {
                break;
            }
            len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            head = 4;
        } else if len == 127 {
            if at + 10 > bytes.len() {
                break;
            }
            len = u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize;
            head = 10;
        }
        if b1 & 0x80 != 0 {
            head += 4;
        }
        if at + head + len > bytes.len() {
            break;
        }
        out.push(Head { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, len });
        at += head + len;
    }
    out
}

/// The data frames (text 1, continuation 0) of `f`, grouped into messages.
fn messages(f: &[Head]) -> Vec<Vec<Head>> {
    let mut out: Vec<Vec<Head>> = Vec::new();
    let mut open = false;
    for h in f.iter().filter(|h| h.opcode <= 2) {
        if open {
            assert_eq!(h.opcode, 0, "a new data message began inside a fragmented one: {f:?}");
            out.last_mut().unwrap().push(*h);
        } else {
            assert_ne!(h.opcode, 0, "a continuation frame outside a fragmented message: {f:?}");
            out.push(vec![*h]);
        }
        open = !h.fin;
    }
    out
}

/// Checks one direction's messages: every data frame at most [`FRAGMENT_BYTES`], and at least
/// one message that was larger than that went in several frames. Returns the largest
/// message's size.
fn check(what: &str, bytes: &[u8]) -> usize {
    let msgs = messages(&frames(bytes));
    for m in &msgs {
        for h in m {
            assert!(h.len <= FRAGMENT_BYTES, "{what}: a {}-byte frame went unfragmented", h.len);
        }
    }
    let largest = msgs.iter().max_by_key(|m| m.iter().map(|h| h.len).sum::<usize>()).unwrap();
    assert!(largest.len() > 1, "{what}: no fragmented message: {msgs:?}");
    assert!(largest[..largest.len() - 1].iter().all(|h| h.len > 0));
    largest.iter().map(|h| h.len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_go_as_fragments_both_ways_and_arrive_whole() {
    within(120, async {
        let w = World::start().await;
        let proxy = Proxy::recording(&w.addr).await;
        let (_, _alice, mut a, _, _bob, mut b) =
            two_agents_with(&w, |p| set_broker_url(p, &proxy.url())).await;
        register(&mut b, "000000f1-5e55-4000-8000-000000000000", "bob-desk", &[]).await;
        wait_peer(&mut a, "bob-desk").await;

        // 40 KB with multi-byte characters, so that cuts must fall between characters.
        let body: String = "é≈ abc ".repeat(4_000);
        let reply = a.call(send_call("bob-desk", &body, Priority::Now, None)).await.unwrap();
        assert!(reply.get("error").is_none(), "send failed: {reply}");
        let got = wait_inbox(&mut b, Some("000000f1-5e55-4000-8000-000000000000"), 1).await;
        assert_eq!(bodies(&got), vec![body.clone()], "bob got the body whole");

        let wires = proxy.recorded();
        assert!(wires.len() >= 2, "both agents connected through the proxy: {}", wires.len());
        // The sender's send and the recipient's push, each sealed (larger than the body).
        let sent = wires.iter().map(|c| check_if_large("alice → broker", &c.to_broker)).max().unwrap();
        let pushed = wires.iter().map(|c| check_if_large("broker → bob", &c.to_agent)).max().unwrap();
        assert!(sent > body.len(), "the send went over the wire ({sent} bytes)");
        assert!(pushed > body.len(), "the push went over the wire ({pushed} bytes)");
    })
    .await;
}

/// [`check`] for a connection that carried a message larger than one fragment; 0 for others.
fn check_if_large(what: &str, bytes: &[u8]) -> usize {
    let msgs = messages(&frames(bytes));
    let large = msgs.iter().any(|m| m.iter().map(|h| h.len).sum::<usize>() > FRAGMENT_BYTES);
    if large { check(what, bytes) } else { 0 }
}
