//! Holds N half-open connections against a real broker (in this process, on 127.0.0.1, with a
//! real redb file) and reports the process's RSS before and after, and whether a member still
//! connects and messages meanwhile. The figure in `docs/operations.md` comes from:
//!
//! `cargo run -p claudemesh-broker --example preauth_flood -- 3000`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use claudemesh_broker::BrokerConfig;
use claudemesh_broker::testkit::{Client, RunningBroker};
use claudemesh_protocol::frames::{ClientFrame, ServerFrame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BrokerConfig::new(dir.path().join("data"));
    // All from 127.0.0.1: the total cap is what applies.
    cfg.max_unauthenticated_per_ip = usize::MAX;
    let b = RunningBroker::start("127.0.0.1:0", cfg).await.unwrap();
    let mut c = Client::connect(&b.url).await.unwrap();
    let admin = c.mesh_create(&b.admin_token, "team", "admin").await.unwrap().unwrap();
    c.close().await;
    let before = rss_mib();
    let mut held = Vec::new();
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b.addr
    );
    let mut frame = vec![0x81u8, 0x80 | 127];
    frame.extend_from_slice(&(8u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend(std::iter::repeat_n(b'x', 60 * 1024));
    for i in 0..n {
        let Ok(mut s) = TcpStream::connect(b.addr).await else { continue };
        match i % 3 {
            0 => {}
            1 => drop(s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await),
            _ => {
                let _ = s.write_all(upgrade.as_bytes()).await;
                let _ = s.write_all(&frame).await;
            }
        }
        held.push(s);
    }
    let t = Instant::now();
    let (mut m, ack) = Client::connect_as(&b.url, &admin).await.unwrap();
    let hello_ms = t.elapsed().as_millis();
    let req = m.next_req();
    let info = m.request(&ClientFrame::MeshInfo { req }).await.unwrap();
    let after = rss_mib();
    println!(
        "half-open held: {}  member hello: {} in {hello_ms} ms, mesh_info: {}  RSS: {before:.0} MiB -> {after:.0} MiB",
        held.len(),
        matches!(ack, ServerFrame::HelloAck { .. }),
        matches!(info, ServerFrame::MeshInfo { .. }),
    );
    drop(held);
    b.stop().await.unwrap();
}
