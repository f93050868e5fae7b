//! `claudemesh-broker-soak`: an hour (by default) of mixed traffic against a real
//! `claudemesh-broker` child, with members joining and leaving, checking that every
//! acknowledged message reaches every recipient (loss), that nothing confirmed comes back
//! (repeats), and that the broker's memory stays flat.

#[path = "soak/broker.rs"]
mod broker;
#[path = "common/child.rs"]
mod child;
#[path = "soak/ledger.rs"]
mod ledger;
#[path = "soak/link.rs"]
mod link;
#[path = "soak/member.rs"]
mod member;
#[path = "soak/report.rs"]
mod report;
#[path = "soak/setup.rs"]
mod setup;
#[path = "common/ws.rs"]
mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use member::{Plan, World};
use report::{Sample, Samples, Summary};

#[derive(Debug, Parser)]
#[command(
    name = "claudemesh-broker-soak",
    about = "Soak the claudemesh broker: mixed traffic with members joining and leaving; reports loss, repeats and memory growth",
    long_about = "Soak the claudemesh broker: mixed traffic with members joining and leaving.\n\n\
        Starts `claudemesh-broker serve --listen 127.0.0.1:0` with a fresh data directory, enrolls \
        members with a signed invite and runs them for --minutes: each connects, opens 1-3 sessions, \
        sends DMs and some broadcasts (real boxes, encrypted once and reused) at its share of --rate, \
        acknowledges pushes in batches, and after 5-30 s closes its sessions and leaves (sometimes by \
        dropping the TCP connection), then comes back 0-3 s later. At the end every member reconnects \
        and drains its queue, and a verification pass checks nothing comes back.\n\n\
        loss = acknowledged (message, recipient) pairs never pushed; repeats = pushes of a message \
        whose client_ack went out more than 5 s earlier on a connection that stayed open at least 1 s \
        afterwards. Exits 1 on any loss or repeat.\n\n\
        Build and run:\n  cargo build --release -p claudemesh-broker --bins\n  \
        ./target/release/claudemesh-broker-soak --minutes 60"
)]
struct Args {
    /// Minutes of traffic.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Members enrolled besides the mesh admin, who takes part too (at most 127 in all).
    #[arg(long, default_value_t = 20)]
    members: usize,
    /// Sends per second over all members (each connected member sends its share).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Share of sends that are broadcasts (the rest are DMs to a random member).
    #[arg(long, default_value_t = 0.05)]
    broadcast: f64,
    /// Share of departures that drop the TCP connection instead of closing.
    #[arg(long, default_value_t = 0.3)]
    abrupt: f64,
    /// Message body size, bytes (plaintext in each box).
    #[arg(long, default_value_t = 256)]
    body: usize,
    /// Seconds between samples of the broker's RSS.
    #[arg(long, default_value_t = 10.0)]
    sample_secs: f64,
    /// Broker binary [default: claudemesh-broker next to this executable].
    #[arg(long, value_name = "PATH")]
    broker: Option<PathBuf>,
    /// Directory under which the broker gets a fresh data directory.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_root: PathBuf,
    /// Keep the broker's data directory and log afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.members == 0 || a.members > 127 {
        bail!("--members must be 1-127");
    }
    if !(a.rate > 0.0 && a.minutes > 0.0 && a.sample_secs > 0.0) {
        bail!("--rate, --minutes and --sample-secs must be positive");
    }
    let exe = match &a.broker {
        Some(p) => p.clone(),
        None => broker::default_broker_path()?,
    };
    let n = a.members + 1;
    let share = a.rate / n as f64;
    // The per-member limit sits well above each member's share, so refusals mean a burst.
    let b = Arc::new(broker::Broker::start(&exe, &a.data_root, (share * 5.0).max(50.0), a.keep).await?);
    println!("broker {} pid {} data {}", b.url, b.pid, b.dir().display());
    let members: Vec<Arc<setup::Member>> = setup::participants(&b.url, &b.token, "soak", a.members, a.body)
        .await
        .context("mesh set-up failed")?
        .into_iter()
        .map(Arc::new)
        .collect();
    let ids: Arc<Vec<String>> = Arc::new(members.iter().map(|m| m.id.member_id.clone()).collect());
    let ledger = Arc::new(ledger::Ledger::new(n));
    let world = Arc::new(World {
        plan: Plan {
            url: b.url.clone(),
            send_every: Duration::from_secs_f64(1.0 / share),
            broadcast: a.broadcast.clamp(0.0, 1.0),
            abrupt: a.abrupt.clamp(0.0, 1.0),
            life: (5.0, 30.0),
            pause: (0.0, 3.0),
            ack_every: 64,
            ack_tick: Duration::from_millis(250),
        },
        ledger: ledger.clone(),
        ids,
        stop: CancellationToken::new(),
    });
    println!(
        "{n} participants, ~{:.0} msg/s ({:.1}/s each while connected), {:.0}% broadcasts, {:.0}% abrupt departures, {:.1} min",
        a.rate,
        share,
        a.broadcast * 100.0,
        a.abrupt * 100.0,
        a.minutes
    );

    let start = Instant::now();
    let samples = Arc::new(Samples::default());
    let sampler = {
        let (b, samples, stop) = (b.clone(), samples.clone(), world.stop.clone());
        let every = Duration::from_secs_f64(a.sample_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while !stop.is_cancelled() {
                tokio::select! { _ = stop.cancelled() => {}, _ = tick.tick() => {} }
                match b.rss_kb() {
                    Ok(rss_kb) => samples.push(Sample {
                        t: start.elapsed().as_secs_f64(),
                        rss_kb,
                        store_bytes: b.store_bytes(),
                    }),
                    Err(e) => {
                        eprintln!("cannot sample the broker (did it exit?): {e:#}");
                        stop.cancel();
                    }
                }
            }
        })
    };
    let tasks: Vec<_> =
        members.iter().map(|m| tokio::spawn(member::traffic(world.clone(), m.clone()))).collect();
    let deadline = start + Duration::from_secs_f64(a.minutes * 60.0);
    let mut minute = 0u64;
    while Instant::now() < deadline && !world.stop.is_cancelled() {
        let next = (start + Duration::from_secs(60 * (minute + 1))).min(deadline);
        tokio::select! {
            _ = world.stop.cancelled() => break,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        minute += 1;
        let g = b.gauges().await.ok();
        report::progress(minute, a.minutes, start, &ledger.c, samples.last(), g);
    }
    world.stop.cancel();
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(30), t).await.is_err() {
            eprintln!("a member task did not wind down within 30 s");
        }
    }
    let _ = sampler.await;
    let traffic_secs = start.elapsed().as_secs_f64();
    println!("traffic stopped after {traffic_secs:.0} s; draining every member's queue");

    let drain_all = |quiet: f64, settle: f64, limit: f64| {
        let w = world.clone();
        let members = members.clone();
        async move {
            let d = |s: f64| Duration::from_secs_f64(s);
            let jobs =
                members.iter().map(|m| member::drain(w.clone(), m.clone(), d(quiet), d(settle), d(limit)));
            futures_util::future::join_all(jobs).await
        }
    };
    let drained = drain_all(5.0, 1.5, 120.0).await;
    // Older than the repeat window, every drain ack is now confirmed: anything pushed again is
    // a repeat; a queue that still holds anything shows up here.
    tokio::time::sleep(ledger::REPEAT_AFTER + Duration::from_secs(1)).await;
    let verified = drain_all(3.0, 1.5, 30.0).await;
    let gauges = b.gauges().await.ok();
    let log = b.log_summary();
    let (loss, loss_examples) = ledger.loss();
    let all = samples.all();
    let s = Summary {
        minutes: traffic_secs / 60.0,
        participants: n,
        rate: a.rate,
        mem: report::memory(&all, 60.0_f64.min(traffic_secs / 2.0)),
        after_drain_mb: b.rss_kb().map_or(f64::NAN, |kb| kb as f64 / 1024.0),
        store_mb: b.store_bytes() as f64 / 1e6,
        expected_pairs: ledger.expected_pairs(),
        loss,
        loss_examples,
        drained: drained.iter().map(|d| d.pushes).sum(),
        leftover: verified.iter().map(|d| d.pushes).sum(),
        unreachable: drained.iter().chain(&verified).filter(|d| !d.connected).count(),
        end_gauges: gauges,
        log,
    };
    let pass = report::summary(&s, &ledger.c);
    if !pass {
        // Dropping the broker kills it and removes its data (unless --keep); exit after.
        drop(b);
        std::process::exit(1);
    }
    Ok(())
}
