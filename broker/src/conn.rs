//! One WebSocket connection: welcome and authentication, the reader loop that dispatches
//! frames to the handler families, and the writer task that batches presence, pings, and
//! coalesces flushes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use claudemesh_protocol::codec::to_hex;
use claudemesh_protocol::crypto::random_bytes;
use claudemesh_protocol::frames::{
    AgentInstance, ClientFrame, ErrorCode, Event, ServerFrame, decode_client, encode,
};
use claudemesh_protocol::limits::{CLOSE_POLICY, CLOSE_REPLACED, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::handlers;
use crate::hub::{ConnHandle, Hub, Mesh, Outgoing};
use crate::keyuse::{Verdict, key_in_use_message};
use crate::store::{QUEUE, key, read_scan};

/// Outgoing queue per connection. A connection this far behind is dropped (nothing is lost:
/// undelivered messages stay queued durably and are re-pushed on reconnect).
const OUT_QUEUE: usize = 4096;

/// The authenticated identity of a connection.
#[derive(Debug, Clone)]
pub struct Authed {
    pub mesh: Arc<Mesh>,
    pub member_id: String,
}

/// Per-connection context handed to handlers.
#[derive(Debug)]
pub struct Conn {
    pub hub: Arc<Hub>,
    pub out: ConnHandle,
    pub challenge: String,
    pub auth: Option<Authed>,
}

impl Conn {
    /// Sends a frame to this connection.
    pub fn reply(&self, frame: &ServerFrame) {
        if let ServerFrame::Error(e) = frame {
            self.hub.metrics.error(e.code);
        }
        self.out.send(Outgoing::Frame(encode(frame), frame.type_name()));
    }

    pub fn error(&self, req: Option<u64>, code: ErrorCode, message: impl Into<String>) {
        self.reply(&ServerFrame::error(req, code, message));
    }

    /// Sends an error, then closes with 1008 (failed hello or enroll).
    pub fn refuse(&self, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        self.error(None, code, message.clone());
        self.out.send(Outgoing::Close(CLOSE_POLICY, truncate_reason(&message)));
    }

    /// Binds this connection to a member: registers it with the mesh (replacing an older
    /// connection of the same member, closed with 4000) and replays its queue. `instance` is
    /// the agent process connecting, when it said; two different instances replacing each
    /// other again and again are two agents with one key, and the one that started later is
    /// stopped with `key_in_use` (see [`crate::keyuse`]).
    pub fn bind(
        &mut self,
        mesh: Arc<Mesh>,
        member_id: String,
        instance: Option<AgentInstance>,
    ) -> Result<(), (ErrorCode, String)> {
        self.out.instance = instance;
        let online_event = {
            let mut guard = mesh.lock();
            let st = &mut *guard;
            // Removed while its hello was being checked: do not register it again.
            let Some(name) =
                st.members.get(&member_id).filter(|m| !m.removed).map(|m| m.display_name.clone())
            else {
                return Err((
                    ErrorCode::Revoked,
                    format!("member {member_id} was removed from mesh {}", mesh.slug),
                ));
            };
            let replacing = st.conns.contains_key(&member_id);
            let current = st.conns.get(&member_id).and_then(|c| c.instance.clone());
            let verdict = if replacing {
                let rule = self.hub.config.key_use_rule();
                let tracker = st.key_use.entry(member_id.clone()).or_default();
                tracker.judge(current.as_ref(), self.out.instance.as_ref(), std::time::Instant::now(), rule)
            } else {
                Verdict::Replace
            };
            if verdict == Verdict::RefuseNewcomer
                && let Some(other) = &current
            {
                tracing::warn!(mesh = %mesh.slug, member = %member_id, "two agents use one member key; refused the one that started later");
                return Err((ErrorCode::KeyInUse, key_in_use_message(&name, &member_id, &mesh.slug, other)));
            }
            if !replacing && st.conns.len() >= self.hub.config.max_connections_per_mesh {
                return Err((
                    ErrorCode::Limit,
                    format!(
                        "mesh {} has its maximum of {} connections",
                        mesh.slug, self.hub.config.max_connections_per_mesh
                    ),
                ));
            }
            match st.conns.insert(member_id.clone(), self.out.clone()) {
                Some(old) if verdict == Verdict::CloseCurrent => {
                    tracing::warn!(mesh = %mesh.slug, member = %member_id, "two agents use one member key; closed the one that started later");
                    let other = self.out.instance.as_ref().map_or_else(
                        || format!("the key of member {name} ({member_id}) is in use by another agent"),
                        |i| key_in_use_message(&name, &member_id, &mesh.slug, i),
                    );
                    self.hub.metrics.error(ErrorCode::KeyInUse);
                    old.send(Outgoing::Frame(
                        encode(&ServerFrame::error(None, ErrorCode::KeyInUse, other)),
                        "error",
                    ));
                    old.send(Outgoing::Close(CLOSE_POLICY, "key in use by another agent".into()));
                }
                Some(old) => {
                    old.send(Outgoing::Close(
                        CLOSE_REPLACED,
                        "replaced by a newer connection of this member".into(),
                    ));
                }
                None => {
                    self.hub.metrics.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            (!replacing)
                .then(|| st.members.get(&member_id).map(|m| Event::MemberUpdated(st.member_info(m))))
                .flatten()
        };
        if let Some(ev) = online_event {
            mesh.lock().presence(&ev);
        }
        self.auth = Some(Authed { mesh: mesh.clone(), member_id: member_id.clone() });
        self.spawn_replay(mesh, member_id);
        Ok(())
    }

    /// Re-pushes every queued message of the member, in send order, with backpressure.
    fn spawn_replay(&self, mesh: Arc<Mesh>, member_id: String) {
        let db = self.hub.store.db.clone();
        let tx = self.out.tx.clone();
        let kill = self.out.kill.clone();
        tokio::spawn(async move {
            let prefix = key(&[&mesh.id, &member_id]);
            let rows = match tokio::task::spawn_blocking(move || read_scan(&db, QUEUE, &prefix)).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::error!(mesh = %mesh.slug, member = %member_id, error = %e, "cannot read queue for replay; dropping connection so the agent retries");
                    kill.cancel();
                    return;
                }
                Err(_) => return,
            };
            for (_, v) in rows {
                let text = String::from_utf8_lossy(&v).into_owned();
                tokio::select! {
                    _ = kill.cancelled() => return,
                    r = tx.send(Outgoing::Frame(text, "push")) => if r.is_err() { return },
                }
            }
        });
    }

    fn unbind(&mut self) {
        let Some(a) = self.auth.take() else { return };
        let mut st = a.mesh.lock();
        if st.conns.get(&a.member_id).is_some_and(|c| c.id == self.out.id) {
            st.conns.remove(&a.member_id);
            self.hub.metrics.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let now = std::time::Instant::now();
            for s in st.sessions.values_mut().filter(|s| s.member_id == a.member_id) {
                s.offline_since.get_or_insert(now);
            }
            // A member that just left or was removed is gone: `member_removed` said so already.
            if let Some(m) = st.members.get(&a.member_id).filter(|m| !m.removed) {
                let ev = Event::MemberUpdated(st.member_info(m));
                st.presence(&ev);
            }
        }
    }
}

fn truncate_reason(s: &str) -> String {
    // Close reasons are limited to 123 bytes.
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Runs a connection to completion.
pub async fn run(hub: Arc<Hub>, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let kill = hub.shutdown.child_token();
    let out = ConnHandle { id: hub.next_conn_id(), tx, kill: kill.clone(), instance: None };
    let writer = tokio::spawn(write_loop(sink, rx, kill.clone(), hub.clone()));
    let challenge = to_hex(&random_bytes::<32>());
    let mut conn = Conn { hub: hub.clone(), out, challenge: challenge.clone(), auth: None };
    conn.reply(&ServerFrame::Welcome {
        protocol: PROTOCOL_VERSION,
        challenge,
        broker_version: env!("CARGO_PKG_VERSION").to_string(),
        public_url: hub.config.public_url.clone(),
    });

    let idle = hub.config.idle_timeout;
    let mut deadline = Instant::now() + idle;
    loop {
        tokio::select! {
            _ = kill.cancelled() => break,
            _ = sleep_until(deadline) => {
                conn.out.send(Outgoing::Close(1000, "idle: no frame or pong for too long".into()));
                break;
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                deadline = Instant::now() + idle;
                match msg {
                    Message::Text(t) => handle_text(&mut conn, t.as_str()).await,
                    Message::Binary(_) => conn.error(None, ErrorCode::Invalid, "binary frames are only accepted during a bundle upload"),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    }
    conn.unbind();
    drop(conn);
    // Let the writer flush a final close; it ends when every sender is gone or it is killed.
    if tokio::time::timeout(Duration::from_secs(2), writer).await.is_err() {
        kill.cancel();
    }
}

async fn handle_text(conn: &mut Conn, text: &str) {
    let frame = match decode_client(text) {
        Ok(f) => f,
        Err(e) => {
            conn.reply(&e.to_error_frame());
            return;
        }
    };
    conn.hub.metrics.frame_in(frame.type_name());
    if conn.auth.is_none() {
        match frame {
            ClientFrame::Hello(h) => handlers::auth::hello(conn, h).await,
            ClientFrame::Enroll(e) => handlers::auth::enroll(conn, e).await,
            ClientFrame::MeshCreate { req, slug, admin_token, pubkey, display_name } => {
                handlers::admin::mesh_create(conn, req, slug, admin_token, pubkey, display_name).await
            }
            other => conn.error(
                other.req(),
                ErrorCode::Unauthorized,
                format!("{} before hello: authenticate with hello or enroll first", other.type_name()),
            ),
        }
        return;
    }
    handlers::dispatch(conn, frame).await;
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    kill: CancellationToken,
    hub: Arc<Hub>,
) {
    let metrics = hub.metrics.clone();
    let mut pending: Vec<Arc<str>> = Vec::new();
    let mut flush_at: Option<Instant> = None;
    let mut ping = tokio::time::interval(hub.config.ping_interval);
    ping.tick().await;
    let far = Instant::now() + Duration::from_secs(3600 * 24 * 365);
    loop {
        let result: Result<bool, axum::Error> = tokio::select! {
            _ = kill.cancelled() => break,
            _ = ping.tick() => sink.send(Message::Ping(Default::default())).await.map(|_| true),
            _ = sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                flush_at = None;
                send_events(&mut sink, &mut pending, &metrics).await.map(|_| true)
            }
            m = rx.recv() => {
                let Some(m) = m else { break };
                let mut next = Some(m);
                let mut r = Ok(true);
                // Feed everything already waiting, then flush once.
                while let Some(m) = next.take() {
                    match m {
                        Outgoing::Frame(text, ty) => {
                            metrics.frame_out(ty);
                            if let Err(e) = sink.feed(Message::Text(Utf8Bytes::from(text))).await {
                                r = Err(e);
                                break;
                            }
                        }
                        Outgoing::Presence(ev) => {
                            pending.push(ev);
                            flush_at.get_or_insert_with(|| Instant::now() + hub.config.presence_batch);
                        }
                        Outgoing::Close(code, reason) => {
                            let _ = send_events(&mut sink, &mut pending, &metrics).await;
                            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) }))).await;
                            r = Ok(false);
                            break;
                        }
                    }
                    next = rx.try_recv().ok();
                }
                match r {
                    Ok(true) => sink.flush().await.map(|_| true),
                    other => other,
                }
            }
        };
        match result {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
    kill.cancel();
}

/// Sends the pending presence events as one `event` frame, or one `events` frame when there
/// are several. Events arrive already encoded as `{"kind":…,"data":…}` objects.
async fn send_events(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    pending: &mut Vec<Arc<str>>,
    metrics: &crate::metrics::Metrics,
) -> Result<(), axum::Error> {
    if pending.is_empty() {
        return Ok(());
    }
    let text = batch_frame(pending);
    pending.clear();
    metrics.frame_out(if text.starts_with(r#"{"type":"events""#) { "events" } else { "event" });
    sink.send(Message::Text(Utf8Bytes::from(text))).await
}

/// The frame text for encoded events: `{"type":"event",kind,data}` or `{"type":"events",…}`.
fn batch_frame(events: &[Arc<str>]) -> String {
    if let [one] = events {
        // `{"kind":…}` becomes `{"type":"event","kind":…}`.
        return format!(r#"{{"type":"event",{}"#, one.strip_prefix('{').unwrap_or(one));
    }
    let mut s = String::with_capacity(32 + events.iter().map(|e| e.len() + 1).sum::<usize>());
    s.push_str(r#"{"type":"events","events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(e);
    }
    s.push_str("]}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_protocol::frames::decode_server;

    #[test]
    fn batched_event_text_decodes_as_frames() {
        let a = Event::PeerLeft { member_id: "m".into(), session_id: "s".into() };
        let b = Event::MemberRemoved {
            member_id: "m".into(),
            reason: Default::default(),
            display_name: "bob".into(),
        };
        let enc = |e: &Event| -> Arc<str> { encode(e).into() };
        assert_eq!(decode_server(&batch_frame(&[enc(&a)])).unwrap(), ServerFrame::Event(a.clone()));
        assert_eq!(
            decode_server(&batch_frame(&[enc(&a), enc(&b)])).unwrap(),
            ServerFrame::Events { events: vec![a, b] }
        );
    }
}
