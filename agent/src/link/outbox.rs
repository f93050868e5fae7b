//! The outbox side of a link: send what waits in the outbox, record the broker's answers, and
//! re-seal a message whose recipients changed under it.

use std::time::Duration;

use claudemesh_protocol::crypto::fan_out;
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ErrorFrame, Send, ServerFrame, Target};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Link, Pending};
use crate::resolve::recipients;
use crate::store::SendState;
use crate::uplink::End;

impl Link<'_> {
    /// Sends every outbox entry of this mesh that is not already in flight.
    pub(super) async fn drain_outbox(&mut self) -> Result<(), End> {
        let records = match self.agent.store.outbox_for(self.mesh_id) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read outbox");
                return Ok(());
            }
        };
        for rec in records {
            if self.inflight.contains(&rec.client_msg_id) {
                continue;
            }
            let Ok(target) = rec.target.parse::<Target>() else { continue };
            self.inflight.insert(rec.client_msg_id.clone());
            let id = rec.client_msg_id.clone();
            self.request(
                |req| {
                    ClientFrame::Send(Send {
                        req,
                        client_msg_id: rec.client_msg_id,
                        from_session: rec.plaintext.from_session.clone(),
                        target,
                        priority: rec.priority,
                        envelopes: rec.envelopes,
                    })
                },
                Pending::Outbox(id),
            )
            .await?;
        }
        Ok(())
    }

    pub(super) async fn outbox_reply(&mut self, id: String, reply: ServerFrame) -> Result<(), End> {
        self.inflight.remove(&id);
        let store = &self.agent.store;
        let done = |state| {
            if let Err(e) = store.outbox_finish(&id, state) {
                tracing::error!(error = %e, "cannot record send result");
            }
        };
        match reply {
            ServerFrame::Ack { msg_id, recipients, .. } => done(SendState::Accepted { msg_id, recipients }),
            ServerFrame::Error(ErrorFrame { code: ErrorCode::RateLimited, retry_after_ms, .. }) => {
                let wait = Duration::from_millis(retry_after_ms.unwrap_or(1000));
                self.retry_at =
                    Some(self.retry_at.map_or(Instant::now() + wait, |t| t.min(Instant::now() + wait)));
            }
            ServerFrame::Error(ErrorFrame { code: ErrorCode::Internal | ErrorCode::Unavailable, .. }) => {
                self.retry_at = Some(Instant::now() + Duration::from_secs(5));
            }
            ServerFrame::Error(ErrorFrame { code: ErrorCode::Invalid, message, .. })
                if message.contains("envelopes must be exactly") =>
            {
                self.reseal(&id, &message).await?;
            }
            ServerFrame::Error(e) => {
                done(SendState::Failed { error: format!("{}: {}", e.code.as_str(), e.message) })
            }
            other => done(SendState::Failed { error: format!("unexpected reply {}", other.type_name()) }),
        }
        Ok(())
    }

    /// The directory was stale: refresh it and seal the message again to the right members.
    async fn reseal(&mut self, id: &str, why: &str) -> Result<(), End> {
        let Ok(Some(mut rec)) =
            self.agent.store.outbox_for(self.mesh_id).map(|v| v.into_iter().find(|r| r.client_msg_id == id))
        else {
            return Ok(());
        };
        rec.attempts += 1;
        if rec.attempts > 3 {
            let _ = self.agent.store.outbox_finish(id, SendState::Failed { error: why.to_string() });
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.request(|req| ClientFrame::ListMembers { req }, Pending::Reply(tx)).await?;
        // Wait for the directory inline (other frames are handled when the loop resumes).
        let members = loop {
            let f = self.next_frame(Duration::from_secs(15)).await?;
            if let ServerFrame::Members { req, members, .. } = &f
                && self.pending.get(req).is_some_and(|p| matches!(p, Pending::Reply(_)))
            {
                self.pending.remove(req);
                break members.clone();
            }
            Box::pin(self.frame(f)).await?;
        };
        drop(rx);
        let key = {
            let mut meshes = self.agent.meshes();
            let Some(v) = meshes.get_mut(self.mesh_id) else { return Ok(()) };
            v.members = members.into_iter().map(|m| (m.member_id.clone(), m)).collect();
            let Ok(target) = rec.target.parse::<Target>() else { return Ok(()) };
            match recipients(v, &target) {
                Ok(r) => Some((v.key.clone(), r)),
                Err(e) => {
                    drop(meshes);
                    let _ = self.agent.store.outbox_finish(id, SendState::Failed { error: e.to_string() });
                    None
                }
            }
        };
        let Some((key, to)) = key else { return Ok(()) };
        match fan_out(&rec.plaintext, &to, &key) {
            Ok(env) => {
                rec.envelopes = env;
                let _ = self.agent.store.outbox_update(&rec);
                self.drain_outbox().await
            }
            Err(e) => {
                let _ = self.agent.store.outbox_finish(id, SendState::Failed { error: e.to_string() });
                Ok(())
            }
        }
    }
}
