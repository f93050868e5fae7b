//! One member's live connection: frames in (pushes recorded in the ledger and acknowledged in
//! batches, replies matched to the requests waiting for them, presence counted), sends to a
//! random peer or everyone, sessions opened from the member's pool and closed again, and the
//! two ways of leaving: a graceful close or a dropped TCP connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::{
    ClientFrame, Priority, Send, ServerFrame, SessionInfo, Target, decode_server, encode,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::ledger::{Delivery, Ledger};
use super::setup::{Member, Rng, Ws};

/// A request waiting for its reply.
#[derive(Debug, Clone)]
enum Pending {
    /// A `send`, with the participants it addresses as a bit mask.
    Send(u128),
    Open(String),
    Close,
}

/// What reading one frame left the connection in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Open,
    /// The broker closed the connection or the socket failed.
    Ended,
}

/// A member's connection and what it is waiting for.
pub struct Link {
    ws: Ws,
    pub conn: u64,
    me: Arc<Member>,
    /// Every participant's member id, by index.
    ids: Arc<Vec<String>>,
    ledger: Arc<Ledger>,
    next_req: u64,
    pending: HashMap<u64, Pending>,
    /// Pushes received and not yet acknowledged.
    to_ack: Vec<String>,
    /// Sessions the broker confirmed open on this connection.
    pub sessions: Vec<String>,
    /// Acks are sent once this many pushes wait (or on the caller's tick).
    ack_every: usize,
    /// Pushes received on this connection.
    pub pushes: u64,
}

impl Link {
    pub fn new(
        ws: Ws,
        me: Arc<Member>,
        ids: Arc<Vec<String>>,
        ledger: Arc<Ledger>,
        ack_every: usize,
    ) -> Self {
        let conn = ledger.conn_id();
        ledger.c.connects.fetch_add(1, Relaxed);
        Self {
            ws,
            conn,
            me,
            ids,
            ledger,
            next_req: 0,
            pending: HashMap::new(),
            to_ack: Vec::new(),
            sessions: Vec::new(),
            ack_every: ack_every.max(1),
            pushes: 0,
        }
    }

    fn req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    /// Requests still waiting for a reply.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    async fn write(&mut self, f: &ClientFrame) -> Flow {
        match self.ws.send(Message::Text(encode(f).into())).await {
            Ok(()) => Flow::Open,
            Err(e) => {
                self.ledger.c.error("client_write", &format!("write failed: {e}"));
                Flow::Ended
            }
        }
    }

    /// The next frame from the broker, handled. `None` means nothing arrived in `wait`.
    pub async fn read(&mut self, wait: Duration) -> Option<Flow> {
        let m = tokio::time::timeout(wait, self.ws.next()).await.ok()?;
        Some(self.handle(m).await)
    }

    /// Reads one frame off the socket without a deadline (for `select!`).
    pub async fn next(&mut self) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
        self.ws.next().await
    }

    /// Handles what [`Link::next`] returned.
    pub async fn handle(
        &mut self,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Flow {
        let text = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => return Flow::Ended,
            Some(Ok(_)) => return Flow::Open,
            Some(Err(_)) => return Flow::Ended,
        };
        let f = match decode_server(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                self.ledger.c.error("client_decode", &format!("undecodable frame: {e}"));
                return Flow::Open;
            }
        };
        let c = &self.ledger.c;
        match f {
            ServerFrame::Push(p) => {
                self.pushes += 1;
                if self.ledger.push(self.me.idx, &p.msg_id, Instant::now()) == Delivery::Repeat {
                    eprintln!("REPEAT: member {} got {} again after confirming it", self.me.idx, p.msg_id);
                }
                self.to_ack.push(p.msg_id);
                if self.to_ack.len() >= self.ack_every {
                    return self.flush_acks().await;
                }
            }
            ServerFrame::Ack { req, msg_id, .. } => {
                if let Some(Pending::Send(mask)) = self.pending.remove(&req) {
                    self.ledger.acked(&msg_id, mask);
                }
            }
            ServerFrame::Ok { req } => match self.pending.remove(&req) {
                Some(Pending::Open(sid)) => {
                    c.sessions_opened.fetch_add(1, Relaxed);
                    self.sessions.push(sid);
                }
                Some(Pending::Close) => {
                    c.sessions_closed.fetch_add(1, Relaxed);
                }
                _ => {}
            },
            ServerFrame::Error(e) => {
                if let Some(req) = e.req {
                    self.pending.remove(&req);
                }
                c.error(e.code.as_str(), &format!("{}: {}", e.code.as_str(), e.message));
            }
            ServerFrame::Event(_) => {
                c.presence_events.fetch_add(1, Relaxed);
            }
            ServerFrame::Events { events } => {
                c.presence_events.fetch_add(events.len() as u64, Relaxed);
            }
            _ => {}
        }
        Flow::Open
    }

    /// Acknowledges every push received so far with one `client_ack`.
    pub async fn flush_acks(&mut self) -> Flow {
        if self.to_ack.is_empty() {
            return Flow::Open;
        }
        let ids = std::mem::take(&mut self.to_ack);
        // Noted before the write: an ack that reached the socket must count as sent.
        self.ledger.client_ack(self.me.idx, &ids, self.conn, Instant::now());
        self.write(&ClientFrame::ClientAck { msg_ids: ids }).await
    }

    /// Opens `n` sessions with distinct ids drawn from the member's pool.
    pub async fn open_sessions(&mut self, n: usize, rng: &mut Rng) -> Flow {
        let mut pool = self.me.session_pool.clone();
        for k in 0..n.min(pool.len()) {
            let sid = pool.swap_remove(rng.below(pool.len()));
            let req = self.req();
            let session = SessionInfo {
                session_id: sid.clone(),
                display_name: format!("soak {} #{k}", self.me.idx),
                cwd: Some(format!("/soak/{}", self.me.idx)),
                ..SessionInfo::default()
            };
            self.pending.insert(req, Pending::Open(sid));
            if self.write(&ClientFrame::SessionOpen { req, session }).await == Flow::Ended {
                return Flow::Ended;
            }
        }
        Flow::Open
    }

    /// Closes every session this connection opened.
    pub async fn close_sessions(&mut self) -> Flow {
        for sid in std::mem::take(&mut self.sessions) {
            let req = self.req();
            self.pending.insert(req, Pending::Close);
            if self.write(&ClientFrame::SessionClose { req, session_id: sid }).await == Flow::Ended {
                return Flow::Ended;
            }
        }
        Flow::Open
    }

    /// Sends one message with a fresh `client_msg_id`: to everyone else with probability
    /// `broadcast`, else to one random other participant, reusing the pre-encrypted boxes.
    pub async fn send_one(&mut self, rng: &mut Rng, broadcast: f64, seq: u64) -> Flow {
        let me = self.me.idx;
        let n = self.ids.len();
        let (target, envelopes, mask) = if rng.unit() < broadcast {
            let all = if n >= 128 { u128::MAX } else { (1u128 << n) - 1 };
            (Target::Broadcast, self.me.broadcast.clone(), all & !(1u128 << me))
        } else {
            let j = (me + 1 + rng.below(n - 1)) % n;
            (Target::Member(self.ids[j].clone()), self.me.dm[j].clone(), 1u128 << j)
        };
        let from_session = if self.sessions.is_empty() {
            String::new()
        } else {
            self.sessions[rng.below(self.sessions.len())].clone()
        };
        let req = self.req();
        let f = ClientFrame::Send(Send {
            req,
            client_msg_id: format!("soak-{me}-{seq}"),
            from_session,
            target,
            priority: Priority::Next,
            envelopes,
        });
        self.pending.insert(req, Pending::Send(mask));
        self.ledger.c.sent.fetch_add(1, Relaxed);
        self.write(&f).await
    }

    /// Leaves gracefully: acknowledges what arrived, sends a close frame and reads until the
    /// broker ends the connection (at most 2 s).
    pub async fn close(mut self) {
        let _ = self.flush_acks().await;
        let _ = self.ws.close(None).await;
        let end = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(m)) = tokio::time::timeout_at(end, self.ws.next()).await {
            // Pushes still arriving are recorded (and left unacknowledged: they come again).
            if self.handle(Some(m)).await == Flow::Ended {
                break;
            }
        }
        self.ledger.c.graceful.fetch_add(1, Relaxed);
        self.ledger.closed(self.conn, Instant::now());
    }

    /// Drops the TCP connection without a close frame or the pending acks (a crash).
    pub fn abort(self) {
        self.ledger.c.abrupt.fetch_add(1, Relaxed);
        self.ledger.closed(self.conn, Instant::now());
        drop(self.ws);
    }

    /// The broker ended the connection.
    pub fn ended(self) {
        self.ledger.c.dropped_by_broker.fetch_add(1, Relaxed);
        self.ledger.closed(self.conn, Instant::now());
    }
}
