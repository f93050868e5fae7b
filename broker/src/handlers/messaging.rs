//! `send` (validate, persist with group commit, ack, push), `client_ack`, `receipt`,
//! `message_status` and `list_peers`. The expiry sweep is in `expiry.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;

use claudemesh_protocol::frames::{
    DeliveryState, ErrorCode, Event, Push, PushFrom, ReceiptState, RecipientStatus, Send, ServerFrame,
    Target, encode,
};
use claudemesh_protocol::limits::{
    MAX_ENVELOPE_CIPHERTEXT_B64, MAX_ENVELOPES, MAX_IDS_PER_ACK, MAX_SEND_ENVELOPE_BYTES,
};

use crate::conn::Conn;
use crate::hub::Mesh;
use crate::ids::{msg_id, now_ms};
use crate::store::writer::job;
use crate::store::{
    IDEMPOTENCY, IdemRecord, MESSAGES, MessageRecord, QUEUE, RECIPIENTS, RecipientState, SEP, StoreError,
    WriteFailure, key,
};

/// One recipient's copy of a send, prepared before it reaches the writer.
struct QueuedPush {
    member: String,
    queue_key: String,
    recipient_key: String,
    /// The encoded `push` frame: stored as the queue value and sent as is.
    text: String,
}

/// JSON of a record stored under `key`.
fn to_json<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Decode { key: key.into(), source })
}

/// Outcome of the persist step of a send.
enum Persisted {
    New { pushes: Vec<(String, String)>, ack: IdemRecord },
    Duplicate(IdemRecord),
    QueueFull(String),
}

/// The members a target addresses, as the broker sees the mesh now.
fn recipients(mesh: &Mesh, sender: &str, target: &Target) -> Result<BTreeSet<String>, (ErrorCode, String)> {
    let st = mesh.lock();
    let set: BTreeSet<String> = match target {
        Target::Session(sid) => {
            let owner = st.sessions.get(sid).map(|s| &s.member_id).or_else(|| st.session_owner.get(sid));
            match owner {
                Some(m) if st.members.get(m).is_some_and(|r| !r.removed) => BTreeSet::from([m.clone()]),
                _ => return Err((ErrorCode::NotFound, format!("no session {sid} in this mesh"))),
            }
        }
        Target::Member(m) => {
            if st.members.get(m).is_none_or(|r| r.removed) {
                return Err((ErrorCode::NotFound, format!("no member {m} in this mesh")));
            }
            BTreeSet::from([m.clone()])
        }
        Target::Group(g) => st
            .active_members()
            .filter(|m| m.member_id != sender && m.in_group(g))
            .map(|m| m.member_id.clone())
            .collect(),
        Target::Broadcast => {
            st.active_members().filter(|m| m.member_id != sender).map(|m| m.member_id.clone()).collect()
        }
    };
    if set.is_empty() {
        return Err((ErrorCode::NotFound, format!("{target} has no other member to deliver to")));
    }
    Ok(set)
}

fn check_envelopes(s: &Send, want: &BTreeSet<String>) -> Result<(), (ErrorCode, String)> {
    if s.envelopes.len() > MAX_ENVELOPES {
        return Err((ErrorCode::TooLarge, format!("at most {MAX_ENVELOPES} envelopes per send")));
    }
    if let Some(big) = s.envelopes.iter().find(|e| e.ciphertext.len() > MAX_ENVELOPE_CIPHERTEXT_B64) {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "the box for {} is {} bytes; a message body is at most {} KiB",
                big.member_id,
                big.ciphertext.len(),
                claudemesh_protocol::limits::MAX_BODY_BYTES / 1024
            ),
        ));
    }
    let total: usize = s.envelopes.iter().map(|e| e.ciphertext.len() + e.nonce.len()).sum();
    if total > MAX_SEND_ENVELOPE_BYTES {
        return Err((
            ErrorCode::TooLarge,
            format!("envelopes total {total} bytes, at most {MAX_SEND_ENVELOPE_BYTES}"),
        ));
    }
    let got: BTreeSet<String> = s.envelopes.iter().map(|e| e.member_id.clone()).collect();
    if got.len() != s.envelopes.len() {
        return Err((ErrorCode::Invalid, "two envelopes for the same member".into()));
    }
    if &got != want {
        let missing: Vec<_> = want.difference(&got).cloned().collect();
        let extra: Vec<_> = got.difference(want).cloned().collect();
        return Err((
            ErrorCode::RecipientsChanged,
            format!(
                "envelopes must be exactly the recipients of {}: missing {missing:?}, not recipients {extra:?}; refresh the member list and retry",
                s.target
            ),
        ));
    }
    Ok(())
}

pub async fn send(conn: &mut Conn, s: Send) {
    let Some(a) = conn.auth.clone() else { return };
    let req = s.req;
    if s.client_msg_id.is_empty() || s.client_msg_id.len() > 128 || s.client_msg_id.contains(SEP) {
        return conn.error(Some(req), ErrorCode::Invalid, "client_msg_id must be 1-128 characters");
    }
    {
        let st = a.mesh.lock();
        if !s.from_session.is_empty()
            && st.sessions.get(&s.from_session).is_none_or(|x| x.member_id != a.member_id)
        {
            drop(st);
            return conn.error(
                Some(req),
                ErrorCode::Invalid,
                format!("from_session {} is not an open session of yours", s.from_session),
            );
        }
    }
    // Rate limit per member (the bucket outlives reconnects).
    if conn.rate_limited(crate::rate::Budget::Send, Some(req)) {
        return;
    }
    let want = match recipients(&a.mesh, &a.member_id, &s.target) {
        Ok(w) => w,
        Err((code, msg)) => return conn.error(Some(req), code, msg),
    };
    if let Err((code, msg)) = check_envelopes(&s, &want) {
        return conn.error(Some(req), code, msg);
    }
    let online = {
        let st = a.mesh.lock();
        want.iter().filter(|m| st.conns.contains_key(*m)).count() as u32
    };

    // Everything but the idempotency and queue-cap checks is prepared here, outside the single
    // writer thread: the id and timestamp, the records and every push frame. A duplicate
    // `client_msg_id` discards them and answers with the first send's ack.
    let id = msg_id();
    let now = now_ms();
    let mesh_id = a.mesh.id.clone();
    let sender = a.member_id.clone();
    let ikey = key(&[&mesh_id, &sender, &s.client_msg_id]);
    let rec = MessageRecord {
        msg_id: id.clone(),
        client_msg_id: s.client_msg_id.clone(),
        from_member: sender.clone(),
        from_session: s.from_session.clone(),
        target: s.target.to_string(),
        priority: s.priority,
        sent_at: now,
    };
    let rec_key = key(&[&mesh_id, &id]);
    let ack = IdemRecord { msg_id: id.clone(), recipients: s.envelopes.len() as u32, online, at: now };
    let encoded = (
        to_json(&rec_key, &rec),
        to_json(&rec_key, &RecipientState { state: DeliveryState::Queued, at: now }),
        to_json(&ikey, &ack),
    );
    let (Ok(rec_json), Ok(queued_json), Ok(ack_json)) = encoded else {
        return conn.error(
            Some(req),
            ErrorCode::Internal,
            "the message could not be encoded; it was not accepted",
        );
    };
    let Send { client_msg_id, from_session, target, priority, envelopes, .. } = s;
    let pushes: Vec<QueuedPush> = envelopes
        .into_iter()
        .map(|e| {
            let text = encode(&ServerFrame::Push(Push {
                msg_id: id.clone(),
                client_msg_id: client_msg_id.clone(),
                from: PushFrom { member_id: sender.clone(), session_id: from_session.clone() },
                target: target.clone(),
                priority,
                nonce: e.nonce,
                ciphertext: e.ciphertext,
                sent_at: now,
            }));
            QueuedPush {
                queue_key: key(&[&mesh_id, &e.member_id, &id]),
                recipient_key: key(&[&mesh_id, &id, &e.member_id]),
                member: e.member_id,
                text,
            }
        })
        .collect();

    let max_queue = conn.hub.config.max_queue_per_member;
    let metrics = conn.hub.metrics.clone();
    let reply = conn.out.clone();
    let apply = move |tx: &crate::store::Tx<'_>,
                      state: &mut crate::store::WriterState|
          -> Result<Persisted, StoreError> {
        if let Some(prev) = tx.get::<IdemRecord>(IDEMPOTENCY, &ikey)? {
            return Ok(Persisted::Duplicate(prev));
        }
        if let Some(full) = pushes.iter().find(|p| state.depth(&mesh_id, &p.member) >= max_queue) {
            return Ok(Persisted::QueueFull(full.member.clone()));
        }
        tx.put_raw(MESSAGES, &rec_key, &rec_json)?;
        for p in &pushes {
            tx.put_raw(QUEUE, &p.queue_key, p.text.as_bytes())?;
            tx.put_raw(RECIPIENTS, &p.recipient_key, &queued_json)?;
            state.add_depth(&mesh_id, &p.member, 1);
        }
        tx.put_raw(IDEMPOTENCY, &ikey, &ack_json)?;
        let pushes = pushes.into_iter().map(|p| (p.member, p.text)).collect();
        Ok(Persisted::New { pushes, ack })
    };
    let mesh = a.mesh.clone();
    let finish = move |r: Result<Persisted, WriteFailure>| {
        let frame = match r {
            Ok(Persisted::New { pushes, ack }) => {
                let n = pushes.len() as u64;
                metrics.messages_queued.fetch_add(n, Relaxed);
                metrics.queue_depth.fetch_add(n as i64, Relaxed);
                let st = mesh.lock();
                for (member, text) in pushes {
                    if st.send_to(&member, text, "push") {
                        metrics.messages_routed.fetch_add(1, Relaxed);
                    }
                }
                drop(st);
                ServerFrame::Ack { req, msg_id: ack.msg_id, recipients: ack.recipients, online: ack.online }
            }
            Ok(Persisted::Duplicate(ack)) => {
                ServerFrame::Ack { req, msg_id: ack.msg_id, recipients: ack.recipients, online: ack.online }
            }
            Ok(Persisted::QueueFull(member)) => {
                metrics.error(ErrorCode::Limit);
                ServerFrame::error(
                    Some(req),
                    ErrorCode::Limit,
                    format!(
                        "the queue of member {member} is full (it has been offline a long time); the message was not accepted"
                    ),
                )
            }
            Err(e) => {
                metrics.error(e.code());
                ServerFrame::error(
                    Some(req),
                    e.code(),
                    format!("{e}; the message was not accepted, send it again"),
                )
            }
        };
        reply.send(crate::hub::Outgoing::Frame(encode(&frame), frame.type_name()));
    };
    if conn.hub.store.submit(job(apply, finish)).await.is_err() {
        conn.error(
            Some(req),
            ErrorCode::Unavailable,
            "the broker is shutting down; the message was not accepted",
        );
    }
}

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
