//! The `claudemesh-broker` binary: parse arguments, run `serve` or a host-side admin command,
//! map errors to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use claudemesh_broker::{BrokerConfig, TlsFiles, cli};

#[derive(Debug, Parser)]
#[command(
    name = "claudemesh-broker",
    version,
    about = "claudemesh broker: routes end-to-end encrypted messages between Claude Code sessions"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the WebSocket protocol, /health and /metrics.
    Serve(ServeArgs),
    /// Manage meshes directly in the data directory (the broker must not be running).
    #[command(subcommand)]
    Mesh(MeshCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:7900 or 127.0.0.1:0.
    #[arg(long, default_value = "127.0.0.1:7900")]
    listen: String,
    /// Directory for broker.redb and the admin token.
    #[arg(long)]
    data: PathBuf,
    /// URL members use to reach this broker (e.g. behind a TLS proxy); reported in the startup
    /// log and in /health so operators can check what invites should carry.
    #[arg(long)]
    public_url: Option<String>,
    /// PEM certificate chain: serve wss:// directly.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// File holding the broker admin token (created 0600 if missing). Default: <data>/admin.token.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Days an undelivered message is kept.
    #[arg(long, default_value_t = 7.0)]
    queue_ttl_days: f64,
    /// Undelivered messages queued per member before sends to it are refused.
    #[arg(long, default_value_t = 10_000)]
    max_queue: u32,
    /// Sends per second allowed per member (token bucket rate).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Burst of sends allowed per member.
    #[arg(long, default_value_t = 200.0)]
    burst: f64,
    /// Connections allowed per mesh.
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
}

#[derive(Debug, Subcommand)]
enum MeshCommand {
    /// Create a mesh and enroll PUBKEY as its first admin.
    Create {
        slug: String,
        /// The admin's ed25519 public key, hex (from `claudemesh mesh create` or a key you hold).
        #[arg(long)]
        pubkey: String,
        #[arg(long, default_value = "admin")]
        display_name: String,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.command {
        Command::Serve(a) => {
            let mut cfg = BrokerConfig::new(&a.data);
            if let Some(f) = a.admin_token_file {
                cfg.admin_token_file = f;
            }
            cfg.public_url = a.public_url;
            cfg.queue_ttl = Duration::from_secs_f64(a.queue_ttl_days * 86_400.0);
            cfg.max_queue_per_member = a.max_queue;
            cfg.send_rate_per_sec = a.rate;
            cfg.send_burst = a.burst;
            cfg.max_connections_per_mesh = a.max_connections;
            let tls = a.tls_cert.zip(a.tls_key).map(|(cert, key)| TlsFiles { cert, key });
            rt.block_on(cli::serve(&a.listen, cfg, tls))
        }
        Command::Mesh(MeshCommand::Create { slug, pubkey, display_name, data, json }) => {
            cli::mesh_create(&data, &slug, &pubkey, &display_name, json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
