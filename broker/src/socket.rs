//! One WebSocket connection's lifetime: the welcome, the reader loop that decodes frames and
//! dispatches them to the handler families, and the writer task that batches presence, sends
//! pings, and coalesces flushes. The state the handlers see is [`crate::conn::Conn`].

use std::sync::Arc;
use std::time::Duration;

use claudemesh_protocol::codec::to_hex;
use claudemesh_protocol::crypto::random_bytes;
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ServerFrame, decode_client};
use claudemesh_protocol::limits::{
    CLOSE_INVALID_DATA, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN, PROTOCOL_VERSION,
};
use claudemesh_protocol::ws::{FRAGMENT_BYTES, text_messages};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::guard::Slot;
use crate::handlers;
use crate::hub::{ConnHandle, Hub, Outgoing};
use crate::presence_out::{PresenceOut, send_events};
use crate::upgrade::WebSocket;

/// Outgoing queue per connection. A connection this far behind is dropped (nothing is lost:
/// undelivered messages stay queued durably and are re-pushed on reconnect).
const OUT_QUEUE: usize = 4096;

/// Runs a connection to completion. `slot` is its entry in the pre-authentication gate: until
/// `hello`/`enroll` succeeds the connection must authenticate within the hello timeout, is
/// closed if a newer connection evicts it, and is refused once it sent more than the pre-auth
/// byte budget.
pub async fn run(hub: Arc<Hub>, socket: WebSocket, slot: Arc<Slot>) {
    slot.upgraded();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let kill = hub.shutdown.child_token();
    let stop = kill.child_token();
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let presence_stale = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = ConnHandle {
        id: hub.next_conn_id(),
        tx,
        kill: kill.clone(),
        stop: stop.clone(),
        instance: None,
        queued: queued.clone(),
        max_queued: hub.config.out_queue_bytes,
        metrics: hub.metrics.clone(),
        presence_stale: presence_stale.clone(),
    };
    let presence = PresenceOut::new(hub.config.presence_budget, presence_stale);
    let writer = tokio::spawn(write_loop(sink, rx, queued, presence, kill.clone(), hub.clone()));
    let challenge = to_hex(&random_bytes::<32>());
    let mut conn =
        Conn { hub: hub.clone(), out, challenge: challenge.clone(), auth: None, uploads: Default::default() };
    conn.reply(&ServerFrame::Welcome {
        protocol: PROTOCOL_VERSION,
        challenge,
        broker_version: env!("CARGO_PKG_VERSION").to_string(),
        public_url: hub.config.public_url.clone(),
    });

    let idle = hub.config.idle_timeout;
    let mut deadline = Instant::now() + idle;
    let hello_by = Instant::now() + hub.config.hello_timeout;
    loop {
        let preauth = !slot.is_authenticated();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = sleep_until(hello_by), if preauth => {
                hub.metrics.preauth_refused.fetch_add(1, Relaxed);
                let secs = hub.config.hello_timeout.as_secs_f64();
                conn.error(None, ErrorCode::Timeout, format!("no hello or enroll within {secs} s of welcome"));
                conn.out.send(Outgoing::Close(CLOSE_POLICY, "hello timeout".into()));
                break;
            }
            _ = slot.evicted().cancelled(), if preauth => {
                conn.out.send(Outgoing::Close(
                    CLOSE_TRY_AGAIN,
                    "too many unauthenticated connections: this, the oldest, was closed".into(),
                ));
                break;
            }
            _ = slot.over_budget().cancelled(), if preauth => {
                hub.metrics.preauth_refused.fetch_add(1, Relaxed);
                let max = hub.config.preauth_bytes;
                conn.error(None, ErrorCode::TooLarge, format!(
                    "at most {max} bytes may be sent before hello or enroll; send hello first"
                ));
                conn.out.send(Outgoing::Close(CLOSE_TOO_BIG, format!("more than {max} bytes before hello")));
                break;
            }
            _ = sleep_until(deadline) => {
                conn.out.send(Outgoing::Close(1000, "idle: no frame or pong for too long".into()));
                break;
            }
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        // Say why before going (RFC 6455 §7.1.7); a dropped connection gets nothing.
                        if let Some((code, why)) = read_error_close(&e) {
                            conn.out.send(Outgoing::Close(code, crate::conn::truncate_reason(&why)));
                        }
                        break;
                    }
                    None => break,
                };
                deadline = Instant::now() + idle;
                match msg {
                    Message::Text(t) => {
                        // Boxed: the handlers' largest state machine then lives on the heap only
                        // while a frame is handled, not in every idle connection's task.
                        Box::pin(handle_text(&mut conn, t.as_str())).await;
                        if preauth && conn.auth.is_some() {
                            slot.authenticated();
                        }
                    }
                    Message::Binary(_) => conn.error(None, ErrorCode::Invalid, "binary frames are not part of the protocol: bundle bytes go base64 in upload_chunk"),
                    Message::Close(_) => break,
                    // Raw frames are never yielded by a read (tungstenite joins fragments).
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
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
    if let Some(a) = &conn.auth
        && let Some(why) = crate::conn::still_member(a)
    {
        // Removed (or left) while this frame was on its way: nothing more from it counts.
        conn.error(frame.req(), ErrorCode::Revoked, why);
        conn.out.send(Outgoing::Close(CLOSE_POLICY, "removed from mesh".into()));
        conn.out.stop.cancel();
        conn.auth = None;
        return;
    }
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

/// The writer task: feeds queued frames, batches presence events for `presence_batch`,
/// pings, and flushes once per burst. Every write is bounded by `write_timeout`, and
/// `queued` (bytes waiting, see [`ConnHandle::send`]) drops as items leave the queue; a peer
/// that stops reading is dropped by one bound or the other, never buffered without limit.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    mut presence: PresenceOut,
    kill: CancellationToken,
    hub: Arc<Hub>,
) {
    let metrics = hub.metrics.clone();
    let limit = hub.config.write_timeout;
    let mut flush_at: Option<Instant> = None;
    let mut ping = tokio::time::interval(hub.config.ping_interval);
    ping.tick().await;
    let far = Instant::now() + Duration::from_secs(3600 * 24 * 365);
    loop {
        let result: Result<bool, WriteError> = tokio::select! {
            _ = kill.cancelled() => break,
            _ = ping.tick() => bounded(limit, sink.send(Message::Ping(Default::default()))).await.map(|_| true),
            _ = sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                flush_at = None;
                let (events, sent) = presence.drain();
                let r = bounded(limit, Box::pin(send_events(&mut sink, &events, &metrics))).await.map(|_| true);
                crate::hub::release(&queued, sent);
                r
            }
            m = rx.recv() => {
                let Some(m) = m else { break };
                let mut next = Some(m);
                let mut r = Ok(true);
                // Feed everything already waiting, then flush once.
                while let Some(m) = next.take() {
                    let bytes = m.bytes();
                    match m {
                        Outgoing::Frame(text, ty) => {
                            metrics.frame_out(ty);
                            let fed = bounded(limit, feed_text(&mut sink, text)).await;
                            crate::hub::release(&queued, bytes);
                            if let Err(e) = fed {
                                r = Err(e);
                                break;
                            }
                        }
                        Outgoing::Presence(ev, sheddable) => {
                            // Counted as queued until its batch is written (or it is shed).
                            crate::hub::release(&queued, presence.take(ev, sheddable, &metrics));
                            if !presence.is_empty() {
                                flush_at.get_or_insert_with(|| Instant::now() + hub.config.presence_batch);
                            }
                        }
                        Outgoing::Close(code, reason) => {
                            crate::hub::release(&queued, bytes);
                            let (events, _) = presence.drain();
                            let _ = bounded(limit, Box::pin(send_events(&mut sink, &events, &metrics))).await;
                            let close = CloseFrame { code: code.into(), reason: Utf8Bytes::from(reason) };
                            let _ = bounded(limit, sink.send(Message::Close(Some(close)))).await;
                            r = Ok(false);
                            break;
                        }
                    }
                    next = rx.try_recv().ok();
                }
                match r {
                    Ok(true) => bounded(limit, sink.flush()).await.map(|_| true),
                    other => other,
                }
            }
        };
        match result {
            Ok(true) => {}
            Ok(false) => break,
            Err(WriteError::Timeout) => {
                if !kill.is_cancelled() {
                    hub.metrics.slow_dropped.fetch_add(1, Relaxed);
                }
                tracing::warn!(
                    secs = limit.as_secs_f64(),
                    "a write to a connection took too long; dropping it"
                );
                break;
            }
            Err(WriteError::Ws) => break,
        }
    }
    kill.cancel();
}

/// Why a write to a connection failed.
#[derive(Debug)]
enum WriteError {
    /// The WebSocket failed or closed (the peer went away).
    Ws,
    Timeout,
}

/// The close a read error calls for: the frame code and a reason for a peer that broke the
/// framing rules, sent invalid UTF-8 or a message over the cap; `None` when the connection
/// itself failed (nothing can be sent).
fn read_error_close(e: &WsError) -> Option<(u16, String)> {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(p) => Some((CLOSE_PROTOCOL_ERROR, format!("protocol error: {p}"))),
        WsError::Utf8(_) => Some((CLOSE_INVALID_DATA, "a text message that is not UTF-8".into())),
        WsError::Capacity(c) => Some((CLOSE_TOO_BIG, c.to_string())),
        _ => None,
    }
}

/// Feeds one frame's text to `sink` (not flushed): as one message, or as fragments when it is
/// larger than [`FRAGMENT_BYTES`] so the connection's write buffer stays that small
/// ([`claudemesh_protocol::ws`]). The fragmenting loop is boxed: its state lives on the heap
/// only while a large write is under way, not in every idle connection's writer task.
pub(crate) async fn feed_text(sink: &mut SplitSink<WebSocket, Message>, text: String) -> Result<(), WsError> {
    if text.len() <= FRAGMENT_BYTES {
        return sink.feed(Message::Text(Utf8Bytes::from(text))).await;
    }
    Box::pin(async move {
        for m in text_messages(text, FRAGMENT_BYTES) {
            sink.feed(m).await?;
        }
        Ok(())
    })
    .await
}

/// One write, or [`WriteError::Timeout`] after `limit`.
async fn bounded<T>(
    limit: Duration,
    write: impl std::future::Future<Output = Result<T, WsError>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r.map_err(|_| WriteError::Ws),
        Err(_) => Err(WriteError::Timeout),
    }
}
