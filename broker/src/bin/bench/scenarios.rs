//! The four scenarios, each against its own fresh server (the broker or a relay floor): idle connections and RSS, DM
//! latency at a fixed rate, DM throughput with 50 pairs, and broadcast fan-out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::bail;
use claudemesh_protocol::frames::Target;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::broker::{Broker, Rss, Server};
use super::child::LogSummary;
use super::setup::{MeshSetup, SendTemplate, body, connect, connect_all, envelopes, mesh_for};
use super::stats::Percentiles;
use super::traffic::{Counters, LatencyLog, drain, pipelined_sender, rate_sender, receiver};
use crate::Opts;

/// Result of `connections --n N`.
#[derive(Debug, Clone)]
pub struct ConnResult {
    pub n: usize,
    pub enroll: Duration,
    /// From the first arrival until every connection had its `hello_ack`.
    pub connect: Duration,
    /// Connect + hello of each connection, nanoseconds.
    pub connect_each: Percentiles,
    /// Broker RSS with every member enrolled and nobody connected.
    pub before: Rss,
    /// Right after the last `hello_ack`.
    pub connected: Rss,
    /// Once presence traffic to the connections has stopped.
    pub settled: Rss,
    pub settle: Duration,
    /// Bytes the broker sent to the idle connections (presence) after their `hello_ack`.
    pub presence_bytes: u64,
    /// After every connection got one `list_members` answer (`--list-members`).
    pub lists: Option<Lists>,
    /// Connections the broker closed while they were held open.
    pub dropped: u64,
    pub log: LogSummary,
}

/// What the held connections' `list_members` round cost the broker.
#[derive(Debug, Clone)]
pub struct Lists {
    /// Answers received (one per connection that was still open).
    pub answered: u64,
    /// Bytes of all answers (and any presence meanwhile).
    pub bytes: u64,
    /// Broker RSS once every answer arrived and a second passed.
    pub rss: Rss,
}

/// Has every held connection ask `list_members` once and waits (120 s at most) for the answers.
async fn list_members(
    broker: &Broker,
    go: &tokio::sync::watch::Sender<bool>,
    listed: &AtomicU64,
    bytes: &AtomicU64,
    n: usize,
) -> anyhow::Result<Lists> {
    let before = bytes.load(Relaxed);
    go.send_replace(true);
    let t = Instant::now();
    while listed.load(Relaxed) < n as u64 && t.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Lists { answered: listed.load(Relaxed), bytes: bytes.load(Relaxed) - before, rss: broker.rss()? })
}

pub async fn connections(server: Server, o: &Opts, n: usize) -> anyhow::Result<ConnResult> {
    let broker = Broker::start(server, o).await?;
    let t0 = Instant::now();
    let mesh = mesh_for(&broker, "bench-conns", n, 64).await?;
    let enroll = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = broker.rss()?;
    let bytes = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let mut held = JoinSet::new();
    // Arrivals at `o.arrival` per second, each its own task: connect + hello time per
    // connection, not the time of a batch.
    let t1 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(o.arrival.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let times = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(n.max(1));
    let members = Arc::new(mesh.members);
    let (list_tx, list_rx) = tokio::sync::watch::channel(false);
    let listed = Arc::new(AtomicU64::new(0));
    for i in 0..n {
        tick.tick().await;
        let (url, times, done) = (broker.url.clone(), times.clone(), done_tx.clone());
        let (bytes, closed, members) = (bytes.clone(), closed.clone(), members.clone());
        let (list_rx, listed) = (list_rx.clone(), listed.clone());
        held.spawn(async move {
            let t = Instant::now();
            match connect(&url, &members[i]).await {
                Ok(ws) => {
                    if let Ok(mut v) = times.lock() {
                        v.push(t.elapsed().as_nanos() as u64);
                    }
                    let _ = done.send(Ok(())).await;
                    drain(ws, bytes, closed, list_rx, listed).await;
                }
                Err(e) => {
                    let _ = done.send(Err(e)).await;
                }
            }
        });
    }
    for _ in 0..n {
        match done_rx.recv().await {
            Some(r) => r?,
            None => bail!("a connecting task ended without a word"),
        }
    }
    let connect = t1.elapsed();
    let times = times.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
    let connect_each = Percentiles::of(times);
    let connected = broker.rss()?;
    // Settle: wait until no presence bytes arrived for a full second (at most 120 s).
    let t2 = Instant::now();
    let mut last = bytes.load(Relaxed);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = bytes.load(Relaxed);
        if now == last || t2.elapsed() > Duration::from_secs(120) {
            break;
        }
        last = now;
    }
    let settle = t2.elapsed();
    let settled = broker.rss()?;
    let presence_bytes = bytes.load(Relaxed);
    let lists = if o.list_members && server == Server::Broker {
        Some(list_members(&broker, &list_tx, &listed, &bytes, n).await?)
    } else {
        None
    };
    let log = broker.log_summary();
    let dropped = closed.load(Relaxed);
    // Kill the broker first so the teardown is not a presence storm of its own.
    broker.stop().await;
    held.shutdown().await;
    Ok(ConnResult {
        n,
        enroll,
        connect,
        connect_each,
        before,
        connected,
        settled,
        settle,
        presence_bytes,
        lists,
        dropped,
        log,
    })
}

/// Result of one latency run.
#[derive(Debug, Clone)]
pub struct LatencyResult {
    pub one_way: Percentiles,
    pub round_trip: Percentiles,
    pub sent: u64,
    pub delivered: u64,
    pub errors: u64,
    pub achieved_rate: f64,
    pub commits_per_s: f64,
    pub mean_commit_ms: f64,
    pub log: LogSummary,
}

pub async fn latency(server: Server, o: &Opts) -> anyhow::Result<LatencyResult> {
    let broker = Broker::start(server, o).await?;
    let mesh = mesh_for(&broker, "bench-latency", 2, 2).await?;
    let (a, b) = (&mesh.members[0], &mesh.members[1]);
    let c = Arc::new(Counters::default());
    let total = (f64::from(o.rate) * (o.warmup + o.secs)).round() as u64;
    let lat = Arc::new(LatencyLog::new(Duration::from_secs_f64(o.warmup), total as usize));
    let mut tasks = JoinSet::new();
    let ws_b = connect(&broker.url, b).await?;
    tasks.spawn(receiver(
        ws_b,
        c.clone(),
        None,
        Some(lat.clone()),
        256,
        Duration::from_millis(o.ack_ms.max(1)),
    ));
    let ws_a = connect(&broker.url, a).await?;
    let tpl = SendTemplate::new(Target::Member(b.member_id.clone()), envelopes(a, &[b], &body(o.body))?)?;
    let s0 = broker.store_stats().await?;
    let t0 = Instant::now();
    let budget = Duration::from_secs_f64(o.warmup + o.secs + 30.0);
    match tokio::time::timeout(budget, rate_sender(ws_a, tpl, o.rate, total, lat.clone(), c.clone())).await {
        Ok(r) => r?,
        Err(_) => bail!("the latency sender did not finish within {budget:?}"),
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (commits_per_s, mean_commit_ms) = broker.store_stats().await?.rate_since(&s0, elapsed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.delivered.load(Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = broker.log_summary();
    broker.stop().await;
    tasks.shutdown().await;
    let take =
        |m: &std::sync::Mutex<Vec<u64>>| m.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
    Ok(LatencyResult {
        one_way: Percentiles::of(take(&lat.one_way)),
        round_trip: Percentiles::of(take(&lat.round_trip)),
        sent: c.sent.load(Relaxed),
        delivered: c.delivered.load(Relaxed),
        errors: c.errors.load(Relaxed),
        achieved_rate: total as f64 / elapsed,
        commits_per_s,
        mean_commit_ms,
        log,
    })
}

/// Result of one throughput run (DM or broadcast).
#[derive(Debug, Clone)]
pub struct ThroughputResult {
    /// Pushes received by receivers per second.
    pub delivered_per_s: f64,
    /// Sends acknowledged by the broker per second.
    pub acked_per_s: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Tasks that ended early (a connection closed or failed), with the first reason.
    pub failed_tasks: usize,
    pub first_failure: Option<String>,
    pub rss_under_load: Rss,
    /// Store commits (fsyncs) per second and their mean duration, over the measured window.
    pub commits_per_s: f64,
    pub mean_commit_ms: f64,
    /// Server CPU (user + system) per delivered push over the measured window, µs; and the
    /// part of it in the broker's store writer thread (`None` for the relays, which have none).
    pub cpu_us_per_delivery: f64,
    pub writer_us_per_delivery: Option<f64>,
    pub log: LogSummary,
}

pub async fn dm_throughput(server: Server, o: &Opts) -> anyhow::Result<ThroughputResult> {
    let broker = Broker::start(server, o).await?;
    let mesh = mesh_for(&broker, "bench-dm", 2 * o.pairs, 32).await?;
    let c = Arc::new(Counters::default());
    let mut tasks = JoinSet::new();
    let text = body(o.body);
    let mut senders = Vec::with_capacity(o.pairs);
    let receivers: Vec<_> = mesh.members.iter().skip(1).step_by(2).collect();
    let ws_r = connect_all(&broker.url, &receivers, 32).await?;
    for (p, ws) in ws_r.into_iter().enumerate() {
        let (s, r) = (&mesh.members[2 * p], &mesh.members[2 * p + 1]);
        let win = Arc::new(Semaphore::new(o.window));
        tasks.spawn(receiver(
            ws,
            c.clone(),
            Some(win.clone()),
            None,
            256,
            Duration::from_millis(o.ack_ms.max(1)),
        ));
        let tpl = SendTemplate::new(Target::Member(r.member_id.clone()), envelopes(s, &[r], &text)?)?;
        senders.push((connect(&broker.url, s).await?, tpl, win, format!("d{p}")));
    }
    for (ws, tpl, win, tag) in senders {
        tasks.spawn(pipelined_sender(ws, tpl, vec![win], c.clone(), tag, 64));
    }
    measure(o, broker, c, tasks).await
}

pub async fn broadcast(server: Server, o: &Opts) -> anyhow::Result<ThroughputResult> {
    let broker = Broker::start(server, o).await?;
    let MeshSetup { admin, members } = mesh_for(&broker, "bench-broadcast", o.receivers, 32).await?;
    let c = Arc::new(Counters::default());
    let mut tasks = JoinSet::new();
    let mut windows = Vec::with_capacity(members.len());
    let recipients: Vec<_> = members.iter().collect();
    for ws in connect_all(&broker.url, &recipients, 32).await? {
        let win = Arc::new(Semaphore::new(o.broadcast_window));
        tasks.spawn(receiver(
            ws,
            c.clone(),
            Some(win.clone()),
            None,
            256,
            Duration::from_millis(o.ack_ms.max(1)),
        ));
        windows.push(win);
    }
    let tpl = SendTemplate::new(Target::Broadcast, envelopes(&admin, &recipients, &body(o.body))?)?;
    let ws = connect(&broker.url, &admin).await?;
    tasks.spawn(pipelined_sender(ws, tpl, windows, c.clone(), "b".into(), 8));
    measure(o, broker, c, tasks).await
}

/// Warm-up, then counts deliveries and acks over the measured window.
async fn measure(
    o: &Opts,
    mut broker: Broker,
    c: Arc<Counters>,
    mut tasks: JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<ThroughputResult> {
    tokio::time::sleep(Duration::from_secs_f64(o.warmup)).await;
    let s0 = broker.store_stats().await?;
    let cpu0 = broker.cpu()?;
    let (d0, a0, t0) = (c.delivered.load(Relaxed), c.acked.load(Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(o.secs)).await;
    let (d1, a1, secs) = (c.delivered.load(Relaxed), c.acked.load(Relaxed), t0.elapsed().as_secs_f64());
    let cpu1 = broker.cpu()?;
    let (commits_per_s, mean_commit_ms) = broker.store_stats().await?.rate_since(&s0, secs);
    let per_delivery = |ticks: u64| ticks as f64 * 1e6 / CLOCK_TICKS_PER_S / (d1 - d0).max(1) as f64;
    if !broker.alive() {
        bail!("the broker process exited during the run: {:?}", broker.log_summary().first);
    }
    let rss_under_load = broker.rss()?;
    let mut failed_tasks = 0;
    let mut first_failure = None;
    while let Some(r) = tasks.try_join_next() {
        failed_tasks += 1;
        let why = match r {
            Ok(Ok(())) => "ended".to_string(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => e.to_string(),
        };
        first_failure.get_or_insert(why);
    }
    let log = broker.log_summary();
    let kind = broker.kind;
    broker.stop().await;
    tasks.shutdown().await;
    Ok(ThroughputResult {
        delivered_per_s: (d1 - d0) as f64 / secs,
        acked_per_s: (a1 - a0) as f64 / secs,
        errors: c.errors.load(Relaxed),
        first_error: c.first_error(),
        failed_tasks,
        first_failure,
        rss_under_load,
        commits_per_s,
        mean_commit_ms,
        cpu_us_per_delivery: per_delivery(cpu1.0.saturating_sub(cpu0.0)),
        writer_us_per_delivery: (kind == Server::Broker).then(|| per_delivery(cpu1.1.saturating_sub(cpu0.1))),
        log,
    })
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`): 100 on every Linux this runs on
/// (the kernel ABI fixes it for x86 and arm64).
const CLOCK_TICKS_PER_S: f64 = 100.0;
