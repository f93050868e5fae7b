//! Core tests of what a dashboard relies on: `messages` subscriptions without a session see every
//! arrival once and mark nothing.

use claudemesh_protocol::frames::{Priority, Push, PushFrom, Target};
use claudemesh_protocol::local::{
    AgentCall, AgentLine, InboxParams, InboxReply, LocalEvent, SendParams, Topic,
};
use tokio::sync::{mpsc, oneshot};

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
    ) -> mpsc::Receiver<AgentLine> {
        let (tx, rx) = mpsc::channel(256);
        self.core.handle(Input::ConnOpened { conn, tx }, self.now);
        let sub = Input::Subscribe {
            conn,
            id: conn,
            topics: vec![Topic::Messages],
            session: session.map(Into::into),
            mesh: mesh.map(Into::into),
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
pub(super) fn arrivals(rx: &mut mpsc::Receiver<AgentLine>) -> Vec<String> {
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
