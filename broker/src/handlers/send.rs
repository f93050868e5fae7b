//! `send`: validate a member's message, persist it with the group commit, push it to the
//! recipients online and acknowledge the sender. The push goes out from inside the commit
//! batch, before its disk sync ([`crate::store::writer::Job::before_commit`]); the sender's
//! `ack` only after the sync. If that commit fails, the sender is told to send again and
//! recipients may hold a push of a message the broker never stored: they drop the retry as a
//! duplicate by its sender and client message id (docs/protocol.md, *Durability* and *Message
//! plaintext*).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use claudemesh_protocol::crypto::{EnvelopeSizeError, check_envelope_sizes};
use claudemesh_protocol::frames::{
    DeliveryState, ErrorCode, Push, PushFrom, Send, ServerFrame, Target, encode,
};
use claudemesh_protocol::limits::{MAX_ENVELOPES, MAX_SEND_ENVELOPE_BYTES};

use crate::conn::Conn;
use crate::hub::{ConnHandle, Mesh, Outgoing};
use crate::ids::{msg_id, now_ms};
use crate::metrics::Metrics;
use crate::store::writer::Job;
use crate::store::{
    IDEMPOTENCY, IdemRecord, MESSAGES, MessageRecord, QUEUE, RECIPIENTS, RecipientState, SEP, StoreError, Tx,
    WriteFailure, WriterState, key,
};

/// One recipient's copy of a send, prepared before it reaches the writer. Its delivery state
/// gets a row when it moves past queued, or at the send for a large fan-out
/// ([`MAX_LISTED_RECIPIENTS`]).
struct QueuedPush {
    member: String,
    queue_key: String,
    /// Its state row's key, when the send writes a `queued` row per recipient.
    recipient_key: Option<String>,
    /// The encoded `push` frame: stored as the queue value and sent as is.
    text: String,
}

/// JSON of a record stored under `key`.
pub(super) fn to_json<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Decode { key: key.into(), source })
}

/// Most recipients a message record lists ([`MessageRecord::recipients`]). A send to more
/// writes a `queued` state row per recipient instead (the record format older brokers wrote),
/// so that reading a record, which each receipt may do, never decodes a long list: a 10,000
/// member broadcast's list would make every one of its 10,000 acks parse 250 KB.
const MAX_LISTED_RECIPIENTS: usize = 16;

/// Whether a send to `n` recipients lists them in its record (else: a row each).
fn inline_recipients(n: usize) -> bool {
    n <= MAX_LISTED_RECIPIENTS
}

/// What the persist step of a send decided.
enum Persisted {
    /// Stored.
    New,
    /// The sender's client message id was stored before: the first send's ack.
    Duplicate(IdemRecord),
    /// This member's queue is full.
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
    match check_envelope_sizes(&s.envelopes) {
        Ok(()) => {}
        Err(EnvelopeSizeError::Box { member_id, len }) => {
            return Err((
                ErrorCode::TooLarge,
                format!(
                    "the box for {member_id} is {len} bytes; a message body is at most {} KiB",
                    claudemesh_protocol::limits::MAX_BODY_BYTES / 1024
                ),
            ));
        }
        Err(EnvelopeSizeError::Total { total, .. }) => {
            return Err((
                ErrorCode::TooLarge,
                format!("envelopes total {total} bytes, at most {MAX_SEND_ENVELOPE_BYTES}"),
            ));
        }
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

/// Handles `send`: checks, prepares every row and push frame, and queues a [`SendJob`].
pub async fn send(conn: &mut Conn, s: Send) {
    let Some(a) = conn.auth.clone() else { return };
    let req = s.req;
    if s.client_msg_id.is_empty() || s.client_msg_id.len() > 128 || s.client_msg_id.contains(SEP) {
        return conn.error(Some(req), ErrorCode::Invalid, "client_msg_id must be 1-128 characters");
    }
    // The sending session must be one this member owns: open, or opened before and closed or
    // not reopened yet (a resend after a broker restart can come before its session_open; a
    // message sent just before its session closed is still from it). Another member's session
    // is refused.
    {
        let st = a.mesh.lock();
        let sid = &s.from_session;
        let owner = st.sessions.get(sid).map(|x| &x.member_id).or_else(|| st.session_owner.get(sid));
        if !sid.is_empty() && owner != Some(&a.member_id) {
            drop(st);
            return conn.error(
                Some(req),
                ErrorCode::Invalid,
                format!("from_session {sid} is not a session of yours"),
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
    let listed = inline_recipients(s.envelopes.len());
    let rec = MessageRecord {
        msg_id: id.clone(),
        client_msg_id: s.client_msg_id.clone(),
        from_member: sender.clone(),
        from_session: s.from_session.clone(),
        target: s.target.to_string(),
        priority: s.priority,
        sent_at: now,
        recipients: if listed {
            s.envelopes.iter().map(|e| e.member_id.clone()).collect()
        } else {
            Vec::new()
        },
    };
    let rec_key = key(&[&mesh_id, &id]);
    let ack = IdemRecord { msg_id: id.clone(), recipients: s.envelopes.len() as u32, online, at: now };
    let queued_row =
        (!listed).then(|| to_json(&rec_key, &RecipientState { state: DeliveryState::Queued, at: now }));
    let encoded = (to_json(&rec_key, &rec), to_json(&ikey, &ack), queued_row.transpose());
    let (Ok(rec_json), Ok(ack_json), Ok(queued_json)) = encoded else {
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
                recipient_key: (!listed).then(|| key(&[&mesh_id, &id, &e.member_id])),
                member: e.member_id,
                text,
            }
        })
        .collect();

    // What the job holds until it finishes: its rows and a frame per recipient (each copied
    // once more while the push is on its way).
    let bytes = rec_json.len() + ack_json.len() + pushes.iter().map(|p| 2 * p.text.len()).sum::<usize>();
    let job = SendJob {
        req,
        mesh_id,
        ikey,
        rec_key,
        rec_json,
        ack_json,
        queued_json,
        sender,
        ack,
        pushes,
        max_queue: conn.hub.config.max_queue_per_member,
        mesh: a.mesh.clone(),
        metrics: conn.hub.metrics.clone(),
        reply: conn.out.clone(),
        outcome: None,
        pushed_to: Vec::new(),
    };
    if conn.hub.store.submit_sized(Box::new(job), bytes).await.is_err() {
        conn.error(
            Some(req),
            ErrorCode::Unavailable,
            "the broker is shutting down; the message was not accepted",
        );
    }
}

/// A send on its way through the writer: the rows it writes, prepared outside the writer
/// thread, and where its pushes and its answer go.
struct SendJob {
    req: u64,
    mesh_id: String,
    ikey: String,
    rec_key: String,
    rec_json: Vec<u8>,
    ack_json: Vec<u8>,
    /// A `queued` state row for each recipient, when there are too many to list in the
    /// record ([`inline_recipients`]).
    queued_json: Option<Vec<u8>>,
    /// The sending member (remembered by the writer for receipts).
    sender: String,
    ack: IdemRecord,
    pushes: Vec<QueuedPush>,
    max_queue: u32,
    mesh: Arc<Mesh>,
    metrics: Arc<Metrics>,
    reply: ConnHandle,
    outcome: Option<Persisted>,
    /// Per push (same order): the connection it was queued on before the commit, if any.
    pushed_to: Vec<Option<u64>>,
}

impl Job for SendJob {
    fn apply(&mut self, tx: &Tx<'_>, state: &mut WriterState) -> Result<(), StoreError> {
        if let Some(prev) = tx.get::<IdemRecord>(IDEMPOTENCY, &self.ikey)? {
            self.outcome = Some(Persisted::Duplicate(prev));
            return Ok(());
        }
        if let Some(full) =
            self.pushes.iter().find(|p| state.depth(&self.mesh_id, &p.member) >= self.max_queue)
        {
            self.outcome = Some(Persisted::QueueFull(full.member.clone()));
            return Ok(());
        }
        tx.put_raw(MESSAGES, &self.rec_key, &self.rec_json)?;
        for p in &self.pushes {
            tx.put_raw(QUEUE, &p.queue_key, p.text.as_bytes())?;
            if let (Some(k), Some(row)) = (&p.recipient_key, &self.queued_json) {
                tx.put_raw(RECIPIENTS, k, row)?;
            }
            state.add_depth(&self.mesh_id, &p.member, 1);
        }
        tx.put_raw(IDEMPOTENCY, &self.ikey, &self.ack_json)?;
        state.remember_sender(&self.rec_key, &self.sender);
        self.outcome = Some(Persisted::New);
        Ok(())
    }

    /// Pushes to the recipients online now, before the sync: a recipient's agent stores and
    /// acknowledges it while the disk syncs (its `client_ack` lands in a later batch, after
    /// this commit). Remembers which connection each copy went to (see `finish`). Each frame
    /// is copied (at most the send's 4 MiB of envelopes) so `finish` can push it again.
    fn before_commit(&mut self) {
        let Some(Persisted::New) = &self.outcome else { return };
        let st = self.mesh.lock();
        self.pushed_to = self
            .pushes
            .iter()
            .map(|p| {
                let c = st.conns.get(&p.member)?;
                c.send(Outgoing::Frame(p.text.clone(), "push")).then_some(c.id)
            })
            .collect();
    }

    /// Acknowledges the sender once the commit is durable. A recipient whose connection is not
    /// the one its copy went to before the sync (it had none, or reconnected meanwhile) is
    /// pushed now: its new connection's queue replay may have read the queue before this
    /// commit. A copy it gets twice is one msg_id, stored once.
    fn finish(self: Box<Self>, committed: Result<(), &WriteFailure>) {
        let SendJob { req, ack, metrics, reply, outcome, pushes, pushed_to, mesh, .. } = *self;
        let frame = match (committed, outcome) {
            (Ok(()), Some(Persisted::New)) => {
                let copies = pushes.len() as u64;
                // Recipients that got a push at all (once each, however many times it went).
                let mut routed = 0;
                let st = mesh.lock();
                let sent_to = pushed_to.into_iter().chain(std::iter::repeat(None));
                for (p, sent) in pushes.into_iter().zip(sent_to) {
                    let again = st.conns.get(&p.member).filter(|c| Some(c.id) != sent);
                    let pushed_now = again.is_some_and(|c| c.send(Outgoing::Frame(p.text, "push")));
                    if sent.is_some() || pushed_now {
                        routed += 1;
                    }
                }
                drop(st);
                metrics.messages_queued.fetch_add(copies, Relaxed);
                metrics.queue_depth.fetch_add(copies as i64, Relaxed);
                metrics.messages_routed.fetch_add(routed, Relaxed);
                ServerFrame::Ack { req, msg_id: ack.msg_id, recipients: ack.recipients, online: ack.online }
            }
            (Ok(()), Some(Persisted::Duplicate(ack))) => {
                ServerFrame::Ack { req, msg_id: ack.msg_id, recipients: ack.recipients, online: ack.online }
            }
            (Ok(()), Some(Persisted::QueueFull(member))) => {
                metrics.error(ErrorCode::Limit);
                ServerFrame::error(
                    Some(req),
                    ErrorCode::Limit,
                    format!(
                        "the queue of member {member} is full (it has been offline a long time); the message was not accepted"
                    ),
                )
            }
            (Ok(()), None) => {
                metrics.error(ErrorCode::Internal);
                ServerFrame::error(Some(req), ErrorCode::Internal, "the send was not applied; send it again")
            }
            (Err(e), _) => {
                metrics.pushes_uncommitted.fetch_add(pushed_to.iter().flatten().count() as u64, Relaxed);
                metrics.error(e.code());
                ServerFrame::error(
                    Some(req),
                    e.code(),
                    format!("{e}; the message was not accepted, send it again"),
                )
            }
        };
        reply.send(Outgoing::Frame(encode(&frame), frame.type_name()));
    }
}
