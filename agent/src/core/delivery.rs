//! Routing and the marks (DESIGN §6): which local sessions a message goes to, what waits for a
//! session and when it moves on, channel pushes by priority × status, and take → confirm under
//! a lease, so a message becomes seen only once the output carrying it was written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::{ErrorCode, Target};
use claudemesh_protocol::limits::{CHECK_MESSAGES_DEFAULT_LIMIT, CHECK_MESSAGES_MAX_CHARS, LEASE_MILLIS};
use claudemesh_protocol::local::{
    ConfirmReply, InboxMessage, InboxParams, InboxReply, LocalEvent, MarkSeenReply, Topic,
};
use serde_json::Value;

use super::calls::to_value;
use super::state::{Lease, MsgKey};
use super::{Core, now_ms};
use crate::error::ApiError;
use crate::mesh::{deliverable, resolve_mesh};
use crate::store::{Delivery, InboxRecord, StoreOp};

/// What a take may return.
pub(crate) struct Page {
    pub limit: usize,
    pub max_chars: usize,
}

impl Core {
    /// The open sessions a message to `target` on `mesh_id` goes to now: `session:` that
    /// session; `@g` the sessions in `g`; `*` all; `member:` the most recently active one.
    pub(crate) fn route(&self, mesh_id: &str, target: &Target) -> Vec<String> {
        let view = self.state.meshes.get(mesh_id);
        let mut matching: Vec<_> =
            self.state.sessions.values().filter(|s| s.addressed_by(target, mesh_id, view)).collect();
        if matches!(target, Target::Member(_)) {
            matching.sort_by_key(|s| std::cmp::Reverse(s.last_active));
            matching.truncate(1);
        }
        matching.iter().map(|s| s.info.session_id.clone()).collect()
    }

    /// Where a waiting message goes now: as [`Core::route`]; a message for one session that has
    /// been waiting longer than the session grace goes to the member's most recent session.
    fn route_waiting(&self, key: &MsgKey, rec: &InboxRecord, now: Instant) -> Vec<String> {
        let target = rec.message.target.parse::<Target>().unwrap_or(Target::Broadcast);
        let direct = self.route(&rec.mesh_id, &target);
        if !direct.is_empty() || !matches!(target, Target::Session(_)) {
            return direct;
        }
        let since = self.state.pending_since.get(key).copied().unwrap_or(now);
        if now.saturating_duration_since(since) >= self.session_grace {
            return self.route(&rec.mesh_id, &Target::Member(String::new()));
        }
        Vec::new()
    }

    /// Stores `rec` (queued for this turn's commit) and keeps the live set in step.
    pub(crate) fn put(&mut self, rec: InboxRecord) {
        let key = (rec.mesh_id.clone(), rec.message.msg_id.clone());
        self.write(StoreOp::Inbox(rec.clone()));
        if rec.pending || rec.deliveries.values().any(|d| !d.seen) {
            self.state.set_live(key, rec);
        } else {
            self.state.unset_live(&key);
            self.state.pending_since.remove(&key);
        }
        self.changed();
    }

    /// A message new to the inbox: routed to the sessions open now (or left waiting), stored,
    /// shown once to every `messages` subscription without a session (a dashboard: it marks
    /// nothing), and pushed where priority × status allow.
    /// `except` is a session never to route it to (the sender of a sibling copy).
    pub(crate) fn deliver_new(&mut self, mut rec: InboxRecord, except: Option<&str>, now: Instant) {
        let key = (rec.mesh_id.clone(), rec.message.msg_id.clone());
        let arrived = LocalEvent::Messages(rec.message.clone());
        self.publish(Topic::Messages, Some(&rec.mesh_id), None, &arrived);
        let mut targets = self.route_waiting(&key, &rec, now);
        targets.retain(|s| Some(s.as_str()) != except);
        rec.pending = targets.is_empty();
        rec.deliveries = targets.iter().map(|s| (s.clone(), Delivery::default())).collect();
        if rec.pending {
            self.state.pending_since.insert(key.clone(), now);
        }
        *self.state.inbox_total.entry(rec.mesh_id.clone()).or_default() += 1;
        self.put(rec);
        for s in targets {
            self.push_record(&key, &s, now);
        }
    }

    /// Gives every waiting message the sessions that may take it now (a session opened, joined
    /// a group, or the grace of a closed one ran out).
    pub(crate) fn route_pending(&mut self, now: Instant) -> usize {
        let waiting: Vec<MsgKey> = self.state.waiting.iter().cloned().collect();
        let mut moved = 0;
        for key in waiting {
            let Some(rec) = self.state.live.get(&key) else { continue };
            let targets: Vec<String> = self
                .route_waiting(&key, rec, now)
                .into_iter()
                .filter(|s| !rec.deliveries.get(s).is_some_and(|d| d.seen))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let mut rec = rec.clone();
            rec.pending = false;
            for s in &targets {
                rec.deliveries.insert(s.clone(), Delivery::default());
            }
            self.state.pending_since.remove(&key);
            self.put(rec);
            moved += 1;
            for s in targets {
                self.push_record(&key, &s, now);
            }
        }
        moved
    }

    /// Pushes every message of `session` that may be pushed now.
    pub(crate) fn push_session(&mut self, session: &str, now: Instant) -> usize {
        // Only unseen deliveries can be pushed.
        let keys: Vec<MsgKey> = self.state.unseen_of(session).map(|(k, _)| k.clone()).collect();
        keys.iter().filter(|k| self.push_record(k, session, now)).count()
    }

    /// Publishes message `key` to `session`'s own message subscribers (never to those without a
    /// session: they got it when it arrived) if it is unseen, not pushed, not under a lease, and
    /// priority × status allow it; marks it pushed when one got it.
    pub(crate) fn push_record(&mut self, key: &MsgKey, session: &str, _now: Instant) -> bool {
        let Some(status) = self.state.sessions.get(session).map(|s| s.info.status) else { return false };
        if !self.state.has_message_subscriber(session) || self.state.is_leased(key, session) {
            return false;
        }
        let Some(rec) = self.state.live.get(key) else { return false };
        let Some(d) = rec.deliveries.get(session) else { return false };
        if d.seen || d.pushed || !deliverable(rec.message.priority, status) {
            return false;
        }
        let mut rec = rec.clone();
        let (mesh, ev) = (rec.mesh_id.clone(), LocalEvent::Messages(rec.message.clone()));
        if self.publish(Topic::Messages, Some(&mesh), Some(session), &ev) == 0 {
            return false;
        }
        rec.deliveries
            .insert(session.to_string(), Delivery { pushed: true, pushed_at: Some(now_ms()), seen: false });
        self.put(rec);
        true
    }

    /// The unseen messages of `session` that `pick` accepts and no lease holds, oldest first.
    pub(crate) fn candidates(
        &self,
        session: &str,
        pick: impl Fn(&InboxRecord, &Delivery) -> bool,
    ) -> Vec<MsgKey> {
        let mut v: Vec<(&InboxRecord, &MsgKey)> = self
            .state
            .unseen_of(session)
            .filter(|(k, r)| {
                r.deliveries.get(session).is_some_and(|d| !d.seen && pick(r, d))
                    && !self.state.is_leased(k, session)
            })
            .map(|(k, r)| (r, k))
            .collect();
        v.sort_by(|a, b| {
            (a.0.message.received_at, &a.0.message.msg_id)
                .cmp(&(b.0.message.received_at, &b.0.message.msg_id))
        });
        v.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// Takes the first of `keys` that fit `page` for `session` under a new lease. Returns the
    /// messages, the lease (none when nothing was taken) and how many did not fit.
    pub(crate) fn take(
        &mut self,
        session: &str,
        keys: Vec<MsgKey>,
        page: &Page,
        now: Instant,
    ) -> (Vec<InboxMessage>, Option<u64>, usize) {
        let mut taken = Vec::new();
        let mut chars = 0usize;
        for key in &keys {
            let Some(rec) = self.state.live.get(key) else { continue };
            let len = rec.message.body.chars().count();
            if !taken.is_empty() && (taken.len() >= page.limit || chars + len > page.max_chars) {
                break;
            }
            chars += len;
            taken.push((key.clone(), rec.message.clone()));
        }
        let more = keys.len() - taken.len();
        if taken.is_empty() {
            return (Vec::new(), None, more);
        }
        let id = self.next_id();
        for (k, _) in &taken {
            self.state.leased.entry(k.clone()).or_default().insert(session.to_string());
        }
        let lease = Lease {
            session: Some(session.to_string()),
            items: taken.iter().map(|(k, _)| k.clone()).collect(),
            deadline: now + Duration::from_millis(LEASE_MILLIS),
        };
        self.state.leases.insert(id, lease);
        (taken.into_iter().map(|(_, m)| m).collect(), Some(id), more)
    }

    /// `inbox` with `take`: a page of the session's unseen messages under a lease. (Reads that
    /// take nothing are served by `api::inbox` from the store, off the core.)
    pub(crate) fn inbox(&mut self, p: InboxParams, now: Instant) -> Result<Value, ApiError> {
        let mesh = match &p.mesh {
            Some(m) => Some(resolve_mesh(&self.state.meshes, Some(m)).map_err(|e| (ErrorCode::NotFound, e))?),
            None => None,
        };
        let in_mesh = |r: &InboxRecord| mesh.as_ref().is_none_or(|m| m == &r.mesh_id);
        let wanted = |r: &InboxRecord| p.msg_id.as_ref().is_none_or(|id| id == &r.message.msg_id);
        if let (true, Some(session)) = (p.take, &p.session) {
            if !self.state.sessions.contains_key(session) {
                return Err((
                    ErrorCode::NotFound,
                    format!(
                        "no session {session} registered with this agent; register it before taking its messages"
                    ),
                ));
            }
            let page = Page {
                limit: p.limit.unwrap_or(CHECK_MESSAGES_DEFAULT_LIMIT).max(1) as usize,
                max_chars: p.max_chars.unwrap_or(CHECK_MESSAGES_MAX_CHARS) as usize,
            };
            let keys = self.candidates(session, |r, _| in_mesh(r) && wanted(r));
            let (messages, lease, more) = self.take(session, keys, &page, now);
            if let Some(s) = self.state.sessions.get_mut(session) {
                s.last_active = now;
            }
            return to_value(&InboxReply { messages, lease, more, next: None });
        }
        Err((ErrorCode::Invalid, "take needs the session the messages are shown to".into()))
    }

    /// `confirm`: the messages of `lease` (or only `msg_ids` of them) were shown: seen. The
    /// others are released at once.
    pub(crate) fn confirm(
        &mut self,
        lease: u64,
        msg_ids: Option<&[String]>,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let Some(l) = self.state.leases.get(&lease).cloned() else {
            return to_value(&ConfirmReply { confirmed: 0, expired: true });
        };
        self.release_lease(lease, now);
        let shown: Vec<MsgKey> =
            l.items.into_iter().filter(|k| msg_ids.is_none_or(|ids| ids.contains(&k.1))).collect();
        let n = self.mark_keys_seen(&shown, l.session.as_deref());
        if let Some(s) = l.session.as_deref() {
            self.push_session(s, now);
        }
        to_value(&ConfirmReply { confirmed: n, expired: false })
    }

    /// Ends a lease: its messages are no longer held (unseen ones are offered again).
    pub(crate) fn release_lease(&mut self, id: u64, _now: Instant) {
        if let Some(l) = self.state.leases.remove(&id) {
            let session = l.session.unwrap_or_default();
            for k in l.items {
                if let Some(held) = self.state.leased.get_mut(&k) {
                    held.remove(&session);
                    if held.is_empty() {
                        self.state.leased.remove(&k);
                    }
                }
            }
            self.changed();
        }
    }

    /// `mark_seen`: messages marked seen by `session`, or by the user at the CLI.
    pub(crate) fn mark_seen(
        &mut self,
        ids: &[String],
        session: Option<&str>,
        _now: Instant,
    ) -> Result<Value, ApiError> {
        let mut keys: Vec<MsgKey> = self.state.live.keys().filter(|k| ids.contains(&k.1)).cloned().collect();
        if session.is_none() {
            // The user may mark what no session holds any more (already seen by one): looked up
            // by key in each mesh the inbox holds, never by reading the whole inbox.
            let meshes: Vec<String> = self.state.inbox_total.keys().cloned().collect();
            for id in ids {
                for mesh in &meshes {
                    let k = (mesh.clone(), id.clone());
                    if keys.contains(&k) {
                        continue;
                    }
                    let Some(rec) = self.inbox_record(&k)? else { continue };
                    if !rec.message.seen {
                        self.state.set_live(k.clone(), rec);
                        keys.push(k);
                    }
                }
            }
        }
        let n = self.mark_keys_seen(&keys, session);
        to_value(&MarkSeenReply { marked: n })
    }

    /// Records that the messages `keys` were shown (to `session`, or to the user), and queues
    /// the receipts. Returns how many were marked.
    pub(crate) fn mark_keys_seen(&mut self, keys: &[MsgKey], session: Option<&str>) -> usize {
        let mut receipts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut n = 0;
        for k in keys {
            let Some(mut rec) = self.state.live.get(k).cloned() else { continue };
            let was_seen = rec.message.seen;
            match session {
                Some(s) => rec.deliveries.entry(s.to_string()).or_default().seen = true,
                None => rec.deliveries.values_mut().for_each(|d| d.seen = true),
            }
            rec.message.seen = true;
            rec.pending = false;
            if !was_seen && rec.message.error.is_none() {
                let ids = receipts.entry(rec.mesh_id.clone()).or_default();
                ids.push(rec.message.msg_id.clone());
                ids.extend(rec.resent_as.iter().cloned());
            }
            self.state.pending_since.remove(k);
            self.put(rec);
            n += 1;
        }
        self.receipts(receipts);
        n
    }
}
