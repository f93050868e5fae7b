//! The mesh runner's public key for deployers (`mcp_runner_key`, DESIGN §4 "Runner key"): the
//! actor starts the runner if none runs, answers with the key from its `ready` line, and stops
//! a runner that was started only for this once it has sat idle (no services) for a minute.

use std::time::Duration;

use claudemesh_protocol::frames::{ErrorCode, ServerFrame};
use tokio::time::Instant;

use super::actor::{Caller, MeshActor};

/// How long a caller waits for a runner to start and say its key.
const KEY_WAIT: Duration = Duration::from_secs(20);
/// How long a runner with no services is kept after it answered a key request.
const IDLE_STOP: Duration = Duration::from_secs(60);

/// What the actor knows of its runner's key.
#[derive(Debug, Default)]
pub struct RunnerKeyState {
    /// Base64 X25519 public key from the running runner's `ready`.
    pub public: Option<String>,
    /// Why the running runner has no key.
    pub error: Option<String>,
    pub waiters: Vec<(Caller, Instant)>,
    /// Since when a runner has run with no services after answering a key request.
    pub idle_since: Option<Instant>,
}

impl MeshActor {
    /// `mcp_runner_key`: answers now if the runner said its key, else starts it and waits.
    pub(super) fn runner_key(&mut self, caller: Caller) {
        if self.runner.is_some()
            && let Some(k) = &self.key.public
        {
            let k = k.clone();
            return self.answer_key(&caller, &k);
        }
        if self.runner.is_some()
            && let Some(e) = &self.key.error
        {
            let e = e.clone();
            return caller.error(ErrorCode::Unavailable, format!("the service runner has no key: {e}"));
        }
        if self.ensure_runner().is_none() {
            return caller.error(
                ErrorCode::Unavailable,
                format!(
                    "the service runner of mesh {} could not be started; see the broker's log",
                    self.mesh.slug
                ),
            );
        }
        self.key.waiters.push((caller, Instant::now() + KEY_WAIT));
    }

    fn answer_key(&mut self, caller: &Caller, key: &str) {
        caller.reply(&ServerFrame::RunnerKey { req: caller.req, public_key: key.to_string() });
        if self.svcs.is_empty() {
            self.key.idle_since.get_or_insert_with(Instant::now);
        }
    }

    /// The runner's `ready`: remember its key and answer who waits.
    pub(super) fn runner_ready(&mut self, public_key: Option<String>, key_error: Option<String>) {
        self.key.public = public_key.clone();
        self.key.error = key_error.clone();
        let waiters: Vec<_> = self.key.waiters.drain(..).collect();
        for (c, _) in waiters {
            match (&public_key, &key_error) {
                (Some(k), _) => self.answer_key(&c, k),
                (None, e) => c.error(
                    ErrorCode::Unavailable,
                    format!("the service runner has no key: {}", e.as_deref().unwrap_or("unknown reason")),
                ),
            }
        }
    }

    /// The runner is gone: its key is unknown until the next `ready`.
    pub(super) fn runner_key_gone(&mut self) {
        self.key.public = None;
        self.key.error = None;
    }

    /// Late key waiters time out; an idle runner started for a key is stopped.
    pub(super) fn runner_key_tick(&mut self, now: Instant) {
        let (late, keep): (Vec<_>, Vec<_>) = self.key.waiters.drain(..).partition(|(_, d)| *d <= now);
        self.key.waiters = keep;
        for (c, _) in late {
            c.error(ErrorCode::Timeout, "the service runner did not start in time; see the broker's log");
        }
        if !self.svcs.is_empty() {
            self.key.idle_since = None;
            return;
        }
        let idle = self.key.idle_since.is_some_and(|t| now.duration_since(t) >= IDLE_STOP);
        if idle
            && self.key.waiters.is_empty()
            && let Some(r) = self.runner.take()
        {
            self.key.idle_since = None;
            self.generation += 1;
            self.runner_key_gone();
            tracing::info!(mesh = %self.mesh.slug, "runner stopped: no services");
            tokio::spawn(r.stop(Duration::from_secs(3)));
        }
    }
}
