//! Store tests of the inbox's pages (forward with a cursor, the newest, by session, seen or
//! not) and of pruning (seen messages only, dedupe keys kept then forgotten, counters).
use super::*;
use claudemesh_protocol::frames::Priority;

fn rec(i: usize, session: &str, seen: bool) -> InboxRecord {
    InboxRecord {
        message: InboxMessage {
            msg_id: format!("m{i:05}"),
            mesh: "team".into(),
            from_member: "m".into(),
            from_session: "s".into(),
            from_name: "n".into(),
            session_name: None,
            target: "*".into(),
            priority: Priority::Next,
            body: format!("body {i}"),
            reply_to: None,
            meta: Default::default(),
            sent_at: 1_000 + i as u64,
            // Several messages share a millisecond: the order breaks ties by id.
            received_at: 1_000 + (i / 3) as u64,
            seen: false,
            read: false,
            error: None,
        },
        mesh_id: if i.is_multiple_of(2) { "mesh-a".into() } else { "mesh-b".into() },
        deliveries: [(session.to_string(), Delivery { pushed: false, pushed_at: None, seen })].into(),
        pending: false,
        replay: Some(("m".into(), format!("c{i}"))),
        box_nonce: Some(format!("n{i}")),
        resent_as: Vec::new(),
    }
}

fn filled(n: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("a.redb")).unwrap();
    let ops: Vec<StoreOp> = (0..n)
        .map(|i| StoreOp::Inbox(rec(i, if i.is_multiple_of(4) { "s1" } else { "s2" }, !i.is_multiple_of(5))))
        .collect();
    s.apply(&ops).unwrap();
    (dir, s)
}

fn body_ids(p: &InboxPage) -> Vec<String> {
    p.records.iter().map(|r| r.message.msg_id.clone()).collect()
}

/// Every page forward from the start, as one list of ids.
fn walk(s: &Store, mut q: InboxQuery) -> Vec<String> {
    q.after = Some(String::new());
    let mut out = Vec::new();
    loop {
        let p = s.inbox_page(&q).unwrap();
        assert!(p.records.len() <= q.limit);
        out.extend(body_ids(&p));
        match p.next {
            Some(n) => {
                assert!(p.more > 0);
                q.after = Some(n);
            }
            None => {
                assert_eq!(p.more, 0);
                return out;
            }
        }
    }
}

#[test]
fn pages_forward_cover_every_message_once_in_order() {
    let (_d, s) = filled(250);
    let all: Vec<String> = (0..250).map(|i| format!("m{i:05}")).collect();
    let q = InboxQuery { include_seen: true, limit: 7, max_bytes: 1 << 20, ..Default::default() };
    assert_eq!(walk(&s, q.clone()), all);
    // Narrowed to a mesh, a session, unseen ones, seen ones: the same walk, filtered.
    let mesh_a: Vec<String> = (0..250).step_by(2).map(|i| format!("m{i:05}")).collect();
    assert_eq!(walk(&s, InboxQuery { mesh_id: Some("mesh-a".into()), ..q.clone() }), mesh_a);
    let s1: Vec<String> = (0..250).step_by(4).map(|i| format!("m{i:05}")).collect();
    assert_eq!(walk(&s, InboxQuery { session: Some("s1".into()), ..q.clone() }), s1);
    let unseen: Vec<String> = (0..250).step_by(5).map(|i| format!("m{i:05}")).collect();
    assert_eq!(walk(&s, InboxQuery { include_seen: false, ..q.clone() }), unseen);
    let seen: Vec<String> = (0..250).filter(|i| i % 5 != 0).map(|i| format!("m{i:05}")).collect();
    assert_eq!(walk(&s, InboxQuery { only_seen: true, ..q.clone() }), seen);
    // A byte cap cuts a page short, never below one message.
    let tiny = walk(&s, InboxQuery { max_bytes: 1, ..q.clone() });
    assert_eq!(tiny, all);
}

#[test]
fn the_newest_page_counts_what_is_older() {
    let (_d, s) = filled(50);
    let q = InboxQuery { include_seen: true, limit: 10, max_bytes: 1 << 20, ..Default::default() };
    let p = s.inbox_page(&q).unwrap();
    let want: Vec<String> = (40..50).map(|i| format!("m{i:05}")).collect();
    assert_eq!((body_ids(&p), p.more, p.next), (want, 40, None));
    // Seen is as the query means it: by anyone, or by the session asked about.
    let unseen = ["m00040", "m00045"];
    assert!(p.records.iter().all(|r| r.message.seen != unseen.contains(&r.message.msg_id.as_str())));
}

#[test]
fn pruning_takes_seen_messages_past_the_cutoff_and_remembers_their_ids() {
    let (_d, s) = filled(30);
    let before = s.counts().unwrap().0.values().sum::<usize>();
    assert_eq!(before, 30);
    // Received before 1_005: messages 0..15; the seen ones among them go (not 0, 5, 10).
    let work = s.prune_work(1_005, 2_000, 1000).unwrap();
    assert_eq!(work.records.len(), 12);
    let ops: Vec<StoreOp> =
        work.records.iter().map(|k| StoreOp::Prune { inbox_key: k.clone(), window_ms: 10_000 }).collect();
    s.apply(&ops).unwrap();
    assert_eq!(s.counts().unwrap().0.values().sum::<usize>(), 18);
    assert!(s.inbox_get("mesh-b", "m00001").unwrap().is_none());
    assert!(s.inbox_get("mesh-a", "m00000").unwrap().is_some(), "unseen: kept");
    // Its msg_id and its sender's client id are still known: a redelivery is a duplicate.
    assert!(s.inbox_known("mesh-b", "m00001").unwrap());
    assert_eq!(
        s.replayed("mesh-b", "m", "c1").unwrap(),
        Some(FirstArrival { msg_id: "m00001".into(), nonce: Some("n1".into()) })
    );
    assert!(s.prune_work(1_005, 2_000, 1000).unwrap().records.is_empty(), "nothing left to prune");
    // Until the window is over (from its sent or received time, whichever is later).
    assert!(s.prune_work(0, 11_000, 1000).unwrap().forget.is_empty());
    let work = s.prune_work(0, 20_000, 1000).unwrap();
    assert_eq!(work.forget.len(), 12);
    let ops: Vec<StoreOp> = work.forget.into_iter().map(|time_key| StoreOp::Forget { time_key }).collect();
    s.apply(&ops).unwrap();
    assert!(!s.inbox_known("mesh-b", "m00001").unwrap());
    assert!(s.replayed("mesh-b", "m", "c1").unwrap().is_none());
    assert_eq!(
        s.replayed("mesh-a", "m", "c0").unwrap().map(|f| f.msg_id).as_deref(),
        Some("m00000"),
        "kept with its message"
    );
    // Pages never show a pruned message.
    let q = InboxQuery { include_seen: true, limit: 100, max_bytes: 1 << 20, ..Default::default() };
    assert_eq!(walk(&s, q).len(), 18);
}

#[test]
fn a_live_message_is_never_pruned_even_when_asked() {
    let (_d, s) = filled(5);
    // m00000 is unseen: a prune of it (a stale candidate) leaves it.
    s.apply(&[StoreOp::Prune { inbox_key: inbox_key("mesh-a", "m00000"), window_ms: 1 }]).unwrap();
    assert!(s.inbox_get("mesh-a", "m00000").unwrap().is_some());
    assert_eq!(s.counts().unwrap().0.values().sum::<usize>(), 5);
}
