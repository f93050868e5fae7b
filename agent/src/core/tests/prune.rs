//! Core tests of pruning: seen messages past the TTL go, unseen ones stay, and a pruned
//! message redelivered (same msg_id), resent (sealed again, new msg_id) or replayed (same box,
//! new msg_id) is never shown again; a resent message is dropped before it is pruned too.

use claudemesh_protocol::limits::REPLAY_WINDOW_SECS;

use super::*;

const SID: &str = "00000001-0000-4000-8000-000000000001";

impl T {
    /// Pushes alice's box `client_id` (sent at `sent_at`, sealed now) as broker message
    /// `msg_id`; returns the push.
    fn push_box(&mut self, msg_id: &str, client_id: &str, sent_at: u64) -> Push {
        let push = self.seal_box(msg_id, client_id, sent_at);
        self.deliver(push.clone());
        push
    }

    /// Alice's box `client_id`, sealed now, as broker message `msg_id`.
    fn seal_box(&self, msg_id: &str, client_id: &str, sent_at: u64) -> Push {
        let target = Target::Member("m_bob".into());
        let mut plain = MessagePlaintext::new("s-alice".to_string(), "alice".to_string(), "once".to_string())
            .addressed("m_alice", client_id, Priority::Now, target.to_string(), sent_at);
        plain.to_member = "m_bob".into();
        let sealed = seal_message(&plain, self.bob.public(), &self.alice).unwrap();
        Push {
            msg_id: msg_id.into(),
            client_msg_id: client_id.into(),
            from: PushFrom { member_id: "m_alice".into(), session_id: "s-alice".into() },
            target,
            priority: Priority::Now,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            sent_at,
        }
    }

    /// Hands `push` to the core as the broker would; asserts it was acknowledged.
    fn deliver(&mut self, push: Push) {
        let (stored, mut rx) = oneshot::channel();
        let event = UplinkEvent::Push { push: Box::new(push), stored };
        self.core.handle(Input::Uplink { mesh: MESH.into(), event }, self.now);
        self.core.finish_turn();
        assert_eq!(rx.try_recv(), Ok(true), "acknowledged");
    }

    fn take_confirm(&mut self) -> InboxReply {
        let r = self.take(SID);
        if let Some(lease) = r.lease {
            let _: ConfirmReply = self.call(1, AgentCall::Confirm { lease, msg_ids: None }).unwrap();
        }
        r
    }

    fn kept(&self) -> usize {
        self.core.store.counts().unwrap().0.values().sum()
    }
}

#[test]
fn seen_messages_past_the_ttl_are_pruned_and_never_shown_again() {
    let mut t = setup(&[]);
    t.register(1, SID);
    let now = now_ms();
    let first_a = t.push_box("msg_a", "c_a", now);
    t.push_box("msg_b", "c_b", now);
    assert_eq!(t.take_confirm().messages.len(), 2);
    t.push_box("msg_c", "c_c", now); // unseen: kept whatever its age
    std::thread::sleep(Duration::from_millis(3));
    t.core.handle(Input::Retention { ttl_secs: 0, every_secs: 3600 }, t.now);
    t.tick(Duration::from_millis(1));
    assert_eq!(t.kept(), 1, "the two seen ones went");
    assert_eq!(t.core.state.inbox_total.get(MESH), Some(&1), "status counts follow");
    assert!(t.core.store.inbox_get(MESH, "msg_c").unwrap().is_some());
    // Seen now, but the next prune is due in an hour.
    t.push_box("msg_d", "c_d", now);
    assert_eq!(t.take_confirm().messages.len(), 2);
    std::thread::sleep(Duration::from_millis(3));
    t.tick(Duration::from_secs(60));
    assert_eq!(t.kept(), 2, "not due yet");
    t.tick(Duration::from_secs(3600));
    assert_eq!(t.kept(), 0);

    // The broker pushes a pruned message again (its ack was lost): a duplicate, dropped.
    t.push_box("msg_a", "c_a", now);
    assert_eq!(t.kept(), 0);
    assert!(t.take(SID).messages.is_empty());
    // Sealed again under a new msg_id: its sender's retry, a duplicate, dropped.
    t.push_box("msg_a1", "c_a", now);
    assert_eq!(t.kept(), 0);
    assert!(t.take(SID).messages.is_empty());
    // The same box under a new msg_id: a replay, refused.
    t.deliver(Push { msg_id: "msg_a2".into(), ..first_a });
    let r = t.take_confirm();
    let replay = r.messages.iter().find(|m| m.msg_id == "msg_a2").unwrap();
    assert!(
        replay.body.is_empty() && replay.error.as_deref().is_some_and(|e| e.contains("replay")),
        "{replay:?}"
    );
    // Older than the agent remembers ids: refused by its age.
    t.push_box("msg_old", "c_old", now - (REPLAY_WINDOW_SECS + 60) * 1000);
    let r = t.take_confirm();
    let old = r.messages.iter().find(|m| m.msg_id == "msg_old").unwrap();
    assert!(old.body.is_empty() && old.error.is_some(), "{old:?}");
}

#[test]
fn a_resent_message_is_dropped_as_a_duplicate_and_the_same_box_again_is_a_replay() {
    // The broker pushes before its commit's sync; a failed commit makes the sender resend,
    // sealed again, and the broker gives it a new msg_id.
    let mut t = setup(&[]);
    t.register(1, SID);
    let now = now_ms();
    let first = t.push_box("msg_1", "c_1", now);
    let shown = t.take_confirm();
    assert_eq!(ids(&shown), ["msg_1"]);
    t.push_box("msg_1b", "c_1", now);
    assert!(t.take(SID).messages.is_empty(), "the resend is not shown again");
    assert!(t.core.store.inbox_get(MESH, "msg_1b").unwrap().is_none(), "nor stored");
    assert_eq!(t.kept(), 1);
    // Within one turn too: both arrive before the turn commits.
    let a = t.seal_box("msg_2", "c_2", now);
    let b = t.seal_box("msg_2b", "c_2", now);
    for p in [a, b] {
        let (stored, _rx) = oneshot::channel();
        let event = UplinkEvent::Push { push: Box::new(p), stored };
        t.core.handle(Input::Uplink { mesh: MESH.into(), event }, t.now);
    }
    t.core.finish_turn();
    assert_eq!(ids(&t.take_confirm()), ["msg_2"]);
    // A broker naming a message with the store's key separator: dropped, not stored.
    t.deliver(Push { msg_id: "msg\u{1f}x".into(), ..first.clone() });
    assert!(t.take(SID).messages.is_empty());
    assert_eq!(t.kept(), 2);
    // A broker replaying the first box under a new id: stored refused, with the reason.
    t.deliver(Push { msg_id: "msg_1r".into(), ..first });
    let r = t.take_confirm();
    let replay = r.messages.iter().find(|m| m.msg_id == "msg_1r").unwrap();
    assert!(replay.error.as_deref().is_some_and(|e| e.contains("replay of message msg_1")), "{replay:?}");
}

/// The `seen` receipts the core asked its links to send since the last call.
fn receipts_sent(t: &mut T) -> Vec<String> {
    let mut ids = Vec::new();
    while let Ok(cmd) = t._uplink.try_recv() {
        if let UplinkCmd::Receipt(r) = cmd {
            ids.extend(r);
        }
    }
    ids
}

#[test]
fn a_dropped_resend_is_reported_seen_under_the_id_its_sender_knows() {
    let mut t = setup(&[]);
    t.register(1, SID);
    let now = now_ms();
    // Unseen when the resend comes: both ids are reported seen when the message is.
    t.push_box("msg_u", "c_u", now);
    t.push_box("msg_u2", "c_u", now);
    receipts_sent(&mut t);
    assert_eq!(ids(&t.take_confirm()), ["msg_u"], "shown once");
    assert_eq!(receipts_sent(&mut t), ["msg_u", "msg_u2"]);
    // Seen already: the resend's id is reported seen at once, and nothing is shown.
    t.push_box("msg_u3", "c_u", now);
    assert_eq!(receipts_sent(&mut t), ["msg_u3"]);
    assert!(t.take(SID).messages.is_empty());
}
