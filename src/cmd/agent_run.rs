//! `claudemesh agent run`: the agent in the foreground until SIGINT/SIGTERM or a `shutdown`.

use std::process::ExitCode;

use claudemesh_agent::DaemonError;
use tokio_util::sync::CancellationToken;

pub fn run() -> anyhow::Result<ExitCode> {
    let filter = if std::env::var("CLAUDEMESH_DEBUG").is_ok_and(|v| v != "0") { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            signal().await;
            s2.cancel();
        });
        match claudemesh_agent::run(super::paths(), stop).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e @ DaemonError::AlreadyRunning { .. }) => {
                eprintln!("{e}; stop it with `claudemesh agent stop`");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e.into()),
        }
    })
}

async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
