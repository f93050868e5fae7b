//! Core tests of what a dashboard relies on: `messages` subscriptions without a session see every
//! arrival once and mark nothing; a person's read marks change no delivery; a new send reaches
//! `outbox` subscribers whole.

use claudemesh_protocol::frames::{ErrorCode, PeerSession, Priority, Push, PushFrom, SessionInfo, Target};
use claudemesh_protocol::local::{
    AgentCall, AgentLine, ConfirmReply, InboxParams, InboxReply, LocalEvent, MarkReadReply, SendParams,
    SendReply, SendState, SentRecord, Topic,
};
use tokio::sync::oneshot;

use super::{T, setup};
use crate::core::{Input, UplinkEvent};
use crate::mesh::UplinkCmd;

const S1: &str = "00000001-0000-4000-8000-000000000001";
const S2: &str = "00000002-0000-4000-8000-000000000002";
const S3: &str = "00000003-0000-4000-8000-000000000003";

impl T {
    /// Opens connection `conn` and subscribes it to `messages` of `session` (or, with `None`, to
    /// every arrival, as a dashboard does); returns where its lines go.
    pub(super) fn watch(
        &mut self,
        conn: u64,
        session: Option<&str>,
        mesh: Option<&str>,
    ) -> crate::socket_bounds::ClientRx {
        self.watch_topics(conn, vec![Topic::Messages], session, mesh)
    }

    /// Opens connection `conn` and subscribes it to `topics`; returns where its lines go.
    pub(super) fn watch_topics(
        &mut self,
        conn: u64,
        topics: Vec<Topic>,
        session: Option<&str>,
        mesh: Option<&str>,
    ) -> crate::socket_bounds::ClientRx {
        let (tx, rx) = crate::socket_bounds::channel(Default::default());
        self.core.handle(Input::ConnOpened { conn, tx }, self.now);
        let sub = Input::Subscribe {
            conn,
            id: conn,
            topics,
            session: session.map(Into::into),
            mesh: mesh.map(Into::into),
            service: None,
        };
        self.core.handle(sub, self.now);
        self.core.finish_turn();
        rx
    }

    /// A push from alice whose box cannot be opened; returns its msg_id.
    fn push_garbage(&mut self) -> String {
        self.n += 1;
        let id = format!("msg_{}", self.n);
        let push = Push {
            msg_id: id.clone(),
            client_msg_id: id.clone(),
            from: PushFrom { member_id: "m_alice".into(), session_id: "s-alice".into() },
            target: Target::Member("m_bob".into()),
            priority: Priority::Now,
            nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            ciphertext: "bm90IGEgYm94IGF0IGFsbA==".into(),
            sent_at: 1,
        };
        let (stored, _rx) = oneshot::channel();
        let event = UplinkEvent::Push { push: Box::new(push), stored };
        self.core.handle(Input::Uplink { mesh: super::MESH.into(), event }, self.now);
        self.core.finish_turn();
        id
    }

    /// Every message of the inbox, seen or not, read from the store as `inbox {all}` does.
    pub(super) fn stored(&self, msg_id: &str) -> claudemesh_protocol::local::InboxMessage {
        let recs = self.core.store.inbox_all().unwrap();
        recs.into_iter().find(|r| r.message.msg_id == msg_id).map(|r| r.message).unwrap()
    }
}

/// The msg_ids of the `messages` events written to a connection so far (replies skipped).
pub(super) fn arrivals(rx: &mut crate::socket_bounds::ClientRx) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(line) = rx.try_recv() {
        if let AgentLine::Event { event, .. } = line
            && let LocalEvent::Messages(m) = *event
        {
            out.push(m.msg_id);
        }
    }
    out
}

#[test]
fn a_sessionless_subscriber_sees_every_arrival_once_and_marks_nothing() {
    let mut t = setup(&[]);
    let mut dash = t.watch(20, None, None);
    let mut dash_team = t.watch(21, None, Some("team"));
    // To the member while no session is open: it waits, and the dashboard sees it at once.
    let waiting = t.push(Target::Member("m_bob".into()), Priority::Now);
    assert_eq!(arrivals(&mut dash), std::slice::from_ref(&waiting));
    assert_eq!(arrivals(&mut dash_team), std::slice::from_ref(&waiting), "its mesh");
    // A session opens and subscribes: it gets its push; the dashboard gets no second copy.
    t.register(1, S1);
    let mut own = t.watch(30, Some(S1), None);
    assert_eq!(arrivals(&mut own), std::slice::from_ref(&waiting));
    let next = t.push(Target::Member("m_bob".into()), Priority::Now);
    assert_eq!(
        arrivals(&mut own),
        std::slice::from_ref(&next),
        "the session's own subscriber still gets its push"
    );
    // One that cannot be opened is an arrival too.
    let broken = t.push_garbage();
    assert_eq!(arrivals(&mut dash), [next.clone(), broken.clone()], "once each, nothing again");
    let kept = t.stored(&broken);
    assert!(kept.body.is_empty() && kept.error.is_some(), "stored empty, with the reason: {kept:?}");
    // Nothing the dashboard saw became seen or sent a receipt.
    let mut receipts = 0;
    while let Ok(cmd) = t._uplink.try_recv() {
        receipts += usize::from(matches!(cmd, UplinkCmd::Receipt(_)));
    }
    assert_eq!(receipts, 0);
    assert!(!t.stored(&waiting).seen && !t.stored(&next).seen);
    let took = t.take(S1);
    assert_eq!(took.messages.len(), 3, "the session still takes all three: {took:?}");
}

#[test]
fn a_copy_for_a_sibling_session_is_an_arrival_too() {
    let mut t = setup(&[]);
    t.register(1, S1);
    t.register(2, S2);
    t.register(3, S3);
    let mut dash = t.watch(20, None, None);
    let mut sibling = t.watch(30, Some(S2), None);
    let mut other = t.watch(31, Some(S3), None);
    let send = SendParams {
        to: "*".into(),
        message: "lunch?".into(),
        priority: Priority::Now,
        mesh: None,
        from_session: Some(S1.into()),
        reply_to: None,
        idempotency_key: None,
    };
    let _: serde_json::Value = t.call(1, AgentCall::Send(send)).unwrap();
    let seen_by_dash = arrivals(&mut dash);
    assert_eq!(seen_by_dash.len(), 1, "{seen_by_dash:?}");
    assert!(seen_by_dash[0].starts_with("local-"));
    assert_eq!(arrivals(&mut sibling), seen_by_dash, "each sibling's push");
    assert_eq!(arrivals(&mut other), seen_by_dash, "one arrival, however many sessions it is pushed to");
    let own: InboxReply = t
        .call(1, AgentCall::Inbox(InboxParams { session: Some(S1.into()), take: true, ..Default::default() }))
        .unwrap();
    assert!(own.messages.is_empty(), "the sender does not get its own message");
}

fn mark_read(t: &mut T, ids: &[&str], mesh: Option<&str>) -> Result<usize, crate::error::ApiError> {
    let call = AgentCall::MarkRead {
        msg_ids: ids.iter().map(|s| (*s).to_string()).collect(),
        mesh: mesh.map(Into::into),
    };
    t.call::<MarkReadReply>(5, call).map(|r| r.marked)
}

#[test]
fn a_read_mark_is_the_persons_and_changes_no_delivery() {
    let mut t = setup(&[]);
    let a = t.push(Target::Member("m_bob".into()), Priority::Now);
    assert_eq!(mark_read(&mut t, &[&a, "msg_nope", &a], None).unwrap(), 1, "once, unknown ids count nothing");
    assert_eq!(mark_read(&mut t, &[&a], Some("team")).unwrap(), 0, "already read");
    assert_eq!(mark_read(&mut t, &["msg_nope"], None).unwrap(), 0);
    assert_eq!(mark_read(&mut t, &[&a], Some("elsewhere")).unwrap_err().0, ErrorCode::NotFound);
    let m = t.stored(&a);
    assert!(m.read && !m.seen, "{m:?}");
    assert!(!t._uplink.try_recv().is_ok_and(|c| matches!(c, UplinkCmd::Receipt(_))), "no receipt");
    // A session still gets it pushed, then takes and confirms it: seen, and still read.
    t.register(1, S1);
    let mut own = t.watch(30, Some(S1), None);
    assert_eq!(arrivals(&mut own), std::slice::from_ref(&a));
    let took = t.take(S1);
    assert_eq!((took.messages.len(), took.messages[0].read), (1, true));
    let _: ConfirmReply =
        t.call(1, AgentCall::Confirm { lease: took.lease.unwrap(), msg_ids: None }).unwrap();
    let m = t.stored(&a);
    assert!(m.read && m.seen, "{m:?}");
    // One seen before it is read (no longer live) takes the mark as well.
    let b = t.push(Target::Member("m_bob".into()), Priority::Low);
    let took = t.take(S1);
    let _: ConfirmReply =
        t.call(1, AgentCall::Confirm { lease: took.lease.unwrap(), msg_ids: None }).unwrap();
    assert_eq!(mark_read(&mut t, &[&b], None).unwrap(), 1);
    let m = t.stored(&b);
    assert!(m.read && m.seen, "{m:?}");
}

#[test]
fn seen_and_read_in_one_turn_both_stay() {
    let mut t = setup(&[]);
    t.register(1, S1);
    let a = t.push(Target::Member("m_bob".into()), Priority::Low);
    let lease = t.take(S1).lease.unwrap();
    // One turn: the confirm makes it seen (and drops it from the live set), then it is read.
    let (confirm, mut c) = oneshot::channel();
    t.core.handle(
        Input::Call { conn: 1, call: AgentCall::Confirm { lease, msg_ids: None }, reply: confirm },
        t.now,
    );
    let (read, mut r) = oneshot::channel();
    let call = AgentCall::MarkRead { msg_ids: vec![a.clone()], mesh: None };
    t.core.handle(Input::Call { conn: 5, call, reply: read }, t.now);
    t.core.finish_turn();
    assert!(c.try_recv().unwrap().is_ok());
    assert_eq!(r.try_recv().unwrap().unwrap()["marked"], 1);
    let m = t.stored(&a);
    assert!(m.read && m.seen, "neither write undid the other: {m:?}");
}

/// The events written to a connection so far (replies skipped).
fn events(rx: &mut crate::socket_bounds::ClientRx) -> Vec<LocalEvent> {
    let mut out = Vec::new();
    while let Ok(line) = rx.try_recv() {
        if let AgentLine::Event { event, .. } = line {
            out.push(*event);
        }
    }
    out
}

#[test]
fn a_new_send_reaches_outbox_subscribers_whole_and_its_end_plainly() {
    let mut t = setup(&[]);
    t.register(1, S1);
    let mut rx = t.watch_topics(40, vec![Topic::Outbox], None, Some("team"));
    let send = SendParams {
        to: "alice".into(),
        message: "ship it".into(),
        priority: Priority::Low,
        mesh: None,
        from_session: Some(S1.into()),
        reply_to: None,
        idempotency_key: None,
    };
    let reply: SendReply = t.call(1, AgentCall::Send(send)).unwrap();
    let id = reply.id.clone().unwrap();
    let record = SentRecord {
        client_msg_id: id.clone(),
        mesh_id: super::MESH.into(),
        to: "alice".into(),
        created_at: 0,
        body: "ship it".into(),
        priority: Priority::Low,
        target: reply.target.clone(),
        from_session: Some(S1.into()),
        recipient_ids: vec!["m_alice".into()],
        state: SendState::Pending,
    };
    let got = events(&mut rx);
    let [LocalEvent::Outbox { mesh, client_msg_id, state: SendState::Pending, sent: Some(sent) }] = &got[..]
    else {
        panic!("{got:?}")
    };
    assert_eq!((mesh.as_str(), client_msg_id), ("team", &id));
    assert_eq!(SentRecord { created_at: 0, ..(**sent).clone() }, record);
    // The broker took it: its end carries no record.
    let accepted = SendState::Accepted { msg_id: "msg_x".into(), recipients: 1 };
    let event = UplinkEvent::Outbox { client_msg_id: id.clone(), state: accepted.clone() };
    t.core.handle(Input::Uplink { mesh: super::MESH.into(), event }, t.now);
    t.core.finish_turn();
    let got = events(&mut rx);
    assert!(
        matches!(&got[..], [LocalEvent::Outbox { state, sent: None, .. }] if state == &accepted),
        "{got:?}"
    );
    let kept = t.core.store.sent_list(None).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(SentRecord { created_at: 0, ..kept[0].clone() }, SentRecord { state: accepted, ..record });
}

#[test]
fn sends_made_in_one_millisecond_keep_their_order() {
    let mut t = setup(&[]);
    let bodies: Vec<String> = (0..8).map(|i| format!("step {i}")).collect();
    // One turn, as a burst of concurrent calls shares one: well within a millisecond.
    let mut replies = Vec::new();
    for body in &bodies {
        let send = SendParams {
            to: "alice".into(),
            message: body.clone(),
            priority: Priority::Next,
            mesh: None,
            from_session: None,
            reply_to: None,
            idempotency_key: None,
        };
        let (reply, rx) = oneshot::channel();
        t.core.handle(Input::Call { conn: 1, call: AgentCall::Send(send), reply }, t.now);
        replies.push(rx);
    }
    t.core.finish_turn();
    assert!(replies.iter_mut().all(|r| r.try_recv().is_ok_and(|v| v.is_ok())));
    let kept: Vec<String> = t.core.store.sent_list(None).unwrap().into_iter().map(|r| r.body).collect();
    assert_eq!(kept, bodies);
    let queued: Vec<String> =
        t.core.store.outbox_for(super::MESH).unwrap().into_iter().map(|r| r.plaintext.body).collect();
    assert_eq!(queued, bodies, "the outbox drains in the same order");
}

/// A session of the fixture's mesh, as the broker lists it.
fn listed(id: &str, name: &str, status: claudemesh_protocol::frames::SessionStatus) -> PeerSession {
    PeerSession {
        member_id: "m_alice".into(),
        session: SessionInfo {
            session_id: id.into(),
            display_name: name.into(),
            status,
            ..Default::default()
        },
        connected_since: 1,
    }
}

#[test]
fn a_full_peer_list_reaches_presence_subscribers_as_its_changes() {
    use claudemesh_protocol::frames::{Event, SessionStatus};
    let mut t = setup(&[]);
    let mut dash = t.watch_topics(30, vec![Topic::Presence], None, None);
    let list = |t: &mut T, peers: Vec<PeerSession>| {
        let event = UplinkEvent::Peers { sessions: peers, refresh: false, stale: false, done: None };
        t.core.handle(Input::Uplink { mesh: super::MESH.into(), event }, t.now);
        t.core.finish_turn();
    };
    // The link (re)connected: its list arrives whole; the dashboard hears of each session.
    list(&mut t, vec![listed(S1, "one", SessionStatus::Idle), listed(S2, "two", SessionStatus::Idle)]);
    let mut joined: Vec<String> = events(&mut dash)
        .into_iter()
        .filter_map(|e| match e {
            LocalEvent::Presence { event: Event::PeerJoined(p), .. } => Some(p.session.display_name),
            _ => None,
        })
        .collect();
    joined.sort();
    assert_eq!(joined, ["one", "two"]);
    // The same list again says nothing; a changed one says only what changed.
    list(&mut t, vec![listed(S1, "one", SessionStatus::Idle), listed(S2, "two", SessionStatus::Idle)]);
    assert!(events(&mut dash).is_empty());
    list(&mut t, vec![listed(S1, "one", SessionStatus::Working), listed(S3, "three", SessionStatus::Idle)]);
    let got = events(&mut dash);
    assert!(got.iter().any(|e| matches!(e, LocalEvent::Presence { event: Event::PeerUpdated(p), .. } if p.session.session_id == S1)));
    assert!(got.iter().any(|e| matches!(e, LocalEvent::Presence { event: Event::PeerJoined(p), .. } if p.session.session_id == S3)));
    // S2 is missing: not announced as gone (after a broker restart its agent may be on its way
    // back); the broker's own `peer_left` says so when it does leave.
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn a_presence_reset_marks_the_view_stale_and_a_watched_mesh_is_refreshed_whole() {
    use claudemesh_protocol::frames::{Event, SessionStatus};
    let mut t = setup(&[]);
    let uplink = |t: &mut T, event: UplinkEvent| {
        t.core.handle(Input::Uplink { mesh: super::MESH.into(), event }, t.now);
        t.core.finish_turn();
    };
    let peers = vec![listed(S1, "one", SessionStatus::Idle), listed(S2, "two", SessionStatus::Idle)];
    uplink(&mut t, UplinkEvent::Peers { sessions: peers, refresh: false, stale: false, done: None });
    while t._uplink.try_recv().is_ok() {}
    // Nobody watches presence: the view goes stale and nothing is listed until it is needed.
    uplink(&mut t, UplinkEvent::Events(vec![Event::PresenceReset {}]));
    assert!(t.core.state.meshes[super::MESH].presence_stale);
    assert!(t._uplink.try_recv().is_err(), "an unwatched mesh is refreshed only on demand");
    // A dashboard watches: it hears of the reset and the link is asked for a refresh.
    let mut dash = t.watch_topics(30, vec![Topic::Presence], None, None);
    uplink(&mut t, UplinkEvent::Events(vec![Event::PresenceReset {}]));
    let got = events(&mut dash);
    assert!(
        got.iter().any(|e| matches!(e, LocalEvent::Presence { event: Event::PresenceReset {}, .. })),
        "{got:?}"
    );
    assert!(matches!(t._uplink.try_recv(), Ok(UplinkCmd::RefreshPresence(None))));
    // The refresh's list is whole: S2, missing from it, is announced gone; the view is fresh.
    let (done, applied) = tokio::sync::oneshot::channel();
    let peers = vec![listed(S1, "one", SessionStatus::Idle)];
    uplink(&mut t, UplinkEvent::Peers { sessions: peers, refresh: true, stale: false, done: Some(done) });
    let got = events(&mut dash);
    assert!(
        got.iter().any(|e| matches!(e, LocalEvent::Presence { event: Event::PeerLeft { session_id, .. }, .. } if session_id == S2)),
        "{got:?}"
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(!t.core.state.meshes[super::MESH].presence_stale);
    assert!(applied.blocking_recv().is_ok(), "the refresh's waiter is answered once applied");
    // A reset came during a multi-page walk: its list is taken, the view stays stale.
    let peers = vec![listed(S1, "one", SessionStatus::Idle)];
    uplink(&mut t, UplinkEvent::Peers { sessions: peers, refresh: true, stale: true, done: None });
    assert!(t.core.state.meshes[super::MESH].presence_stale);
}
