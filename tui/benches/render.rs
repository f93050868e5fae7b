//! The dashboard's frame cost: one full render of each view with 1,000 peers, 1,000 members
//! and 10,000 messages (at 160×48 and 80×24, on ratatui's `TestBackend`, so the terminal's own
//! output is not counted), and `update` applying 1,000 agent events (presence changes, new
//! messages, receipts, send states) to that state.
//!
//! `cargo bench -p claudemesh-tui --bench render`. Each measure runs `REPS` times after a
//! warm-up; the table gives the median and the min–max in microseconds. A frame should stay
//! well under 16 ms (60 frames a second). Run without `--bench` (as `cargo test --benches`
//! does), it does one repetition of each as a check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use claudemesh_protocol::frames::{Event as Wire, ReceiptState, Role, SessionStatus};
use claudemesh_protocol::local::{
    LinkState, LocalEvent, MeshStatus, SendState, Snapshot, StatusReply, TrustState,
};
use claudemesh_tui::event::{AgentEvent, Event};
use claudemesh_tui::fixture::{self, NOW, member_id};
use claudemesh_tui::state::{State, View};
use claudemesh_tui::update::update;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const PEERS: usize = 1_000;
const MESSAGES: usize = 10_000;
const EVENTS: usize = 1_000;

/// 1,000 peers and members, 10,000 messages both ways over 50 conversations.
fn big(size: (u16, u16)) -> State {
    let mut s = State::new(size, true, NOW);
    let status = StatusReply {
        agent_version: "0.1.0".into(),
        pid: 1,
        meshes: vec![MeshStatus {
            slug: "team".into(),
            id: "mesh-1".into(),
            member_id: member_id(0),
            role: Role::Admin,
            link: LinkState::Connected,
            ..MeshStatus::default()
        }],
        ..StatusReply::default()
    };
    let statuses = [SessionStatus::Idle, SessionStatus::Working, SessionStatus::Dnd];
    let peers = (0..PEERS)
        .map(|i| {
            fixture::peer(
                "team",
                i,
                i,
                &format!("peer-{i:04}"),
                statuses[i % 3],
                "working on the benchmark of the dashboard",
            )
        })
        .collect();
    let members = (0..PEERS)
        .map(|i| {
            fixture::member(
                "team",
                i,
                &format!("member-{i:04}"),
                Role::Member,
                TrustState::Verified,
                i % 2 == 0,
            )
        })
        .collect();
    let body = "a message of a realistic length, long enough to wrap once or twice in the thread pane of the dashboard";
    let inbox = (0..MESSAGES / 2)
        .map(|n| {
            fixture::incoming(
                "team",
                n,
                1 + n % 50,
                &format!("member-{:04}", 1 + n % 50),
                "member:x",
                body,
                NOW - 1_000 * (MESSAGES - n) as u64,
            )
        })
        .collect();
    let sent = (0..MESSAGES / 2)
        .map(|n| {
            let st = SendState::Accepted { msg_id: format!("b-{n}"), recipients: 1 };
            fixture::outgoing(
                "mesh-1",
                n,
                1 + n % 50,
                "x",
                body,
                NOW - 1_000 * (MESSAGES - n) as u64 + 500,
                st,
            )
        })
        .collect();
    fixture::load(&mut s, Snapshot { status, peers }, members, inbox, sent);
    s
}

/// 1,000 events as the agent sends them: presence, messages, receipts, send states.
fn events(s: &State) -> Vec<Event> {
    let mut seq = s.seq;
    (0..EVENTS)
        .map(|i| {
            seq += 1;
            let event = match i % 4 {
                0 => {
                    let p = fixture::peer(
                        "team",
                        i % PEERS,
                        i % PEERS,
                        &format!("peer-{:04}", i % PEERS),
                        SessionStatus::Working,
                        "busy",
                    );
                    LocalEvent::Presence { mesh: "team".into(), event: Wire::PeerUpdated(p.peer) }
                }
                1 => {
                    let mut m = fixture::incoming(
                        "team",
                        MESSAGES + i,
                        1 + i % 50,
                        "member",
                        "member:x",
                        "live",
                        NOW,
                    );
                    m.msg_id = format!("live-{i}");
                    LocalEvent::Messages(m)
                }
                2 => LocalEvent::Presence {
                    mesh: "team".into(),
                    event: Wire::Receipt {
                        msg_ids: vec![format!("b-{i}")],
                        member_id: member_id(1 + i % 50),
                        state: ReceiptState::Seen,
                    },
                },
                _ => LocalEvent::Outbox {
                    mesh: "team".into(),
                    client_msg_id: format!("c-mesh-1-{i}"),
                    state: SendState::Accepted { msg_id: format!("b-{i}"), recipients: 1 },
                    sent: None,
                },
            };
            Event::Agent(AgentEvent::Event { seq, event: Box::new(event) })
        })
        .collect()
}

fn measure(reps: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    f();
    let mut us: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (us[us.len() / 2], us[0], us[us.len() - 1])
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let reps = if bench { 50 } else { 1 };
    println!("| measure | median µs | min–max µs |");
    println!("|---|---:|---:|");
    for size in [(160, 48), (80, 24)] {
        let base = big(size);
        assert_eq!(base.peers.len(), PEERS);
        assert_eq!(base.messages.all.len(), MESSAGES);
        for view in View::ALL {
            let mut s = base.clone();
            s.view = view;
            let mut term = Terminal::new(TestBackend::new(size.0, size.1)).unwrap();
            let (med, min, max) = measure(reps, || {
                term.draw(|f| claudemesh_tui::ui::render(f, &s)).unwrap();
            });
            println!("| render {} {}×{} | {med:.0} | {min:.0}–{max:.0} |", view.title(), size.0, size.1);
        }
    }
    let base = big((160, 48));
    let evs = events(&base);
    // Each repetition applies the events to a fresh copy, made before its timing starts.
    let reps_u = reps.min(20);
    let mut copies: Vec<State> = (0..=reps_u).map(|_| base.clone()).collect();
    let (med, min, max) = measure(reps_u, || {
        let mut s = copies.pop().expect("one copy per repetition");
        for e in evs.iter().cloned() {
            update(&mut s, e);
        }
        assert_eq!(s.seq, base.seq + EVENTS as u64);
    });
    println!("| update ×{EVENTS} events | {med:.0} | {min:.0}–{max:.0} |");
}
