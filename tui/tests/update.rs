//! Every action of the dashboard as a state transition, without a terminal: keys, mouse,
//! paste, the agent's snapshot, events and replies, and the effects each one asks for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use claudemesh_protocol::frames::{DeliveryState, Event as Wire, Priority, ReceiptState, SessionStatus};
use claudemesh_protocol::local::{AgentCall, LinkState, LocalEvent, SendState, Snapshot, StatusReply};
use claudemesh_tui::effect::Effect;
use claudemesh_tui::event::{AgentEvent, CallError, Event};
use claudemesh_tui::fixture::{self, NOW, member_id, standard};
use claudemesh_tui::state::messages::{ConvKind, Direction};
use claudemesh_tui::state::{AgentConn, Focus, Modal, State, View};
use claudemesh_tui::update::update;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use serde_json::json;

fn key(s: &mut State, code: KeyCode) -> Vec<Effect> {
    update(s, Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn ch(s: &mut State, c: char) -> Vec<Effect> {
    key(s, KeyCode::Char(c))
}

fn ctrl(s: &mut State, c: char) -> Vec<Effect> {
    update(s, Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)))
}

fn typed(s: &mut State, text: &str) {
    for c in text.chars() {
        ch(s, c);
    }
}

fn reply(s: &mut State, fx: &[Effect], result: Result<serde_json::Value, CallError>) -> Vec<Effect> {
    let tag = fx
        .iter()
        .find_map(|e| match e {
            Effect::Call { tag, .. } | Effect::Join { tag, .. } => Some(*tag),
            _ => None,
        })
        .expect("a call");
    update(s, Event::Agent(AgentEvent::Reply { tag, result }))
}

fn calls(fx: &[Effect]) -> Vec<&AgentCall> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Call { call, .. } => Some(call),
            _ => None,
        })
        .collect()
}

fn event(s: &mut State, e: LocalEvent) -> Vec<Effect> {
    let seq = s.seq + 1;
    update(s, Event::Agent(AgentEvent::Event { seq, event: Box::new(e) }))
}

fn click(s: &mut State, x: u16, y: u16) -> Vec<Effect> {
    update(
        s,
        Event::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: x,
            row: y,
            modifiers: KeyModifiers::NONE,
        }),
    )
}

#[test]
fn views_switch_by_number_tab_and_click() {
    let mut s = standard((80, 24));
    assert_eq!(s.view, View::Peers);
    ch(&mut s, '3');
    assert_eq!(s.view, View::Messages);
    key(&mut s, KeyCode::Tab);
    assert_eq!(s.view, View::Events);
    key(&mut s, KeyCode::BackTab);
    key(&mut s, KeyCode::BackTab);
    assert_eq!(s.view, View::Members);
    ch(&mut s, '9');
    assert_eq!(s.view, View::Members, "no view 9");
    // The tabs line is row 1; " 1 Peers " starts at column 1.
    click(&mut s, 3, 1);
    assert_eq!(s.view, View::Peers);
    ch(&mut s, '5');
    assert_eq!(s.view, View::Meshes);
}

#[test]
fn help_filter_scope_and_quit() {
    let mut s = standard((80, 24));
    ch(&mut s, '?');
    assert_eq!(s.modal, Some(Modal::Help));
    ch(&mut s, 'q');
    assert_eq!(s.modal, None, "q closes help, not the dashboard");
    ch(&mut s, '/');
    typed(&mut s, "CAROL");
    assert!(s.filtering);
    let rows = claudemesh_tui::rows::peers(&s);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].peer.session.display_name, "carol-ci");
    key(&mut s, KeyCode::Enter);
    assert!(!s.filtering);
    assert_eq!(claudemesh_tui::rows::peers(&s).len(), 1, "the filter stays after Enter");
    key(&mut s, KeyCode::Esc);
    assert_eq!(claudemesh_tui::rows::peers(&s).len(), 4);
    ch(&mut s, ']');
    assert_eq!(s.scope.as_deref(), Some("team"));
    assert_eq!(claudemesh_tui::rows::peers(&s).len(), 3);
    ch(&mut s, ']');
    assert_eq!(s.scope.as_deref(), Some("oss"));
    ch(&mut s, ']');
    assert_eq!(s.scope, None);
    ch(&mut s, '[');
    assert_eq!(s.scope.as_deref(), Some("oss"));
    assert_eq!(ch(&mut s, 'q'), vec![Effect::Quit]);
    assert_eq!(ctrl(&mut s, 'c'), vec![Effect::Quit]);
    assert_eq!(update(&mut s, Event::Signal), vec![Effect::Quit]);
}

#[test]
fn moving_scrolling_and_clicking_rows() {
    let mut s = standard((80, 24));
    ch(&mut s, 'j');
    assert_eq!(s.cursor(View::Peers).selected, 1);
    ch(&mut s, 'G');
    assert_eq!(s.cursor(View::Peers).selected, 3);
    ch(&mut s, 'g');
    assert_eq!(s.cursor(View::Peers).selected, 0);
    // Rows start under the border and the header: row 4 is the third peer.
    click(&mut s, 10, 6);
    assert_eq!(s.cursor(View::Peers).selected, 2);
    update(
        &mut s,
        Event::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: 10,
            row: 6,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(s.cursor(View::Peers).selected, 2, "all rows fit: nothing to scroll");
    update(&mut s, Event::Resize(80, 8));
    assert_eq!(s.size, (80, 8));
    let c = s.cursor(View::Peers);
    assert!(c.selected >= c.offset, "the selection stays in view after a resize");
}

#[test]
fn compose_from_peers_sends_with_priority_and_closes_on_reply() {
    let mut s = standard((80, 24));
    ch(&mut s, 'j');
    ch(&mut s, 'j'); // bob-desktop (own sessions first, then by mesh: oss before team)
    ch(&mut s, 'm');
    let Some(Modal::Compose(c)) = &s.modal else { panic!("compose is open") };
    assert_eq!(c.to.text, "bob-desktop");
    assert_eq!(c.mesh, "team");
    typed(&mut s, "hello bob");
    update(&mut s, Event::Paste(" and\nmore".into()));
    ctrl(&mut s, 'p');
    let fx = key(&mut s, KeyCode::Enter);
    let [AgentCall::Send(p)] = calls(&fx)[..] else { panic!("one send: {fx:?}") };
    assert_eq!(p.to, "bob-desktop");
    assert_eq!(p.message, "hello bob and\nmore");
    assert_eq!(p.priority, Priority::Now);
    assert_eq!(p.mesh.as_deref(), Some("team"));
    assert_eq!(p.from_session, None, "the dashboard sends as the member, not as a Claude session");
    assert!(p.idempotency_key.is_some());
    assert!(calls(&key(&mut s, KeyCode::Enter)).is_empty(), "Enter while sending sends nothing twice");
    // A refusal keeps the box and what was typed.
    let err = CallError { code: None, message: "no such peer".into() };
    reply(&mut s, &fx, Err(err));
    let Some(Modal::Compose(c)) = &s.modal else { panic!("compose stays open on error") };
    assert_eq!(c.error.as_deref(), Some("no such peer"));
    assert_eq!(c.body.text, "hello bob and\nmore");
    let fx = key(&mut s, KeyCode::Enter);
    let ok = json!({"id": "c-9", "mesh": "team", "target": "member:x", "recipients": 1, "local": 0});
    reply(&mut s, &fx, Ok(ok));
    assert_eq!(s.modal, None);
    assert!(s.toast.as_ref().unwrap().text.contains("sent to bob-desktop"));
}

#[test]
fn compose_refuses_empty_and_esc_cancels() {
    let mut s = standard((80, 24));
    ch(&mut s, '3');
    ch(&mut s, 'm');
    assert!(calls(&key(&mut s, KeyCode::Enter)).is_empty());
    let Some(Modal::Compose(c)) = &s.modal else { panic!() };
    assert_eq!(c.error.as_deref(), Some("the message is empty"));
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.modal, None);
}

#[test]
fn members_admin_actions_ask_first() {
    let mut s = standard((80, 24));
    ch(&mut s, '2');
    // Sorted: alice (admin, me) first, then bob, carol, erin; dave in oss.
    let rows: Vec<String> =
        claudemesh_tui::rows::members(&s).iter().map(|m| m.member.display_name.clone()).collect();
    assert_eq!(rows, ["dave", "alice", "bob", "carol", "erin"]);
    ch(&mut s, 'd');
    assert!(s.toast.as_ref().unwrap().error, "dave's mesh: alice is no admin there");
    assert_eq!(s.modal, None);
    ch(&mut s, 'j');
    ch(&mut s, 'd');
    assert!(s.toast.as_ref().unwrap().text.contains("that is you"));
    ch(&mut s, 'j'); // bob
    ch(&mut s, 'd');
    assert!(matches!(s.modal, Some(Modal::Confirm(_))));
    assert!(calls(&ch(&mut s, 'n')).is_empty());
    assert_eq!(s.modal, None);
    ch(&mut s, 'd');
    let fx = ch(&mut s, 'y');
    assert!(
        matches!(calls(&fx)[..], [AgentCall::MemberRemove { member, mesh: Some(m) }] if *member == member_id(1) && m == "team")
    );
    reply(&mut s, &fx, Ok(json!({"removed": member_id(1), "display_name": "bob"})));
    assert!(!s.members.iter().any(|m| m.member.member_id == member_id(1)));
    // Role and groups: a bad line is refused in place, a good one is sent.
    ch(&mut s, 'e');
    let Some(Modal::Prompt(p)) = &s.modal else { panic!() };
    assert_eq!(p.field.text, "member @dev:lead", "carol's current role and groups");
    ctrl(&mut s, 'u');
    typed(&mut s, "owner");
    assert!(calls(&key(&mut s, KeyCode::Enter)).is_empty());
    let Some(Modal::Prompt(p)) = &s.modal else { panic!() };
    assert!(p.error.as_deref().unwrap().contains("not a role"));
    ctrl(&mut s, 'u');
    typed(&mut s, "admin @ops @dev:lead");
    let fx = key(&mut s, KeyCode::Enter);
    let [AgentCall::MemberSet { role, groups: Some(g), .. }] = calls(&fx)[..] else { panic!("{fx:?}") };
    assert_eq!(*role, Some(claudemesh_protocol::frames::Role::Admin));
    assert_eq!(g.len(), 2);
    reply(
        &mut s,
        &fx,
        Ok(json!({"member_id": member_id(2), "display_name": "carol", "role": "admin", "groups": []})),
    );
    assert_eq!(s.modal, None);
    // Repin asks first, naming the safety code.
    ch(&mut s, 'p');
    let Some(Modal::Confirm(c)) = &s.modal else { panic!() };
    assert!(c.text.contains("12347 67892"), "{}", c.text);
    let fx = ch(&mut s, 'y');
    assert!(matches!(calls(&fx)[..], [AgentCall::MemberRepin { .. }]));
}

#[test]
fn reading_in_the_dashboard_marks_read_never_seen() {
    let mut s = standard((80, 24));
    let unread = s.messages.unread(None);
    assert!(unread > 0);
    let fx = ch(&mut s, '3');
    // Opening the view asks for the delivery states of the open conversation's sends.
    for c in calls(&fx) {
        assert!(matches!(c, AgentCall::MessageStatus { .. }), "{c:?}");
    }
    let conv = claudemesh_tui::rows::convs(&s)[0].clone();
    let fx = key(&mut s, KeyCode::Enter);
    assert_eq!(s.focus, Focus::Thread);
    for c in calls(&fx) {
        assert!(matches!(c, AgentCall::MarkRead { .. }), "only mark_read, never mark_seen or confirm: {c:?}");
    }
    assert_eq!(s.messages.convs[&conv.key].unread, 0);
    assert!(s.messages.unread(None) < unread);
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.focus, Focus::List);
    let fx = ch(&mut s, 'R');
    assert!(calls(&fx).iter().all(|c| matches!(c, AgentCall::MarkRead { .. })));
    assert_eq!(s.messages.unread(None), 0);
    // Nothing left to mark: no call.
    assert!(calls(&ch(&mut s, 'r')).is_empty());
}

#[test]
fn meshes_join_invite_and_leave() {
    let mut s = standard((80, 24));
    ch(&mut s, '5');
    ch(&mut s, 'J');
    typed(&mut s, "not-an-invite");
    assert!(key(&mut s, KeyCode::Enter).is_empty());
    let Some(Modal::Prompt(p)) = &s.modal else { panic!() };
    assert!(p.error.as_deref().unwrap().starts_with("not an invite"));
    key(&mut s, KeyCode::Esc);
    // Invite (alice is admin of team).
    ch(&mut s, 'i');
    ctrl(&mut s, 'u');
    typed(&mut s, "member 2 7d @dev");
    let fx = key(&mut s, KeyCode::Enter);
    let [AgentCall::InviteCreate(ic)] = calls(&fx)[..] else { panic!("{fx:?}") };
    assert_eq!((ic.max_uses, ic.expires_in_secs, ic.groups.len()), (2, 7 * 86_400, 1));
    let url = "claudemesh://join/abc";
    let r = json!({"invite_id": "i1", "url": url, "token": "abc", "mesh": "team", "broker_url": "wss://b",
        "role": "member", "groups": [], "max_uses": 2, "expires_at": 1});
    let fx = reply(&mut s, &fx, Ok(r));
    assert!(fx.contains(&Effect::Copy(url.into())), "the link goes to the clipboard (OSC 52)");
    let Some(Modal::Notice { lines, .. }) = &s.modal else { panic!() };
    assert!(lines.iter().any(|l| l == url), "and stays on screen to select");
    key(&mut s, KeyCode::Esc);
    // Leave asks, then calls, then forgets the mesh.
    ch(&mut s, 'L');
    let fx = ch(&mut s, 'y');
    assert!(matches!(calls(&fx)[..], [AgentCall::Leave { mesh, local_only: false }] if mesh == "team"));
    reply(&mut s, &fx, Ok(json!({"left": "team", "mesh_id": "mesh-1", "broker_told": true})));
    assert!(s.mesh("team").is_none());
    assert!(s.peers.iter().all(|p| p.mesh != "team"));
}

#[test]
fn live_events_update_peers_messages_and_delivery() {
    let mut s = standard((80, 24));
    let mut bob = fixture::peer("team", 1, 1, "bob-desktop", SessionStatus::Working, "now busy");
    event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: Wire::PeerUpdated(bob.peer.clone()) });
    let p = s.peers.iter().find(|p| p.peer.session.display_name == "bob-desktop").unwrap();
    assert_eq!(p.peer.session.status, SessionStatus::Working);
    bob.peer.session.session_id = fixture::session_id(9);
    bob.peer.session.display_name = "bob-2".into();
    event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: Wire::PeerJoined(bob.peer.clone()) });
    assert_eq!(s.peers.len(), 5);
    let left = Wire::PeerLeft { member_id: member_id(1), session_id: fixture::session_id(9) };
    event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: left });
    assert_eq!(s.peers.len(), 4);
    // A `now` message rings the bell and is unread.
    let mut m = fixture::incoming("team", 3, 1, "bob", "member:x", "urgent", NOW);
    m.msg_id = "fresh".into();
    m.read = false;
    let fx = event(&mut s, LocalEvent::Messages(m.clone()));
    assert!(fx.contains(&Effect::Bell));
    assert!(s.messages.find("team", "fresh").is_some());
    assert!(event(&mut s, LocalEvent::Messages(m)).is_empty(), "the same message again changes nothing");
    // A send: pending with its record, accepted, delivered, seen.
    let rec = fixture::outgoing("mesh-1", 7, 2, "carol", "ship it", NOW, SendState::Pending);
    event(
        &mut s,
        LocalEvent::Outbox {
            mesh: "team".into(),
            client_msg_id: "c-mesh-1-7".into(),
            state: SendState::Pending,
            sent: Some(Box::new(rec)),
        },
    );
    let accepted = SendState::Accepted { msg_id: "b-7".into(), recipients: 1 };
    event(
        &mut s,
        LocalEvent::Outbox {
            mesh: "team".into(),
            client_msg_id: "c-mesh-1-7".into(),
            state: accepted,
            sent: None,
        },
    );
    let state = |s: &State| {
        let i = s.messages.find("team", "b-7").unwrap();
        let Direction::Out(o) = &s.messages.all[i].dir else { panic!() };
        o.recipients[&member_id(2)]
    };
    assert_eq!(state(&s), DeliveryState::Queued);
    let receipt = |st| Wire::Receipt { msg_ids: vec!["b-7".into()], member_id: member_id(2), state: st };
    event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: receipt(ReceiptState::Delivered) });
    assert_eq!(state(&s), DeliveryState::Delivered);
    event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: receipt(ReceiptState::Seen) });
    assert_eq!(state(&s), DeliveryState::Seen);
    event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: receipt(ReceiptState::Delivered) });
    assert_eq!(state(&s), DeliveryState::Seen, "a state never goes back");
    let conv = &s.messages.all[s.messages.find("team", "b-7").unwrap()].conv;
    assert_eq!(conv.kind, ConvKind::Direct(member_id(2)));
    // Links.
    event(
        &mut s,
        LocalEvent::Links {
            mesh: "team".into(),
            state: LinkState::Disconnected,
            detail: Some("reset".into()),
        },
    );
    assert_eq!(s.mesh("team").unwrap().link, LinkState::Disconnected);
    assert!(s.events.iter().any(|e| e.kind == "link"));
}

#[test]
fn agent_loss_gap_and_recovery() {
    let mut s = standard((80, 24));
    let seq = s.seq;
    let fx = update(
        &mut s,
        Event::Agent(AgentEvent::Event {
            seq: seq + 5,
            event: Box::new(LocalEvent::Links {
                mesh: "team".into(),
                state: LinkState::Connected,
                detail: None,
            }),
        }),
    );
    assert_eq!(fx, vec![Effect::Reconnect], "a gap in the sequence resubscribes");
    update(&mut s, Event::Agent(AgentEvent::Gone { error: "connection refused".into(), retry_in_ms: 2_000 }));
    assert!(matches!(&s.agent, AgentConn::Gone { retry_at_ms, .. } if *retry_at_ms == NOW + 2_000));
    assert!(calls(&ch(&mut s, 'm')).is_empty());
    assert_eq!(ch(&mut s, 'r'), vec![Effect::Reconnect]);
    assert_eq!(s.agent, AgentConn::Connecting);
    // Back: a new snapshot replaces what was shown, and the loads start again.
    let status = StatusReply {
        agent_version: "0.1.0".into(),
        pid: 99,
        meshes: s.meshes.clone(),
        ..Default::default()
    };
    fixture::load(&mut s, Snapshot { status, peers: vec![] }, vec![], vec![], vec![]);
    assert!(matches!(s.agent, AgentConn::Up { pid: 99, .. }));
    assert!(s.peers.is_empty());
    assert_eq!(s.seq, 1);
    update(&mut s, Event::Tick(NOW + 10_000));
    assert_eq!(s.now_ms, NOW + 10_000);
}

#[test]
fn the_selection_stays_on_its_row_when_rows_move() {
    let mut s = standard((80, 24));
    ch(&mut s, '3');
    ch(&mut s, 'j');
    let picked = claudemesh_tui::rows::convs(&s)[1].key.clone();
    assert_eq!(picked.kind, ConvKind::Group("dev".into()));
    key(&mut s, KeyCode::Enter);
    // A message into another conversation puts that one on top; the open thread stays.
    let mut m = fixture::incoming("oss", 40, 3, "dave", "*", "newest", NOW + 1_000);
    m.msg_id = "newest".into();
    event(&mut s, LocalEvent::Messages(m));
    assert_ne!(claudemesh_tui::rows::convs(&s)[1].key, picked, "the rows moved");
    let shown = &claudemesh_tui::rows::convs(&s)[s.cursor(View::Messages).selected];
    assert_eq!(shown.key, picked, "the selection moved with its row");
    // Members re-sort when a role changes: the selection follows the member.
    ch(&mut s, '2');
    ch(&mut s, 'G'); // erin
    let erin = member_id(4);
    let mut info = s.members.iter().find(|m| m.member.member_id == erin).unwrap().member.clone();
    info.role = claudemesh_protocol::frames::Role::Admin;
    let fx =
        event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: Wire::MemberUpdated(info.clone()) });
    let mut members = s.members.clone();
    members.iter_mut().find(|m| m.member.member_id == erin).unwrap().member = info;
    reply(&mut s, &fx, Ok(json!(members)));
    let sel = claudemesh_tui::rows::members(&s)[s.cursor(View::Members).selected].member.member_id.clone();
    assert_eq!(sel, erin);
}

#[test]
fn a_message_into_the_open_thread_is_read_as_it_arrives() {
    let mut s = standard((80, 24));
    ch(&mut s, '3');
    key(&mut s, KeyCode::Enter);
    let open = claudemesh_tui::rows::convs(&s)[s.cursor(View::Messages).selected].key.clone();
    let ConvKind::Direct(with) = &open.kind else { panic!("{open:?}") };
    let n = fixture::member_index(with);
    let mut m = fixture::incoming("team", 41, n, "bob", "member:x", "while you read", NOW + 2_000);
    m.msg_id = "live-read".into();
    m.read = false;
    let fx = event(&mut s, LocalEvent::Messages(m));
    assert!(
        matches!(calls(&fx)[..], [AgentCall::MarkRead { msg_ids, .. }] if msg_ids == &["live-read".to_string()])
    );
    assert_eq!(s.messages.convs[&open].unread, 0);
}

#[test]
fn a_group_send_is_titled_by_its_group() {
    let mut s = standard((80, 24));
    let mut rec = fixture::outgoing("mesh-1", 9, 1, "@dev", "to the group", NOW, SendState::Pending);
    rec.target = "@ops".into();
    event(
        &mut s,
        LocalEvent::Outbox {
            mesh: "team".into(),
            client_msg_id: rec.client_msg_id.clone(),
            state: SendState::Pending,
            sent: Some(Box::new(rec)),
        },
    );
    let key = claudemesh_tui::state::ConvKey { mesh: "team".into(), kind: ConvKind::Group("ops".into()) };
    assert_eq!(s.messages.convs[&key].title, "@ops");
}

#[test]
fn repinning_a_verified_key_has_nothing_to_accept() {
    let mut s = standard((80, 24));
    ch(&mut s, '2');
    ch(&mut s, 'j'); // alice (verified)
    assert!(ch(&mut s, 'p').is_empty());
    assert_eq!(s.modal, None);
    assert!(s.toast.as_ref().unwrap().text.contains("nothing to accept"));
}

#[test]
fn a_send_cut_off_by_the_agent_going_away_keeps_the_text() {
    let mut s = standard((80, 24));
    ch(&mut s, 'j');
    ch(&mut s, 'j');
    ch(&mut s, 'm');
    typed(&mut s, "do not lose me");
    let fx = key(&mut s, KeyCode::Enter);
    update(
        &mut s,
        Event::Agent(AgentEvent::Gone { error: "agent closed the connection".into(), retry_in_ms: 500 }),
    );
    reply(&mut s, &fx, Err(CallError { code: None, message: "agent socket: broken pipe".into() }));
    let Some(Modal::Compose(c)) = &s.modal else { panic!("the box stays") };
    assert_eq!(c.body.text, "do not lose me");
    assert!(!c.sending);
    assert!(c.error.as_deref().unwrap().contains("broken pipe"));
}
