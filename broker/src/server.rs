//! Serving: opens the store, builds the hub, and serves WebSocket, `/health` and `/metrics`
//! on one listener (`/metrics` optionally on its own, see [`crate::http`]), every connection
//! admitted through the pre-authentication [`Gate`], until the shutdown signal, then closes every socket with 1001 and lets the
//! store writer commit what it holds.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use claudemesh_protocol::codec::to_hex;
use claudemesh_protocol::crypto::random_bytes;
use claudemesh_protocol::limits::{CLOSE_GOING_AWAY, MAX_WS_MESSAGE_BYTES};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BrokerConfig;
use crate::guard::{Gate, GuardedListener, Peer};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{self, WriterState};
use crate::{handlers, socket};

/// Each WebSocket connection's read buffer (bytes) and write threshold: a connection that has
/// only said hello holds about this much each, so it sets most of what 10,000 idle ones cost.
/// tungstenite keeps each buffer at the largest frame it held, so messages larger than this go
/// as fragments of [`claudemesh_protocol::ws::FRAGMENT_BYTES`] (the same size) both ways. The
/// bench's relay floors use it too.
pub const WS_BUFFER_BYTES: usize = claudemesh_protocol::ws::FRAGMENT_BYTES;

/// Why the broker could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("admin token file {path}: {source}")]
    AdminToken { path: String, source: std::io::Error },
    #[error("admin token file: {0}")]
    AdminTokenMode(crate::http::SecretFileError),
    #[error("metrics token file: {0}")]
    MetricsToken(crate::http::SecretFileError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen { addr: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start store writer: {0}")]
    Writer(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Reads the admin token, creating a random one (0600) if the file does not exist. An existing
/// file that group or others may access is refused (the message names it and `chmod 600`).
pub fn ensure_admin_token(path: &Path) -> Result<String, BrokerError> {
    let err = |source| BrokerError::AdminToken { path: path.display().to_string(), source };
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => {
            crate::http::check_private(path).map_err(BrokerError::AdminTokenMode)?;
            return Ok(s.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(dir) = path.parent() {
        crate::config::create_private_dir(dir).map_err(err)?;
    }
    let token = to_hex(&random_bytes::<32>());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(token.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    tracing::info!(path = %path.display(), "generated broker admin token");
    Ok(token)
}

/// TLS files, when the broker terminates TLS itself.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Serves until `shutdown` completes. Everything acknowledged is durable when this returns.
pub async fn serve(
    listener: TcpListener,
    config: BrokerConfig,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    crate::config::create_private_dir(&config.data_dir)
        .map_err(|source| BrokerError::DataDir { path: config.data_dir.display().to_string(), source })?;
    let admin_token = ensure_admin_token(&config.admin_token_file)?;
    let db = store::open(&config.db_path(), config.store_cache_bytes)?;
    let mut snapshot = store::load(&db)?;
    let db = Arc::new(store::Db::new(&config.db_path(), db, config.store_cache_bytes));
    let metrics = Arc::new(Metrics::default());
    let (store, writer) = store::writer::start(
        db,
        WriterState::new(snapshot.queue_depth.clone()),
        metrics.clone(),
        config.max_commit_batch,
    )
    .map_err(BrokerError::Writer)?;
    let stop = CancellationToken::new();
    // Connections have their own token: on shutdown they first get a 1001 close, and are
    // only killed if they do not finish in time.
    let metrics_token = match &config.metrics_token_file {
        Some(p) => Some(crate::http::read_secret(p).map_err(BrokerError::MetricsToken)?),
        None => None,
    };
    let metrics_listener = match &config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| BrokerError::MetricsListen { addr: addr.clone(), source })?,
        ),
        None => None,
    };
    let gate = Gate::new(config.gate_limits(), metrics.clone());
    let restore = std::mem::take(&mut snapshot.services);
    let mut hub = Hub::new(config, metrics, store, admin_token, snapshot, CancellationToken::new());
    hub.metrics_token = metrics_token.map(claudemesh_protocol::frames::Secret);
    let hub = Arc::new(hub);
    crate::services::restore(&hub, restore);
    let tracker = TaskTracker::new();

    tracker.spawn(sweeper(hub.clone(), stop.clone()));
    let metrics_route = if metrics_listener.is_some() {
        get(crate::http::metrics_elsewhere)
    } else {
        get(crate::http::metrics).with_state(hub.clone())
    };
    let app = Router::new()
        .route("/", get(ws_handler))
        .route("/ws", get(ws_handler))
        .route("/health", get(crate::http::health).with_state(hub.clone()))
        .route("/metrics", metrics_route)
        .with_state(AppState { hub: hub.clone(), tracker: tracker.clone(), stop: stop.clone() });
    if let Some(l) = metrics_listener {
        let addr = l.local_addr().map_err(BrokerError::Serve)?;
        tracing::info!(%addr, "metrics listening");
        let app = Router::new().route("/metrics", get(crate::http::metrics)).with_state(hub.clone());
        let stop = stop.clone();
        tracker.spawn(async move {
            let served =
                axum::serve(l, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }

    let local = listener.local_addr().map_err(BrokerError::Serve)?;
    let public_url = hub.config.public_url.as_deref().unwrap_or("(not set: --public-url)");
    tracing::info!(%local, tls = tls.is_some(), public_url, "broker listening");
    let graceful = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    };
    let served = match tls {
        Some(files) => {
            let cfg = crate::tls::server_config(&files.cert, &files.key)?;
            let l = crate::tls::TlsListener::new(listener, cfg, stop.clone(), gate)
                .map_err(BrokerError::Serve)?;
            axum::serve(l, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(graceful)
                .await
        }
        None => {
            let l = GuardedListener::new(listener, gate);
            axum::serve(l, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(graceful)
                .await
        }
    };
    stop.cancel();
    tracing::info!("shutting down: closing connections with 1001");
    hub.close_all(CLOSE_GOING_AWAY, "broker shutting down");
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await.is_err() {
        tracing::warn!("connections did not close in 5 s; dropping them");
        hub.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    }
    hub.shutdown.cancel();
    // Runners stop their services (killing their process groups) before the broker exits.
    hub.services.shutdown(Duration::from_secs(5)).await;
    drop(hub);
    // The writer commits what it took and exits once the last store handle is gone.
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    served.map_err(BrokerError::Serve)
}

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

async fn ws_handler(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut req: Request,
) -> Response {
    let ws = match crate::upgrade::Upgrade::from_request(&mut req) {
        crate::upgrade::Asked::Upgrade(ws) => ws,
        crate::upgrade::Asked::Refused(r) => return r,
        crate::upgrade::Asked::Other => {
            return (
                axum::http::StatusCode::OK,
                "claudemesh broker: connect with a WebSocket client (claudemesh join <invite>)\n",
            )
                .into_response();
        }
    };
    if s.stop.is_cancelled() {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let hub = s.hub.clone();
    let tracker = s.tracker.clone();
    ws.on_upgrade(ws_config(), move |websocket| tracker.track_future(socket::run(hub, websocket, peer.slot)))
}

/// Each connection's WebSocket limits. Frames up to twice the protocol limit are read and
/// answered with `too_large`; beyond that the socket is closed (1009) without buffering more.
/// Before hello the guard lets far less through (`preauth_bytes`).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WS_MESSAGE_BYTES))
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        // Bytes tungstenite may hold unwritten for a peer that stopped reading: one largest
        // message and change; past it the write fails and the connection is dropped.
        .max_write_buffer_size(2 * MAX_WS_MESSAGE_BYTES)
}

/// Periodic work: end sessions past their reconnect grace, expire old messages.
async fn sweeper(hub: Arc<Hub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(hub.config.sweep_interval);
    let mut last_expiry = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        handlers::sessions::sweep_gone_sessions(&hub);
        if last_expiry.elapsed() >= hub.config.expiry_interval {
            last_expiry = tokio::time::Instant::now();
            handlers::expiry::sweep_expired(&hub).await;
        }
    }
}
