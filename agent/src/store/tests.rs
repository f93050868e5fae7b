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
fn a_closed_sessions_unseen_messages_wait_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    s.inbox_insert(&delivered("m1", &["s1", "s2"])).unwrap();
    let mut seen = delivered("m2", &["s1"]);
    seen.deliveries.get_mut("s1").unwrap().seen = true;
    s.inbox_insert(&seen).unwrap();
    assert_eq!(s.inbox_release(Some("s1")).unwrap().len(), 1, "only what s1 never saw");
    assert!(s.inbox_unseen("s1").unwrap().is_empty());
    let m1 = s.inbox_get("mesh", "m1").unwrap().unwrap();
    assert!(m1.pending && !m1.deliveries.contains_key("s1"));
    assert_eq!(ids(s.inbox_unseen("s2").unwrap()), ["m1"], "other sessions keep theirs");
    assert!(!s.inbox_get("mesh", "m2").unwrap().unwrap().pending);
    assert_eq!(s.inbox_release(Some("s1")).unwrap().len(), 0);
    // At agent start every session is gone.
    assert_eq!(s.inbox_release(None).unwrap().len(), 1);
    assert!(s.inbox_unseen("s2").unwrap().is_empty());
    assert!(s.inbox_get("mesh", "m1").unwrap().unwrap().deliveries.is_empty());
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
    // What an older agent left: no index, no marker.
    let w = s.db.begin_write().unwrap();
    w.delete_table(UNSEEN).unwrap();
    w.open_table(META).unwrap().remove(UNSEEN_BUILT).unwrap();
    w.commit().unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(ids(s.inbox_unseen("s1").unwrap()), ["m1"]);
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
