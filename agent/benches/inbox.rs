//! What one session's hook, push or `check_messages` pays to find its unseen messages as the
//! inbox grows: a full inbox scan (how it worked before the UNSEEN index) against the index.
//!
//! `cargo bench -p claudemesh-agent --bench inbox [-- SIZES]` (default sizes 1000 10000). Each
//! inbox holds messages for 20 sessions, 5 of them unseen per session; 30 timed reads each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use claudemesh_agent::store::{Delivery, InboxRecord, Store};
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::InboxMessage;

const SESSIONS: usize = 20;
const UNSEEN_PER_SESSION: usize = 5;
const RUNS: usize = 30;

fn record(i: usize) -> InboxRecord {
    let session = format!("session-{}", i % SESSIONS);
    let seen = i / SESSIONS >= UNSEEN_PER_SESSION;
    InboxRecord {
        message: InboxMessage {
            msg_id: format!("{:032x}", i),
            mesh: "team".into(),
            from_member: "m_0123456789abcdef0123".into(),
            from_session: "0b4e1f2a-5c6d-4e7f-8a9b-0c1d2e3f4a5b".into(),
            from_name: "alice".into(),
            session_name: None,
            target: format!("session:{session}"),
            priority: Priority::Next,
            body: "please rebase onto main when the migration lands; the schema changed".repeat(3),
            reply_to: None,
            meta: Default::default(),
            sent_at: i as u64,
            received_at: i as u64,
            seen,
            read: false,
            error: None,
        },
        mesh_id: "mesh-0000".into(),
        deliveries: [(session, Delivery { pushed: false, pushed_at: None, seen })].into_iter().collect(),
        pending: false,
        replay: None,
        box_nonce: None,
        resent_as: Vec::new(),
    }
}

/// Median, p10 and p90 of `f`'s duration in milliseconds.
fn time(mut f: impl FnMut() -> usize) -> (f64, f64, f64, usize) {
    let mut ms = Vec::with_capacity(RUNS);
    let mut found = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        found = f();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (ms[RUNS / 2], ms[RUNS / 10], ms[RUNS * 9 / 10], found)
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1000, 10000] } else { sizes };
    println!("| inbox | full scan, median (p10–p90) | index, median (p10–p90) | ratio |");
    println!("|---|---|---|---|");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agent.redb")).unwrap();
        for i in 0..n {
            store.inbox_insert(&record(i)).unwrap();
        }
        let session = "session-7";
        let scan = time(|| {
            store
                .inbox_all()
                .unwrap()
                .iter()
                .filter(|r| r.deliveries.get(session).is_some_and(|d| !d.seen))
                .count()
        });
        let index = time(|| store.inbox_unseen(session).unwrap().len());
        assert_eq!(scan.3, index.3, "both ways find the same messages");
        println!(
            "| {n} | {:.3} ms ({:.3}–{:.3}) | {:.3} ms ({:.3}–{:.3}) | {:.0}× |",
            scan.0,
            scan.1,
            scan.2,
            index.0,
            index.1,
            index.2,
            scan.0 / index.0
        );
    }
}
