//! What the broker links report, applied by the core: link state, the member directory and
//! presence, and pushed messages, which are opened (or stored with the reason they could not
//! be), stored once per msg_id, routed and pushed; the link acknowledges only after the commit.

use std::time::Instant;

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::crypto::open_message;
use claudemesh_protocol::frames::{Event, Push};
use claudemesh_protocol::local::{InboxMessage, LinkState, LocalEvent, Topic};

use super::input::UplinkEvent;
use super::{Core, Effect, now_ms};
use crate::store::{InboxRecord, StoreOp};

impl Core {
    pub(crate) fn uplink(&mut self, mesh_id: &str, event: UplinkEvent, now: Instant) {
        let Some(v) = self.state.meshes.get_mut(mesh_id) else {
            if let UplinkEvent::Push { stored, .. } = event {
                let _ = stored.send(false);
            }
            return;
        };
        let slug = v.config.slug.clone();
        match event {
            UplinkEvent::Link { state, detail, retry_in, refusal } => {
                v.retry_at = retry_in.map(|d| now + d);
                v.refusal = refusal;
                if v.link == state && v.link_detail == detail {
                    self.changed();
                    return;
                }
                v.link = state;
                v.link_detail.clone_from(&detail);
                v.connected_since = (state == LinkState::Connected).then_some(now);
                tracing::info!(mesh = %slug, ?state, detail = detail.as_deref().unwrap_or(""), "link");
                self.changed();
                self.publish(
                    Topic::Links,
                    Some(mesh_id),
                    None,
                    &LocalEvent::Links { mesh: slug, state, detail },
                );
            }
            UplinkEvent::Hello { role, public_url } => {
                v.config.role = role;
                v.public_url = public_url;
                self.changed();
            }
            UplinkEvent::Directory { members, former, done } => {
                v.set_directory(members, former);
                if let Some(d) = done {
                    self.effect(Effect::Done(d));
                }
                self.changed();
                // Granted groups may have changed: what waits for a group may have a session now.
                self.route_pending(now);
            }
            UplinkEvent::Peers(sessions) => {
                v.peers = sessions.into_iter().map(|p| (p.session.session_id.clone(), p)).collect();
                self.changed();
            }
            UplinkEvent::Events(events) => self.events(mesh_id, &slug, events, now),
            UplinkEvent::Push { push, stored } => {
                v.remember_sender(&push.from.session_id, &push.from.member_id);
                self.receive(mesh_id, &slug, &push, now);
                self.effect(Effect::Stored(stored));
            }
            UplinkEvent::Outbox { client_msg_id, state } => {
                self.write(StoreOp::OutboxFinish {
                    client_msg_id: client_msg_id.clone(),
                    state: state.clone(),
                });
                self.changed();
                self.publish(
                    Topic::Outbox,
                    Some(mesh_id),
                    None,
                    &LocalEvent::Outbox { mesh: slug, client_msg_id, state },
                );
            }
        }
    }

    fn events(&mut self, mesh_id: &str, slug: &str, events: Vec<Event>, now: Instant) {
        let at = now_ms();
        let mut membership = false;
        for e in events {
            if let Some(v) = self.state.meshes.get_mut(mesh_id) {
                v.apply_event(&e, at);
            }
            membership |=
                matches!(e, Event::MemberJoined(_) | Event::MemberUpdated(_) | Event::MemberRemoved { .. });
            // Presence, receipts and expiries go to `presence` subscribers; service events to
            // `services`.
            let (topic, ev) = if e.is_presence() || matches!(e, Event::Receipt { .. } | Event::Expired { .. })
            {
                (Topic::Presence, LocalEvent::Presence { mesh: slug.to_string(), event: e })
            } else {
                (Topic::Services, LocalEvent::Services { mesh: slug.to_string(), event: e })
            };
            self.publish(topic, Some(mesh_id), None, &ev);
        }
        self.changed();
        if membership {
            self.route_pending(now);
        }
    }

    /// Decrypts and stores one push (deduplicated by msg_id), then routes it. Undecryptable
    /// messages are stored with the reason, never dropped.
    fn receive(&mut self, mesh_id: &str, slug: &str, push: &Push, now: Instant) {
        let key = (mesh_id.to_string(), push.msg_id.clone());
        if self.state.live.contains_key(&key) {
            return;
        }
        match self.store.inbox_get(mesh_id, &push.msg_id) {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, msg_id = %push.msg_id, "cannot check the inbox for a duplicate")
            }
        }
        let Some(v) = self.state.meshes.get(mesh_id) else { return };
        let sender = v.members.get(&push.from.member_id);
        let sender_name = sender.map_or_else(|| push.from.member_id.clone(), |x| x.display_name.clone());
        let opened = match sender.map(|x| from_hex_array::<32>("pubkey", &x.pubkey)) {
            None => Err(format!("sender {} is not in the member directory", push.from.member_id)),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(pk)) => {
                open_message(&push.nonce, &push.ciphertext, &pk, &v.key).map_err(|e| e.to_string())
            }
        };
        // A box authenticates the key pair, not the direction: a box we sealed ourselves, sent
        // back to us as if from the peer, opens too. Our own sessions never send us such mail.
        let own_member = v.config.member_id.clone();
        let opened = opened.and_then(|p| {
            let own_session = !p.from_session.is_empty() && self.state.sessions.contains_key(&p.from_session);
            if own_session && push.from.member_id != own_member {
                Err("refused: the box claims one of this agent's own sessions as sender (reflected message)"
                    .into())
            } else {
                Ok(p)
            }
        });
        let (from_name, body, reply_to, meta, error) = match opened {
            Ok(p) => (p.from_name, p.body, p.reply_to, p.meta, None),
            Err(reason) => {
                tracing::warn!(msg_id = %push.msg_id, %reason, "message could not be opened; stored with the reason");
                (sender_name, String::new(), None, Default::default(), Some(reason))
            }
        };
        let message = InboxMessage {
            msg_id: push.msg_id.clone(),
            mesh: slug.to_string(),
            from_member: push.from.member_id.clone(),
            from_session: push.from.session_id.clone(),
            from_name,
            session_name: None,
            target: push.target.to_string(),
            priority: push.priority,
            body,
            reply_to,
            meta,
            sent_at: push.sent_at,
            received_at: now_ms(),
            seen: false,
            error,
        };
        let rec = InboxRecord {
            message,
            mesh_id: mesh_id.to_string(),
            deliveries: Default::default(),
            pending: false,
        };
        self.deliver_new(rec, None, now);
    }
}
