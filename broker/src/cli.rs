//! The broker's command line, shared by the `claudemesh-broker` binary and `claudemesh broker`:
//! argument parsing, `serve` with signal handling, and host-side `mesh create` against the data
//! directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::handlers::admin::{create_mesh_records, store_mesh};
use crate::store::{self, Tx};
use crate::{BrokerConfig, TlsFiles};

#[derive(Debug, Parser)]
#[command(
    name = "claudemesh-broker",
    version,
    about = "claudemesh broker: routes end-to-end encrypted messages between Claude Code sessions"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the WebSocket protocol, /health and /metrics.
    Serve(Box<ServeArgs>),
    /// Manage meshes directly in the data directory (the broker must not be running).
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Run a mesh's MCP servers, speaking JSON lines with the broker over stdio (started by
    /// the broker).
    #[command(hide = true)]
    Runner(RunnerArgs),
    /// Set rlimits on this process, then exec CMD (how the runner starts a service).
    #[command(hide = true)]
    RunnerExec(RunnerExecArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunnerArgs {
    /// The runner's keypair file (made 0600 at first start): deployers seal vault secrets to
    /// its public key. Without it a fresh key is made each run.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunnerExecArgs {
    /// RLIMIT_DATA in bytes.
    #[arg(long)]
    memory_bytes: u64,
    /// RLIMIT_NOFILE.
    #[arg(long)]
    open_files: u64,
    /// RLIMIT_NPROC.
    #[arg(long)]
    processes: u64,
    /// The command and its arguments, after `--` (optional: `claudemesh broker …` may have
    /// consumed it already).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
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
    /// Memory (MiB) the store may use to cache its pages.
    #[arg(long, default_value_t = crate::store::DEFAULT_CACHE_BYTES / (1024 * 1024))]
    store_cache_mb: usize,
    /// Seconds from accept until the WebSocket upgrade (and TLS handshake) must be complete.
    #[arg(long, default_value_t = claudemesh_protocol::limits::HANDSHAKE_TIMEOUT_SECS as f64)]
    handshake_timeout_secs: f64,
    /// Seconds from welcome until hello or enroll must have succeeded.
    #[arg(long, default_value_t = claudemesh_protocol::limits::HELLO_TIMEOUT_SECS as f64)]
    hello_timeout_secs: f64,
    /// Unauthenticated connections in all; a new one beyond this evicts the oldest.
    #[arg(long, default_value_t = 1024)]
    max_unauthenticated: usize,
    /// Unauthenticated connections per source IP; a new one beyond this evicts that IP's oldest.
    #[arg(long, default_value_t = 64)]
    max_unauthenticated_per_ip: usize,
    /// Serve /metrics on this address (e.g. 127.0.0.1:9100) instead of the public listener.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Require `Authorization: Bearer <token>` for /metrics; the file must be mode 0600.
    #[arg(long)]
    metrics_token_file: Option<PathBuf>,
    /// Stop when standard input closes: for a broker run as the child of another process (the
    /// claudemesh agent runs `claudemesh up`'s local broker so), which then cannot outlive it,
    /// even if that process is killed.
    #[arg(long)]
    stop_on_stdin_eof: bool,
    /// Run each mesh's service runner inside this command, e.g. "docker run -i --rm IMAGE",
    /// "bwrap --ro-bind / / --dev /dev --unshare-all --share-net --die-with-parent --" or
    /// "systemd-run --user --scope -p MemoryMax=2G" (split on spaces; no shell). See
    /// docs/operations.md.
    #[arg(long)]
    runner_wrap: Option<String>,
    /// The claudemesh-broker executable to start as the runner (default: this executable), e.g.
    /// /usr/local/bin/claudemesh-broker inside a --runner-wrap container image.
    #[arg(long)]
    runner_bin: Option<PathBuf>,
    /// Who may deploy services: every member, or only mesh admins.
    #[arg(long, value_enum, default_value = "members")]
    deploy_policy: DeployPolicyArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DeployPolicyArg {
    Members,
    Admins,
}

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
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

/// Runs the broker's command line: `argv[0]` is the program name (`claudemesh-broker`, or
/// `claudemesh broker` when the `claudemesh` binary forwards its `broker` subcommand here).
/// Parse errors and `--help` exit the process as clap does; other errors print and return 1.
pub fn main_with<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let program = argv.first().cloned().unwrap_or_default();
    // `claudemesh broker …` forwards here with this program name; its runner reaches
    // `runner-exec` through the same subcommand.
    let via_claudemesh = argv.first().is_some_and(|a| a.to_string_lossy().ends_with(" broker"));
    let args = Args::parse_from(argv);
    if let Command::RunnerExec(a) = &args.command {
        // Only returns on failure.
        let e = crate::runner::exec::exec(a.memory_bytes, a.open_files, a.processes, &a.command);
        eprintln!("runner-exec: {}", e.map_or_else(|e| e.to_string(), |never| match never {}));
        return ExitCode::from(127);
    }
    if let Command::Runner(a) = args.command {
        // rmcp logs every message it handles at info: too much for a log per mesh.
        // Its stderr goes into the broker's log, which adds the time: lines are `LEVEL message`.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .try_init();
        return run_runner(via_claudemesh, a.key_file);
    }
    init_tracing();
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
            cfg.store_cache_bytes = a.store_cache_mb.saturating_mul(1024 * 1024);
            cfg.handshake_timeout = Duration::from_secs_f64(a.handshake_timeout_secs);
            cfg.hello_timeout = Duration::from_secs_f64(a.hello_timeout_secs);
            cfg.max_unauthenticated = a.max_unauthenticated;
            cfg.max_unauthenticated_per_ip = a.max_unauthenticated_per_ip;
            cfg.metrics_listen = a.metrics_listen;
            cfg.metrics_token_file = a.metrics_token_file;
            cfg.services.runner_wrap = a
                .runner_wrap
                .as_deref()
                .map(|w| w.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            cfg.services.runner_command = runner_command(&program, a.runner_bin);
            cfg.services.deploy_policy = match a.deploy_policy {
                DeployPolicyArg::Members => crate::services::DeployPolicy::Members,
                DeployPolicyArg::Admins => crate::services::DeployPolicy::Admins,
            };
            raise_fd_limit();
            let tls = a.tls_cert.zip(a.tls_key).map(|(cert, key)| TlsFiles { cert, key });
            rt.block_on(serve(&a.listen, cfg, tls, a.stop_on_stdin_eof))
        }
        Command::Mesh(MeshCommand::Create { slug, pubkey, display_name, data, json }) => {
            mesh_create(&data, &slug, &pubkey, &display_name, json)
        }
        Command::Runner(_) | Command::RunnerExec(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The argv starting a runner: `bin` (or this executable) with `runner`, or `broker runner`
/// when this is the `claudemesh` binary forwarding `claudemesh broker …`.
fn runner_command(program: &std::ffi::OsStr, bin: Option<PathBuf>) -> Vec<std::ffi::OsString> {
    if let Some(bin) = bin {
        return vec![bin.into_os_string(), "runner".into()];
    }
    let Ok(exe) = std::env::current_exe().map(PathBuf::into_os_string) else { return Vec::new() };
    if program == "claudemesh broker" {
        vec![exe, "broker".into(), "runner".into()]
    } else {
        vec![exe, "runner".into()]
    }
}

/// `runner`: one thread (children are spawned from it, so their parent-death signal fires only
/// when the runner exits), stdin/stdout as the wire, stopped by SIGINT/SIGTERM too.
fn run_runner(via_claudemesh: bool, key_file: Option<PathBuf>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut opts = crate::runner::RunnerOptions::current(if via_claudemesh { &["broker"] } else { &[] });
    opts.key_file = key_file;
    let result = rt.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            on_signal.cancel();
        });
        crate::runner::run_with(opts, tokio::io::stdin(), tokio::io::stdout(), stop).await
    });
    // Do not wait for the blocking stdin reader thread.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` (or `CLAUDEMESH_DEBUG=1`) sets the level. Colours only on a
/// terminal: a service manager's journal or a log file gets plain text.
pub fn init_tracing() {
    init_tracing_with("info");
}

/// [`init_tracing`] with `default` as the filter when neither `RUST_LOG` nor
/// `CLAUDEMESH_DEBUG` is set.
fn init_tracing_with(default: &str) {
    use std::io::IsTerminal;
    let default = if std::env::var("CLAUDEMESH_DEBUG").is_ok_and(|v| v != "0") { "debug" } else { default };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Raises the soft limit on open files to the hard limit: every connection, authenticated or
/// not, is a descriptor, and running out makes accept fail for everyone.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("signal received");
}

/// Resolves when standard input reaches its end (or fails): the parent holding the other end
/// exited or closed it.
async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    tracing::info!("standard input closed: the parent process is gone");
}

/// Binds `listen`, prints `listening on ws://ADDR/ws` (scripts and tests read it to learn the
/// port) and serves until SIGINT/SIGTERM, or also until stdin closes with `stop_on_stdin_eof`.
pub async fn serve(
    listen: &str,
    cfg: BrokerConfig,
    tls: Option<TlsFiles>,
    stop_on_stdin_eof: bool,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    // Tests and scripts read this line to learn the port when listening on :0.
    println!("listening on {scheme}://{addr}/ws");
    let stop = async move {
        if stop_on_stdin_eof {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stdin_closed() => {}
            }
        } else {
            shutdown_signal().await;
        }
    };
    crate::serve(listener, cfg, tls, stop).await?;
    Ok(())
}

pub fn mesh_create(
    data: &Path,
    slug: &str,
    pubkey: &str,
    display_name: &str,
    json: bool,
) -> anyhow::Result<()> {
    crate::config::create_private_dir(data).with_context(|| format!("cannot create {}", data.display()))?;
    let cfg = BrokerConfig::new(data);
    let db = store::open(&cfg.db_path(), cfg.store_cache_bytes).context(
        "is the broker running? stop it, or create the mesh with `claudemesh mesh create` through it",
    )?;
    let (mesh, member) =
        create_mesh_records(slug, pubkey, display_name).map_err(|(_, m)| anyhow::anyhow!(m))?;
    let txn = db.begin_write()?;
    let created = store_mesh(&Tx::new(&txn), &mesh, &member)?;
    if !created {
        anyhow::bail!("a mesh named {slug} already exists");
    }
    txn.commit()?;
    if json {
        println!(
            "{}",
            serde_json::json!({"mesh_id": mesh.id, "slug": mesh.slug, "member_id": member.member_id, "role": "admin"})
        );
    } else {
        println!("created mesh {} ({}); admin member {}", mesh.slug, mesh.id, member.member_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_exec_takes_the_command_after_its_limits_with_or_without_dashes() {
        for argv in [
            &[
                "b",
                "runner-exec",
                "--memory-bytes",
                "1",
                "--open-files",
                "2",
                "--processes",
                "3",
                "--",
                "cmd",
                "--flag",
            ][..],
            &[
                "b",
                "runner-exec",
                "--memory-bytes",
                "1",
                "--open-files",
                "2",
                "--processes",
                "3",
                "cmd",
                "--flag",
            ][..],
        ] {
            let Ok(Args { command: Command::RunnerExec(a) }) = Args::try_parse_from(argv) else {
                panic!("{argv:?} did not parse");
            };
            assert_eq!((a.memory_bytes, a.open_files, a.processes), (1, 2, 3));
            assert_eq!(a.command, ["cmd", "--flag"]);
        }
    }
}
