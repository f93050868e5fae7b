//! The agent process: a singleton (pid-file lock), the delivery core on its own thread, its
//! socket (0600 in a 0700 dir, stale ones removed), one uplink per joined mesh, a clock for the
//! core, and a watch on the config dir so joins and leaves made by other processes take effect
//! without a restart.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use claudemesh_protocol::codec::to_hex;
use claudemesh_protocol::crypto::random_bytes;
use claudemesh_protocol::frames::AgentInstance;
use claudemesh_protocol::limits::{
    DEFAULT_INBOX_PRUNE_SECS, DEFAULT_INBOX_TTL_SECS, DEFAULT_SESSION_GRACE_SECS, IDEMPOTENCY_TTL_SECS,
};

use crate::config::{Config, ConfigError, MeshConfig};
use crate::core::{Core, CoreHandle, Input, now_ms};
use crate::mesh::MeshView;
use crate::paths::Paths;
use crate::shared::Agent;
use crate::store::{Store, StoreError};
use crate::{socket, uplink};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("an agent is already running (pid {pid}) for {dir}")]
    AlreadyRunning { pid: String, dir: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DaemonError + use<> {
    let path = path.display().to_string();
    move |source| DaemonError::Io { what, path, source }
}

/// Holds the pid-file lock for the agent's lifetime.
#[derive(Debug)]
pub struct PidLock {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl PidLock {
    /// Takes the singleton lock, or says which agent holds it. A pid file left by a crashed
    /// agent is not locked, so it is simply taken over.
    pub fn acquire(paths: &Paths) -> Result<Self, DaemonError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = paths.pid();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("cannot open pid file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default().trim().to_string();
                return Err(DaemonError::AlreadyRunning { pid, dir: paths.dir.display().to_string() });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock pid file", &path)(e)),
        }
        file.set_len(0).map_err(io("cannot write pid file", &path))?;
        write!(file, "{}", std::process::id()).map_err(io("cannot write pid file", &path))?;
        file.sync_all().map_err(io("cannot write pid file", &path))?;
        Ok(Self { file, path })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// The running links, by mesh id: owned by the task that reconciles the config (the config
/// watch), the only one that starts or stops links.
#[derive(Debug, Default)]
pub struct Links {
    running: HashMap<String, (MeshConfig, CancellationToken)>,
}

/// Starts (or restarts) the link of one mesh and tells the core about the mesh.
async fn start_uplink(
    agent: &Arc<Agent>,
    tracker: &TaskTracker,
    mesh: MeshConfig,
) -> Result<CancellationToken, ConfigError> {
    let key = Arc::new(mesh.keypair()?);
    let (tx, rx) = mpsc::channel(UPLINK_QUEUE);
    let cancel = agent.shutdown.child_token();
    let mut view = MeshView::new(mesh.clone(), key.clone(), tx, cancel.clone());
    // Keys pinned on first sight in earlier runs: a key the broker changed since is refused.
    match agent.store.pins(&mesh.id) {
        Ok(pins) => view.trust.pins = pins,
        Err(e) => tracing::error!(mesh = %mesh.slug, error = %e, "cannot read pinned keys; pinning afresh"),
    }
    if agent.core.send(Input::MeshAdded(Box::new(view))).await.is_err() {
        return Ok(cancel);
    }
    tracker.spawn(uplink::run(agent.clone(), mesh, key, rx, cancel.clone()));
    Ok(cancel)
}

/// Commands a mesh's link may have queued.
const UPLINK_QUEUE: usize = 1024;

/// Brings the running links in line with the config: new meshes connect, removed ones drop,
/// changed ones (new key or URL) reconnect.
pub async fn reconcile(agent: &Arc<Agent>, tracker: &TaskTracker, links: &mut Links, config: &Config) {
    agent.local_broker_wanted.send_if_modified(|w| {
        let changed = *w != config.local_broker;
        w.clone_from(&config.local_broker);
        changed
    });
    let grace = config.session_grace_secs.unwrap_or(DEFAULT_SESSION_GRACE_SECS);
    let _ = agent.core.send(Input::SessionGrace { secs: grace }).await;
    let retention = Input::Retention {
        ttl_secs: config.inbox_ttl_secs.unwrap_or(DEFAULT_INBOX_TTL_SECS),
        every_secs: config.inbox_prune_secs.unwrap_or(DEFAULT_INBOX_PRUNE_SECS),
    };
    let _ = agent.core.send(retention).await;
    let wanted: HashSet<&str> = config.meshes.iter().map(|m| m.id.as_str()).collect();
    let stale: Vec<String> = links
        .running
        .iter()
        .filter(|(id, (c, _))| {
            !wanted.contains(id.as_str())
                || config
                    .meshes
                    .iter()
                    .any(|m| &m.id == *id && (m.secret_key != c.secret_key || m.broker_url != c.broker_url))
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in &stale {
        if let Some((c, cancel)) = links.running.remove(id) {
            tracing::info!(mesh = %c.slug, "dropping uplink");
            cancel.cancel();
            let _ = agent.core.send(Input::MeshRemoved { mesh: id.clone() }).await;
        }
    }
    for m in &config.meshes {
        if links.running.contains_key(&m.id) {
            continue;
        }
        let slug = m.slug.clone();
        match start_uplink(agent, tracker, m.clone()).await {
            Ok(cancel) => {
                tracing::info!(mesh = %slug, "uplink started");
                links.running.insert(m.id.clone(), (m.clone(), cancel));
            }
            Err(e) => tracing::error!(mesh = %slug, error = %e, "cannot start uplink"),
        }
    }
}

/// Runs the agent until `shutdown` (or a `shutdown` request).
pub async fn run(paths: Paths, shutdown: CancellationToken) -> Result<(), DaemonError> {
    paths.ensure_dir().map_err(io("cannot create", &paths.dir))?;
    let _lock = PidLock::acquire(&paths)?;
    // We hold the lock, so any socket file is a leftover of a crashed agent.
    let sock = paths.socket();
    if sock.exists() {
        std::fs::remove_file(&sock).map_err(io("cannot remove stale socket", &sock))?;
    }
    let store = Store::open(&paths.db())?;
    if let Err(e) = store.idempotency_prune(now_ms().saturating_sub(IDEMPOTENCY_TTL_SECS * 1000)) {
        tracing::warn!(error = %e, "cannot forget old idempotency keys");
    }
    let seen = fingerprint(&paths.config());
    let config = Config::load(&paths)?;
    let instance = AgentInstance { id: to_hex(&random_bytes::<16>()), started_at: now_ms() };
    // No session survives an agent restart: what they left unseen waits for the next ones.
    let (core, view) = Core::new(store.clone(), paths.clone())?;
    let (handle, core_thread) =
        CoreHandle::start(core, view).map_err(io("cannot start the delivery core", &paths.dir))?;
    let agent = Arc::new(Agent::new(paths.clone(), store, instance, handle, shutdown.clone()));
    agent.hosting.bind(&agent);
    let tracker = TaskTracker::new();
    tracker.spawn(ticks(agent.clone(), shutdown.clone()));
    // The local broker starts before the uplinks, which then find it (or retry until it is up).
    match std::env::current_exe() {
        Ok(exe) => {
            tracker.spawn(crate::local_broker::supervise(
                exe,
                paths.clone(),
                agent.local_broker_wanted.subscribe(),
                agent.local_broker.clone(),
                shutdown.clone(),
            ));
        }
        Err(e) => tracing::error!(error = %e, "cannot find the agent's executable; no local broker"),
    }
    let mut links = Links::default();
    reconcile(&agent, &tracker, &mut links, &config).await;
    agent.hosting.start_configured(&config);

    let listener = UnixListener::bind(&sock).map_err(io("cannot listen on", &sock))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod", &sock))?;
    tracker.spawn(socket::serve(agent.clone(), listener, shutdown.clone(), tracker.clone()));
    let _watcher = watch_config(&agent, &tracker, &shutdown, seen, links);
    tracing::info!(dir = %paths.dir.display(), pid = std::process::id(), meshes = config.meshes.len(), "agent running");

    shutdown.cancelled().await;
    tracing::info!("agent stopping");
    tracker.close();
    agent.hosting.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        tracker.wait().await;
        agent.hosting.tracker.wait().await;
    })
    .await;
    // The core commits what it has and closes the store before the pid lock goes.
    let _ = agent.core.send(Input::Stop).await;
    drop(agent);
    let joined = tokio::task::spawn_blocking(move || core_thread.join());
    if tokio::time::timeout(Duration::from_secs(5), joined).await.is_err() {
        tracing::warn!("the delivery core did not stop within 5 s");
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

/// How often the core is told time passed (leases expire, waiting messages move on).
const TICK: Duration = Duration::from_millis(250);

async fn ticks(agent: Arc<Agent>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                if agent.core.send(Input::Tick).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What `config.json` holds right now, as a hash (a missing file counts as its own state), so
/// that the watch acts on each distinct content once.
fn fingerprint(path: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match std::fs::read(path) {
        Ok(bytes) => (1u8, bytes).hash(&mut h),
        Err(e) => (0u8, e.kind().to_string()).hash(&mut h),
    }
    h.finish()
}

/// Whether a notify event can mean a file changed: created, written, renamed or removed.
/// Never accesses or metadata-only changes: the watch's own reads cause those, and reacting
/// to them made one edit start a reload several times a second, forever.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind as K;
    use notify::event::ModifyKind as M;
    matches!(kind, K::Create(_) | K::Remove(_) | K::Modify(M::Data(_) | M::Name(_) | M::Any) | K::Any)
}

/// Watches the config dir; each new content of `config.json` is reloaded and reconciled once
/// (debounced), and an unreadable one is reported once, not on every event.
fn watch_config(
    agent: &Arc<Agent>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    mut last: u64,
    mut links: Links,
) -> Option<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let config_name = agent.paths.config().file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && is_change(&ev.kind)
            && ev.paths.iter().any(|p| p.file_name().map(|n| n.to_os_string()) == config_name)
        {
            let _ = tx.try_send(());
        }
    })
    .map_err(
        |e| tracing::warn!(error = %e, "config watch unavailable; restart the agent after joining a mesh"),
    )
    .ok()?;
    if let Err(e) = watcher.watch(&agent.paths.dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, "config watch unavailable");
        return None;
    }
    let (agent, tracker2, shutdown) = (agent.clone(), tracker.clone(), shutdown.clone());
    tracker.spawn(async move {
        let path = agent.paths.config();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = rx.recv() => if r.is_none() { return },
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            tracing::debug!("config watch woke");
            let now = fingerprint(&path);
            if now == last {
                continue;
            }
            last = now;
            match Config::load(&agent.paths) {
                Ok(c) => {
                    tracing::info!(path = %path.display(), "config changed; reloading");
                    reconcile(&agent, &tracker2, &mut links, &c).await;
                }
                Err(e) => tracing::error!(error = %e, "config changed but cannot be read; keeping the current meshes"),
            }
        }
    });
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use notify::EventKind as K;
    use notify::event::{
        AccessKind, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind, RenameMode,
    };

    use super::*;

    #[test]
    fn only_changes_wake_the_config_watch() {
        for k in [
            K::Create(CreateKind::File),
            K::Modify(ModifyKind::Data(DataChange::Any)),
            K::Modify(ModifyKind::Name(RenameMode::To)),
            K::Modify(ModifyKind::Any),
            K::Remove(RemoveKind::File),
        ] {
            assert!(is_change(&k), "{k:?}");
        }
        for k in [
            K::Access(AccessKind::Read),
            K::Access(AccessKind::Any),
            K::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            K::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ] {
            assert!(!is_change(&k), "{k:?}");
        }
    }

    #[test]
    fn the_fingerprint_follows_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let missing = fingerprint(&p);
        std::fs::write(&p, "{}").unwrap();
        let a = fingerprint(&p);
        assert_ne!(a, missing);
        assert_eq!(fingerprint(&p), a, "reading does not change it");
        std::fs::write(&p, "{ broken").unwrap();
        assert_ne!(fingerprint(&p), a);
    }
}
