//! Shared MCP services on the broker (DESIGN §7): the durable [`ServiceRecord`], the broker's
//! [`ServicesConfig`], and [`Services`], the registry of one actor per mesh that owns that
//! mesh's services, its runner process, pending calls, log rings and followers.
//!
//! Dependencies go one way: `handlers::services` → `services` → `store`; nothing here imports a
//! handler. Lock order: a mesh actor may take its [`crate::hub::Mesh`] lock (briefly, never
//! across an `.await`); the registry's map lock is never held while taking any other lock.

pub mod access;
pub mod actor;
pub mod catalog;
pub mod lines;
pub mod peer;
pub mod proc;
pub mod record;
pub mod runner_key;
pub mod secrets;
pub mod upload;

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use actor::{Caller, Cmd};
pub use record::ServiceRecord;

use crate::runner::wire::{ChildLimits, HealthPolicy, RestartPolicy};

/// Who may deploy on a mesh (`--deploy-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeployPolicy {
    /// Every member (the default).
    #[default]
    Members,
    /// Mesh admins only.
    Admins,
}

/// The broker's settings for services.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// argv that starts a runner (`[exe, "runner"]`, or `[exe, "broker", "runner"]` for the
    /// `claudemesh` binary). Empty: this process's own executable with `runner`.
    pub runner_command: Vec<OsString>,
    /// Prefix put before the runner command to isolate it (`--runner-wrap`, e.g.
    /// `["docker", "run", "-i", "--rm", …]`, `["bwrap", …]`, `["systemd-run", "--user", …]`).
    pub runner_wrap: Vec<String>,
    pub deploy_policy: DeployPolicy,
    /// Services per mesh (DESIGN §7: 20).
    pub max_per_mesh: usize,
    /// Largest bundle upload (DESIGN §7: 50 MiB).
    pub max_bundle_bytes: u64,
    pub child: ChildLimits,
    pub health: HealthPolicy,
    pub restart: RestartPolicy,
    /// Longest a deploy may take before it is answered `failed` (preparation included).
    pub deploy_timeout: Duration,
    /// Default and largest call timeouts (DESIGN §7: 30 s, 300 s).
    pub call_timeout: Duration,
    pub max_call_timeout: Duration,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            runner_command: Vec::new(),
            runner_wrap: Vec::new(),
            deploy_policy: DeployPolicy::Members,
            max_per_mesh: 20,
            max_bundle_bytes: 50 * 1024 * 1024,
            child: ChildLimits {
                memory_bytes: 512 * 1024 * 1024,
                open_files: 1024,
                processes: 4096,
                prepare_timeout_ms: 10 * 60 * 1000,
            },
            health: HealthPolicy {
                interval_ms: 30_000,
                timeout_ms: 5_000,
                misses: 3,
                start_timeout_ms: 60_000,
            },
            restart: RestartPolicy {
                backoff_min_ms: 1_000,
                backoff_max_ms: 60_000,
                max_crashes: 5,
                crash_window_ms: 10 * 60 * 1000,
            },
            deploy_timeout: Duration::from_secs(15 * 60),
            call_timeout: Duration::from_secs(30),
            max_call_timeout: Duration::from_secs(300),
        }
    }
}

impl ServicesConfig {
    /// The argv of a runner: the wrap, then the runner command.
    pub fn runner_argv(&self) -> Result<Vec<OsString>, std::io::Error> {
        let mut argv: Vec<OsString> = self.runner_wrap.iter().map(OsString::from).collect();
        if self.runner_command.is_empty() {
            argv.push(std::env::current_exe()?.into_os_string());
            argv.push("runner".into());
        } else {
            argv.extend(self.runner_command.iter().cloned());
        }
        Ok(argv)
    }
}

/// The registry of mesh actors. Cheap to share (`Arc` inside the hub).
#[derive(Debug)]
pub struct Services {
    actors: Mutex<HashMap<String, mpsc::Sender<Cmd>>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// Commands queued per mesh actor before a sender waits.
const ACTOR_QUEUE: usize = 256;

impl Services {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self { actors: Mutex::default(), tracker: TaskTracker::new(), shutdown }
    }

    /// The actor of `mesh`, started on first use with the records it owns. The actor holds
    /// a weak reference to the hub, so the hub can drop while actors finish.
    pub fn actor(&self, hub: &Arc<crate::hub::Hub>, mesh: &Arc<crate::hub::Mesh>) -> mpsc::Sender<Cmd> {
        let mut map = self.actors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = map.get(&mesh.id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(ACTOR_QUEUE);
        let actor = actor::MeshActor::new(hub, mesh.clone(), self.shutdown.child_token());
        self.tracker.spawn(actor.run(rx));
        map.insert(mesh.id.clone(), tx.clone());
        tx
    }

    /// The actor of `mesh` if one runs (for notices that need no actor otherwise).
    pub fn existing(&self, mesh_id: &str) -> Option<mpsc::Sender<Cmd>> {
        let map = self.actors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(mesh_id).cloned()
    }

    /// Stops every actor (each stops its runner, whose children are killed) and waits for them,
    /// at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("service runners did not stop in {grace:?}");
        }
    }
}

/// Broker start: hands each mesh's stored services to its actor, which starts the enabled ones
/// again (each `running` only after it answers `initialize`).
pub fn restore(hub: &Arc<crate::hub::Hub>, records: Vec<ServiceRecord>) {
    let mut by_mesh: HashMap<String, Vec<ServiceRecord>> = HashMap::new();
    for r in records {
        by_mesh.entry(r.mesh_id.clone()).or_default().push(r);
    }
    for (mesh_id, recs) in by_mesh {
        let Some(mesh) = hub.mesh(&mesh_id) else {
            tracing::warn!(mesh = %mesh_id, "stored services of an unknown mesh; skipped");
            continue;
        };
        tracing::info!(mesh = %mesh.slug, services = recs.len(), "restoring services");
        if hub.services.actor(hub, &mesh).try_send(Cmd::Restore(recs)).is_err() {
            tracing::error!(mesh = %mesh.slug, "cannot restore services: actor queue full");
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
