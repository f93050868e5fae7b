//! Connections before hello (issue 11, point 8): half-open sockets, partial handshakes and big
//! frames before hello cannot keep a member out or grow the broker without bound; deadlines,
//! the pre-auth byte budget and the caps each close what they should, with a clear reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_broker::testkit::{Client, ClientError};
use claudemesh_protocol::frames::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this process's open-files limit as far as allowed; returns the new soft limit.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    getrlimit(Resource::RLIMIT_NOFILE).unwrap().0
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A WebSocket upgrade request written by hand.
fn upgrade_request(addr: std::net::SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The header of a masked client text frame announcing `len` payload bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    h
}

/// Whether the broker closed `s` (EOF or reset) within `within`, reading whatever it sent.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// The close frame's code and reason, after any frames before it.
async fn close_of(c: &mut Client) -> (Vec<ServerFrame>, String) {
    let mut frames = vec![];
    loop {
        match c.recv().await {
            Ok(f) => frames.push(f),
            Err(ClientError::Closed(reason)) => return (frames, reason.unwrap_or_default()),
            Err(e) => return (frames, format!("error: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_half_open_connections_cannot_keep_a_member_out() {
    let limit = raise_nofile();
    // Each held connection costs this process two descriptors (both ends are here).
    let n = 3000.min(((limit.saturating_sub(200)) / 2) as usize);
    println!("RLIMIT_NOFILE {limit}: holding {n} half-open connections");
    // The per-IP cap is raised so that, all from 127.0.0.1, the total cap is what holds.
    let h = Harness::start_with(|c| c.max_unauthenticated_per_ip = 100_000).await;
    let mut m = mesh_with(&h, "team", 1).await;
    let (alice_conn, alice) = m.members.pop().unwrap();
    alice_conn.close().await;
    let before = rss_kib();
    let addr = h.broker.addr;
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(mut s) = TcpStream::connect(addr).await else { continue };
        match i % 3 {
            // Connected, silent.
            0 => {}
            // Half an HTTP request.
            1 => {
                let _ = s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n").await;
            }
            // Upgraded, then a frame announced at 8 MiB and 60 KiB of it sent.
            _ => {
                let _ = s.write_all(upgrade_request(addr).as_bytes()).await;
                let _ = s.write_all(&frame_header(8 << 20)).await;
                let _ = s.write_all(&vec![b'x'; 60 * 1024]).await;
            }
        }
        held.push(s);
    }
    // While they are held, a member connects, hellos and messages.
    let (mut alice_conn, ack) = Client::connect_as(h.url(), &alice).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
    let r = send_to(
        &mut alice_conn,
        &alice,
        "",
        Target::Member(m.admin.member_id.clone()),
        &[&m.admin],
        "through the flood",
        "flood-1",
    )
    .await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    assert_eq!(recv_push(&mut m.admin_conn, &m.admin, &alice).await.1.body, "through the flood");
    let (_, text) = http_get(addr, "/metrics").await;
    let pending: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("claudemesh_unauthenticated_connections "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(pending <= 1024, "{pending} unauthenticated connections held, cap 1024");
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!("RSS grew by {grown_mib} MiB with {n} half-open connections held");
    // Generous: without the gate 150 partial handshakes took 1 GB.
    assert!(grown_mib < 400, "RSS grew by {grown_mib} MiB");
    drop(held);
}

#[tokio::test]
async fn deadlines_close_slow_handshakes_and_silent_welcomes() {
    let h = Harness::start_with(|c| {
        c.handshake_timeout = Duration::from_millis(300);
        c.hello_timeout = Duration::from_millis(300);
    })
    .await;
    let admin = h.mesh("team").await;
    let mut silent = TcpStream::connect(h.broker.addr).await.unwrap();
    let mut partial = TcpStream::connect(h.broker.addr).await.unwrap();
    partial.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await, "silent socket kept");
    assert!(closed_within(&mut partial, Duration::from_secs(10)).await, "partial request kept");
    // Upgraded but no hello: a `timeout` error, then close 1008.
    let mut c = Client::connect(h.url()).await.unwrap();
    let (frames, reason) = close_of(&mut c).await;
    assert!(
        frames.iter().any(|f| matches!(f, ServerFrame::Error(e) if e.code == ErrorCode::Timeout)),
        "{frames:?}"
    );
    assert!(reason.starts_with("1008"), "{reason}");
    // A prompt hello is unaffected, and the deadline no longer applies after it.
    let (mut ok, ack) = Client::connect_as(h.url(), &admin).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let req = ok.next_req();
    assert!(matches!(
        ok.request(&ClientFrame::MeshInfo { req }).await.unwrap(),
        ServerFrame::MeshInfo { .. }
    ));
}

#[tokio::test]
async fn a_big_frame_before_hello_is_refused_and_after_hello_is_not() {
    let h = Harness::start().await;
    let admin = h.mesh("team").await;
    let mut c = Client::connect(h.url()).await.unwrap();
    c.send_text(format!(r#"{{"type":"hello","pad":"{}"}}"#, "x".repeat(100 * 1024))).await.unwrap();
    let (frames, reason) = close_of(&mut c).await;
    let e = frames.iter().find_map(|f| match f {
        ServerFrame::Error(e) => Some(e.clone()),
        _ => None,
    });
    let e = e.expect("an error frame");
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(e.message.contains("before hello"), "{}", e.message);
    assert!(reason.starts_with("1009") && reason.contains("before hello"), "{reason}");
    // The same size after hello is an ordinary frame.
    let (mut ok, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let text = format!(r#"{{"type":"mesh_info","req":7,"pad":"{}"}}"#, "x".repeat(1024 * 1024));
    ok.send_text(text).await.unwrap();
    let r = ok.recv_match(|f| f.req() == Some(7)).await.unwrap();
    assert!(matches!(r, ServerFrame::MeshInfo { .. }), "{r:?}");
}

#[tokio::test]
async fn at_the_per_ip_cap_the_oldest_unauthenticated_connection_goes() {
    let h = Harness::start_with(|c| c.max_unauthenticated_per_ip = 4).await;
    let admin = h.mesh("team").await;
    let mut waiting = Vec::new();
    for _ in 0..4 {
        waiting.push(Client::connect(h.url()).await.unwrap());
    }
    // A fifth connection from the same address gets in; the oldest is closed with 1013.
    let (mut member, ack) = Client::connect_as(h.url(), &admin).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
    let (_, reason) = close_of(&mut waiting[0]).await;
    assert!(reason.starts_with("1013"), "{reason}");
    // The others are still waiting for their hello.
    let req = member.next_req();
    assert!(matches!(
        member.request(&ClientFrame::MeshInfo { req }).await.unwrap(),
        ServerFrame::MeshInfo { .. }
    ));
    let mut second = waiting.remove(1);
    assert!(matches!(second.hello(&admin).await.unwrap(), ServerFrame::HelloAck { .. }));
}
