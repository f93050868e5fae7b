//! Calls per second of the agent's local API (the Unix socket's JSON lines): `status` from one
//! and from eight clients, `peers`, `send` (local acceptance into the outbox) and taking waiting
//! messages the way `check_messages` does, to compare the agent core before and after a rebuild.
//!
//! `cargo bench --bench local_api`. A real broker on 127.0.0.1:0 with a temp redb, a mesh with
//! alice and bob, each with their own agent running as a process of the built `claudemesh`
//! binary (as `tests/common` starts them); bob has one registered session, `bob-desktop`.
//! Every measure runs `CLAUDEMESH_BENCH_SECS` (default 2) after a warm-up, 5 times; the table
//! gives the median and the min–max. Run without `--bench` (as `cargo test --benches` does),
//! it only checks that every step still works, with tiny durations.
//!
//! Every agent call the bench makes is in `mod calls`: when the API changes (e.g. `inbox`
//! handing out a lease that a `confirm` call settles), that module is what to adapt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use claudemesh_agent::AgentClient;
use common::{AgentProcess, World, register, wait_connected, wait_peer};

const REPS: usize = 5;
/// Bob's session: what `check_messages` takes from, and where alice's DMs go.
const SESSION: &str = "s-bob";
const SESSION_NAME: &str = "bob-desktop";
/// Messages waiting for bob's session before each timed drain.
const WAITING: usize = 200;
/// Messages one `check_messages` call takes.
const TAKE: u32 = 20;
const STATUS_CLIENTS: usize = 8;

/// The agent calls, one function each: the only code that knows the local API's shape.
mod calls {
    use anyhow::{Result, ensure};
    use claudemesh_agent::AgentClient;
    use claudemesh_protocol::frames::Priority;
    use claudemesh_protocol::local::{
        AgentCall, ConfirmReply, InboxParams, InboxReply, PeerEntry, SendParams, SendReply, StatusReply,
    };

    pub async fn status(c: &mut AgentClient) -> Result<()> {
        c.request::<StatusReply>(AgentCall::Status).await?;
        Ok(())
    }

    /// How many inbox records the agent's first mesh holds (seen or not), per `status`.
    pub async fn inbox_records(c: &mut AgentClient) -> Result<u64> {
        let v: StatusReply = c.request(AgentCall::Status).await?;
        Ok(v.meshes.first().map_or(0, |m| m.inbox as u64))
    }

    /// Peer sessions seen; the bench expects at least one.
    pub async fn peers(c: &mut AgentClient) -> Result<usize> {
        let v: Vec<PeerEntry> = c.request(AgentCall::Peers { mesh: None }).await?;
        Ok(v.len())
    }

    /// A DM from the member itself (as `claudemesh send` does), accepted into the outbox.
    pub async fn send_dm(c: &mut AgentClient, to: &str, body: String) -> Result<()> {
        let v: SendReply = c
            .request(AgentCall::Send(SendParams {
                to: to.into(),
                message: body,
                priority: Priority::Next,
                mesh: None,
                from_session: None,
                reply_to: None,
                idempotency_key: None,
            }))
            .await?;
        ensure!(v.id.is_some(), "send was not queued for the broker: {v:?}");
        Ok(())
    }

    /// What `check_messages` does: take up to `limit` of `session`'s waiting messages under a
    /// lease, then confirm them (as the MCP server does once the result is written). Returns how
    /// many it took.
    pub async fn take_messages(c: &mut AgentClient, session: &str, limit: u32) -> Result<usize> {
        let v: InboxReply = c
            .request(AgentCall::Inbox(InboxParams {
                session: Some(session.into()),
                take: true,
                limit: Some(limit),
                ..Default::default()
            }))
            .await?;
        if let Some(lease) = v.lease {
            let r: ConfirmReply = c.request(AgentCall::Confirm { lease, msg_ids: None }).await?;
            ensure!(!r.expired, "lease {lease} expired before its confirm");
        }
        Ok(v.messages.len())
    }

    /// How many messages wait for `session`, taking none.
    pub async fn waiting(c: &mut AgentClient, session: &str) -> Result<usize> {
        let v: InboxReply = c
            .request(AgentCall::Inbox(InboxParams { session: Some(session.into()), ..Default::default() }))
            .await?;
        Ok(v.messages.len())
    }
}

/// The calls timed for a fixed duration.
#[derive(Debug, Clone, Copy)]
enum Op {
    Status,
    Peers,
    Send,
}

async fn run_op(c: &mut AgentClient, op: Op, i: u64) -> Result<()> {
    match op {
        Op::Status => calls::status(c).await,
        Op::Peers => calls::peers(c).await.map(drop),
        Op::Send => calls::send_dm(c, SESSION_NAME, format!("bench message {i}")).await,
    }
}

struct Settings {
    secs: f64,
    warm: f64,
    reps: usize,
    waiting: usize,
}

impl Settings {
    fn from_env() -> Result<Self> {
        // `cargo bench` passes `--bench`; `cargo test --benches` runs this without it.
        if !std::env::args().any(|a| a == "--bench") {
            return Ok(Self { secs: 0.05, warm: 0.02, reps: 1, waiting: 2 * TAKE as usize });
        }
        let secs = match std::env::var("CLAUDEMESH_BENCH_SECS") {
            Ok(s) => s.parse::<f64>().with_context(|| format!("CLAUDEMESH_BENCH_SECS={s:?}"))?,
            Err(_) => 2.0,
        };
        ensure!(secs > 0.0, "CLAUDEMESH_BENCH_SECS must be positive");
        Ok(Self { secs, warm: (secs / 6.0).min(0.5), reps: REPS, waiting: WAITING })
    }
}

/// Calls per second of `op` from `clients` at once, each calling in a loop: `warm` seconds not
/// counted, then `secs` counted.
async fn rate(clients: Vec<AgentClient>, op: Op, warm: f64, secs: f64) -> Result<(f64, Vec<AgentClient>)> {
    let start = Instant::now() + Duration::from_secs_f64(warm);
    let end = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = (k as u64) << 32;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    run_op(&mut c, op, i).await?;
                    i += 1;
                    if now >= start {
                        n += 1;
                    }
                }
                anyhow::Ok((n, c))
            })
        })
        .collect();
    let mut total = 0;
    let mut back = Vec::new();
    for t in tasks {
        let (n, c) = t.await??;
        total += n;
        back.push(c);
    }
    Ok((total as f64 / secs, back))
}

/// One row of the table: calls (or messages) per second over the repetitions.
struct Row {
    what: String,
    unit: &'static str,
    samples: Vec<f64>,
}

impl Row {
    fn line(&self) -> String {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (s[0], s[s.len() / 2], s[s.len() - 1]);
        format!("| {} | {} | {mid:.0} | {lo:.0}–{hi:.0} |", self.what, self.unit)
    }
}

async fn timed(
    what: String,
    clients: Vec<AgentClient>,
    op: Op,
    st: &Settings,
) -> Result<(Row, Vec<AgentClient>)> {
    let mut samples = Vec::new();
    let mut clients = clients;
    for _ in 0..st.reps {
        let (r, back) = rate(clients, op, st.warm, st.secs).await?;
        samples.push(r);
        clients = back;
    }
    eprintln!("  {what}: {samples:.0?}");
    Ok((Row { what, unit: "calls/s", samples }, clients))
}

/// Alice sends `n` DMs to bob's session; returns once they all wait there (not timed).
async fn refill(alice: &mut AgentClient, bob: &mut AgentClient, n: usize) -> Result<()> {
    for i in 0..n {
        calls::send_dm(alice, SESSION_NAME, format!("check me {i}")).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let w = calls::waiting(bob, SESSION).await?;
        if w >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {w} of {n} messages reached bob's session");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages per second that repeated takes of `TAKE` drain from `waiting` waiting ones.
async fn drain(bob: &mut AgentClient, waiting: usize) -> Result<f64> {
    let t = Instant::now();
    let mut taken = 0;
    while taken < waiting {
        let n = calls::take_messages(bob, SESSION, TAKE).await?;
        ensure!(n > 0, "took nothing with {} of {waiting} still waiting", waiting - taken);
        taken += n;
    }
    let rate = taken as f64 / t.elapsed().as_secs_f64();
    ensure!(calls::waiting(bob, SESSION).await? == 0, "messages left after the drain");
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<()> {
    let st = Settings::from_env()?;
    let setup = Instant::now();
    let w = World::start().await;
    let alice_agent = AgentProcess::start(&w.member("alice").await).await;
    let bob_agent = AgentProcess::start(&w.member("bob").await).await;
    let mut alice = alice_agent.client().await;
    let mut bob = bob_agent.client().await;
    wait_connected(&mut alice).await;
    wait_connected(&mut bob).await;
    // The session lives as long as the connection that registered it.
    let mut bob_session = bob_agent.client().await;
    register(&mut bob_session, SESSION, SESSION_NAME, &[]).await;
    wait_peer(&mut alice, SESSION_NAME).await;
    ensure!(calls::peers(&mut alice).await? >= 1, "alice sees no peer");
    eprintln!("set up in {:.1} s", setup.elapsed().as_secs_f64());

    let mut rows = Vec::new();
    // Read-only calls first, while nothing else is going on.
    let (row, back) = timed("`status`, 1 client".into(), vec![bob], Op::Status, &st).await?;
    rows.push(row);
    bob = back.into_iter().next().context("client lost")?;

    let mut many = Vec::new();
    for _ in 0..STATUS_CLIENTS {
        many.push(bob_agent.client().await);
    }
    let (row, _) = timed(format!("`status`, {STATUS_CLIENTS} clients"), many, Op::Status, &st).await?;
    rows.push(row);

    let (row, back) = timed("`peers`, 1 client".into(), vec![alice], Op::Peers, &st).await?;
    rows.push(row);
    alice = back.into_iter().next().context("client lost")?;

    // check_messages: refill (not timed), then drain in takes of TAKE.
    let mut samples = Vec::new();
    refill(&mut alice, &mut bob, st.waiting).await?;
    drain(&mut bob, st.waiting).await?; // warm-up
    for _ in 0..st.reps {
        refill(&mut alice, &mut bob, st.waiting).await?;
        samples.push(drain(&mut bob, st.waiting).await?);
    }
    eprintln!("  check_messages: {samples:.0?} messages/s");
    rows.push(Row {
        what: format!("`inbox` take + confirm, limit {TAKE} (check_messages), {} waiting", st.waiting),
        unit: "messages/s",
        samples: samples.clone(),
    });
    rows.push(Row {
        what: format!("the same, as calls (each takes {TAKE})"),
        unit: "calls/s",
        samples: samples.iter().map(|s| s / f64::from(TAKE)).collect(),
    });

    // `status` reads the whole inbox: again, now that bob's holds every message drained above.
    let records = calls::inbox_records(&mut bob).await?;
    let (row, back) =
        timed(format!("`status`, 1 client, {records} inbox records"), vec![bob], Op::Status, &st).await?;
    rows.push(row);
    drop(back);

    // Last: sends keep alice's uplink and bob's agent busy delivering after they are accepted.
    let (row, _) =
        timed(format!("`send` DM alice → {SESSION_NAME}, 1 client"), vec![alice], Op::Send, &st).await?;
    rows.push(row);

    println!();
    println!(
        "{} s per measure after {:.2} s warm-up, {} repetitions; agents as `claudemesh agent run` \
         processes; {} cores",
        st.secs,
        st.warm,
        st.reps,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!();
    println!("| call | unit | median | min–max |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!("{}", r.line());
    }
    drop(bob_session);
    drop((alice_agent, bob_agent));
    Ok(())
}
