//! Delivery state after a send: `client_ack` (a recipient agent stored pushes), `receipt`
//! (seen) and `message_status`. `send` is in `send.rs`, the expiry sweep in `expiry.rs`.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use claudemesh_protocol::frames::{
    DeliveryState, ErrorCode, Event, ReceiptState, RecipientStatus, ServerFrame, encode,
};
use claudemesh_protocol::limits::MAX_IDS_PER_ACK;

use super::send::to_json;
use crate::conn::Conn;
use crate::hub::Mesh;
use crate::ids::now_ms;
use crate::store::writer::job;
use crate::store::{
    MESSAGES, MessageRecord, QUEUE, RECIPIENTS, RecipientState, SEP, StoreError, WriteFailure, key,
};

/// (msg_id, sender member) pairs of messages whose recipient row changed.
type Changed = Vec<(String, String)>;

/// Moves recipient rows forward; returns the (msg_id, sender member) pairs that changed (reading
/// each changed message's record). A row that is already there, or expired, stays and is not
/// returned.
fn advance(
    tx: &crate::store::Tx<'_>,
    mesh_id: &str,
    member: &str,
    ids: &[String],
    next: DeliveryState,
) -> Result<Changed, StoreError> {
    let row = to_json(mesh_id, &RecipientState { state: next, at: now_ms() })?;
    let mut changed = Vec::new();
    for id in ids {
        let k = key(&[mesh_id, id, member]);
        let Some(cur) = tx.get::<RecipientState>(RECIPIENTS, &k)? else { continue };
        if cur.can_become(next) {
            tx.put_raw(RECIPIENTS, &k, &row)?;
            if let Some(m) = tx.get::<MessageRecord>(MESSAGES, &key(&[mesh_id, id]))? {
                changed.push((id.clone(), m.from_member));
            }
        }
    }
    Ok(changed)
}

/// Tells each sender of `changed` (msg_id, sender member) that `member` moved those messages to
/// `state`: one `receipt` event per sender.
fn tell_senders(mesh: &Mesh, member: &str, changed: Changed, state: ReceiptState) {
    if changed.is_empty() {
        return;
    }
    let mut by_sender: HashMap<String, Vec<String>> = HashMap::new();
    for (id, sender) in changed {
        by_sender.entry(sender).or_default().push(id);
    }
    let st = mesh.lock();
    for (sender, ids) in by_sender {
        let ev = ServerFrame::Event(Event::Receipt { msg_ids: ids, member_id: member.to_string(), state });
        st.send_to(&sender, encode(&ev), "event");
    }
}

/// A recipient agent stored these pushes: they leave its queue, move from queued to delivered,
/// and each sender whose message changed gets a `delivered` receipt (a re-push acknowledged
/// again changes nothing and tells nobody).
pub async fn client_ack(conn: &mut Conn, msg_ids: Vec<String>) {
    let Some(a) = conn.auth.clone() else { return };
    if msg_ids.len() > MAX_IDS_PER_ACK {
        return conn.error(
            None,
            ErrorCode::TooLarge,
            format!("at most {MAX_IDS_PER_ACK} ids per client_ack"),
        );
    }
    let (mesh_id, member) = (a.mesh.id.clone(), a.member_id.clone());
    let metrics = conn.hub.metrics.clone();
    let out = conn.out.clone();
    let mesh = a.mesh.clone();
    let apply = move |tx: &crate::store::Tx<'_>, state: &mut crate::store::WriterState| {
        let mut removed = 0i64;
        for id in &msg_ids {
            if tx.remove(QUEUE, &key(&[&mesh_id, &member, id]))? {
                removed += 1;
            }
        }
        state.add_depth(&mesh_id, &member, -removed);
        let changed = advance(tx, &mesh_id, &member, &msg_ids, DeliveryState::Delivered)?;
        Ok((removed, changed, member))
    };
    let finish = move |r: Result<(i64, Changed, String), WriteFailure>| match r {
        Ok((n, changed, member)) => {
            metrics.messages_acked.fetch_add(n as u64, Relaxed);
            metrics.queue_depth.fetch_sub(n, Relaxed);
            tell_senders(&mesh, &member, changed, ReceiptState::Delivered);
        }
        Err(e) => {
            // The messages stay queued and will be pushed again: at-least-once holds.
            let f = ServerFrame::error(None, e.code(), format!("client_ack not stored: {e}"));
            out.send(crate::hub::Outgoing::Frame(encode(&f), "error"));
        }
    };
    let _ = conn.hub.store.submit(job(apply, finish)).await;
}

/// A recipient reports messages seen: recorded, and each sender whose message changed gets a
/// `seen` receipt. Only `seen` may be reported; `delivered` is the broker's to say.
pub async fn receipt(conn: &mut Conn, msg_ids: Vec<String>, state: ReceiptState) {
    let Some(a) = conn.auth.clone() else { return };
    if msg_ids.len() > MAX_IDS_PER_ACK {
        return conn.error(None, ErrorCode::TooLarge, format!("at most {MAX_IDS_PER_ACK} ids per receipt"));
    }
    if state != ReceiptState::Seen {
        return conn.error(
            None,
            ErrorCode::Invalid,
            "a receipt reports seen only; delivery is recorded by client_ack",
        );
    }
    let (mesh_id, member) = (a.mesh.id.clone(), a.member_id.clone());
    let mesh = a.mesh.clone();
    let apply = move |tx: &crate::store::Tx<'_>, _: &mut crate::store::WriterState| {
        advance(tx, &mesh_id, &member, &msg_ids, DeliveryState::Seen).map(|c| (c, member))
    };
    let finish = move |r: Result<(Changed, String), WriteFailure>| {
        let Ok((changed, member)) = r else { return };
        tell_senders(&mesh, &member, changed, ReceiptState::Seen);
    };
    let _ = conn.hub.store.submit(job(apply, finish)).await;
}

pub async fn message_status(conn: &mut Conn, req: u64, id: String) {
    let Some(a) = conn.auth.clone() else { return };
    let db = conn.hub.store.db.clone();
    let mesh_id = a.mesh.id.clone();
    let id2 = id.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let rec: Option<MessageRecord> = db.read_get(MESSAGES, &key(&[&mesh_id, &id2]))?;
        let rows = db.read_scan(RECIPIENTS, &key(&[&mesh_id, &id2]))?;
        Ok((rec, rows))
    })
    .await;
    let (rec, rows) = match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return conn.error(Some(req), ErrorCode::Internal, format!("status could not be read: {e}"));
        }
        Err(e) => {
            return conn.error(Some(req), ErrorCode::Internal, format!("status could not be read: {e}"));
        }
    };
    // Only the sender may see who received a message; others learn nothing, not even existence.
    let Some(rec) = rec.filter(|r| r.from_member == a.member_id) else {
        return conn.error(
            Some(req),
            ErrorCode::NotFound,
            format!("no message {id} sent by you (it may have expired)"),
        );
    };
    let recipients = rows
        .iter()
        .filter_map(|(k, v)| {
            let member = k.rsplit(SEP).next()?.to_string();
            let s: RecipientState = serde_json::from_slice(v).ok()?;
            Some(RecipientStatus { member_id: member, state: s.state, at: s.at })
        })
        .collect();
    conn.reply(&ServerFrame::MessageStatus { req, msg_id: rec.msg_id, sent_at: rec.sent_at, recipients });
}
