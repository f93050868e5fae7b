//! `claudemesh-broker-bench`: drives a real `claudemesh-broker` child process over WebSockets
//! on 127.0.0.1 and reports connections and RSS, DM latency, DM throughput and broadcast
//! fan-out, each scenario on a fresh broker, as result lines and a markdown table.

#[path = "bench/broker.rs"]
mod broker;
#[path = "common/child.rs"]
mod child;
#[path = "bench/relay.rs"]
mod relay;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/scenarios.rs"]
mod scenarios;
#[path = "bench/setup.rs"]
mod setup;
#[path = "bench/stats.rs"]
mod stats;
#[path = "bench/traffic.rs"]
mod traffic;
#[path = "common/ws.rs"]
mod ws;

use std::path::PathBuf;
use std::time::Duration;

use broker::Server;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "claudemesh-broker-bench",
    about = "Benchmark the claudemesh broker over real WebSockets from a separate process",
    long_about = "Benchmark the claudemesh broker over real WebSockets from a separate process.\n\n\
        Each scenario starts its own `claudemesh-broker serve --listen 127.0.0.1:0` child with a fresh \
        data directory (per-member rate limits opened up), enrolls members with a signed invite, \
        and drives it with raw protocol clients in this process. Bench and broker share the \
        machine's cores, so figures are for the two together. Aims are reported, never asserted.\n\n\
        Build and run:\n  cargo build --release -p claudemesh-broker --bins\n  \
        ./target/release/claudemesh-broker-bench all\n\n\
        10,000 connections need `ulimit -n` of at least ~10,100 in the shell (the broker child inherits it)."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum Command {
    /// Every scenario below on every server, then the results table (about 10 minutes with the
    /// defaults; the relays report no store commits).
    All,
    /// Hold N authenticated idle connections (distinct members); broker RSS and connect time.
    Connections,
    /// One sender, one receiver at a fixed rate: one-way and send→ack latency percentiles.
    Latency,
    /// Sender/receiver pairs sending pipelined DMs: delivered DMs per second, and the server's
    /// CPU per delivery (user + system from /proc, with the broker's store writer thread apart)
    DmThroughput,
    /// One sender broadcasting to receivers: push deliveries per second, and CPU per delivery
    Broadcast,
    /// Serve a relay floor on 127.0.0.1:0 until killed (what `--servers durable,storeless`
    /// start; run by hand to drive it with another load generator).
    Relay {
        /// Append every send and `client_ack` to DIR/relay.log, `fdatasync` before acking.
        #[arg(long, value_name = "DIR")]
        durable: Option<PathBuf>,
    },
}

/// Options shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Servers to measure, each scenario run on each in turn (interleaved, fresh each time):
    /// the broker, the durable floor (a relay that group-commits an append-only file with
    /// fdatasync before each ack) and the storeless floor (WebSocket + JSON only).
    #[arg(long, global = true, value_delimiter = ',', default_values = ["broker", "durable", "storeless"])]
    pub servers: Vec<Server>,
    /// Broker binary [default: claudemesh-broker next to this executable].
    #[arg(long = "broker", global = true, value_name = "PATH")]
    broker_arg: Option<PathBuf>,
    #[arg(skip)]
    pub broker: PathBuf,
    /// Directory under which each broker gets a fresh data directory (removed afterwards).
    #[arg(long, global = true, default_value_os_t = std::env::temp_dir())]
    pub data_root: PathBuf,
    /// Repetitions of the latency and throughput scenarios (median and min–max reported).
    #[arg(long, global = true, default_value_t = 3)]
    pub runs: usize,
    /// Measured seconds per latency or throughput run.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub secs: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, global = true, default_value_t = 2.0)]
    pub warmup: f64,
    /// Message body size in bytes (plaintext inside each box).
    #[arg(long, global = true, default_value_t = 512)]
    pub body: usize,
    /// Connection counts for `connections`, comma-separated.
    #[arg(long = "n", global = true, value_delimiter = ',', default_values_t = [1000, 10000])]
    pub n: Vec<usize>,
    /// In `connections` (broker only), once settled: every held connection asks `list_members`
    /// once (an answer of ~200 bytes per member), then the broker's RSS is read again: what
    /// large frames leave behind in per-connection buffers.
    #[arg(long, global = true)]
    pub list_members: bool,
    /// Arrival rate of `connections`: new connections started per second.
    #[arg(long, global = true, default_value_t = 1000)]
    pub arrival: u32,
    /// Send rate of the latency scenario, messages per second.
    #[arg(long, global = true, default_value_t = 1000)]
    pub rate: u32,
    /// Sender/receiver pairs of `dm-throughput`.
    #[arg(long, global = true, default_value_t = 50)]
    pub pairs: usize,
    /// Sends in flight per pair (not yet received) in `dm-throughput`.
    #[arg(long, global = true, default_value_t = 512)]
    pub window: usize,
    /// Receivers of `broadcast`.
    #[arg(long, global = true, default_value_t = 100)]
    pub receivers: usize,
    /// Receivers send `client_ack` after this many milliseconds (or 256 pushes), whichever first.
    #[arg(long, global = true, default_value_t = 5)]
    pub ack_ms: u64,
    /// Broadcasts in flight (not yet received by every receiver) in `broadcast`.
    #[arg(long, global = true, default_value_t = 64)]
    pub broadcast_window: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { command, mut opts } = Args::parse();
    opts.broker = match opts.broker_arg.clone() {
        Some(p) => p,
        None => broker::default_broker_path()?,
    };
    opts.runs = opts.runs.max(1);
    if let Command::Relay { durable } = command {
        return relay::serve(durable).await;
    }
    let mut r = report::Report::default();
    report::print_machine(&opts);
    let all = command == Command::All;
    let servers = opts.servers.clone();
    if all || command == Command::Connections {
        for &n in &opts.n {
            for &s in &servers {
                let out = bounded(Duration::from_secs(400), scenarios::connections(s, &opts, n)).await;
                r.connections(s, n, out);
            }
        }
    }
    if all || command == Command::Latency {
        for i in 0..opts.runs {
            for &s in &servers {
                let out = bounded(budget(&opts), scenarios::latency(s, &opts)).await;
                r.latency(s, i, out);
            }
        }
    }
    if all || command == Command::DmThroughput {
        for i in 0..opts.runs {
            for &s in &servers {
                let out = bounded(budget(&opts), scenarios::dm_throughput(s, &opts)).await;
                r.dm(s, i, out);
            }
        }
    }
    if all || command == Command::Broadcast {
        for i in 0..opts.runs {
            for &s in &servers {
                let out = bounded(budget(&opts), scenarios::broadcast(s, &opts)).await;
                r.broadcast(s, i, out);
            }
        }
    }
    r.print_table(&opts);
    Ok(())
}

/// Time allowed for one latency or throughput run, set-up included.
fn budget(o: &Opts) -> Duration {
    Duration::from_secs_f64(o.warmup + o.secs + 90.0)
}

async fn bounded<T>(limit: Duration, f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!("did not finish within {limit:?}"),
    }
}
