//! The outbox side of a link: send what waits in the outbox, record the broker's answers, and
//! re-seal a message whose recipients changed under it.

use std::time::Duration;

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::crypto::fan_out;
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ErrorFrame, Send, ServerFrame, Target};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::End;
use super::link::{Link, Pending};
use crate::core::UplinkEvent;
use crate::mesh::resolve::recipients;
use crate::store::{OutboxRecord, SendState};

/// Outbox sends in flight at once when the broker is not pacing us.
const MAX_IN_FLIGHT: usize = 256;

impl Link<'_> {
    /// Reads this mesh's outbox into the queue: once per connection, and again only when a
    /// `Queued` command was lost on the way (so each send costs O(1), not a read of the whole
    /// outbox). Records in flight stay where they are.
    fn load_outbox(&mut self) -> bool {
        let missed = self
            .agent
            .view()
            .meshes
            .get(self.mesh_id)
            .is_some_and(|v| v.outbox_missed.swap(false, std::sync::atomic::Ordering::AcqRel));
        if self.loaded.is_some() && !missed {
            return true;
        }
        let records = match self.agent.store.outbox_for(self.mesh_id) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read outbox");
                return false;
            }
        };
        let mut ids = std::collections::HashSet::with_capacity(records.len());
        for r in records {
            ids.insert(r.client_msg_id.clone());
            if !self.inflight.contains_key(&r.client_msg_id) {
                self.queue.insert((r.created_at, r.client_msg_id.clone()), r);
            }
        }
        self.loaded = Some(ids);
        true
    }

    /// A send the core just committed: queued, unless the last read of the outbox had it.
    pub(super) fn queued(&mut self, rec: OutboxRecord) {
        let Some(loaded) = &self.loaded else { return };
        if !loaded.contains(&rec.client_msg_id) && !self.inflight.contains_key(&rec.client_msg_id) {
            self.fresh.insert(rec.client_msg_id.clone());
            self.queue.insert((rec.created_at, rec.client_msg_id.clone()), rec);
        }
    }

    /// Sends queued outbox entries of this mesh: none while a retry wait runs, one per pace
    /// interval after a rate limit, else up to [`MAX_IN_FLIGHT`] at once.
    pub(super) async fn drain_outbox(&mut self) -> Result<(), End> {
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            // The timer drains when the wait is over; a new local send does not jump it.
            return Ok(());
        }
        self.retry_at = None;
        if !self.load_outbox() {
            return Ok(());
        }
        let limit = if self.pace.is_some() { 1 } else { MAX_IN_FLIGHT };
        if self.queue.is_empty() {
            // Nothing left to send: the pace ends with the backlog.
            self.pace = None;
        }
        self.backlog = false;
        let mut sent = 0;
        while !self.queue.is_empty() {
            if self.inflight.len() >= MAX_IN_FLIGHT || sent >= limit {
                self.backlog = true;
                break;
            }
            let Some((_, mut rec)) = self.queue.pop_first() else { break };
            let id = rec.client_msg_id.clone();
            if !self.fresh.remove(&id) {
                self.seal_again(&mut rec);
            }
            let Ok(target) = rec.target.parse::<Target>() else {
                let error = format!("the stored target {:?} cannot be read", rec.target);
                self.finish(&id, SendState::Failed { error }).await;
                continue;
            };
            sent += 1;
            let frame = Send {
                req: 0,
                client_msg_id: id.clone(),
                from_session: rec.plaintext.from_session.clone(),
                target,
                priority: rec.priority,
                envelopes: rec.envelopes.clone(),
            };
            self.inflight.insert(id.clone(), (Instant::now(), rec));
            self.request(|req| ClientFrame::Send(Send { req, ..frame }), Pending::Outbox(id)).await?;
        }
        if let Some(pace) = self.pace.filter(|_| sent > 0) {
            self.retry_at = Some(Instant::now() + pace);
        }
        Ok(())
    }

    /// Seals a send that may have gone out before again, with fresh nonces, to the same
    /// members: read back from the outbox (a new connection, a restart) or queued again after
    /// the broker could not store it. The broker pushes to online recipients before its
    /// commit's disk sync, so an earlier attempt may have reached them under a msg_id the
    /// broker then lost; a recipient drops this retry as a duplicate (same sender and client
    /// message id, another nonce) and still refuses a broker's replay of the first box (the
    /// same nonce). A member no longer in the directory, or whose key is not trusted now,
    /// keeps its old envelope (the broker answers `recipients_changed` if it is gone, and the
    /// send is resealed as a whole).
    fn seal_again(&self, rec: &mut OutboxRecord) {
        let view = self.agent.view();
        let Some(v) = view.meshes.get(self.mesh_id) else { return };
        for e in rec.envelopes.iter_mut() {
            let Some(pk) = v
                .members
                .get(&e.member_id)
                .filter(|_| v.trust.usable(&e.member_id).is_ok())
                .and_then(|m| from_hex_array::<32>("pubkey", &m.pubkey).ok())
            else {
                continue;
            };
            match fan_out(&rec.plaintext, &[(e.member_id.clone(), pk)], &v.key) {
                Ok(mut sealed) => {
                    if let Some(n) = sealed.pop() {
                        *e = n;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, member = %e.member_id, "cannot seal a resend again; sending the first box")
                }
            }
        }
    }

    /// A send the broker asked to retry goes back in the queue, in its place.
    fn requeue(&mut self, rec: Option<OutboxRecord>) {
        if let Some(rec) = rec {
            self.queue.insert((rec.created_at, rec.client_msg_id.clone()), rec);
        }
    }

    pub(super) async fn outbox_reply(&mut self, id: String, reply: ServerFrame) -> Result<(), End> {
        let (sent_at, rec) = self.inflight.remove(&id).map_or((None, None), |(t, r)| (Some(t), Some(r)));
        match reply {
            ServerFrame::Ack { msg_id, recipients, .. } => {
                self.finish(&id, SendState::Accepted { msg_id, recipients }).await;
                // Room in flight again: send more, unless paced (the timer does that).
                if self.backlog && self.pace.is_none() {
                    self.drain_outbox().await?;
                }
            }
            ServerFrame::Error(ErrorFrame { code: ErrorCode::RateLimited, retry_after_ms, .. }) => {
                // Wait as the broker says, then go at its pace: one send per that interval, with
                // a tenth (at least 2 ms) to spare so timer jitter does not cost a refusal. A
                // hint can be short (a token nearly refilled); a paced send refused means the
                // pace is too quick: slow it by a quarter. Refusals of sends that were already in
                // flight when the wait began say nothing new about the pace.
                let wait = Duration::from_millis(retry_after_ms.unwrap_or(1000).max(1));
                let hinted = wait + (wait / 10).max(Duration::from_millis(2));
                let stale = match (sent_at, self.limited_at) {
                    (Some(sent), Some(limited)) => sent < limited,
                    _ => false,
                };
                self.pace = Some(match self.pace {
                    None => hinted,
                    Some(p) if stale => p.max(hinted),
                    Some(p) => hinted.max(p + p / 4),
                });
                let now = Instant::now();
                if !stale {
                    self.limited_at = Some(now);
                }
                self.retry_at = Some(self.retry_at.map_or(now + wait, |t| t.max(now + wait)));
                self.requeue(rec);
            }
            ServerFrame::Error(ErrorFrame {
                code: ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::StorageFull,
                ..
            }) => {
                self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                self.requeue(rec);
            }
            ServerFrame::Error(ErrorFrame { code: ErrorCode::RecipientsChanged, message, .. }) => {
                if let Some(rec) = rec {
                    self.reseal(rec, &message).await?;
                }
            }
            ServerFrame::Error(e) => {
                self.finish(&id, SendState::Failed { error: format!("{}: {}", e.code.as_str(), e.message) })
                    .await
            }
            other => {
                self.finish(
                    &id,
                    SendState::Failed { error: format!("unexpected reply {}", other.type_name()) },
                )
                .await
            }
        }
        Ok(())
    }

    /// Ends a send: the core records its final state (out of the outbox, batched with the
    /// turn's other writes) and tells the `outbox` topic.
    async fn finish(&mut self, id: &str, state: SendState) {
        super::report(self.agent, self.mesh_id, UplinkEvent::Outbox { client_msg_id: id.to_string(), state })
            .await;
    }

    /// The directory was stale: refresh it and seal the message again to the right members.
    async fn reseal(&mut self, mut rec: OutboxRecord, why: &str) -> Result<(), End> {
        let id = rec.client_msg_id.clone();
        let id = id.as_str();
        rec.attempts += 1;
        if rec.attempts > 3 {
            self.finish(id, SendState::Failed { error: why.to_string() }).await;
            return Ok(());
        }
        let (tx, mut rx) = oneshot::channel();
        self.request(super::members::list_members, Pending::Reply(tx)).await?;
        // Wait inline for this listing's own answer (its pages joined, `rx` follows it from page
        // to page); every frame meanwhile, another caller's listing included, is handled as
        // usual.
        let reply = loop {
            let f = self.next_frame(Duration::from_secs(15)).await?;
            Box::pin(self.frame(f)).await?;
            match rx.try_recv() {
                Ok(reply) => break reply,
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => return Ok(()),
            }
        };
        let ServerFrame::Members { members, former, .. } = reply else {
            // Refused (rate-limited, say): try this send again in a second, resealed then.
            self.retry_at = Some(Instant::now() + Duration::from_secs(1));
            self.requeue(Some(rec));
            return Ok(());
        };
        // Resealed against the fresh directory, which the core takes too.
        let Some(mut v) = self.agent.view().meshes.get(self.mesh_id).cloned() else { return Ok(()) };
        v.set_directory(members.clone(), former.clone(), crate::core::now_ms());
        super::report(self.agent, self.mesh_id, UplinkEvent::Directory { members, former, done: None }).await;
        let Ok(target) = rec.target.parse::<Target>() else { return Ok(()) };
        let to = match recipients(&v, &target) {
            Ok(r) => r,
            Err(e) => {
                self.finish(id, SendState::Failed { error: e.to_string() }).await;
                return Ok(());
            }
        };
        match fan_out(&rec.plaintext, &to, &v.key) {
            Ok(env) => {
                rec.envelopes = env;
                self.fresh.insert(id.to_string());
                if let Err(e) = self.agent.store.outbox_update(&rec) {
                    tracing::warn!(error = %e, "cannot store a resealed send; sending it anyway");
                }
                self.requeue(Some(rec));
                self.drain_outbox().await
            }
            Err(e) => {
                self.finish(id, SendState::Failed { error: e.to_string() }).await;
                Ok(())
            }
        }
    }
}
