//! One live connection of a mesh's link, after hello: re-open local sessions, keep the member
//! directory and presence fresh, store and ack pushes, drain the outbox, and answer requests
//! the rest of the agent sends through [`UplinkCmd`]. It returns how the connection ended.
//! The outbox side is in `link/outbox.rs`.

use std::collections::HashMap;
use std::time::Duration;

use claudemesh_protocol::frames::{
    ClientFrame, ErrorCode, Event, PeerSession, Push, ReceiptState, ServerFrame, SessionInfo, decode_server,
    encode,
};
use claudemesh_protocol::limits::{IDLE_TIMEOUT_SECS, PING_INTERVAL_SECS};
use claudemesh_protocol::ws::{FRAGMENT_BYTES, text_messages};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{End, UplinkCmd, report};
use crate::core::UplinkEvent;
use crate::shared::Agent;

/// Most message ids in one `client_ack` (~40 bytes each).
const MAX_ACK_BATCH: usize = 1024;

/// A push handed to the core, acknowledged to the broker once the core says it is stored.
type StoreWait = std::pin::Pin<Box<dyn std::future::Future<Output = (String, bool)> + Send>>;

/// The WebSocket of a link.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(super) enum Pending {
    Reply(oneshot::Sender<ServerFrame>),
    Outbox(String),
    /// `list_members`; `refresh` when a presence refresh asked (a refusal keeps the view stale).
    Members {
        refresh: bool,
    },
    /// A page of `list_peers`, with the sessions of the pages before it; `refresh` when the
    /// walk refreshes presence after a `presence_reset` (not the one after hello); `since`,
    /// once the first page came, the link's count of resets then (a later one means the
    /// walk's pages may miss changes).
    Peers {
        all: Vec<PeerSession>,
        refresh: bool,
        since: Option<u64>,
    },
    Ignore,
}

/// A connected link of one mesh.
pub(crate) struct Link<'a> {
    pub(super) agent: &'a Agent,
    pub(super) mesh_id: &'a str,
    ws: Ws,
    /// Pushes the core is storing: acknowledged when it answers.
    storing: FuturesUnordered<StoreWait>,
    req: u64,
    pub(super) pending: HashMap<u64, Pending>,
    /// Outbox sends awaiting the broker's answer: client message id → when it was sent, and
    /// the record (queued again if the broker asks for a retry).
    pub(super) inflight: HashMap<String, (Instant, crate::store::OutboxRecord)>,
    /// Outbox records known to this connection and not sent yet, oldest first.
    pub(super) queue: std::collections::BTreeMap<(u64, String), crate::store::OutboxRecord>,
    /// Ids the last read of the outbox returned: their `Queued` commands, still on their way,
    /// are not queued twice. `None` until the first read.
    pub(super) loaded: Option<std::collections::HashSet<String>>,
    /// Queued sends sealed for this attempt and never sent: every other send is sealed again
    /// before it goes out (`uplink/outbox.rs`, `seal_again`).
    pub(super) fresh: std::collections::HashSet<String>,
    parked: Vec<Push>,
    /// No outbox send before this instant (the broker's `retry_after_ms`, or the pace).
    pub(super) retry_at: Option<Instant>,
    /// Set by a rate-limit refusal: one send per this interval (the broker's hint) until the
    /// backlog is gone, so a backlog costs one `send` per message, not one per message per retry.
    pub(super) pace: Option<Duration>,
    /// The last drain stopped at the in-flight cap with more waiting.
    pub(super) backlog: bool,
    /// When the last rate-limit wait began: refusals of sends made before it say nothing new.
    pub(super) limited_at: Option<Instant>,
    /// Presence refreshes after `presence_reset` (`uplink/presence.rs`).
    pub(super) refresh: super::presence::Refresh,
    /// The pages of a `list_members` listing received so far (members, former), by the `req`
    /// of the page asked for next (`uplink/members.rs`).
    pub(super) member_pages: HashMap<u64, super::members::Paged>,
}

impl<'a> Link<'a> {
    /// A link over `ws`, which has not said hello yet.
    pub(crate) fn new(agent: &'a Agent, mesh_id: &'a str, ws: Ws) -> Self {
        Self {
            agent,
            mesh_id,
            ws,
            storing: FuturesUnordered::new(),
            req: 0,
            pending: HashMap::new(),
            inflight: Default::default(),
            parked: vec![],
            retry_at: None,
            pace: None,
            backlog: false,
            limited_at: None,
            queue: Default::default(),
            loaded: None,
            fresh: Default::default(),
            refresh: Default::default(),
            member_pages: HashMap::new(),
        }
    }

    pub(super) fn next_req(&mut self) -> u64 {
        self.req += 1;
        self.req
    }

    /// Writes one frame; a failure ends the connection. A frame larger than
    /// [`FRAGMENT_BYTES`] goes as fragments, so the broker's read buffer for this connection
    /// stays that small ([`claudemesh_protocol::ws`]).
    pub(crate) async fn send(&mut self, f: &ClientFrame) -> Result<(), End> {
        let lost = |e: tokio_tungstenite::tungstenite::Error| End::Lost(format!("send failed: {e}"));
        for m in text_messages(encode(f), FRAGMENT_BYTES) {
            self.ws.feed(m).await.map_err(lost)?;
        }
        self.ws.flush().await.map_err(lost)
    }

    pub(super) async fn request(
        &mut self,
        build: impl FnOnce(u64) -> ClientFrame,
        p: Pending,
    ) -> Result<(), End> {
        let req = self.next_req();
        self.pending.insert(req, p);
        self.send(&build(req)).await
    }

    /// The next frame from the broker, within `within` (pings and pongs skipped).
    pub(crate) async fn next_frame(&mut self, within: Duration) -> Result<ServerFrame, End> {
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
                Some(Err(e)) => return Err(End::Lost(read_error(&e))),
                None => return Err(End::Lost("connection closed".into())),
            }
        }
    }

    /// Re-opens every local session on this mesh (same ids: the same peers), refreshes the
    /// directory and presence, and starts draining the outbox.
    pub(crate) async fn after_hello(&mut self) -> Result<(), End> {
        let sessions: Vec<SessionInfo> = self
            .agent
            .view()
            .sessions
            .iter()
            .filter(|s| s.meshes.iter().any(|m| m == self.mesh_id))
            .map(|s| s.info.clone())
            .collect();
        for s in sessions {
            self.request(|req| ClientFrame::SessionOpen { req, session: s }, Pending::Ignore).await?;
        }
        self.request(super::members::list_members, Pending::Members { refresh: false }).await?;
        self.request(
            |req| ClientFrame::ListPeers { req, cursor: None, limit: None },
            Pending::Peers { all: vec![], refresh: false, since: None },
        )
        .await?;
        // Service logs local subscribers follow: a new connection follows nothing yet.
        let follows: Vec<String> = self
            .agent
            .view()
            .follows
            .iter()
            .filter(|(m, _)| m == self.mesh_id)
            .map(|(_, s)| s.clone())
            .collect();
        for name in follows {
            self.follow(name).await?;
        }
        Ok(())
    }

    /// `mcp_logs{follow}` for `name`: new lines then come as `mcp_log` events (none of the
    /// old ones: `lines: 0`).
    async fn follow(&mut self, name: String) -> Result<(), End> {
        self.request(|req| ClientFrame::McpLogs { req, name, lines: Some(0), follow: true }, Pending::Ignore)
            .await
    }

    /// Serves the connection (frames, commands, pings, outbox retries) until it ends.
    pub(crate) async fn main_loop(
        mut self,
        rx: &mut mpsc::Receiver<UplinkCmd>,
        cancel: &CancellationToken,
    ) -> End {
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
                _ = sleep_until(self.refresh.due.unwrap_or(far)), if self.refresh.due.is_some() => {
                    self.refresh_due().await
                }
                Some(first) = self.storing.next(), if !self.storing.is_empty() => {
                    // Acknowledge only what is durably stored (new or a duplicate we already
                    // have); the broker keeps the rest and pushes it again. Everything the core
                    // has stored by now goes in one `client_ack` (one broker write, not one each).
                    let mut ids = Vec::new();
                    let mut next = Some(first);
                    while let Some((msg_id, stored)) = next.take() {
                        if stored {
                            ids.push(msg_id);
                        } else {
                            tracing::error!(%msg_id, "cannot store message; not acknowledging it so the broker keeps it");
                        }
                        if ids.len() < MAX_ACK_BATCH {
                            next = self.storing.next().now_or_never().flatten();
                        }
                    }
                    if ids.is_empty() { Ok(()) } else { self.send(&ClientFrame::ClientAck { msg_ids: ids }).await }
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
                        Some(Err(e)) => Err(End::Lost(read_error(&e))),
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
            UplinkCmd::Queued(rec) => {
                self.queued(*rec);
                self.drain_outbox().await
            }
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
            UplinkCmd::Frame(f) => self.send(&f).await,
            UplinkCmd::Follow(name) => self.follow(name).await,
            UplinkCmd::Unfollow(name) => {
                self.request(|req| ClientFrame::McpLogsUnfollow { req, name }, Pending::Ignore).await
            }
            UplinkCmd::RefreshPresence(waiter) => self.ask_refresh(waiter).await,
        }
    }

    pub(super) async fn frame(&mut self, f: ServerFrame) -> Result<(), End> {
        match f {
            ServerFrame::Push(p) => self.push(p).await,
            ServerFrame::Event(e) => self.events(vec![e]).await,
            ServerFrame::Events { events } => self.events(events).await,
            ServerFrame::McpCallForward { call_id, service, tool, arguments, from_member, timeout_ms } => {
                let call =
                    crate::hosting::Forward { call_id, service, tool, arguments, from_member, timeout_ms };
                if let Some(answer) = self.agent.hosting.forward(self.mesh_id, call) {
                    self.send(&answer).await?;
                }
                Ok(())
            }
            ServerFrame::Error(e) if e.req.is_none() => {
                if matches!(e.code, ErrorCode::Revoked | ErrorCode::KeyInUse) {
                    return Err(End::from_error(e));
                }
                tracing::warn!(code = ?e.code, message = %e.message, "broker error");
                Ok(())
            }
            other => {
                // A page of the directory waits for the rest (`uplink/members.rs`).
                let Some(other) = self.whole_members(other).await? else { return Ok(()) };
                let Some(req) = other.req() else { return Ok(()) };
                match self.pending.remove(&req) {
                    Some(Pending::Reply(tx)) => {
                        let _ = tx.send(other);
                        Ok(())
                    }
                    Some(Pending::Outbox(id)) => self.outbox_reply(id, other).await,
                    Some(Pending::Members { refresh }) => {
                        if !matches!(other, ServerFrame::Members { .. }) && refresh {
                            // The online flags were not listed: the refresh ends stale.
                            self.refresh.members_failed = true;
                        }
                        if let ServerFrame::Members { members, former, .. } = other {
                            // Applied before the parked pushes are opened against it.
                            let (done, applied) = oneshot::channel();
                            let event = UplinkEvent::Directory { members, former, done: Some(done) };
                            report(self.agent, self.mesh_id, event).await;
                            let _ = applied.await;
                        }
                        let parked = std::mem::take(&mut self.parked);
                        for p in parked {
                            self.store_and_ack(p).await?;
                        }
                        self.drain_outbox().await
                    }
                    Some(Pending::Peers { mut all, refresh, since }) => {
                        let ServerFrame::Peers { sessions, next, .. } = other else {
                            // Refused (rate-limited, say): the view stays stale; the next need
                            // or reset asks again.
                            self.refresh.end_failed(refresh);
                            return Ok(());
                        };
                        all.extend(sessions);
                        // A reset received before the first page came from changes that page
                        // shows; one after it, from changes later pages may not.
                        let since = since.unwrap_or(self.refresh.resets);
                        match next {
                            // More pages: presence is reported once, whole.
                            Some(cursor) => {
                                let build =
                                    |req| ClientFrame::ListPeers { req, cursor: Some(cursor), limit: None };
                                self.request(build, Pending::Peers { all, refresh, since: Some(since) }).await
                            }
                            None => {
                                let stale = self.refresh.resets > since;
                                self.peers_listed(all, refresh, stale).await;
                                Ok(())
                            }
                        }
                    }
                    Some(Pending::Ignore) => {
                        if let ServerFrame::Error(e) = other {
                            tracing::warn!(code = ?e.code, message = %e.message, "broker refused a session or log-follow request");
                        }
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
        }
    }

    async fn push(&mut self, p: Push) -> Result<(), End> {
        let known = self
            .agent
            .view()
            .meshes
            .get(self.mesh_id)
            .is_some_and(|v| v.members.contains_key(&p.from.member_id));
        if !known {
            // A brand-new member can send before its member_joined event arrives (presence is
            // batched): refresh the directory first, then take the message.
            let first = self.parked.is_empty();
            self.parked.push(p);
            if first {
                self.request(super::members::list_members, Pending::Members { refresh: false }).await?;
            }
            return Ok(());
        }
        self.store_and_ack(p).await
    }

    /// Hands a push to the core; the main loop acknowledges it once the core stored it.
    async fn store_and_ack(&mut self, p: Push) -> Result<(), End> {
        let (stored, rx) = oneshot::channel();
        let msg_id = p.msg_id.clone();
        report(self.agent, self.mesh_id, UplinkEvent::Push { push: Box::new(p), stored }).await;
        self.storing.push(Box::pin(async move { (msg_id, rx.await.unwrap_or(false)) }));
        Ok(())
    }

    async fn events(&mut self, events: Vec<Event>) -> Result<(), End> {
        // Counted for the `list_peers` walks in flight (see `Pending::Peers::since`).
        let resets = events.iter().filter(|e| matches!(e, Event::PresenceReset {})).count();
        self.refresh.resets += resets as u64;
        report(self.agent, self.mesh_id, UplinkEvent::Events(events)).await;
        Ok(())
    }
}

/// Why a read ended, in words for `status`: a connection that was reset or dropped reads as
/// the broker going away, not as tungstenite's protocol wording.
fn read_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
    match e {
        E::Protocol(P::ResetWithoutClosingHandshake) | E::ConnectionClosed | E::AlreadyClosed => {
            "the broker went away: the connection closed without a goodbye".into()
        }
        E::Io(io) => format!("the connection to the broker failed: {io}"),
        other => other.to_string(),
    }
}

fn close_reason(c: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match c {
        Some(c) => format!("broker closed the connection ({} {})", u16::from(c.code), c.reason),
        None => "broker closed the connection".into(),
    }
}
