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
    MESSAGES, MessageRecord, QUEUE, RECIPIENTS, RecipientState, SEP, StoreError, Tx, WriteFailure,
    WriterState, key,
};

/// (msg_id, sender member) pairs of messages whose recipient row changed.
type Changed = Vec<(String, String)>;

/// Moves `member`'s delivery state of message `id` to `next` if that is a step forward, and
/// returns the message's sender if it moved. A recipient without a row is queued when
/// `queued()` says its copy is still in its queue (rows are written from the first move on,
/// [`MessageRecord::recipients`]); without either it is not a recipient, or the message has
/// expired, and nothing changes.
fn advance(
    tx: &Tx<'_>,
    state: &WriterState,
    mesh_id: &str,
    member: &str,
    id: &str,
    next: &(DeliveryState, Vec<u8>),
    queued: impl FnOnce() -> Result<bool, StoreError>,
) -> Result<Option<String>, StoreError> {
    let k = key(&[mesh_id, id, member]);
    let cur = match tx.get::<RecipientState>(RECIPIENTS, &k)? {
        Some(cur) => cur,
        None if queued()? => RecipientState { state: DeliveryState::Queued, at: 0 },
        None => return Ok(None),
    };
    if !cur.can_become(next.0) {
        return Ok(None);
    }
    tx.put_raw(RECIPIENTS, &k, &next.1)?;
    let rec_key = key(&[mesh_id, id]);
    if let Some(sender) = state.recent_sender(&rec_key) {
        return Ok(Some(sender.to_string()));
    }
    Ok(tx.get::<MessageRecord>(MESSAGES, &rec_key)?.map(|m| m.from_member))
}

/// The state `next` now, with its row's JSON.
fn row(mesh_id: &str, next: DeliveryState) -> Result<(DeliveryState, Vec<u8>), StoreError> {
    Ok((next, to_json(mesh_id, &RecipientState { state: next, at: now_ms() })?))
}

/// `client_ack`'s writes: `member`'s copies of `ids` leave its queue and move to delivered.
/// Returns how many left the queue, and the messages whose state moved.
fn ack_rows(
    tx: &Tx<'_>,
    state: &mut WriterState,
    mesh_id: &str,
    member: &str,
    ids: &[String],
) -> Result<(i64, Changed), StoreError> {
    let next = row(mesh_id, DeliveryState::Delivered)?;
    let mut removed = 0i64;
    let mut changed = Vec::new();
    for id in ids {
        let was_queued = tx.remove(QUEUE, &key(&[mesh_id, member, id]))?;
        removed += i64::from(was_queued);
        if let Some(sender) = advance(tx, state, mesh_id, member, id, &next, || Ok(was_queued))? {
            changed.push((id.clone(), sender));
        }
    }
    state.add_depth(mesh_id, member, -removed);
    Ok((removed, changed))
}

/// `receipt`'s writes: `member` saw `ids` (its copy may still be queued: the `client_ack` can
/// come after). Returns the messages whose state moved.
fn seen_rows(
    tx: &Tx<'_>,
    state: &WriterState,
    mesh_id: &str,
    member: &str,
    ids: &[String],
) -> Result<Changed, StoreError> {
    let next = row(mesh_id, DeliveryState::Seen)?;
    let mut changed = Vec::new();
    for id in ids {
        let queued = || tx.exists(QUEUE, &key(&[mesh_id, member, id]));
        if let Some(sender) = advance(tx, state, mesh_id, member, id, &next, queued)? {
            changed.push((id.clone(), sender));
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
    let apply = move |tx: &Tx<'_>, state: &mut WriterState| {
        ack_rows(tx, state, &mesh_id, &member, &msg_ids).map(|(removed, changed)| (removed, changed, member))
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
    let apply = move |tx: &Tx<'_>, state: &mut WriterState| {
        seen_rows(tx, state, &mesh_id, &member, &msg_ids).map(|changed| (changed, member))
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
    // A recipient without a row is still queued (since it was sent).
    let mut by_member: std::collections::BTreeMap<String, RecipientStatus> = rows
        .iter()
        .filter_map(|(k, v)| {
            let member = k.rsplit(SEP).next()?.to_string();
            let s: RecipientState = serde_json::from_slice(v).ok()?;
            Some((member.clone(), RecipientStatus { member_id: member, state: s.state, at: s.at }))
        })
        .collect();
    for m in &rec.recipients {
        by_member.entry(m.clone()).or_insert_with(|| RecipientStatus {
            member_id: m.clone(),
            state: DeliveryState::Queued,
            at: rec.sent_at,
        });
    }
    let recipients = by_member.into_values().collect();
    conn.reply(&ServerFrame::MessageStatus { req, msg_id: rec.msg_id, sent_at: rec.sent_at, recipients });
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_protocol::frames::Priority;

    fn with_tx<T>(f: impl FnOnce(&Tx<'_>) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        let txn = redb::Database::begin_write(&db).unwrap();
        let tx = Tx::new(&txn);
        f(&tx)
    }

    fn record(recipients: &[&str]) -> MessageRecord {
        MessageRecord {
            msg_id: "m1".into(),
            client_msg_id: "c1".into(),
            from_member: "alice".into(),
            from_session: String::new(),
            target: "broadcast".into(),
            priority: Priority::Next,
            sent_at: 5,
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn state_of(tx: &Tx<'_>, member: &str) -> Option<DeliveryState> {
        tx.get::<RecipientState>(RECIPIENTS, &key(&["mesh", "m1", member])).unwrap().map(|r| r.state)
    }

    #[test]
    fn a_record_from_before_recipient_lists_still_moves_from_its_queued_row() {
        with_tx(|tx| {
            // As brokers wrote sends before: a row per recipient at the send, no list.
            tx.put(MESSAGES, &key(&["mesh", "m1"]), &record(&[])).unwrap();
            for m in ["bob", "carol"] {
                tx.put_raw(QUEUE, &key(&["mesh", m, "m1"]), b"push").unwrap();
                let queued = RecipientState { state: DeliveryState::Queued, at: 5 };
                tx.put(RECIPIENTS, &key(&["mesh", "m1", m]), &queued).unwrap();
            }
            // The writer does not remember this sender: it is read from the record.
            let mut state = WriterState::default();
            let ids = vec!["m1".to_string()];
            let (removed, changed) = ack_rows(tx, &mut state, "mesh", "bob", &ids).unwrap();
            assert_eq!((removed, changed), (1, vec![("m1".to_string(), "alice".to_string())]));
            assert_eq!(state_of(tx, "bob"), Some(DeliveryState::Delivered));
            let changed = seen_rows(tx, &state, "mesh", "carol", &ids).unwrap();
            assert_eq!(changed.len(), 1);
            assert_eq!(state_of(tx, "carol"), Some(DeliveryState::Seen));
            // Carol's copy is still queued: its ack removes it and does not move seen back.
            let (removed, changed) = ack_rows(tx, &mut state, "mesh", "carol", &ids).unwrap();
            assert_eq!((removed, changed.len()), (1, 0));
            assert_eq!(state_of(tx, "carol"), Some(DeliveryState::Seen));
        });
    }

    #[test]
    fn without_a_row_only_a_queued_copy_counts_as_a_recipient() {
        with_tx(|tx| {
            tx.put(MESSAGES, &key(&["mesh", "m1"]), &record(&["bob"])).unwrap();
            tx.put_raw(QUEUE, &key(&["mesh", "bob", "m1"]), b"push").unwrap();
            let mut state = WriterState::default();
            state.remember_sender(&key(&["mesh", "m1"]), "alice");
            let ids = vec!["m1".to_string()];
            // Mallory has neither a row nor a copy: nothing is written, nobody is told.
            assert!(seen_rows(tx, &state, "mesh", "mallory", &ids).unwrap().is_empty());
            assert_eq!(ack_rows(tx, &mut state, "mesh", "mallory", &ids).unwrap(), (0, vec![]));
            assert_eq!(state_of(tx, "mallory"), None);
            // Bob's first move writes his row; the same ack again changes nothing.
            let (removed, changed) = ack_rows(tx, &mut state, "mesh", "bob", &ids).unwrap();
            assert_eq!((removed, changed.len()), (1, 1));
            assert_eq!(ack_rows(tx, &mut state, "mesh", "bob", &ids).unwrap(), (0, vec![]));
            assert_eq!(state_of(tx, "bob"), Some(DeliveryState::Delivered));
        });
    }
}
