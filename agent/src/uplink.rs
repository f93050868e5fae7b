//! One broker link per joined mesh: connect (ws/wss), hello, re-open local sessions, keep the
//! member directory and presence fresh, store and ack pushes, and drain the outbox; on loss,
//! reconnect with jittered exponential backoff (1 s → 30 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use claudemesh_protocol::crypto::{fan_out, random_bytes, sign_hello};
use claudemesh_protocol::frames::{
    ClientFrame, ErrorCode, ErrorFrame, Event, FormerMember, Hello, Push, ReceiptState, Send, ServerFrame,
    SessionInfo, SessionPatch, Target, decode_server, encode,
};
use claudemesh_protocol::limits::{IDLE_TIMEOUT_SECS, PING_INTERVAL_SECS};
use claudemesh_protocol::local::{LinkState, LocalEvent, Topic};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::inbox;
use crate::resolve::recipients;
use crate::state::Agent;
use crate::store::SendState;

/// Work for a mesh's link from the rest of the agent.
pub enum UplinkCmd {
    /// A request; the frame is built with the link's next `req`, the reply comes back.
    Request {
        build: Box<dyn FnOnce(u64) -> ClientFrame + std::marker::Send>,
        reply: oneshot::Sender<ServerFrame>,
    },
    /// The outbox has new work.
    Kick,
    SessionOpen(SessionInfo),
    SessionUpdate(String, SessionPatch),
    SessionClose(String),
    Receipt(Vec<String>),
}

impl std::fmt::Debug for UplinkCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UplinkCmd::Request { .. } => "Request",
            UplinkCmd::Kick => "Kick",
            UplinkCmd::SessionOpen(_) => "SessionOpen",
            UplinkCmd::SessionUpdate(..) => "SessionUpdate",
            UplinkCmd::SessionClose(_) => "SessionClose",
            UplinkCmd::Receipt(_) => "Receipt",
        })
    }
}

/// How a connection ended.
enum End {
    Shutdown,
    /// The broker refused this member: do not retry until the config changes.
    Refused(String),
    Lost(String),
}

/// Runs the link of `mesh_id` until `cancel`.
pub async fn run(
    agent: Arc<Agent>,
    mesh_id: String,
    mut rx: mpsc::Receiver<UplinkCmd>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        agent.set_link(&mesh_id, LinkState::Connecting, None);
        let mut connected = false;
        let end = serve(&agent, &mesh_id, &mut rx, &cancel, &mut connected).await;
        if connected {
            backoff = Duration::from_secs(1);
        }
        match end {
            End::Shutdown => return,
            End::Refused(why) => {
                agent.set_link(&mesh_id, LinkState::Refused, Some(why));
                cancel.cancelled().await;
                return;
            }
            End::Lost(why) => {
                // Full jitter: a broker restart does not get every agent back at once.
                let jitter = f64::from(u16::from_le_bytes(random_bytes::<2>())) / f64::from(u16::MAX);
                let wait = backoff.mul_f64(0.5 + jitter / 2.0);
                agent.set_link(
                    &mesh_id,
                    LinkState::Disconnected,
                    Some(format!("{why}; retrying in {:.1}s", wait.as_secs_f64())),
                );
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = sleep(wait) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

enum Pending {
    Reply(oneshot::Sender<ServerFrame>),
    Outbox(String),
    Members,
    Peers,
    Ignore,
}

struct Link<'a> {
    agent: &'a Agent,
    mesh_id: &'a str,
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    req: u64,
    pending: HashMap<u64, Pending>,
    inflight: std::collections::HashSet<String>,
    parked: Vec<Push>,
    retry_at: Option<Instant>,
}

async fn serve(
    agent: &Agent,
    mesh_id: &str,
    rx: &mut mpsc::Receiver<UplinkCmd>,
    cancel: &CancellationToken,
    connected: &mut bool,
) -> End {
    let (url, member_id, key) = {
        let m = agent.meshes();
        let Some(v) = m.get(mesh_id) else { return End::Shutdown };
        (v.config.broker_url.clone(), v.config.member_id.clone(), v.key.clone())
    };
    let connector = match crate::tls::connector_from_env() {
        Ok(c) => c,
        Err(e) => return End::Refused(e),
    };
    // Nagle off: messages are small and latency matters.
    let connect = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, connector),
    );
    let ws = tokio::select! {
        _ = cancel.cancelled() => return End::Shutdown,
        r = connect => match r {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return End::Lost(format!("cannot reach {url}: {e}")),
            Err(_) => return End::Lost(format!("cannot reach {url}: timed out")),
        },
    };
    let mut link = Link {
        agent,
        mesh_id,
        ws,
        req: 0,
        pending: HashMap::new(),
        inflight: Default::default(),
        parked: vec![],
        retry_at: None,
    };
    // welcome → hello → hello_ack
    let challenge = match link.next_frame(Duration::from_secs(15)).await {
        Ok(ServerFrame::Welcome { challenge, .. }) => challenge,
        Ok(other) => return End::Lost(format!("unexpected first frame {}", other.type_name())),
        Err(e) => return e,
    };
    let signature = sign_hello(&key, mesh_id, &member_id, &challenge);
    let hello = ClientFrame::Hello(Hello {
        mesh_id: mesh_id.into(),
        member_id: member_id.clone(),
        pubkey: key.public_hex(),
        signature,
        instance: None,
    });
    if let Err(e) = link.send(&hello).await {
        return e;
    }
    match link.next_frame(Duration::from_secs(15)).await {
        Ok(ServerFrame::HelloAck { role, .. }) => {
            if let Some(m) = agent.meshes().get_mut(mesh_id) {
                m.config.role = role;
            }
        }
        Ok(ServerFrame::Error(e)) => {
            return match e.code {
                ErrorCode::Unauthorized | ErrorCode::Revoked | ErrorCode::BadSignature => {
                    End::Refused(e.message)
                }
                _ => End::Lost(e.message),
            };
        }
        Ok(other) => return End::Lost(format!("unexpected reply to hello: {}", other.type_name())),
        Err(e) => return e,
    }
    *connected = true;
    agent.set_link(mesh_id, LinkState::Connected, None);
    match link.after_hello().await {
        Ok(()) => {}
        Err(e) => return e,
    }
    link.main_loop(rx, cancel).await
}

impl Link<'_> {
    fn next_req(&mut self) -> u64 {
        self.req += 1;
        self.req
    }

    async fn send(&mut self, f: &ClientFrame) -> Result<(), End> {
        self.ws
            .send(Message::Text(encode(f).into()))
            .await
            .map_err(|e| End::Lost(format!("send failed: {e}")))
    }

    async fn request(&mut self, build: impl FnOnce(u64) -> ClientFrame, p: Pending) -> Result<(), End> {
        let req = self.next_req();
        self.pending.insert(req, p);
        self.send(&build(req)).await
    }

    async fn next_frame(&mut self, within: Duration) -> Result<ServerFrame, End> {
        let deadline = Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| End::Lost("broker did not answer".into()))?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return decode_server(t.as_str()).map_err(|e| End::Lost(format!("bad frame: {e}")));
                }
                Some(Ok(Message::Close(c))) => return Err(End::Lost(close_reason(c))),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(End::Lost(e.to_string())),
                None => return Err(End::Lost("connection closed".into())),
            }
        }
    }

    /// Re-opens every local session on this mesh (same ids: the same peers), refreshes the
    /// directory and presence, and starts draining the outbox.
    async fn after_hello(&mut self) -> Result<(), End> {
        let sessions: Vec<SessionInfo> = self
            .agent
            .sessions()
            .values()
            .filter(|s| s.meshes.iter().any(|m| m == self.mesh_id))
            .map(|s| s.info.clone())
            .collect();
        for s in sessions {
            self.request(|req| ClientFrame::SessionOpen { req, session: s }, Pending::Ignore).await?;
        }
        self.request(|req| ClientFrame::ListMembers { req }, Pending::Members).await?;
        self.request(|req| ClientFrame::ListPeers { req }, Pending::Peers).await?;
        Ok(())
    }

    async fn main_loop(mut self, rx: &mut mpsc::Receiver<UplinkCmd>, cancel: &CancellationToken) -> End {
        let mut ping = tokio::time::interval(Duration::from_secs(PING_INTERVAL_SECS));
        ping.tick().await;
        let idle = Duration::from_secs(IDLE_TIMEOUT_SECS);
        let mut deadline = Instant::now() + idle;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let r: Result<(), End> = tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = self.ws.close(None).await;
                    return End::Shutdown;
                }
                _ = sleep_until(deadline) => Err(End::Lost("broker silent for 75 s".into())),
                _ = ping.tick() => self.ws.send(Message::Ping(Default::default())).await.map_err(|e| End::Lost(e.to_string())),
                _ = sleep_until(self.retry_at.unwrap_or(far)), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    self.drain_outbox().await
                }
                cmd = rx.recv() => match cmd {
                    None => return End::Shutdown,
                    Some(c) => self.command(c).await,
                },
                msg = self.ws.next() => {
                    deadline = Instant::now() + idle;
                    match msg {
                        Some(Ok(Message::Text(t))) => match decode_server(t.as_str()) {
                            Ok(f) => self.frame(f).await,
                            Err(e) => {
                                tracing::warn!(error = %e, "ignoring undecodable frame from broker");
                                Ok(())
                            }
                        },
                        Some(Ok(Message::Close(c))) => Err(End::Lost(close_reason(c))),
                        Some(Ok(_)) => Ok(()),
                        Some(Err(e)) => Err(End::Lost(e.to_string())),
                        None => Err(End::Lost("connection closed".into())),
                    }
                }
            };
            if let Err(end) = r {
                return end;
            }
        }
    }

    async fn command(&mut self, c: UplinkCmd) -> Result<(), End> {
        match c {
            UplinkCmd::Request { build, reply } => self.request(build, Pending::Reply(reply)).await,
            UplinkCmd::Kick => self.drain_outbox().await,
            UplinkCmd::SessionOpen(s) => {
                self.request(|req| ClientFrame::SessionOpen { req, session: s }, Pending::Ignore).await
            }
            UplinkCmd::SessionUpdate(id, patch) => {
                self.request(|req| ClientFrame::SessionUpdate { req, session_id: id, patch }, Pending::Ignore)
                    .await
            }
            UplinkCmd::SessionClose(id) => {
                self.request(|req| ClientFrame::SessionClose { req, session_id: id }, Pending::Ignore).await
            }
            UplinkCmd::Receipt(ids) => {
                self.send(&ClientFrame::Receipt { msg_ids: ids, state: ReceiptState::Seen }).await
            }
        }
    }

    /// Sends every outbox entry of this mesh that is not already in flight.
    async fn drain_outbox(&mut self) -> Result<(), End> {
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

    async fn frame(&mut self, f: ServerFrame) -> Result<(), End> {
        match f {
            ServerFrame::Push(p) => self.push(p).await,
            ServerFrame::Event(e) => self.events(vec![e]).await,
            ServerFrame::Events { events } => self.events(events).await,
            ServerFrame::Error(e) if e.req.is_none() => {
                if e.code == ErrorCode::Revoked {
                    return Err(End::Refused(e.message));
                }
                tracing::warn!(code = ?e.code, message = %e.message, "broker error");
                Ok(())
            }
            other => {
                let Some(req) = other.req() else { return Ok(()) };
                match self.pending.remove(&req) {
                    Some(Pending::Reply(tx)) => {
                        let _ = tx.send(other);
                        Ok(())
                    }
                    Some(Pending::Outbox(id)) => self.outbox_reply(id, other).await,
                    Some(Pending::Members) => {
                        if let ServerFrame::Members { members, former, .. } = other
                            && let Some(v) = self.agent.meshes().get_mut(self.mesh_id)
                        {
                            v.members = members.into_iter().map(|m| (m.member_id.clone(), m)).collect();
                            v.former = former.into_iter().map(|f| (f.member_id.clone(), f)).collect();
                        }
                        let parked = std::mem::take(&mut self.parked);
                        for p in parked {
                            self.store_and_ack(p).await?;
                        }
                        self.drain_outbox().await
                    }
                    Some(Pending::Peers) => {
                        if let ServerFrame::Peers { sessions, .. } = other
                            && let Some(v) = self.agent.meshes().get_mut(self.mesh_id)
                        {
                            v.peers =
                                sessions.into_iter().map(|p| (p.session.session_id.clone(), p)).collect();
                        }
                        Ok(())
                    }
                    Some(Pending::Ignore) => {
                        if let ServerFrame::Error(e) = other {
                            tracing::warn!(code = ?e.code, message = %e.message, "broker refused a session update");
                        }
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
        }
    }

    async fn push(&mut self, p: Push) -> Result<(), End> {
        let known =
            self.agent.meshes().get(self.mesh_id).is_some_and(|v| v.members.contains_key(&p.from.member_id));
        if !known {
            // A brand-new member can send before its member_joined event arrives (presence is
            // batched): refresh the directory first, then take the message.
            let first = self.parked.is_empty();
            self.parked.push(p);
            if first {
                self.request(|req| ClientFrame::ListMembers { req }, Pending::Members).await?;
            }
            return Ok(());
        }
        self.store_and_ack(p).await
    }

    async fn store_and_ack(&mut self, p: Push) -> Result<(), End> {
        if let Some(v) = self.agent.meshes().get_mut(self.mesh_id) {
            v.remember_sender(&p.from.session_id, &p.from.member_id);
        }
        match inbox::receive(self.agent, self.mesh_id, &p) {
            // Acknowledge only what is durably stored (new or a duplicate we already have).
            Ok(_) => self.send(&ClientFrame::ClientAck { msg_ids: vec![p.msg_id] }).await,
            Err(e) => {
                tracing::error!(error = %e, msg_id = %p.msg_id, "cannot store message; not acknowledging it so the broker keeps it");
                Ok(())
            }
        }
    }

    async fn events(&mut self, events: Vec<Event>) -> Result<(), End> {
        let slug = self.agent.meshes().get(self.mesh_id).map(|v| v.config.slug.clone()).unwrap_or_default();
        for e in events {
            if let Some(v) = self.agent.meshes().get_mut(self.mesh_id) {
                match &e {
                    Event::PeerJoined(p) | Event::PeerUpdated(p) => {
                        v.peers.insert(p.session.session_id.clone(), p.clone());
                    }
                    Event::PeerLeft { session_id, .. } => {
                        v.peers.remove(session_id);
                    }
                    Event::MemberJoined(m) | Event::MemberUpdated(m) => {
                        v.members.insert(m.member_id.clone(), m.clone());
                    }
                    Event::MemberRemoved { member_id, reason, display_name } => {
                        let name = v
                            .members
                            .remove(member_id)
                            .map(|m| m.display_name)
                            .unwrap_or_else(|| display_name.clone());
                        v.former.insert(
                            member_id.clone(),
                            FormerMember {
                                member_id: member_id.clone(),
                                display_name: name,
                                reason: *reason,
                                at: crate::inbox::now_ms(),
                            },
                        );
                        v.peers.retain(|_, p| &p.member_id != member_id);
                    }
                    _ => {}
                }
            }
            // Presence, receipts and expiries go to `presence` subscribers; service events to
            // `services`.
            let (topic, ev) = if e.is_presence() || matches!(e, Event::Receipt { .. } | Event::Expired { .. })
            {
                (Topic::Presence, LocalEvent::Presence { mesh: slug.clone(), event: e })
            } else {
                (Topic::Services, LocalEvent::Services { mesh: slug.clone(), event: e })
            };
            self.agent.publish(topic, Some(self.mesh_id), None, &ev);
        }
        Ok(())
    }

    async fn outbox_reply(&mut self, id: String, reply: ServerFrame) -> Result<(), End> {
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

fn close_reason(c: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match c {
        Some(c) => format!("broker closed the connection ({} {})", u16::from(c.code), c.reason),
        None => "broker closed the connection".into(),
    }
}
