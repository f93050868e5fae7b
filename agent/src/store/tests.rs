//! Store tests: the unseen index, release of a closed session's messages, dedupe, batches, the
//! record of sends.
use super::*;
use claudemesh_protocol::frames::Priority;

fn rec(id: &str) -> InboxRecord {
    InboxRecord {
        message: InboxMessage {
            msg_id: id.into(),
            mesh: "team".into(),
            from_member: "m".into(),
            from_session: "s".into(),
            from_name: "n".into(),
            session_name: None,
            target: "*".into(),
            priority: Priority::Next,
            body: "b".into(),
            reply_to: None,
            meta: Default::default(),
            sent_at: 1,
            received_at: 2,
            seen: false,
            read: false,
            error: None,
        },
        mesh_id: "mesh".into(),
        deliveries: Default::default(),
        pending: true,
        replay: None,
        box_nonce: None,
        resent_as: Vec::new(),
    }
}

fn delivered(id: &str, sessions: &[&str]) -> InboxRecord {
    let mut r = rec(id);
    r.pending = false;
    r.deliveries = sessions.iter().map(|s| (s.to_string(), Delivery::default())).collect();
    r
}

fn ids(v: Vec<InboxRecord>) -> Vec<String> {
    v.into_iter().map(|r| r.message.msg_id).collect()
}

#[test]
fn the_unseen_index_follows_inserts_and_marks() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    s.inbox_insert(&delivered("m1", &["s1", "s2"])).unwrap();
    s.inbox_insert(&delivered("m2", &["s1"])).unwrap();
    s.inbox_insert(&rec("m3")).unwrap(); // pending: nobody's yet
    // A session id that is a prefix of another does not see the other's keys.
    s.inbox_insert(&delivered("m4", &["s10"])).unwrap();
    assert_eq!(ids(s.inbox_unseen("s1").unwrap()), ["m1", "m2"]);
    assert_eq!(ids(s.inbox_unseen("s2").unwrap()), ["m1"]);
    assert_eq!(ids(s.inbox_unseen("s10").unwrap()), ["m4"]);
    assert!(s.inbox_unseen("nobody").unwrap().is_empty());

    let mut m1 = s.inbox_get("mesh", "m1").unwrap().unwrap();
    m1.deliveries.get_mut("s1").unwrap().seen = true;
    s.inbox_update(&m1).unwrap();
    let mut m3 = s.inbox_get("mesh", "m3").unwrap().unwrap();
    m3.deliveries.insert("s2".into(), Delivery { pushed: true, pushed_at: None, seen: false });
    s.inbox_update(&m3).unwrap();
    assert_eq!(ids(s.inbox_unseen("s1").unwrap()), ["m2"]);
    assert_eq!(ids(s.inbox_unseen("s2").unwrap()), ["m1", "m3"]);
    // A redelivered push changes nothing.
    assert!(!s.inbox_insert(&delivered("m1", &["s1"])).unwrap());
    assert_eq!(ids(s.inbox_unseen("s1").unwrap()), ["m2"]);
}

#[test]
fn a_delivery_the_record_loses_loses_its_index_entries() {
    // What the core does when a session closes with a message unseen: the delivery goes, the
    // record waits again. No index may keep the session's entry.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    s.inbox_insert(&delivered("m1", &["s1", "s2"])).unwrap();
    let mut m1 = s.inbox_get("mesh", "m1").unwrap().unwrap();
    m1.deliveries.remove("s1");
    s.inbox_update(&m1).unwrap();
    assert!(s.inbox_unseen("s1").unwrap().is_empty());
    assert_eq!(ids(s.inbox_unseen("s2").unwrap()), ["m1"], "other sessions keep theirs");
    let q = InboxQuery {
        session: Some("s1".into()),
        include_seen: true,
        limit: 10,
        max_bytes: 1 << 20,
        ..Default::default()
    };
    assert!(s.inbox_page(&q).unwrap().records.is_empty(), "nor its deliveries");
}

#[test]
fn a_store_from_before_the_index_gets_it_built_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let s = Store::open(&path).unwrap();
    s.inbox_insert(&delivered("m1", &["s1"])).unwrap();
    let mut seen = delivered("m2", &["s1"]);
    seen.deliveries.get_mut("s1").unwrap().seen = true;
    s.inbox_insert(&seen).unwrap();
    let mut out = outbox("c1");
    s.outbox_put(&out).unwrap();
    out.client_msg_id = "c2".into();
    s.outbox_put(&out).unwrap();
    // What an older agent left: no indexes, no counters, no marker.
    let w = s.db.begin_write().unwrap();
    for t in [index::ORDER, index::LIVE, index::FRESH, index::DELIVERED, index::UNSEEN] {
        w.delete_table(t).unwrap();
    }
    w.open_table(META).unwrap().retain(|_, _| false).unwrap();
    w.commit().unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(ids(s.inbox_unseen("s1").unwrap()), ["m1"]);
    let (inbox, outbox) = s.counts().unwrap();
    assert_eq!((inbox.get("mesh"), outbox.get("mesh")), (Some(&2), Some(&2)));
    assert_eq!(s.inbox_live().unwrap().0.len(), 1);
}

#[test]
fn inbox_dedupes_by_msg_id_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    assert!(s.inbox_insert(&rec("x")).unwrap());
    assert!(!s.inbox_insert(&rec("x")).unwrap(), "a redelivered push is not stored twice");
    drop(s);
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    assert_eq!(s.inbox_all().unwrap().len(), 1);
}

fn envelope(member: &str) -> claudemesh_protocol::frames::Envelope {
    claudemesh_protocol::frames::Envelope {
        member_id: member.into(),
        nonce: "n".into(),
        ciphertext: "c".into(),
    }
}

fn outbox(id: &str) -> OutboxRecord {
    OutboxRecord {
        client_msg_id: id.into(),
        mesh_id: "mesh".into(),
        to: "@ops".into(),
        target: "@ops".into(),
        priority: Priority::Now,
        plaintext: MessagePlaintext::new("", "alice", "hello ops"),
        envelopes: vec![envelope("m_1")],
        created_at: 7,
        attempts: 0,
    }
}

#[test]
fn outbox_counts_follow_puts_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    s.outbox_put(&outbox("c1")).unwrap();
    s.outbox_put(&outbox("c1")).unwrap(); // the same send again counts once
    s.outbox_put(&outbox("c2")).unwrap();
    assert_eq!(s.outbox_count().unwrap().get("mesh"), Some(&2));
    s.outbox_finish("c1", SendState::Failed { error: "x".into() }).unwrap();
    s.outbox_finish("c1", SendState::Failed { error: "x".into() }).unwrap();
    assert_eq!(s.outbox_count().unwrap().get("mesh"), Some(&1));
    s.outbox_finish("c2", SendState::Failed { error: "x".into() }).unwrap();
    assert!(s.outbox_count().unwrap().is_empty());
}

#[test]
fn a_send_is_recorded_with_its_body_and_its_recipients_follow_a_reseal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    let plaintext = MessagePlaintext::new("", "alice", "hello ops");
    let mut out = OutboxRecord {
        client_msg_id: "c1".into(),
        mesh_id: "mesh".into(),
        to: "@ops".into(),
        target: "@ops".into(),
        priority: Priority::Now,
        plaintext,
        envelopes: vec![envelope("m_1")],
        created_at: 7,
        attempts: 0,
    };
    s.apply(&[StoreOp::Outbox(out.clone())]).unwrap();
    let first = s.sent_list(Some("mesh")).unwrap();
    assert_eq!(first.len(), 1);
    let r = &first[0];
    assert_eq!((r.body.as_str(), r.priority, r.target.as_str()), ("hello ops", Priority::Now, "@ops"));
    assert_eq!((r.from_session.clone(), r.recipient_ids.clone()), (None, vec!["m_1".to_string()]));
    // Sealed again for a fresher directory: the record lists whom it is sealed for now.
    out.envelopes = vec![envelope("m_1"), envelope("m_2")];
    s.outbox_update(&out).unwrap();
    assert_eq!(s.sent_list(None).unwrap()[0].recipient_ids, ["m_1", "m_2"]);
    let accepted = SendState::Accepted { msg_id: "msg".into(), recipients: 2 };
    s.apply(&[StoreOp::OutboxFinish { client_msg_id: "c1".into(), state: accepted.clone() }]).unwrap();
    let done = &s.sent_list(None).unwrap()[0];
    assert_eq!(
        (done.state.clone(), done.body.as_str(), done.recipient_ids.len()),
        (accepted, "hello ops", 2)
    );
    assert!(s.sent_list(Some("other")).unwrap().is_empty());
}
