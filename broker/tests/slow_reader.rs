//! Hostile load without harm to others (issue 16 point 3, broker side): a member that asks for
//! large answers and never reads them is dropped at the outgoing byte bound or the write
//! timeout instead of being buffered; lists, presence changes and new session ids are rate
//! limited per member; other members keep talking throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use claudemesh_broker::rate::RateRule;
use claudemesh_broker::testkit::Client;
use claudemesh_protocol::frames::*;
use common::*;

/// Kilobytes of this process's resident set (the broker runs inside it): now, and the peak
/// since [`reset_peak`].
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets VmHWM to the current RSS (`clear_refs` 5, Linux ≥ 4.0).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// A session id (a lowercase UUID) for member slot `a`, number `b`.
fn sid(a: usize, b: usize) -> String {
    format!("{a:08x}-0000-4000-8000-{b:012x}")
}

fn session(id: &str, summary_len: usize) -> SessionInfo {
    SessionInfo {
        session_id: id.into(),
        display_name: id.into(),
        summary: Some("s".repeat(summary_len)),
        ..Default::default()
    }
}

/// Fills the mesh with sessions carrying full summaries, so one `list_peers` answer is large.
async fn fill_sessions(m: &mut Mesh, per_member: usize) {
    for (i, (c, _)) in m.members.iter_mut().enumerate() {
        for j in 0..per_member {
            let req = c.next_req();
            let frame = ClientFrame::SessionOpen { req, session: session(&sid(i, j), 500) };
            assert_eq!(c.request(&frame).await.unwrap(), ServerFrame::Ok { req });
        }
    }
}

async fn metric(h: &Harness, name: &str) -> u64 {
    let (_, body) = http_get(h.broker.addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{body}"))
}

/// Sends `n` `list_peers` requests without reading a single answer; stops at the first write
/// error (the broker closed the connection).
async fn spam_list_peers(c: &mut Client, n: usize) -> usize {
    for i in 0..n {
        let req = c.next_req();
        if c.feed(&ClientFrame::ListPeers { req, cursor: None, limit: None }).await.is_err() {
            return i;
        }
        if i % 64 == 63 && c.flush().await.is_err() {
            return i;
        }
    }
    let _ = c.flush().await;
    n
}

/// Other members keep working while member 0 is cut off: a DM from member 1 reaches member 2.
async fn others_still_talk(m: &mut Mesh, tag: &str) {
    let [_, (c1, a), (c2, b)] = &mut m.members[..] else { panic!("three members") };
    let r = send_to(c1, a, &sid(1, 0), Target::Member(b.member_id.clone()), &[&*b], tag, tag).await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    let (_, plain) = recv_push(c2, b, a).await;
    assert_eq!(plain.body, tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_is_dropped_at_the_byte_bound_not_buffered() {
    let h = Harness::start_with(|c| {
        c.query_rate = RateRule { per_sec: 1e9, burst: 1e9 };
        c.presence_rate = RateRule { per_sec: 1e9, burst: 1e9 };
    })
    .await;
    let mut m = mesh_with(&h, "noread", 3).await;
    fill_sessions(&mut m, 60).await;
    // One answer is ~3 × 60 sessions × ~600 bytes; 2,000 unread answers would be ~200 MiB.
    let req = m.members[0].0.next_req();
    let one = match m.members[0].0.request(&ClientFrame::ListPeers { req, cursor: None, limit: None }).await {
        Ok(ServerFrame::Peers { sessions, .. }) => serde_json::to_string(&sessions).unwrap().len(),
        other => panic!("{other:?}"),
    };
    let (rss_before, _) = rss_kib();
    reset_peak();
    let started = Instant::now();
    let spammer = &mut m.members[0].0;
    let sent = spam_list_peers(spammer, 2_000).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&h, "claudemesh_slow_dropped_total").await == 0 {
        assert!(Instant::now() < deadline, "the non-reading member was never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped_after = started.elapsed();
    let (_, peak) = rss_kib();
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "figure: one list_peers answer {one} B; sent {sent} unread requests (~{} MiB of answers); \
         dropped after {dropped_after:?}; process RSS {} MiB before, peak {} MiB (+{growth_mib} MiB)",
        one * sent / (1 << 20),
        rss_before / 1024,
        peak / 1024
    );
    // Without the byte bound the broker buffered every answer (2 GB seen); the bound is 32 MiB
    // of queue plus the socket's write buffer.
    assert!(growth_mib < 150, "RSS grew by {growth_mib} MiB under a member that never reads");
    // The dropped member's connection ends: reading drains what reached the socket, then stops.
    spammer.timeout = Duration::from_secs(5);
    let mut frames = 0;
    while spammer.recv().await.is_ok() {
        frames += 1;
    }
    assert!(frames < sent, "the connection was not closed: it answered all {sent} requests");
    others_still_talk(&mut m, "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_stalls_past_the_write_timeout_drops_the_connection() {
    let h = Harness::start_with(|c| {
        c.query_rate = RateRule { per_sec: 1e9, burst: 1e9 };
        c.presence_rate = RateRule { per_sec: 1e9, burst: 1e9 };
        // Only the timeout can fire: the byte bound is out of reach.
        c.out_queue_bytes = usize::MAX / 2;
        c.write_timeout = Duration::from_secs(1);
    })
    .await;
    let mut m = mesh_with(&h, "stall", 3).await;
    fill_sessions(&mut m, 30).await;
    spam_list_peers(&mut m.members[0].0, 1_000).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&h, "claudemesh_slow_dropped_total").await == 0 {
        assert!(Instant::now() < deadline, "a stalled writer was never timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    others_still_talk(&mut m, "after the stall").await;
}

#[tokio::test]
async fn list_requests_past_the_query_rate_get_rate_limited_with_a_retry_hint() {
    let h = Harness::start_with(|c| c.query_rate = RateRule { per_sec: 10.0, burst: 50.0 }).await;
    let mut m = mesh_with(&h, "ratelist", 1).await;
    let c = &mut m.members[0].0;
    let started = Instant::now();
    let (mut answered, mut limited) = (0, 0);
    for _ in 0..200 {
        let req = c.next_req();
        match c.request(&ClientFrame::ListPeers { req, cursor: None, limit: None }).await.unwrap() {
            ServerFrame::Peers { .. } => answered += 1,
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
                let wait = e.retry_after_ms.expect("rate_limited carries retry_after_ms");
                assert!(wait > 0 && wait <= 1000, "retry_after_ms {wait}");
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("figure: 200 list_peers in {secs:.2} s: {answered} answered, {limited} rate_limited");
    assert!(answered as f64 <= 50.0 + 10.0 * secs + 2.0, "{answered} answered in {secs} s");
    assert!(limited > 0);
    // list_members shares the budget; after waiting, answers come again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = members_or_error(c).await;
    assert!(after.is_ok(), "{after:?}");
}

async fn members_or_error(c: &mut Client) -> Result<usize, ErrorCode> {
    let req = c.next_req();
    match c.request(&ClientFrame::ListMembers { req, cursor: None, limit: None }).await.unwrap() {
        ServerFrame::Members { members, .. } => Ok(members.len()),
        f => Err(error_code(&f)),
    }
}

#[tokio::test]
async fn new_session_ids_are_bounded_per_member_over_time_while_known_ids_reopen() {
    let h = Harness::start_with(|c| {
        c.presence_rate = RateRule { per_sec: 1e9, burst: 1e9 };
        c.new_session_rate = RateRule { per_sec: 0.5, burst: 20.0 };
    })
    .await;
    let mut m = mesh_with(&h, "ids", 2).await;
    let c = &mut m.members[0].0;
    let (mut opened, mut limited) = (0, 0);
    for i in 0..100 {
        let req = c.next_req();
        let frame = ClientFrame::SessionOpen { req, session: session(&sid(9, i), 0) };
        match c.request(&frame).await.unwrap() {
            ServerFrame::Ok { .. } => {
                opened += 1;
                let req = c.next_req();
                let close = ClientFrame::SessionClose { req, session_id: sid(9, i) };
                assert_eq!(c.request(&close).await.unwrap(), ServerFrame::Ok { req });
            }
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
                assert!(e.message.contains("reuse a session id"), "{}", e.message);
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    eprintln!("figure: 100 new session ids in a burst: {opened} accepted, {limited} rate_limited");
    assert!((20..=22).contains(&opened), "{opened} new ids accepted with a burst of 20");
    // A known id reopens whatever the new-id budget says.
    open_session(c, &sid(9, 0), "again", &[]).await;
    // Another member's budget is its own.
    open_session(&mut m.members[1].0, &sid(10, 0), "b", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reconnecting_to_a_replayed_queue_is_not_taken_for_a_slow_reader() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "replay", 2).await;
    // b goes offline (its connection closed); a stays.
    let (bc, b) = m.members.remove(1);
    bc.close().await;
    let (ac, a) = {
        let e = &mut m.members[0];
        (&mut e.0, &e.1)
    };
    open_session(ac, &sid(0, 0), "a", &[]).await;
    // b is offline: these wait in its queue and are replayed when it comes back.
    for i in 0..50 {
        let body = format!("queued {i}");
        let r = send_to(ac, a, &sid(0, 0), Target::Member(b.member_id.clone()), &[&b], &body, &body).await;
        assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    }
    let (mut bc, ack) = Client::connect_as(h.url(), &b).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
    for i in 0..50 {
        let (_, plain) = recv_push(&mut bc, &b, a).await;
        assert_eq!(plain.body, format!("queued {i}"));
    }
    // Frames sent the ordinary way after the replay still go through on the same connection.
    for i in 0..20 {
        let body = format!("live {i}");
        let r = send_to(ac, a, &sid(0, 0), Target::Member(b.member_id.clone()), &[&b], &body, &body).await;
        assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
        let (_, plain) = recv_push(&mut bc, &b, a).await;
        assert_eq!(plain.body, body);
    }
    assert_eq!(metric(&h, "claudemesh_slow_dropped_total").await, 0, "a reading member was dropped");
}
