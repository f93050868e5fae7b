//! Receiving: decrypt a push, store it durably (deduplicated by msg_id), route it to local
//! sessions (DESIGN §6), and push what priority × status allows to subscribed sessions.

use std::time::Instant;

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::crypto::open_message;
use claudemesh_protocol::frames::{Push, SessionStatus, Target};
use claudemesh_protocol::local::{InboxMessage, LocalEvent, Topic};

use crate::state::{Agent, LocalSession, deliverable};
use crate::store::{Delivery, InboxRecord, StoreError};

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `target` addresses local session `s` (of our member) on `mesh_id`.
fn addresses(target: &str, s: &LocalSession, mesh_id: &str) -> bool {
    if !s.meshes.iter().any(|m| m == mesh_id) {
        return false;
    }
    match target.parse::<Target>() {
        Ok(Target::Session(id)) => id == s.info.session_id,
        Ok(Target::Group(g)) => s.info.groups.iter().any(|x| x.name == g),
        Ok(Target::Member(_)) | Ok(Target::Broadcast) => true,
        Err(_) => false,
    }
}

/// The local sessions a message goes to now: `session:` that session; `@g` sessions in `g`;
/// `*` all; `member:` the most recently active one. Empty means it waits in the inbox.
pub fn route(agent: &Agent, mesh_id: &str, target: &str) -> Vec<String> {
    let sessions = agent.sessions();
    let mut matching: Vec<&LocalSession> =
        sessions.values().filter(|s| addresses(target, s, mesh_id)).collect();
    if target.starts_with("member:") {
        matching.sort_by_key(|s| std::cmp::Reverse(s.last_active));
        matching.truncate(1);
    }
    matching.iter().map(|s| s.info.session_id.clone()).collect()
}

/// Decrypts and stores one push. Returns `Ok(true)` when it was new. Undecryptable messages are
/// stored with the reason, never dropped.
pub fn receive(agent: &Agent, mesh_id: &str, push: &Push) -> Result<bool, StoreError> {
    let (slug, sender_pk, sender_name, key, own_member) = {
        let meshes = agent.meshes();
        let Some(m) = meshes.get(mesh_id) else { return Ok(false) };
        let sender = m.members.get(&push.from.member_id);
        let pk = sender.map(|x| x.pubkey.clone());
        let name = sender.map_or_else(|| push.from.member_id.clone(), |x| x.display_name.clone());
        (m.config.slug.clone(), pk, name, m.key.clone(), m.config.member_id.clone())
    };
    let opened = match sender_pk.as_deref().map(|h| from_hex_array::<32>("pubkey", h)) {
        None => Err(format!("sender {} is not in the member directory", push.from.member_id)),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(pk)) => open_message(&push.nonce, &push.ciphertext, &pk, &key).map_err(|e| e.to_string()),
    };
    // A box authenticates the key pair, not the direction: a box we sealed ourselves, sent
    // back to us as if from the peer, opens too. Our own sessions never send us such mail.
    let opened = opened.and_then(|p| {
        let own_session = agent.sessions().contains_key(&p.from_session) && !p.from_session.is_empty();
        if own_session && push.from.member_id != own_member {
            Err("refused: the box claims one of this agent's own sessions as sender (reflected message)"
                .into())
        } else {
            Ok(p)
        }
    });
    let now = now_ms();
    let message = match opened {
        Ok(p) => InboxMessage {
            msg_id: push.msg_id.clone(),
            mesh: slug,
            from_member: push.from.member_id.clone(),
            from_session: push.from.session_id.clone(),
            from_name: p.from_name,
            target: push.target.to_string(),
            priority: push.priority,
            body: p.body,
            reply_to: p.reply_to,
            meta: p.meta,
            sent_at: push.sent_at,
            received_at: now,
            seen: false,
            error: None,
        },
        Err(reason) => {
            tracing::warn!(msg_id = %push.msg_id, %reason, "message could not be opened; stored with the reason");
            InboxMessage {
                msg_id: push.msg_id.clone(),
                mesh: slug,
                from_member: push.from.member_id.clone(),
                from_session: push.from.session_id.clone(),
                from_name: sender_name,
                target: push.target.to_string(),
                priority: push.priority,
                body: String::new(),
                reply_to: None,
                meta: Default::default(),
                sent_at: push.sent_at,
                received_at: now,
                seen: false,
                error: Some(reason),
            }
        }
    };
    let targets = route(agent, mesh_id, &message.target);
    let rec = InboxRecord {
        pending: targets.is_empty(),
        deliveries: targets.iter().map(|s| (s.clone(), Delivery::default())).collect(),
        mesh_id: mesh_id.to_string(),
        message,
    };
    let new = agent.store.inbox_insert(&rec)?;
    if new {
        push_new(agent, rec)?;
    }
    Ok(new)
}

/// Pushes (as `messages` events) the unseen, not-yet-pushed messages of `session` that
/// priority × status allow, if a client subscribed to that session's messages.
pub fn push_deliverable(agent: &Agent, session: &str) -> Result<usize, StoreError> {
    let Some(status) = agent.sessions().get(session).map(|s| s.info.status) else { return Ok(0) };
    if !agent.has_message_subscriber(session) {
        return Ok(0);
    }
    let _held = agent.delivery_lock();
    let mut n = 0;
    for mut rec in agent.store.inbox_unseen(session)? {
        if push_one(agent, &mut rec, session, status)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Pushes a message just stored to the sessions it was routed to: only this record can have
/// become deliverable, so the inbox is not rescanned.
pub fn push_new(agent: &Agent, mut rec: InboxRecord) -> Result<(), StoreError> {
    let sessions: Vec<String> = rec.deliveries.keys().cloned().collect();
    {
        let _held = agent.delivery_lock();
        // Re-read under the lock: a hook may have shown it since it was stored.
        if let Some(fresh) = agent.store.inbox_get(&rec.mesh_id, &rec.message.msg_id)? {
            rec = fresh;
        }
        for s in sessions {
            let Some(status) = agent.sessions().get(&s).map(|x| x.info.status) else { continue };
            push_one(agent, &mut rec, &s, status)?;
        }
    }
    agent.bump();
    Ok(())
}

/// Publishes `rec` to `session`'s subscribers if it is unseen, not yet pushed, and priority ×
/// status allow it; marks it pushed when someone received it.
fn push_one(
    agent: &Agent,
    rec: &mut InboxRecord,
    session: &str,
    status: SessionStatus,
) -> Result<bool, StoreError> {
    let Some(d) = rec.deliveries.get(session).copied() else { return Ok(false) };
    if d.seen || d.pushed || !deliverable(rec.message.priority, status) {
        return Ok(false);
    }
    let ev = LocalEvent::Messages(rec.message.clone());
    if agent.publish(Topic::Messages, Some(&rec.mesh_id), Some(session), &ev) == 0 {
        return Ok(false);
    }
    rec.deliveries.insert(session.to_string(), Delivery { pushed: true, seen: false });
    agent.store.inbox_update(rec)?;
    Ok(true)
}

/// Routes released messages (their session closed unseen) again, as a new message is routed:
/// to the sessions open now, or, if none matches, they keep waiting for the next one.
pub fn reroute(agent: &Agent, released: Vec<InboxRecord>) -> Result<(), StoreError> {
    for old in released {
        let rec = {
            let _held = agent.delivery_lock();
            // Re-read: a session registering meanwhile may have adopted it already.
            let Some(mut rec) = agent.store.inbox_get(&old.mesh_id, &old.message.msg_id)? else { continue };
            let targets: Vec<String> = route(agent, &rec.mesh_id, &rec.message.target)
                .into_iter()
                .filter(|s| !rec.deliveries.contains_key(s))
                .collect();
            if !rec.pending || targets.is_empty() {
                continue;
            }
            rec.pending = false;
            for s in targets {
                rec.deliveries.insert(s, Delivery::default());
            }
            agent.store.inbox_update(&rec)?;
            rec
        };
        push_new(agent, rec)?;
    }
    Ok(())
}

/// Gives a newly registered session the waiting messages addressed to it.
pub fn adopt_pending(agent: &Agent, session: &str) -> Result<usize, StoreError> {
    let Some(s) = agent.sessions().get(session).cloned() else { return Ok(0) };
    let _held = agent.delivery_lock();
    let mut n = 0;
    for mut rec in agent.store.inbox_all()? {
        if rec.pending && addresses(&rec.message.target, &s, &rec.mesh_id) {
            rec.pending = false;
            rec.deliveries.insert(session.to_string(), Delivery::default());
            agent.store.inbox_update(&rec)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Marks a session as active now (for `member:` routing).
pub fn touch(agent: &Agent, session: &str) {
    if let Some(s) = agent.sessions().get_mut(session) {
        s.last_active = Instant::now();
    }
}
