//! What the `claudemesh-broker` binary runs: `serve` with signal handling, and host-side
//! `mesh create` against the data directory.

use std::path::Path;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::handlers::admin::{create_mesh_records, store_mesh};
use crate::store::{self, Tx};
use crate::{BrokerConfig, TlsFiles};

/// Logs to stderr; `RUST_LOG` (or `CLAUDEMESH_DEBUG=1`) sets the level.
pub fn init_tracing() {
    let default = if std::env::var("CLAUDEMESH_DEBUG").is_ok_and(|v| v != "0") { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
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

pub async fn serve(listen: &str, cfg: BrokerConfig, tls: Option<TlsFiles>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    // Tests and scripts read this line to learn the port when listening on :0.
    println!("listening on {scheme}://{addr}/ws");
    crate::serve(listener, cfg, tls, shutdown_signal()).await?;
    Ok(())
}

pub fn mesh_create(
    data: &Path,
    slug: &str,
    pubkey: &str,
    display_name: &str,
    json: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let cfg = BrokerConfig::new(data);
    let db = store::open(&cfg.db_path()).context(
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
