//! `claudemesh-broker runner`: the per-mesh process that prepares and runs a mesh's MCP servers
//! as children and speaks JSON lines with the broker over stdio (DESIGN §7, [`wire`]).
//!
//! [`run`] reads [`ToRunner`] lines and answers with [`FromRunner`] lines through one writer
//! task; each service has a supervisor task ([`service`]); calls run as their own tasks
//! ([`call`]); children start through the `runner-exec` trampoline ([`exec`]).

pub mod call;
pub mod child;
pub mod exec;
pub mod io;
pub mod key;
pub mod log;
pub mod prepare;
pub mod secrets;
pub mod service;
pub mod wire;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::child::ExecPrefix;
use self::io::{LOG_CAPACITY, Line, OUT_CAPACITY, batch_logs, read_line_capped, write_events};
use self::service::{Ctx, ServiceHandle};
use self::wire::{CallErrorCode, FromRunner, MAX_LINE_BYTES, ToRunner};

/// Why the runner stopped other than by shutdown, EOF or a lost broker.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot read the broker's commands: {0}")]
    Input(#[source] std::io::Error),
}

/// How the runner starts its children.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The program and subcommands that reach `runner-exec`: `[claudemesh-broker, runner-exec]`
    /// or `[claudemesh, broker, runner-exec]`.
    pub exec: Vec<OsString>,
    /// Where the runner's keypair is kept (made at first start); `None`: a fresh key per run
    /// (tests), so sealed secrets do not survive a restart.
    pub key_file: Option<PathBuf>,
}

impl RunnerOptions {
    /// `runner-exec` of this executable, reached through `subcommands` (e.g. `["broker"]` when
    /// this is the `claudemesh` binary).
    pub fn current(subcommands: &[&str]) -> Self {
        let exe = std::env::current_exe().map(OsString::from).unwrap_or_else(|_| "claudemesh-broker".into());
        let mut exec = vec![exe];
        exec.extend(subcommands.iter().map(OsString::from));
        exec.push("runner-exec".into());
        Self { exec, key_file: None }
    }
}

/// Runs the runner over `input`/`output` until `shutdown`, a `shutdown` command, the end of
/// `input` or a write error; then kills every child and returns. Children start through
/// `runner-exec` of the current executable (`claudemesh-broker`).
pub async fn run(
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin + Send + 'static,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    run_with(RunnerOptions::current(&[]), input, output, shutdown).await
}

/// [`run`] with explicit options.
pub async fn run_with(
    opts: RunnerOptions,
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin + Send + 'static,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let (out, out_rx) = mpsc::channel(OUT_CAPACITY);
    let broken = CancellationToken::new();
    let writer = tokio::spawn(write_events(output, out_rx, broken.clone()));
    let (log_tx, log_rx) = mpsc::channel(LOG_CAPACITY);
    let batcher = tokio::spawn(batch_logs(log_rx, out.clone()));
    let key = match &opts.key_file {
        Some(path) => key::load_or_create(path).map_err(|e| e.to_string()),
        None => Ok(claudemesh_protocol::crypto::RunnerKeypair::generate()),
    };
    let (public_key, key_error) = match &key {
        Ok(k) => (Some(claudemesh_protocol::codec::to_b64(k.public())), None),
        Err(e) => {
            tracing::error!(error = %e, "no runner key: services with vault secrets cannot start");
            (None, Some(e.clone()))
        }
    };
    let ready = FromRunner::Ready {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        public_key,
        key_error,
    };
    let _ = out.send(ready).await;
    let mut runner = Runner {
        services: HashMap::new(),
        calls: Arc::default(),
        ctx: Ctx { out: out.clone(), log_tx, exec: ExecPrefix(opts.exec), key: Arc::new(key) },
    };
    let mut reader = BufReader::new(input);
    let result = loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = broken.cancelled() => break Ok(()),
            line = read_line_capped(&mut reader, MAX_LINE_BYTES) => line,
        };
        match line {
            Ok(Some(Line::Full(bytes))) => match serde_json::from_slice::<ToRunner>(&bytes) {
                Ok(ToRunner::Shutdown) => break Ok(()),
                Ok(msg) => runner.handle(msg).await,
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed line from the broker"),
            },
            Ok(Some(Line::TooLong(n))) => {
                tracing::warn!(bytes = n, "ignoring an overlong line from the broker")
            }
            Ok(None) => {
                tracing::info!("the broker closed the runner's input");
                break Ok(());
            }
            Err(e) => break Err(RunnerError::Input(e)),
        }
    };
    let services: Vec<_> = runner.services.drain().map(|(_, h)| h.stop()).collect();
    futures_util::future::join_all(services).await;
    drop(runner);
    drop(out);
    // Calls still in flight end at once now that their children are gone.
    let _ = tokio::time::timeout(Duration::from_secs(2), batcher).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    result
}

/// The dispatcher's state.
struct Runner {
    services: HashMap<String, ServiceHandle>,
    /// Calls in flight, by id, for `cancel`.
    calls: Arc<Mutex<HashMap<u64, CancellationToken>>>,
    ctx: Ctx,
}

impl Runner {
    async fn send(&self, ev: FromRunner) {
        let _ = self.ctx.out.send(ev).await;
    }

    async fn handle(&mut self, msg: ToRunner) {
        match msg {
            ToRunner::Load { spec } => {
                let spec = *spec;
                tracing::info!(service = %spec.name, "load");
                let previous = self.services.remove(&spec.name);
                let name = spec.name.clone();
                let handle = ServiceHandle::start(spec, self.ctx.clone(), previous);
                self.services.insert(name, handle);
            }
            ToRunner::Unload { name } => {
                tracing::info!(service = %name, "unload");
                if let Some(h) = self.services.remove(&name) {
                    h.stop().await;
                }
                self.send(FromRunner::Unloaded { name }).await;
            }
            ToRunner::Call { id, name, tool, arguments, timeout_ms, caller } => {
                let Some(service) = self.services.get(&name) else {
                    let message = format!("service {name} is not loaded");
                    self.send(FromRunner::CallError { id, code: CallErrorCode::NotLoaded, message }).await;
                    return;
                };
                tracing::debug!(service = %name, tool = %tool, caller = %caller, id, "call");
                let cancel = CancellationToken::new();
                self.lock_calls().insert(id, cancel.clone());
                let (conn, calls, out) = (service.conn.clone(), self.calls.clone(), self.ctx.out.clone());
                tokio::spawn(async move {
                    let ev = call::call(conn, &name, id, tool, arguments, timeout_ms, cancel).await;
                    calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    let _ = out.send(ev).await;
                });
            }
            ToRunner::Cancel { id } => {
                if let Some(c) = self.lock_calls().get(&id) {
                    c.cancel();
                }
            }
            ToRunner::Ping { id } => self.send(FromRunner::Pong { id }).await,
            // Handled by `run_with`'s loop.
            ToRunner::Shutdown => {}
        }
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}
