//! The supervisor of one service (an actor task): prepare once, start, answer the `load`,
//! health-check, follow tool list changes, restart with backoff, give up after too many
//! crashes, and stop (killing the process group) on unload or shutdown.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::{ServiceStatus, ToolInfo};
use rmcp::model::{ClientRequest, PingRequest};
use rmcp::{Peer, RoleClient};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::child::{Child, ExecPrefix, spawn};
use super::log::LogSink;
use super::prepare::{Prepared, prepare};
use super::secrets::{Opened, SECRETS_DIR, SecretFiles};
use super::wire::{FromRunner, ServiceSpec};

/// Longest an unload or shutdown waits for a supervisor before aborting it (which still kills
/// the process group, from `Child`'s drop).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the runner shares with every supervisor.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Events for the broker (the writer task).
    pub out: mpsc::Sender<FromRunner>,
    /// Lines for the log batcher, behind each service's [`LogSink`].
    pub log_tx: mpsc::Sender<(String, String)>,
    /// How children are started (`runner-exec`).
    pub exec: ExecPrefix,
    /// The runner's key, which opens the services' sealed secrets; why there is none.
    pub key: std::sync::Arc<Result<claudemesh_protocol::crypto::RunnerKeypair, String>>,
}

impl Ctx {
    async fn send(&self, ev: FromRunner) {
        let _ = self.out.send(ev).await;
    }

    async fn status(&self, name: &str, status: ServiceStatus, error: Option<String>) {
        self.send(FromRunner::Status { name: name.to_string(), status, error }).await;
    }
}

/// Whether a service can take calls now.
#[derive(Debug, Clone)]
pub enum Conn {
    /// Preparing, starting, restarting, crashed or stopped.
    Down,
    /// Running: its MCP peer, and a token cancelled when the child exits.
    Up { peer: Peer<RoleClient>, exited: CancellationToken },
}

/// The runner's handle on a supervisor.
#[derive(Debug)]
pub struct ServiceHandle {
    /// The service's current child, for calls.
    pub conn: watch::Receiver<Conn>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ServiceHandle {
    /// Starts supervising `spec`, after stopping `previous` (a service of the same name).
    pub fn start(spec: ServiceSpec, ctx: Ctx, previous: Option<ServiceHandle>) -> Self {
        let (conn_tx, conn) = watch::channel(Conn::Down);
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(spec, ctx, conn_tx, stop.clone(), previous));
        Self { conn, stop, task }
    }

    /// Stops the service and waits until its processes are gone.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            self.task.abort();
            let _ = self.task.await;
        }
    }
}

/// How a running child's watch ended.
enum End {
    Stopped,
    Exited,
    Unhealthy(String),
}

/// A failed start: the step (`start`, `initialize`, `tools/list`), the error, the output tail.
struct StartError {
    step: &'static str,
    error: String,
    tail: Vec<String>,
}

async fn supervise(
    spec: ServiceSpec,
    ctx: Ctx,
    conn: watch::Sender<Conn>,
    stop: CancellationToken,
    previous: Option<ServiceHandle>,
) {
    if let Some(p) = previous {
        p.stop().await;
    }
    let name = spec.name.clone();
    let sink = LogSink::new(name.clone(), ctx.log_tx.clone());
    ctx.status(&name, ServiceStatus::Preparing, None).await;
    let prepared = tokio::select! {
        r = prepare(&spec, &sink, &stop) => r,
        _ = stop.cancelled() => {
            load_failed(&ctx, &name, "prepare", "unloaded while preparing".into(), Vec::new()).await;
            return;
        }
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            load_failed(&ctx, &name, &e.step, e.message, e.log_tail).await;
            return;
        }
    };
    // Secret files live while the service is loaded; the log never shows a secret value.
    let _files = SecretFiles(spec.dir.join(SECRETS_DIR));
    let opened = match super::secrets::open(&spec, ctx.key.as_ref().as_ref().map_err(String::as_str)) {
        Ok(o) => o,
        Err(e) => {
            load_failed(&ctx, &name, "secrets", e.to_string(), Vec::new()).await;
            return;
        }
    };
    let sink = sink.redacting(opened.redactions());
    let policy = spec.restart;
    let mut crashes: VecDeque<Instant> = VecDeque::new();
    let mut backoff = Duration::from_millis(policy.backoff_min_ms);
    let mut tools: Option<Vec<ToolInfo>> = None;
    ctx.status(&name, ServiceStatus::Starting, None).await;
    loop {
        let error = match start(&spec, &ctx, &prepared, &opened, &sink, &stop).await {
            Ok((child, listed, list_rx)) => {
                match &tools {
                    None => {
                        let resolved = prepared.resolved.clone();
                        ctx.send(FromRunner::Loaded { name: name.clone(), tools: listed.clone(), resolved })
                            .await;
                    }
                    Some(old) if *old != listed => {
                        ctx.send(FromRunner::ToolsChanged { name: name.clone(), tools: listed.clone() })
                            .await;
                    }
                    Some(_) => {}
                }
                tools = Some(listed);
                ctx.status(&name, ServiceStatus::Running, None).await;
                if let Some(peer) = child.peer() {
                    conn.send_replace(Conn::Up { peer, exited: child.exited.clone() });
                }
                let began = Instant::now();
                let end = watch_child(&child, &spec, &ctx, list_rx, &stop).await;
                conn.send_replace(Conn::Down);
                let status = child.kill().await;
                if began.elapsed() >= Duration::from_millis(policy.backoff_max_ms) {
                    backoff = Duration::from_millis(policy.backoff_min_ms);
                }
                match end {
                    End::Stopped => {
                        ctx.status(&name, ServiceStatus::Stopped, None).await;
                        return;
                    }
                    End::Exited => match status {
                        Some(s) => format!("service {name}: the server exited ({s})"),
                        None => format!("service {name}: the server exited"),
                    },
                    End::Unhealthy(e) => e,
                }
            }
            Err(_) if stop.is_cancelled() => {
                if tools.is_none() {
                    load_failed(&ctx, &name, "start", "unloaded while starting".into(), Vec::new()).await;
                } else {
                    ctx.status(&name, ServiceStatus::Stopped, None).await;
                }
                return;
            }
            Err(e) if tools.is_none() => {
                load_failed(&ctx, &name, e.step, e.error, e.tail).await;
                return;
            }
            Err(e) => e.error,
        };
        tracing::warn!(service = %name, error = %error, "service down");
        let now = Instant::now();
        crashes.push_back(now);
        let window = Duration::from_millis(policy.crash_window_ms);
        while crashes.front().is_some_and(|t| now.duration_since(*t) > window) {
            crashes.pop_front();
        }
        if crashes.len() >= policy.max_crashes.max(1) as usize {
            let error = format!("{error}; {} crashes within {window:?}, giving up", crashes.len());
            ctx.send(FromRunner::Crashed { name: name.clone(), error: error.clone() }).await;
            ctx.status(&name, ServiceStatus::Crashed, Some(error)).await;
            stop.cancelled().await;
            return;
        }
        ctx.status(&name, ServiceStatus::Restarting, Some(error)).await;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => {
                ctx.status(&name, ServiceStatus::Stopped, None).await;
                return;
            }
        }
        backoff = (backoff * 2).min(Duration::from_millis(policy.backoff_max_ms).max(backoff));
    }
}

async fn load_failed(ctx: &Ctx, name: &str, step: &str, error: String, log_tail: Vec<String>) {
    ctx.status(name, ServiceStatus::Failed, Some(error.clone())).await;
    ctx.send(FromRunner::LoadFailed { name: name.to_string(), step: step.to_string(), error, log_tail })
        .await;
}

/// Spawns the child, initializes it and lists its tools, within `start_timeout_ms`.
async fn start(
    spec: &ServiceSpec,
    ctx: &Ctx,
    prepared: &Prepared,
    opened: &Opened,
    sink: &LogSink,
    stop: &CancellationToken,
) -> Result<(Child, Vec<ToolInfo>, mpsc::Receiver<()>), StartError> {
    let mut spawned = spawn(spec, &ctx.exec, &prepared.argv, &prepared.env, &opened.env, sink)
        .map_err(|e| StartError { step: "start", error: e.to_string(), tail: Vec::new() })?;
    let (list_tx, list_rx) = mpsc::channel(1);
    let limit = Duration::from_millis(spec.health.start_timeout_ms);
    let deadline = tokio::time::Instant::now() + limit;
    let stopped = || StartError { step: "start", error: "stopped".into(), tail: Vec::new() };
    let init = tokio::select! {
        r = tokio::time::timeout_at(deadline, spawned.initialize(list_tx)) => r,
        _ = stop.cancelled() => return Err(stopped()),
    };
    let mut child = spawned.child;
    let error = match init {
        Ok(Ok(())) => {
            let listed = tokio::select! {
                r = tokio::time::timeout_at(deadline, child.list_tools()) => r,
                _ = stop.cancelled() => return Err(stopped()),
            };
            match listed {
                Ok(Ok(tools)) => return Ok((child, tools, list_rx)),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("service {}: no answer to tools/list within {limit:?}", spec.name),
            }
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("service {}: no answer to initialize within {limit:?}", spec.name),
    };
    let tail = child.kill_for_tail(Duration::from_millis(500)).await;
    child.kill().await;
    Err(StartError { step: "initialize", error, tail })
}

/// Watches a running child until it exits, fails its health checks or the service stops;
/// re-lists tools on `tools/list_changed`.
async fn watch_child(
    child: &Child,
    spec: &ServiceSpec,
    ctx: &Ctx,
    mut list_rx: mpsc::Receiver<()>,
    stop: &CancellationToken,
) -> End {
    let (sick_tx, mut sick_rx) = oneshot::channel();
    let pinger = child.peer().map(|peer| tokio::spawn(health(peer, spec.clone(), sick_tx)));
    let _abort = AbortOnDrop(pinger);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return End::Stopped,
            _ = child.exited.cancelled() => return End::Exited,
            sick = &mut sick_rx => {
                if let Ok(e) = sick {
                    return End::Unhealthy(e);
                }
            }
            Some(()) = list_rx.recv() => {
                let limit = Duration::from_millis(spec.health.start_timeout_ms);
                let listed = tokio::select! {
                    r = tokio::time::timeout(limit, child.list_tools()) => r,
                    _ = stop.cancelled() => return End::Stopped,
                    _ = child.exited.cancelled() => return End::Exited,
                };
                match listed {
                    Ok(Ok(tools)) => {
                        ctx.send(FromRunner::ToolsChanged { name: spec.name.clone(), tools }).await;
                    }
                    Ok(Err(e)) => tracing::warn!(service = %spec.name, error = %e, "cannot re-list tools"),
                    Err(_) => tracing::warn!(service = %spec.name, "tools/list timed out after list_changed"),
                }
            }
        }
    }
}

/// Pings every `interval_ms`; reports on `sick` after `misses` failed pings in a row.
async fn health(peer: Peer<RoleClient>, spec: ServiceSpec, sick: oneshot::Sender<String>) {
    let h = spec.health;
    let interval = Duration::from_millis(h.interval_ms.max(10));
    let mut misses = 0u32;
    loop {
        tokio::time::sleep(interval).await;
        let ping = peer.send_request(ClientRequest::PingRequest(PingRequest::default()));
        match tokio::time::timeout(Duration::from_millis(h.timeout_ms), ping).await {
            Ok(Ok(_)) => misses = 0,
            _ => misses += 1,
        }
        if misses >= h.misses.max(1) {
            let _ = sick.send(format!("service {}: {misses} health pings unanswered", spec.name));
            return;
        }
    }
}

struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}
