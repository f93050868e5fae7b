//! Sending (DESIGN §5, §6): resolve `to` in the member directory, give this agent's other
//! matching sessions their copy at once (the broker never sends `@g`/`*` back to the sending
//! member), encrypt one envelope per recipient member, and queue it in the outbox, committed
//! before the reply and told to `outbox` subscribers (pending, with the whole record). An
//! idempotency key makes a retried send return the first reply.

use std::time::Instant;

use claudemesh_protocol::crypto::{EnvelopeSizeError, MessagePlaintext, check_envelope_sizes, fan_out};
use claudemesh_protocol::frames::{ErrorCode, Priority, Target};
use claudemesh_protocol::limits::{
    MAX_BODY_BYTES, MAX_ENVELOPE_CIPHERTEXT_B64, MAX_IDEMPOTENCY_KEY_BYTES, MAX_SEND_ENVELOPE_BYTES,
};
use claudemesh_protocol::local::{InboxMessage, LocalEvent, SendParams, SendReply, SendState, Topic};
use serde_json::Value;

use super::calls::to_value;
use super::{Core, Effect, now_ms};
use crate::error::{ApiError, internal};
use crate::mesh::UplinkCmd;
use crate::mesh::resolve::{ResolveError, recipients, resolve_target};
use crate::mesh::resolve_mesh;
use crate::store::{InboxRecord, OutboxRecord, StoreOp};

/// The API error for a name that does not resolve.
pub(crate) fn resolve_err(e: ResolveError) -> ApiError {
    match e {
        ResolveError::Ambiguous { .. } => (ErrorCode::Conflict, e.to_string()),
        ResolveError::LinkDown { .. } => (ErrorCode::Unavailable, e.to_string()),
        // A key this agent does not trust: nothing is sealed to it.
        ResolveError::Untrusted { .. } => (ErrorCode::Forbidden, e.to_string()),
        _ => (ErrorCode::NotFound, e.to_string()),
    }
}

impl Core {
    /// `send`: returns once the message is committed to the outbox (or to the sibling
    /// sessions' inbox).
    pub(crate) fn send(&mut self, p: SendParams, now: Instant) -> Result<Value, ApiError> {
        if let Some(k) = &p.idempotency_key {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_BYTES {
                return Err((
                    ErrorCode::Invalid,
                    format!("idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
                ));
            }
            if let Some(v) = self.store.idempotency_get(k).map_err(internal)? {
                let mut first: SendReply = serde_json::from_value(v).map_err(internal)?;
                first.duplicate = true;
                return to_value(&first);
            }
        }
        if p.message.len() > MAX_BODY_BYTES {
            return Err((
                ErrorCode::TooLarge,
                format!("message is {} bytes; at most {MAX_BODY_BYTES}", p.message.len()),
            ));
        }
        if p.message.trim().is_empty() {
            return Err((ErrorCode::Invalid, "message is empty".into()));
        }
        let mesh_id = self.send_mesh(&p)?;
        let from_session = p.from_session.clone().unwrap_or_default();
        let session_name = self.state.sessions.get(&from_session).map(|s| s.info.display_name.clone());
        let v = self
            .state
            .meshes
            .get(&mesh_id)
            .ok_or_else(|| (ErrorCode::NotFound, "mesh disappeared".to_string()))?;
        let target = resolve_target(v, &p.to).map_err(resolve_err)?;
        let siblings = self.siblings(&mesh_id, &from_session, &target);
        let to = match recipients(v, &target) {
            Ok(to) => to,
            // "Nobody else in the mesh" is fine when a sibling session takes it.
            Err(ResolveError::Empty(_)) if !siblings.is_empty() => Vec::new(),
            Err(e) => return Err(resolve_err(e)),
        };
        let untrusted = crate::mesh::resolve::untrusted(v, &target);
        let from_name = session_name.unwrap_or_else(|| {
            if v.config.display_name.is_empty() {
                v.config.member_id.clone()
            } else {
                v.config.display_name.clone()
            }
        });
        let (key, slug, own_member) = (v.key.clone(), v.config.slug.clone(), v.config.member_id.clone());
        // Time-ordered (UUIDv7): the broker's idempotency rows for one sender then append at the
        // end of its key range instead of landing on a random B-tree page per send.
        let client_msg_id = uuid::Uuid::now_v7().to_string();
        let mut plaintext = MessagePlaintext::new(from_session.clone(), from_name, p.message).addressed(
            own_member.clone(),
            client_msg_id.clone(),
            p.priority,
            target.to_string(),
            now_ms(),
        );
        plaintext.reply_to = p.reply_to;
        // Sealed before anything is delivered or queued, so a body the broker would refuse is
        // refused here, at once, with nothing done.
        let envelopes = if to.is_empty() {
            Vec::new()
        } else {
            let env = fan_out(&plaintext, &to, &key).map_err(|e| (ErrorCode::Invalid, e.to_string()))?;
            check_sealed(&env, plaintext.body.len())?;
            env
        };
        let local = siblings.len();
        if !siblings.is_empty() {
            self.deliver_to_siblings(&mesh_id, &slug, &own_member, &target, p.priority, &plaintext, now);
        }
        let mut reply = SendReply {
            id: None,
            mesh: slug,
            target: target.to_string(),
            recipients: to.len(),
            local,
            duplicate: false,
            untrusted,
        };
        if !to.is_empty() {
            let rec = OutboxRecord {
                client_msg_id,
                mesh_id: mesh_id.clone(),
                to: p.to,
                target: target.to_string(),
                priority: p.priority,
                plaintext,
                envelopes,
                created_at: self.send_time(),
                attempts: 0,
            };
            reply.id = Some(rec.client_msg_id.clone());
            let pending = LocalEvent::Outbox {
                mesh: reply.mesh.clone(),
                client_msg_id: rec.client_msg_id.clone(),
                state: SendState::Pending,
                sent: Some(Box::new(rec.sent_record())),
            };
            self.write(StoreOp::Outbox(rec.clone()));
            // Published after the commit, like every event: the record is durable by then.
            self.publish(Topic::Outbox, Some(&mesh_id), None, &pending);
            self.effect(Effect::Uplink(mesh_id, UplinkCmd::Queued(Box::new(rec))));
        }
        if let Some(s) = self.state.sessions.get_mut(&from_session) {
            s.last_active = now;
        }
        let v = to_value(&reply)?;
        if let Some(k) = p.idempotency_key {
            self.write(StoreOp::Idempotency { key: k, reply: v.clone(), at: now_ms() });
        }
        Ok(v)
    }

    /// When a new send is made (Unix ms), later than every earlier send of this process: the
    /// outbox drains, and `sent` lists, in this order, so two sends in one millisecond keep the
    /// order they were made in.
    fn send_time(&mut self) -> u64 {
        self.last_send_at = now_ms().max(self.last_send_at + 1);
        self.last_send_at
    }

    /// The mesh a send goes to: the one named; else the one joined mesh where `to` resolves;
    /// else the only mesh.
    fn send_mesh(&self, p: &SendParams) -> Result<String, ApiError> {
        let meshes = &self.state.meshes;
        if let Some(m) = &p.mesh {
            return resolve_mesh(meshes, Some(m)).map_err(|e| (ErrorCode::NotFound, e));
        }
        let mut hits: Vec<(&String, &str)> = meshes
            .iter()
            .filter(|(_, v)| resolve_target(v, &p.to).is_ok())
            .map(|(id, v)| (id, v.config.slug.as_str()))
            .collect();
        match hits.len() {
            1 => Ok(hits[0].0.clone()),
            0 => resolve_mesh(meshes, None).map_err(|e| (ErrorCode::NotFound, e)),
            _ => {
                hits.sort_by_key(|h| h.1);
                let slugs: Vec<&str> = hits.iter().map(|h| h.1).collect();
                Err((
                    ErrorCode::Conflict,
                    format!(
                        "{:?} exists in several meshes ({}); say which with --mesh",
                        p.to,
                        slugs.join(", ")
                    ),
                ))
            }
        }
    }

    /// This agent's other sessions that a `@g` or `*` send reaches.
    fn siblings(&self, mesh_id: &str, from_session: &str, target: &Target) -> Vec<String> {
        if !matches!(target, Target::Broadcast | Target::Group(_)) {
            return Vec::new();
        }
        let view = self.state.meshes.get(mesh_id);
        let mut v: Vec<String> = self
            .state
            .sessions
            .values()
            .filter(|s| s.info.session_id != from_session && s.addressed_by(target, mesh_id, view))
            .map(|s| s.info.session_id.clone())
            .collect();
        v.sort();
        v
    }

    /// Puts a `@g`/`*` message straight into the inbox for this agent's other matching sessions.
    #[allow(clippy::too_many_arguments)]
    fn deliver_to_siblings(
        &mut self,
        mesh_id: &str,
        slug: &str,
        own_member: &str,
        target: &Target,
        priority: Priority,
        plaintext: &MessagePlaintext,
        now: Instant,
    ) {
        let at = now_ms();
        let rec = InboxRecord {
            message: InboxMessage {
                msg_id: format!("local-{}", uuid::Uuid::new_v4()),
                mesh: slug.to_string(),
                from_member: own_member.to_string(),
                from_session: plaintext.from_session.clone(),
                from_name: plaintext.from_name.clone(),
                session_name: None,
                target: target.to_string(),
                priority,
                body: plaintext.body.clone(),
                reply_to: plaintext.reply_to.clone(),
                meta: plaintext.meta.clone(),
                sent_at: at,
                received_at: at,
                seen: false,
                read: false,
                error: None,
            },
            mesh_id: mesh_id.to_string(),
            deliveries: Default::default(),
            pending: false,
            replay: None,
            box_nonce: None,
            resent_as: Vec::new(),
        };
        // Routed like any message, except to the session that sent it.
        self.deliver_new(rec, Some(&plaintext.from_session), now);
    }
}

/// The broker's size rules for sealed envelopes
/// ([`claudemesh_protocol::crypto::check_envelope_sizes`]), checked where the sender can still be
/// told: a body under [`MAX_BODY_BYTES`] can exceed them once JSON-escaped (quotes, backslashes
/// and control characters take two to six bytes each) or sealed for many recipients.
/// `body_len` is bytes.
fn check_sealed(
    envelopes: &[claudemesh_protocol::frames::Envelope],
    body_len: usize,
) -> Result<(), (ErrorCode, String)> {
    // Sealed size grows in step with the body (plus a little of its own), so about this much of
    // a body like this one fits; 3 % off for that little.
    let fits = |sealed: usize, limit: usize| body_len.saturating_mul(limit) / sealed.max(1) / 100 * 97;
    let message = match check_envelope_sizes(envelopes) {
        Ok(()) => return Ok(()),
        Err(EnvelopeSizeError::Box { len, .. }) => format!(
            "message is {body_len} bytes, but quotes, backslashes and control characters take two to six \
             bytes each once encoded: sealed it is {len} bytes, at most {MAX_ENVELOPE_CIPHERTEXT_B64}; about \
             {} bytes of text like this fit: shorten it (nothing was sent)",
            fits(len, MAX_ENVELOPE_CIPHERTEXT_B64)
        ),
        Err(EnvelopeSizeError::Total { total, count }) => format!(
            "message sealed for {count} recipients is {total} bytes, at most {MAX_SEND_ENVELOPE_BYTES}: \
             shorten it to about {} bytes or send to fewer members (nothing was sent)",
            fits(total, MAX_SEND_ENVELOPE_BYTES)
        ),
    };
    Err((ErrorCode::TooLarge, message))
}
