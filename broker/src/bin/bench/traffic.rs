//! The traffic tasks: receivers that count and acknowledge pushes (giving back the sender's
//! end-to-end window), pipelined senders, a fixed-rate sender for latency, idle connection
//! drains, and the counters they share.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use claudemesh_protocol::frames::{ClientFrame, encode};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::setup::{Lite, SendTemplate, Ws};

/// Counters shared by every task of one scenario run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Pushes received by receivers.
    pub delivered: AtomicU64,
    /// `ack` replies received by senders.
    pub acked: AtomicU64,
    /// `send` frames written by senders.
    pub sent: AtomicU64,
    /// `error` replies received by senders.
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, text: &str) {
        self.errors.fetch_add(1, Relaxed);
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert_with(|| text.chars().take(300).collect());
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Latency samples, in nanoseconds since `base`, one process clock for sender and receiver.
#[derive(Debug)]
pub struct LatencyLog {
    base: Instant,
    /// Sends stamped before this offset are warm-up and not recorded.
    warm_ns: u64,
    last: AtomicU64,
    pub one_way: Mutex<Vec<u64>>,
    pub round_trip: Mutex<Vec<u64>>,
}

impl LatencyLog {
    pub fn new(warm: Duration, capacity: usize) -> Self {
        Self {
            base: Instant::now(),
            warm_ns: warm.as_nanos() as u64,
            last: AtomicU64::new(0),
            one_way: Mutex::new(Vec::with_capacity(capacity)),
            round_trip: Mutex::new(Vec::with_capacity(capacity)),
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// A unique, increasing send stamp (used as both `req` and `client_msg_id`).
    fn stamp(&self) -> u64 {
        let now = self.now_ns();
        let prev = self.last.fetch_max(now, Relaxed);
        if prev >= now { self.last.fetch_add(1, Relaxed) + 1 } else { now }
    }

    fn record(&self, log: &Mutex<Vec<u64>>, sent_ns: u64) {
        if sent_ns < self.warm_ns {
            return;
        }
        let d = self.now_ns().saturating_sub(sent_ns);
        if let Ok(mut v) = log.lock() {
            v.push(d);
        }
    }
}

/// Reads pushes, counts them, gives one window permit back per push, and acknowledges them
/// with `client_ack` every `ack_every` pushes or every `ack_tick`.
pub async fn receiver(
    mut ws: Ws,
    c: Arc<Counters>,
    window: Option<Arc<Semaphore>>,
    lat: Option<Arc<LatencyLog>>,
    ack_every: usize,
    ack_tick: Duration,
) -> anyhow::Result<()> {
    let mut ids: Vec<String> = Vec::with_capacity(ack_every);
    let mut tick = tokio::time::interval(ack_tick);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => bail!("receiver closed by the broker: {f:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("receiver connection ended"),
                };
                let Ok(f) = serde_json::from_str::<Lite>(text.as_str()) else { continue };
                if f.ty != "push" {
                    continue;
                }
                c.delivered.fetch_add(1, Relaxed);
                if let Some(w) = &window {
                    w.add_permits(1);
                }
                if let (Some(l), Some(sent)) =
                    (&lat, f.client_msg_id.as_deref().and_then(|s| s.strip_prefix('l')?.parse().ok()))
                {
                    l.record(&l.one_way, sent);
                }
                if let Some(id) = f.msg_id {
                    ids.push(id);
                }
                if ids.len() >= ack_every {
                    send_ack(&mut ws, &mut ids).await?;
                }
            }
            _ = tick.tick() => {
                if !ids.is_empty() {
                    send_ack(&mut ws, &mut ids).await?;
                }
            }
        }
    }
}

async fn send_ack(ws: &mut Ws, ids: &mut Vec<String>) -> anyhow::Result<()> {
    let f = ClientFrame::ClientAck { msg_ids: std::mem::take(ids) };
    ws.send(Message::Text(encode(&f).into())).await?;
    Ok(())
}

/// Sends as fast as the end-to-end windows allow: every send takes one permit from each
/// recipient's window (a receiver gives it back when the push arrives), so no broker queue
/// toward a receiver grows past the window. Flushes every `batch` sends or before it could block.
pub async fn pipelined_sender(
    ws: Ws,
    tpl: SendTemplate,
    windows: Vec<Arc<Semaphore>>,
    c: Arc<Counters>,
    tag: String,
    batch: u64,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let write = write_pipelined(&mut sink, &tpl, &windows, &c, &tag, batch);
    let read = read_replies(&mut stream, &c, &windows, None, u64::MAX);
    tokio::try_join!(write, read)?;
    Ok(())
}

async fn write_pipelined(
    sink: &mut SplitSink<Ws, Message>,
    tpl: &SendTemplate,
    windows: &[Arc<Semaphore>],
    c: &Counters,
    tag: &str,
    batch: u64,
) -> anyhow::Result<()> {
    let mut seq = 0u64;
    loop {
        for w in windows {
            w.acquire().await?.forget();
        }
        seq += 1;
        sink.feed(Message::Text(tpl.render(seq, &format!("{tag}-{seq}")).into())).await?;
        c.sent.fetch_add(1, Relaxed);
        if seq.is_multiple_of(batch.max(1)) || windows.iter().any(|w| w.available_permits() == 0) {
            sink.flush().await?;
        }
    }
}

/// Reads `ack` and `error` replies until `expect` of them arrived (or forever). An error gives
/// the send's window permits back, since no push will come for it.
async fn read_replies(
    stream: &mut SplitStream<Ws>,
    c: &Counters,
    windows: &[Arc<Semaphore>],
    lat: Option<&LatencyLog>,
    expect: u64,
) -> anyhow::Result<()> {
    let mut got = 0u64;
    while got < expect {
        let text = match stream.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => bail!("sender closed by the broker: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("sender connection ended"),
        };
        let Ok(f) = serde_json::from_str::<Lite>(text.as_str()) else { continue };
        match f.ty.as_str() {
            "ack" => {
                got += 1;
                c.acked.fetch_add(1, Relaxed);
                if let (Some(l), Some(req)) = (lat, f.req) {
                    l.record(&l.round_trip, req);
                }
            }
            "error" => {
                got += 1;
                c.error(text.as_str());
                for w in windows {
                    w.add_permits(1);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sends `total` messages at `rate` per second (one every 1/rate s, catching up after a late
/// tick), each stamped with its send time, and waits for all their acks.
pub async fn rate_sender(
    ws: Ws,
    tpl: SendTemplate,
    rate: u32,
    total: u64,
    lat: Arc<LatencyLog>,
    c: Arc<Counters>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let write = async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        for _ in 0..total {
            tick.tick().await;
            send_stamped(&mut sink, &tpl, &lat).await?;
            c.sent.fetch_add(1, Relaxed);
        }
        anyhow::Ok(())
    };
    let read = read_replies(&mut stream, &c, &[], Some(&lat), total);
    tokio::try_join!(write, read)?;
    Ok(())
}

async fn send_stamped(
    sink: &mut SplitSink<Ws, Message>,
    tpl: &SendTemplate,
    lat: &LatencyLog,
) -> anyhow::Result<()> {
    let t = lat.stamp();
    sink.send(Message::Text(tpl.render(t, &format!("l{t}")).into())).await?;
    Ok(())
}

/// Keeps an idle connection alive: reads (and answers pings) until it ends, counting bytes.
/// Once `list` turns true, asks for `list_members` once (`list_members` answers are this
/// bench's large frames: every member, so ~200 bytes each) and counts its answer in `listed`.
pub async fn drain(
    mut ws: Ws,
    bytes: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    mut list: tokio::sync::watch::Receiver<bool>,
    listed: Arc<AtomicU64>,
) {
    let mut asked = false;
    loop {
        tokio::select! {
            m = ws.next() => {
                let Some(Ok(m)) = m else { break };
                bytes.fetch_add(m.len() as u64, Relaxed);
                match &m {
                    Message::Close(_) => break,
                    Message::Text(t) if t.as_str().starts_with(r#"{"type":"members""#) => {
                        listed.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
            ok = async { list.wait_for(|go| *go).await.is_ok() }, if !asked => {
                asked = true;
                if ok {
                    let text = encode(&ClientFrame::ListMembers { req: 1, cursor: None, limit: None });
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    closed.fetch_add(1, Relaxed);
}
