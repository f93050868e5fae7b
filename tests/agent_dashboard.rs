//! What the dashboard (`claudemesh tui`) relies on, end to end on a real broker and real agents:
//! a `messages` subscription without a session sees every arrival once and marks nothing, a
//! sender's `presence` subscription sees its message delivered, then seen, and a person's read
//! marks show in the inbox without changing delivery, and this machine's sends are listed with
//! their bodies (`sent`) and told live on `outbox`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_agent::AgentClient;
use claudemesh_protocol::frames::{Event, Priority, ReceiptState};
use claudemesh_protocol::local::{
    AgentCall, InboxMessage, InboxParams, InboxReply, LocalEvent, MarkReadReply, SendState, SentRecord,
    SentReply, Topic,
};
use common::*;

const BOB_S: &str = "000000b0-5e55-4000-8000-000000000000";

/// The messages events on `c`: waits (10 s at most) until `want` came, then `settle_ms` more
/// for any that should not.
async fn messages(c: &mut AgentClient, want: usize, settle_ms: u64) -> Vec<InboxMessage> {
    let mut out = Vec::new();
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut settling = false;
    loop {
        if out.len() >= want && !settling {
            settling = true;
            deadline = tokio::time::Instant::now() + Duration::from_millis(settle_ms);
        }
        match tokio::time::timeout_at(deadline, c.next_event()).await {
            Ok(Ok((_, _, LocalEvent::Messages(m)))) => out.push(m),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscription ended: {e}"),
            Err(_) => return out,
        }
    }
}

fn bodies_of(v: &[InboxMessage]) -> Vec<&str> {
    v.iter().map(|m| m.body.as_str()).collect()
}

/// The whole inbox, seen or not, as `claudemesh inbox --all` reads it.
async fn whole_inbox(c: &mut AgentClient) -> InboxReply {
    c.request(AgentCall::Inbox(InboxParams { all: true, ..Default::default() })).await.unwrap()
}

#[tokio::test]
async fn a_dashboard_sees_each_arrival_once_and_marks_nothing() {
    let w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (bob, mut b) = connected_agent(&w, "bob").await;
    let mut dash = bob.client().await;
    dash.subscribe(vec![Topic::Messages], None, None).await.unwrap();

    // To bob the member, with no session of his open: it waits, and the dashboard sees it.
    let r = a.call(send_call("bob", "while nobody is here", Priority::Now, None)).await.unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let got = messages(&mut dash, 1, 500).await;
    assert_eq!(bodies_of(&got), ["while nobody is here"], "exactly once");
    assert!(!got[0].seen);

    // A session opens and subscribes to its own messages: it gets the push, the dashboard
    // no second copy.
    register(&mut b, BOB_S, "bob", &[]).await;
    let mut own = bob.client().await;
    own.subscribe(vec![Topic::Messages], Some(BOB_S.into()), None).await.unwrap();
    assert_eq!(bodies_of(&messages(&mut own, 1, 300).await), ["while nobody is here"]);
    a.call(send_call("bob", "now you are", Priority::Now, None)).await.unwrap();
    assert_eq!(bodies_of(&messages(&mut own, 1, 300).await), ["now you are"], "its push");
    assert_eq!(bodies_of(&messages(&mut dash, 1, 500).await), ["now you are"], "once, and only the new one");

    // Neither is seen, and alice was told delivered, never seen.
    let all = whole_inbox(&mut b).await;
    assert_eq!(all.messages.len(), 2);
    assert!(all.messages.iter().all(|m| !m.seen), "{all:?}");
    let mut state = serde_json::Value::Null;
    for _ in 0..200 {
        let st = a.call(AgentCall::MessageStatus { msg_id: id.clone() }).await.unwrap();
        state = st["recipient_states"][0]["state"].clone();
        if state == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state, "delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = a.call(AgentCall::MessageStatus { msg_id: id }).await.unwrap();
    assert_eq!(st["recipient_states"][0]["state"], "delivered", "no receipt: {st}");
    // The session still takes both.
    assert_eq!(take_and_confirm(&mut b, BOB_S).await.messages.len(), 2);
}

/// The `receipt` events on `c`'s `presence` subscription within 10 s, until `want` came.
async fn receipts(c: &mut AgentClient, want: usize) -> Vec<(Vec<String>, String, ReceiptState)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < want {
        match tokio::time::timeout_at(deadline, c.next_event()).await {
            Ok(Ok((
                _,
                _,
                LocalEvent::Presence { event: Event::Receipt { msg_ids, member_id, state }, .. },
            ))) => out.push((msg_ids, member_id, state)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscription ended: {e}"),
            Err(_) => break,
        }
    }
    out
}

#[tokio::test]
async fn a_sender_sees_delivered_then_seen_live() {
    let w = World::start().await;
    let (alice, mut a) = connected_agent(&w, "alice").await;
    let (_bob, mut b) = connected_agent(&w, "bob").await;
    let bob_id = b.call(AgentCall::Meshes).await.unwrap()[0]["member_id"].as_str().unwrap().to_string();
    let mut watch = alice.client().await;
    watch.subscribe(vec![Topic::Presence], None, None).await.unwrap();
    let r = a.call(send_call("bob", "how far did it get?", Priority::Now, None)).await.unwrap();
    let ack_id = loop {
        let st = a.call(AgentCall::MessageStatus { msg_id: r["id"].as_str().unwrap().into() }).await.unwrap();
        if let Some(id) = st["msg_id"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // Bob's agent stored it (no session of his is open): delivered, not seen.
    let got = receipts(&mut watch, 1).await;
    assert_eq!(got, [(vec![ack_id.clone()], bob_id.clone(), ReceiptState::Delivered)]);
    // A session of his shows it: seen.
    register(&mut b, BOB_S, "bob", &[]).await;
    assert_eq!(take_and_confirm(&mut b, BOB_S).await.messages.len(), 1);
    let got = receipts(&mut watch, 1).await;
    assert_eq!(got, [(vec![ack_id], bob_id, ReceiptState::Seen)]);
}

#[tokio::test]
async fn a_read_mark_shows_in_the_inbox_and_leaves_the_session_its_message() {
    let w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (_bob, mut b) = connected_agent(&w, "bob").await;
    a.call(send_call("bob", "read me later", Priority::Next, None)).await.unwrap();
    let id = wait_inbox(&mut b, None, 1).await.messages[0].msg_id.clone();
    let r: MarkReadReply = b
        .request(AgentCall::MarkRead { msg_ids: vec![id.clone(), "msg_unknown".into()], mesh: None })
        .await
        .unwrap();
    assert_eq!(r.marked, 1);
    let again: MarkReadReply = b
        .request(AgentCall::MarkRead { msg_ids: vec![id.clone()], mesh: Some("team".into()) })
        .await
        .unwrap();
    assert_eq!(again.marked, 0, "already read");
    let e = b.call(AgentCall::MarkRead { msg_ids: vec![id.clone()], mesh: Some("nope".into()) }).await;
    assert!(e.unwrap_err().to_string().contains("nope"));
    let all = whole_inbox(&mut b).await;
    assert_eq!(all.messages.len(), 1);
    assert!(all.messages[0].read && !all.messages[0].seen, "{all:?}");
    // Still unseen for a session, which takes it as ever.
    register(&mut b, BOB_S, "bob", &[]).await;
    let took = take_and_confirm(&mut b, BOB_S).await;
    assert_eq!(bodies(&took), ["read me later"]);
    assert!(took.messages[0].read);
    let all = whole_inbox(&mut b).await;
    assert!(all.messages[0].read && all.messages[0].seen, "{all:?}");
}

const ALICE_S: &str = "000000a1-5e55-4000-8000-000000000000";

/// The `outbox` events on `c` until one ends the send `id` (10 s at most).
async fn outbox_until_end(c: &mut AgentClient, id: &str) -> Vec<(SendState, Option<SentRecord>)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Ok((_, _, ev))) = tokio::time::timeout_at(deadline, c.next_event()).await {
        if let LocalEvent::Outbox { client_msg_id, state, sent, .. } = ev
            && client_msg_id == id
        {
            let end = !matches!(state, SendState::Pending);
            out.push((state, sent.map(|s| *s)));
            if end {
                break;
            }
        }
    }
    out
}

#[tokio::test]
async fn sent_lists_this_machines_sends_with_bodies_and_outbox_tells_them_live() {
    let w = World::start().await;
    let (alice, mut a) = connected_agent(&w, "alice").await;
    let (_bob, mut b) = connected_agent(&w, "bob").await;
    let bob_id = b.call(AgentCall::Meshes).await.unwrap()[0]["member_id"].as_str().unwrap().to_string();
    register(&mut a, ALICE_S, "alice-laptop", &[]).await;
    wait_peer(&mut b, "alice-laptop").await;
    let mut watch = alice.client().await;
    watch.subscribe(vec![Topic::Outbox], None, None).await.unwrap();

    let r = a.call(send_call("bob", "first", Priority::Low, Some(ALICE_S))).await.unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let events = outbox_until_end(&mut watch, &id).await;
    let [(SendState::Pending, Some(rec)), (SendState::Accepted { recipients: 1, .. }, None)] = &events[..]
    else {
        panic!("pending with its record, then accepted without: {events:?}")
    };
    assert_eq!((rec.body.as_str(), rec.priority, rec.to.as_str()), ("first", Priority::Low, "bob"));
    assert_eq!(
        (rec.target.as_str(), rec.from_session.as_deref()),
        (r["target"].as_str().unwrap(), Some(ALICE_S))
    );
    assert_eq!(rec.recipient_ids, [bob_id]);

    let all: SentReply = a.request(AgentCall::Sent { mesh: None, limit: None }).await.unwrap();
    assert_eq!(all.more, 0);
    let [only] = &all.sent[..] else { panic!("{all:?}") };
    assert_eq!(SentRecord { state: SendState::Pending, ..only.clone() }, *rec, "the same record");
    assert!(matches!(&only.state, SendState::Accepted { recipients: 1, .. }), "{only:?}");

    // The newest `limit`, oldest first, and how many older ones it left out.
    for body in ["second", "third"] {
        a.call(send_call("bob", body, Priority::Next, None)).await.unwrap();
    }
    let page: SentReply =
        a.request(AgentCall::Sent { mesh: Some("team".into()), limit: Some(2) }).await.unwrap();
    let bodies: Vec<&str> = page.sent.iter().map(|s| s.body.as_str()).collect();
    assert_eq!((bodies, page.more), (vec!["second", "third"], 1));
    assert_eq!(page.sent[1].from_session, None, "sent as the member");
    let e = a.call(AgentCall::Sent { mesh: Some("nope".into()), limit: None }).await.unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let theirs: SentReply = b.request(AgentCall::Sent { mesh: None, limit: None }).await.unwrap();
    assert!(theirs.sent.is_empty(), "only this machine's sends");
}
