//! Core tests of service log follows: the first local follower of a service makes the link
//! follow it, the last one leaving (unsubscribe or disconnect) unfollows it, and `mcp_log`
//! events reach only the subscriptions following that service.

use claudemesh_protocol::frames::Event;
use claudemesh_protocol::local::{AgentLine, LocalEvent, Topic};

use super::{MESH, T, setup};
use crate::core::{Input, UplinkEvent};
use crate::mesh::UplinkCmd;

impl T {
    fn follow(&mut self, conn: u64, service: Option<&str>) -> crate::socket_bounds::ClientRx {
        let (tx, rx) = crate::socket_bounds::channel(Default::default());
        self.core.handle(Input::ConnOpened { conn, tx }, self.now);
        let sub = Input::Subscribe {
            conn,
            id: conn,
            topics: vec![Topic::Services],
            session: None,
            mesh: None,
            service: service.map(Into::into),
        };
        self.core.handle(sub, self.now);
        self.core.finish_turn();
        rx
    }

    fn follow_cmds(&mut self) -> Vec<String> {
        let mut out = vec![];
        while let Ok(c) = self._uplink.try_recv() {
            match c {
                UplinkCmd::Follow(n) => out.push(format!("follow {n}")),
                UplinkCmd::Unfollow(n) => out.push(format!("unfollow {n}")),
                _ => {}
            }
        }
        out
    }
}

fn logs(rx: &mut crate::socket_bounds::ClientRx) -> Vec<String> {
    let mut out = vec![];
    while let Ok(l) = rx.try_recv() {
        if let AgentLine::Event { event, .. } = l
            && let LocalEvent::Services { event: Event::McpLog { name, lines }, .. } = *event
        {
            out.extend(lines.into_iter().map(|l| format!("{name}: {l}")));
        }
    }
    out
}

#[test]
fn follows_are_counted_per_service_and_logs_go_only_to_followers() {
    let mut t = setup(&[]);
    let mut a = t.follow(10, Some("svc"));
    assert_eq!(t.follow_cmds(), ["follow svc"]);
    let mut b = t.follow(11, Some("svc"));
    let mut other = t.follow(12, None);
    assert!(t.follow_cmds().is_empty(), "one follow per service, however many followers");
    assert!(t.core.view.borrow().follows.contains(&(MESH.to_string(), "svc".to_string())));

    let e = Event::McpLog { name: "svc".into(), lines: vec!["one".into()] };
    let e2 = Event::McpLog { name: "else".into(), lines: vec!["two".into()] };
    t.core.handle(Input::Uplink { mesh: MESH.into(), event: UplinkEvent::Events(vec![e, e2]) }, t.now);
    t.core.finish_turn();
    assert_eq!(logs(&mut a), ["svc: one"]);
    assert_eq!(logs(&mut b), ["svc: one"]);
    assert!(logs(&mut other).is_empty(), "a services subscriber not following gets no log lines");

    t.core.handle(Input::Unsubscribe { conn: 10, id: 10 }, t.now);
    t.core.finish_turn();
    assert!(t.follow_cmds().is_empty(), "another follower remains");
    t.core.handle(Input::ConnClosed { conn: 11 }, t.now);
    t.core.finish_turn();
    assert_eq!(t.follow_cmds(), ["unfollow svc"]);
    assert!(t.core.view.borrow().follows.is_empty());
}
