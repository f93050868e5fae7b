//! The mesh actor: one task per mesh with services, owning their records' live state, the
//! mesh's runner process (started lazily, restarted with backoff when it dies, stopped when the
//! mesh has none left), pending calls and deploys, log rings and followers. Handlers talk to it
//! with [`Cmd`]; it answers callers on their connections directly. The commands themselves are
//! in [`super::catalog`]; runner lines are handled here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claudemesh_protocol::frames::{
    ErrorCode, Event, McpUpdate, ServerFrame, ServiceStatus, ToolInfo, encode,
};
use claudemesh_protocol::scope::Scope;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::access::{Who, audience};
use super::now_ms;
use super::proc::{RunnerMsg, RunnerProc};
use super::record::{Runtime, ServiceRecord};
use crate::hub::{ConnHandle, Hub, Mesh, Outgoing};
use crate::runner::wire::{PrepareMode, ToRunner};

/// Lines kept per service (DESIGN §7).
pub const LOG_RING: usize = 1000;

/// A request's origin: the member (as access rules see it), its connection and `req`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub who: Who,
    pub conn: ConnHandle,
    pub req: u64,
}

impl Caller {
    pub fn reply(&self, frame: &ServerFrame) {
        self.conn.send(Outgoing::Frame(encode(frame), frame.type_name()));
    }

    pub fn error(&self, code: ErrorCode, message: impl Into<String>) {
        self.reply(&ServerFrame::error(Some(self.req), code, message));
    }

    pub fn ok(&self) {
        self.reply(&ServerFrame::Ok { req: self.req });
    }
}

/// Work for a mesh actor.
#[derive(Debug)]
pub enum Cmd {
    /// Broker start: these records were stored; start the enabled ones.
    Restore(Vec<ServiceRecord>),
    /// `bundle`: the checked upload to move into the service dir.
    Deploy {
        caller: Caller,
        rec: Box<ServiceRecord>,
        bundle: Option<PathBuf>,
    },
    Update {
        caller: Caller,
        update: Box<McpUpdate>,
        bundle: Option<PathBuf>,
    },
    Undeploy {
        caller: Caller,
        name: String,
    },
    Scope {
        caller: Caller,
        name: String,
        scope: Scope,
    },
    Catalog {
        caller: Caller,
    },
    Schema {
        caller: Caller,
        name: String,
        tool: Option<String>,
    },
    Logs {
        caller: Caller,
        name: String,
        lines: Option<u32>,
        follow: bool,
    },
    Unfollow {
        caller: Caller,
        name: String,
    },
    Call {
        caller: Caller,
        service: String,
        tool: String,
        arguments: serde_json::Value,
        timeout: Duration,
    },
    Register {
        caller: Caller,
        name: String,
        description: String,
        tools: Vec<ToolInfo>,
        scope: Scope,
    },
    Unregister {
        caller: Caller,
        name: String,
    },
    /// A host agent's answer to a forwarded call.
    CallResponse {
        member_id: String,
        call_id: String,
        result: Option<serde_json::Value>,
        error: Option<String>,
    },
    /// `mcp_runner_key`: the runner's public key (the runner is started if none runs).
    RunnerKey {
        caller: Caller,
    },
    /// A connection closed: cancel its calls, drop its follows, mark what it hosted offline.
    ConnGone {
        conn_id: u64,
        member_id: String,
    },
}

/// A broker-hosted service as the actor holds it.
#[derive(Debug)]
pub struct Svc {
    pub rec: ServiceRecord,
    pub rt: Runtime,
    pub log: VecDeque<String>,
    pub followers: HashMap<u64, ConnHandle>,
    /// Deploys and updates waiting for `loaded` / `load_failed`, with their deadline.
    pub waiters: Vec<(Caller, Instant, bool)>,
    /// Undeploys waiting for `unloaded`.
    pub unloading: Vec<Caller>,
}

impl Svc {
    pub fn new(rec: ServiceRecord) -> Self {
        Self {
            rec,
            rt: Runtime::default(),
            log: VecDeque::new(),
            followers: HashMap::new(),
            waiters: Vec::new(),
            unloading: Vec::new(),
        }
    }

    pub fn push_log(&mut self, lines: &[String]) {
        for l in lines {
            if self.log.len() == LOG_RING {
                self.log.pop_front();
            }
            self.log.push_back(l.clone());
        }
    }

    pub fn tail(&self, n: usize) -> Vec<String> {
        self.log.iter().skip(self.log.len().saturating_sub(n)).cloned().collect()
    }
}

/// A peer-hosted service (DESIGN §7 "Peer-hosted"): registered by its host agent, kept in memory.
#[derive(Debug)]
pub struct PeerSvc {
    pub host: String,
    pub host_conn: Option<u64>,
    pub description: String,
    pub tools: Vec<ToolInfo>,
    pub scope: Scope,
    pub updated_at: u64,
}

/// A call in flight to the runner or a host agent.
#[derive(Debug)]
pub struct Pending {
    pub caller: Caller,
    pub service: String,
    pub deadline: Instant,
    /// For forwarded calls: the host member.
    pub host: Option<String>,
}

/// The actor's state. Fields are public to [`super::catalog`], which implements the commands.
#[derive(Debug)]
pub struct MeshActor {
    pub hub: Arc<Hub>,
    pub mesh: Arc<Mesh>,
    pub svcs: BTreeMap<String, Svc>,
    pub peers: BTreeMap<String, PeerSvc>,
    pub runner: Option<RunnerProc>,
    pub generation: u64,
    pub runner_failures: u32,
    pub respawn_at: Option<Instant>,
    pub events_tx: mpsc::Sender<(u64, RunnerMsg)>,
    events_rx: Option<mpsc::Receiver<(u64, RunnerMsg)>>,
    pub next_id: u64,
    pub calls: HashMap<u64, Pending>,
    pub forwards: HashMap<String, Pending>,
    pub key: super::runner_key::RunnerKeyState,
    shutdown: CancellationToken,
}

impl MeshActor {
    pub fn new(hub: &Arc<Hub>, mesh: Arc<Mesh>, shutdown: CancellationToken) -> Self {
        let (events_tx, events_rx) = mpsc::channel(1024);
        Self {
            hub: hub.clone(),
            mesh,
            svcs: BTreeMap::new(),
            peers: BTreeMap::new(),
            runner: None,
            generation: 0,
            runner_failures: 0,
            respawn_at: None,
            events_tx,
            events_rx: Some(events_rx),
            next_id: 1,
            calls: HashMap::new(),
            forwards: HashMap::new(),
            key: Default::default(),
            shutdown,
        }
    }

    /// Serves commands and runner lines until the broker shuts down, then stops the runner.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let Some(mut events) = self.events_rx.take() else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => break,
                },
                Some((generation, msg)) = events.recv() => {
                    if generation == self.generation {
                        self.runner_msg(msg).await;
                    }
                }
                _ = tick.tick() => self.tick(),
            }
        }
        if let Some(r) = self.runner.take() {
            r.stop(Duration::from_secs(3)).await;
        }
    }

    /// Deadlines of calls and deploys, and a runner due to be started again.
    fn tick(&mut self) {
        let now = Instant::now();
        let late: Vec<u64> =
            self.calls.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(p) = self.calls.remove(&id) {
                if let Some(r) = &self.runner {
                    r.send(ToRunner::Cancel { id });
                }
                p.caller.error(ErrorCode::Timeout, format!("service {} did not answer in time", p.service));
            }
        }
        let late: Vec<String> =
            self.forwards.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| id.clone()).collect();
        for id in late {
            if let Some(p) = self.forwards.remove(&id) {
                p.caller.error(
                    ErrorCode::Timeout,
                    format!("service {} (hosted by a peer) did not answer in time", p.service),
                );
            }
        }
        for svc in self.svcs.values_mut() {
            let (late, keep): (Vec<_>, Vec<_>) = svc.waiters.drain(..).partition(|(_, d, _)| *d <= now);
            svc.waiters = keep;
            for (c, _, _) in late {
                c.error(
                    ErrorCode::Timeout,
                    format!(
                        "service {} is still {:?} after the deploy timeout; see `claudemesh logs {}`",
                        svc.rec.name, svc.rt.status, svc.rec.name
                    ),
                );
            }
        }
        if self.respawn_at.is_some_and(|t| t <= now) {
            self.respawn_at = None;
            self.reload_all();
        }
        self.runner_key_tick(now);
    }

    /// The runner, started if none runs. `None` (after telling the callers) when it cannot be.
    pub fn ensure_runner(&mut self) -> Option<&RunnerProc> {
        if self.runner.is_none() {
            let cfg = &self.hub.config;
            let argv = match cfg.services.runner_argv() {
                Ok(mut a) => {
                    // Kept beside the mesh's services; read only by the runner.
                    let key_file = cfg.services_dir().join(&self.mesh.id).join("runner.key");
                    a.push("--key-file".into());
                    a.push(key_file.into_os_string());
                    a
                }
                Err(e) => {
                    tracing::error!(mesh = %self.mesh.slug, error = %e, "cannot find the runner executable");
                    return None;
                }
            };
            self.generation += 1;
            match super::proc::spawn(
                &argv,
                &cfg.data_dir,
                &self.mesh.slug,
                self.generation,
                self.events_tx.clone(),
            ) {
                Ok(r) => {
                    tracing::info!(mesh = %self.mesh.slug, pid = ?r.pid, "runner started");
                    self.runner = Some(r);
                }
                Err(e) => {
                    tracing::error!(mesh = %self.mesh.slug, error = %e, "cannot start the runner");
                    return None;
                }
            }
        }
        self.runner.as_ref()
    }

    /// Sends `load` for every enabled service (after a runner restart or at boot).
    pub fn reload_all(&mut self) {
        let names: Vec<String> =
            self.svcs.values().filter(|s| s.rec.enabled).map(|s| s.rec.name.clone()).collect();
        for name in names {
            self.load(&name, PrepareMode::Reuse);
        }
    }

    /// Sends `load` for one service; marks it failed when no runner can start.
    pub fn load(&mut self, name: &str, mode: PrepareMode) {
        let Some(svc) = self.svcs.get(name) else { return };
        let dir = super::record::service_dir(&self.hub.config.services_dir(), &self.mesh.id, name);
        let spec = svc.rec.spec(dir, &self.hub.config.services, mode);
        let sent = self.ensure_runner().map(|r| r.send(ToRunner::Load { spec: Box::new(spec) }));
        if sent != Some(true) {
            self.set_status(
                name,
                ServiceStatus::Failed,
                Some("the service runner could not be started; see the broker's log".into()),
            );
            self.answer_waiters(name);
        }
    }

    /// Closes the runner when the mesh has no broker-hosted service left.
    pub async fn stop_runner_if_idle(&mut self) {
        if self.svcs.is_empty()
            && let Some(r) = self.runner.take()
        {
            self.generation += 1;
            self.runner_key_gone();
            r.stop(Duration::from_secs(3)).await;
            tracing::info!(mesh = %self.mesh.slug, "runner stopped: no services left");
        }
    }

    /// Sends `event` to every connected member allowed to see a service.
    pub fn tell(&self, scope: &Scope, deployer: &str, event: &Event) {
        let st = self.mesh.lock();
        let frame = encode(&ServerFrame::Event(event.clone()));
        for m in audience(&st, scope, deployer) {
            st.send_to(&m, frame.clone(), "event");
        }
    }

    /// Sends `event` to these members if they are connected.
    pub fn tell_members(&self, members: &[String], event: &Event) {
        let st = self.mesh.lock();
        let frame = encode(&ServerFrame::Event(event.clone()));
        for m in members {
            st.send_to(m, frame.clone(), "event");
        }
    }

    /// Records a status change and tells the service's audience.
    pub fn set_status(&mut self, name: &str, status: ServiceStatus, error: Option<String>) {
        let Some(svc) = self.svcs.get_mut(name) else { return };
        if status == ServiceStatus::Running {
            svc.rt.started_at = Some(now_ms());
            svc.rt.error = None;
        } else {
            svc.rt.started_at = None;
        }
        if status == ServiceStatus::Restarting && svc.rt.status != ServiceStatus::Restarting {
            svc.rt.restarts += 1;
        }
        if error.is_some() {
            svc.rt.error = error.clone();
        }
        if svc.rt.status == status && error.is_none() {
            return;
        }
        svc.rt.status = status;
        let (scope, deployer) = (svc.rec.scope.clone(), svc.rec.deployer.clone());
        self.tell(&scope, &deployer, &Event::McpStatus { name: name.to_string(), status, error });
    }

    /// Answers the deploys waiting on `name` with its state now (running or failed).
    pub fn answer_waiters(&mut self, name: &str) {
        let Some(svc) = self.svcs.get_mut(name) else { return };
        let waiters: Vec<_> = svc.waiters.drain(..).collect();
        let svc = &*svc;
        let frame_for = |req| ServerFrame::McpDeployResult {
            req,
            name: name.to_string(),
            status: svc.rt.status,
            tools: svc.rec.tools.clone(),
            error: svc.rt.error.clone(),
            log_tail: if svc.rt.status == ServiceStatus::Running { Vec::new() } else { svc.tail(40) },
        };
        for (c, _, _) in waiters {
            c.reply(&frame_for(c.req));
        }
    }

    /// Stores a record (the actor is its only writer).
    pub async fn persist(&self, rec: &ServiceRecord) {
        let key = rec.key();
        let rec = rec.clone();
        let r = self.hub.store.write(move |tx, _| tx.put(crate::store::SERVICES, &key, &rec)).await;
        if let Err(e) = r {
            tracing::error!(mesh = %self.mesh.slug, error = %e, "cannot store a service record");
        }
    }

    /// A new call id.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
