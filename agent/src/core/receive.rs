//! What the broker links report, applied by the core: link state, the member directory and
//! presence, and pushed messages, which are opened (or stored with the reason they could not
//! be), stored once per msg_id, routed and pushed; the link acknowledges only after the commit.

use std::time::Instant;

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::crypto::{MessagePlaintext, open_message};
use claudemesh_protocol::frames::{Event, Push};
use claudemesh_protocol::limits::REPLAY_WINDOW_SECS;
use claudemesh_protocol::local::{InboxMessage, LinkState, LocalEvent, SkillEvent, Topic};

use super::input::UplinkEvent;
use super::{Core, Effect, now_ms};
use crate::store::{FirstArrival, InboxRecord, StoreOp};

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
                let was: Vec<(String, bool)> =
                    v.members.values().map(|m| (m.member_id.clone(), m.online)).collect();
                let pins = v.set_directory(members, former, now_ms());
                // Dashboards keep members' online flags from events: after a `presence_reset`
                // the broker sent none, so the changes a fresh directory shows are told here.
                let changed: Vec<Event> = was
                    .into_iter()
                    .filter_map(|(id, online)| {
                        let now = v.members.get(&id)?.online;
                        (now != online).then_some(Event::MemberOnline { member_id: id, online: now })
                    })
                    .collect();
                for e in changed {
                    let ev = LocalEvent::Presence { mesh: slug.clone(), event: e };
                    self.publish(Topic::Presence, Some(mesh_id), None, &ev);
                }
                self.pin(mesh_id, pins);
                if let Some(d) = done {
                    self.effect(Effect::Done(d));
                }
                self.changed();
                // Granted groups may have changed: what waits for a group may have a session now.
                self.route_pending(now);
            }
            UplinkEvent::Peers { sessions, refresh, stale, done } => {
                // A full list: presence subscribers learn the sessions it adds or changes, so a
                // dashboard that subscribed before the link (re)connected sees the same peers.
                // After a hello, sessions missing from it are not announced as gone: after a
                // broker restart their agents may not have reconnected yet (they would flap);
                // the broker says `peer_left` for those that do leave. After a
                // `presence_reset` the broker says nothing more of them, so they are.
                let new: std::collections::HashMap<String, _> =
                    sessions.into_iter().map(|p| (p.session.session_id.clone(), p)).collect();
                let mut changes: Vec<Event> = new
                    .values()
                    .filter_map(|p| match v.peers.get(&p.session.session_id) {
                        None => Some(Event::PeerJoined(p.clone())),
                        Some(old) if old != p => Some(Event::PeerUpdated(p.clone())),
                        Some(_) => None,
                    })
                    .collect();
                if refresh {
                    changes.extend(
                        v.peers.values().filter(|p| !new.contains_key(&p.session.session_id)).map(|p| {
                            Event::PeerLeft {
                                member_id: p.member_id.clone(),
                                session_id: p.session.session_id.clone(),
                            }
                        }),
                    );
                }
                v.peers = new;
                v.presence_stale = stale;
                if let Some(d) = done {
                    self.effect(Effect::Done(d));
                }
                self.changed();
                for e in changes {
                    let ev = LocalEvent::Presence { mesh: slug.clone(), event: e };
                    self.publish(Topic::Presence, Some(mesh_id), None, &ev);
                }
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
                    &LocalEvent::Outbox { mesh: slug, client_msg_id, state, sent: None },
                );
            }
        }
    }

    fn events(&mut self, mesh_id: &str, slug: &str, events: Vec<Event>, now: Instant) {
        let at = now_ms();
        let mut membership = false;
        for e in events {
            if let Some(v) = self.state.meshes.get_mut(mesh_id) {
                let pins = v.apply_event(&e, at);
                self.pin(mesh_id, pins);
            }
            if matches!(e, Event::PresenceReset {}) {
                self.presence_reset(mesh_id, slug);
                continue;
            }
            membership |=
                matches!(e, Event::MemberJoined(_) | Event::MemberUpdated(_) | Event::MemberRemoved { .. });
            // Presence, receipts and expiries go to `presence` subscribers; service events to
            // `services`.
            if let Event::McpLog { name, .. } = &e {
                let name = name.clone();
                let ev = LocalEvent::Services { mesh: slug.to_string(), event: e };
                self.publish_log(mesh_id, &name, &ev);
                continue;
            }
            if let Event::SkillChanged { name, action } = e {
                let ev = LocalEvent::Skills(SkillEvent { mesh: slug.to_string(), name, action });
                self.publish(Topic::Skills, Some(mesh_id), None, &ev);
                continue;
            }
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

    /// The broker stopped sending this link presence (`presence_reset`): the view is stale
    /// until the next list. Dashboards watching presence are told, and get a refresh within a
    /// couple of seconds; without one the agent lists again only when something needs the
    /// peers (a `peers` call, a name a send cannot resolve), so a connect storm costs idle
    /// agents nothing.
    fn presence_reset(&mut self, mesh_id: &str, slug: &str) {
        let ev = LocalEvent::Presence { mesh: slug.to_string(), event: Event::PresenceReset {} };
        if self.publish(Topic::Presence, Some(mesh_id), None, &ev) == 0 {
            return;
        }
        if let Some(v) = self.state.meshes.get(mesh_id)
            && v.uplink.try_send(crate::mesh::UplinkCmd::RefreshPresence(None)).is_err()
        {
            tracing::warn!(mesh = %slug, "link queue full; presence is refreshed when next needed");
        }
    }

    /// Stores the pins a verification made.
    fn pin(&mut self, mesh_id: &str, pins: Vec<(String, crate::store::Pin)>) {
        for (member_id, pin) in pins {
            self.write(StoreOp::Pin { mesh_id: mesh_id.to_string(), member_id, pin });
        }
    }

    /// Decrypts and stores one push (deduplicated by msg_id, and by the sender's client message
    /// id against replays), then routes it. A message that cannot be opened, or whose box does
    /// not match the push, is stored with the reason, never dropped and never trusted.
    fn receive(&mut self, mesh_id: &str, slug: &str, push: &Push, now: Instant) {
        // The broker names messages; a name that cannot be a store key part (empty, long, a
        // control character such as the key separator) is a broken or hostile broker's: dropped.
        if push.msg_id.is_empty() || push.msg_id.len() > 128 || push.msg_id.contains(char::is_control) {
            tracing::warn!(msg_id = ?push.msg_id, "a push with an unusable msg_id; dropped");
            return;
        }
        let key = (mesh_id.to_string(), push.msg_id.clone());
        if self.state.live.contains_key(&key) {
            return;
        }
        // Stored, or pruned within the replay window: a redelivery (its ack was lost).
        match self.store.inbox_known(mesh_id, &push.msg_id) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, msg_id = %push.msg_id, "cannot check the inbox for a duplicate")
            }
        }
        let Some(v) = self.state.meshes.get(mesh_id) else { return };
        let sender = v.members.get(&push.from.member_id);
        let sender_name = sender.map_or_else(|| push.from.member_id.clone(), |x| x.display_name.clone());
        let opened = match sender.map(|x| (x, v.trust.usable(&x.member_id))) {
            None => Err(format!("sender {} is not in the member directory", push.from.member_id)),
            Some((_, Err(why))) => Err(format!("refused: the sender's key is not trusted: {why}")),
            Some((x, Ok(()))) => match from_hex_array::<32>("pubkey", &x.pubkey) {
                Err(e) => Err(e.to_string()),
                Ok(pk) => open_message(&push.nonce, &push.ciphertext, &pk, &v.key).map_err(|e| e.to_string()),
            },
        };
        let own_member = v.config.member_id.clone();
        let opened = opened.and_then(|p| check_box(&p, push, &own_member).map(|()| p));
        // The same sender and client message id again under a new msg_id: the same box is a
        // replay (refused, with the reason); a box sealed again is the sender's retry of a send
        // the broker pushed before it failed to store it, so this copy is a duplicate: dropped,
        // and acknowledged so the broker forgets it.
        let first =
            opened.as_ref().ok().and_then(|p| self.replay_of(mesh_id, &p.from_member, &p.client_msg_id));
        if let Some(first) = first.as_ref().filter(|f| !f.same_box(&push.nonce)) {
            tracing::info!(msg_id = %push.msg_id, first = %first.msg_id, "a resent message already in the inbox; dropped as a duplicate");
            self.resent_as(mesh_id, &first.msg_id, &push.msg_id);
            return;
        }
        let opened = opened.and_then(|p| match first {
            Some(first) => Err(format!(
                "refused: a replay of message {} (same sender and client message id) pushed again as a new message",
                first.msg_id
            )),
            None => Ok(p),
        });
        // Older than the agent remembers senders' message ids: it could be a replay of one pruned.
        let opened = opened.and_then(|p| match too_old(p.sent_at, now_ms()) {
            Some(reason) => Err(reason),
            None => Ok(p),
        });
        let box_nonce = opened.is_ok().then(|| push.nonce.clone());
        let (session_name, body, reply_to, meta, priority, sent_at, replay, error) = match opened {
            Ok(p) => {
                let claim = (p.from_name != sender_name).then_some(p.from_name);
                let replay = Some((p.from_member, p.client_msg_id));
                (claim, p.body, p.reply_to, p.meta, p.priority, p.sent_at, replay, None)
            }
            Err(reason) => {
                tracing::warn!(msg_id = %push.msg_id, %reason, "message could not be opened; stored with the reason");
                (
                    None,
                    String::new(),
                    None,
                    Default::default(),
                    push.priority,
                    push.sent_at,
                    None,
                    Some(reason),
                )
            }
        };
        let message = InboxMessage {
            msg_id: push.msg_id.clone(),
            mesh: slug.to_string(),
            from_member: push.from.member_id.clone(),
            from_session: push.from.session_id.clone(),
            from_name: sender_name,
            session_name,
            target: push.target.to_string(),
            priority,
            body,
            reply_to,
            meta,
            sent_at,
            received_at: now_ms(),
            seen: false,
            read: false,
            error,
        };
        let rec = InboxRecord {
            message,
            mesh_id: mesh_id.to_string(),
            deliveries: Default::default(),
            pending: false,
            replay,
            box_nonce,
            resent_as: Vec::new(),
        };
        self.deliver_new(rec, None, now);
    }

    /// The sender's resend of message `first` came as `resent` and was dropped: the sender
    /// knows the message by `resent`, so it hears `seen` for it when `first` is seen, or now if
    /// `first` was seen already (or pruned, which only seen messages are).
    fn resent_as(&mut self, mesh_id: &str, first: &str, resent: &str) {
        let rec = self.inbox_record(&(mesh_id.to_string(), first.to_string())).ok().flatten();
        match rec {
            Some(mut rec) if !rec.message.seen => {
                if !rec.resent_as.iter().any(|r| r == resent) {
                    rec.resent_as.push(resent.to_string());
                    self.put(rec);
                }
            }
            _ => self.receipts(std::collections::BTreeMap::from([(
                mesh_id.to_string(),
                vec![resent.to_string()],
            )])),
        }
    }

    /// How a message with this sender and client message id first arrived: in this turn's
    /// writes, or in the store.
    fn replay_of(&self, mesh_id: &str, from_member: &str, client_msg_id: &str) -> Option<FirstArrival> {
        let pending = self.ops.iter().find_map(|op| match op {
            StoreOp::Inbox(r)
                if r.mesh_id == mesh_id
                    && r.replay.as_ref().is_some_and(|(f, c)| f == from_member && c == client_msg_id) =>
            {
                Some(FirstArrival { msg_id: r.message.msg_id.clone(), nonce: r.box_nonce.clone() })
            }
            _ => None,
        });
        pending.or_else(|| self.store.replayed(mesh_id, from_member, client_msg_id).ok().flatten())
    }
}

/// Why a message sent at `sent_at` (Unix ms, by the sender's clock, from inside the box) is
/// refused at `now`: sent longer ago than [`REPLAY_WINDOW_SECS`], the agent may have forgotten
/// it (pruned, its dedupe keys gone), so showing it could show it twice.
fn too_old(sent_at: u64, now: u64) -> Option<String> {
    let age = now.saturating_sub(sent_at);
    (age > REPLAY_WINDOW_SECS * 1000).then(|| {
        format!(
            "refused: sent {} days ago by the sender's clock, longer than this agent remembers messages \
             ({} days): a replay of an old message, or the sender's clock is wrong",
            age / 86_400_000,
            REPLAY_WINDOW_SECS / 86_400
        )
    })
}

/// What the box says against what the broker's push says (protocol 2): sender member and
/// session, this member as recipient, client message id and target must agree.
fn check_box(p: &MessagePlaintext, push: &Push, own_member: &str) -> Result<(), String> {
    let refuse = |what: &str, inside: &str, outside: &str| {
        Err(format!(
            "refused: the box says {what} {inside:?} but the broker says {outside:?} (a reflected, misdirected or \
             altered message)"
        ))
    };
    if p.from_member != push.from.member_id {
        return refuse("it is from member", &p.from_member, &push.from.member_id);
    }
    if p.to_member != own_member {
        return refuse("it is for member", &p.to_member, own_member);
    }
    if p.from_session != push.from.session_id {
        return refuse("it is from session", &p.from_session, &push.from.session_id);
    }
    if p.client_msg_id != push.client_msg_id {
        return refuse("its client message id is", &p.client_msg_id, &push.client_msg_id);
    }
    if p.target != push.target.to_string() {
        return refuse("its target is", &p.target, &push.target.to_string());
    }
    if p.client_msg_id.is_empty() {
        return Err("refused: the box carries no client message id".into());
    }
    Ok(())
}
