//! A member's life during the soak: connect, open 1–3 sessions, send at its share of the rate
//! while receiving and acknowledging, leave after 5–30 s (gracefully or by dropping the TCP
//! connection), pause 0–3 s and come back; then the final drain and the verification pass.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use super::link::{Flow, Link};
use super::setup::{Member, Rng, connect};

/// The traffic every member follows.
#[derive(Debug, Clone)]
pub struct Plan {
    pub url: String,
    /// Time between one member's sends (participants / total rate).
    pub send_every: Duration,
    /// Share of sends that are broadcasts.
    pub broadcast: f64,
    /// Share of departures that drop the TCP connection instead of closing.
    pub abrupt: f64,
    /// A connection lives this long (seconds, uniform).
    pub life: (f64, f64),
    /// Pause before reconnecting (seconds, uniform).
    pub pause: (f64, f64),
    pub ack_every: usize,
    pub ack_tick: Duration,
}

/// What every member task shares.
pub struct World {
    pub plan: Plan,
    pub ledger: Arc<Ledger>,
    pub ids: Arc<Vec<String>>,
    /// Cancelled when the traffic phase ends.
    pub stop: CancellationToken,
}

async fn link(w: &World, me: &Arc<Member>) -> Option<Link> {
    match connect(&w.plan.url, me).await {
        Ok(ws) => Some(Link::new(ws, me.clone(), w.ids.clone(), w.ledger.clone(), w.plan.ack_every)),
        Err(e) => {
            w.ledger.c.connect_failures.fetch_add(1, Relaxed);
            w.ledger.c.error("client_connect", &format!("member {}: {e:#}", me.idx));
            None
        }
    }
}

/// Connection after connection until `w.stop`; every one ends gracefully at the stop.
pub async fn traffic(w: Arc<World>, me: Arc<Member>) {
    let mut rng = Rng::seeded();
    let mut seq = 0u64;
    // Spread the first connects over a second so they do not all land at once.
    tokio::time::sleep(rng.secs(0.0, 1.0)).await;
    while !w.stop.is_cancelled() {
        let Some(mut l) = link(&w, &me).await else {
            tokio::select! { _ = w.stop.cancelled() => break, _ = tokio::time::sleep(Duration::from_secs(1)) => continue }
        };
        let n = 1 + rng.below(3);
        if l.open_sessions(n, &mut rng).await == Flow::Ended {
            l.ended();
            continue;
        }
        let end = Instant::now() + rng.secs(w.plan.life.0, w.plan.life.1);
        let mut send = tokio::time::interval(w.plan.send_every);
        send.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ack = tokio::time::interval(w.plan.ack_tick);
        ack.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut flow = Flow::Open;
        while flow == Flow::Open {
            tokio::select! {
                _ = w.stop.cancelled() => break,
                _ = sleep_until(end) => break,
                _ = send.tick() => {
                    seq += 1;
                    flow = l.send_one(&mut rng, w.plan.broadcast, seq).await;
                }
                _ = ack.tick() => flow = l.flush_acks().await,
                m = l.next() => flow = l.handle(m).await,
            }
        }
        if flow == Flow::Ended {
            l.ended();
        } else if !w.stop.is_cancelled() && rng.unit() < w.plan.abrupt {
            // A crash: half the time it managed to close its sessions first, half it did not
            // (they then wait out the reconnect grace, or are taken back on reconnect).
            if rng.unit() < 0.5 {
                let _ = l.close_sessions().await;
            }
            l.abort();
        } else {
            leave(l).await;
        }
        if !w.stop.is_cancelled() {
            let pause = rng.secs(w.plan.pause.0, w.plan.pause.1);
            tokio::select! { _ = w.stop.cancelled() => {}, _ = tokio::time::sleep(pause) => {} }
        }
    }
}

/// Closes the sessions, waits (at most 3 s) for every outstanding reply while still
/// receiving, then closes the connection.
async fn leave(mut l: Link) {
    if l.close_sessions().await == Flow::Ended {
        return l.ended();
    }
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while l.waiting() > 0 {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        if l.read(left).await == Some(Flow::Ended) {
            return l.ended();
        }
    }
    l.close().await;
}

/// What one drain connection saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drained {
    pub pushes: u64,
    pub connected: bool,
}

/// Connects with no session, receives and acknowledges until nothing arrived for `quiet` (or
/// `limit` passed), keeps the connection open another `settle` so the acks are surely read,
/// and closes. Retries the connect a few times.
pub async fn drain(
    w: Arc<World>,
    me: Arc<Member>,
    quiet: Duration,
    settle: Duration,
    limit: Duration,
) -> Drained {
    let mut l = None;
    for _ in 0..5 {
        l = link(&w, &me).await;
        if l.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let Some(mut l) = l else { return Drained::default() };
    let ended = |l: Link| {
        let pushes = l.pushes;
        l.ended();
        Drained { pushes, connected: true }
    };
    let start = Instant::now();
    let mut last = Instant::now();
    let mut ack = tokio::time::interval(w.plan.ack_tick);
    ack.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sleep_until(last + quiet) => break,
            _ = sleep_until(start + limit) => break,
            _ = ack.tick() => {
                if l.flush_acks().await == Flow::Ended {
                    return ended(l);
                }
            }
            m = l.next() => {
                let seen = l.pushes;
                if l.handle(m).await == Flow::Ended {
                    return ended(l);
                }
                if l.pushes > seen {
                    last = Instant::now();
                }
            }
        }
    }
    if l.flush_acks().await == Flow::Ended {
        return ended(l);
    }
    let until = Instant::now() + settle;
    while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        if l.read(left).await == Some(Flow::Ended) {
            return ended(l);
        }
    }
    let pushes = l.pushes;
    l.close().await;
    Drained { pushes, connected: true }
}
