//! The delivery core: the one owner of local sessions, routing, subscriptions, and the pushed,
//! leased and seen marks (DESIGN §6). It runs on its own thread, takes [`Input`]s one at a
//! time, collects the store writes a turn makes and commits them in one transaction, then
//! publishes a [`View`] snapshot for readers and only then answers callers and emits events.
//! Nothing here locks: no other task can see this state except through the snapshot.
//!
//! Flow of one turn: `recv` a batch of inputs → `handle` each (mutating [`State`], queueing
//! [`StoreOp`]s and [`Effect`]s) → `Store::apply` → publish the snapshot → run the effects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::limits::DEFAULT_SESSION_GRACE_SECS;
use claudemesh_protocol::local::{AgentLine, LocalEvent, Topic, WaitOutcome};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::ApiError;
use crate::mesh::UplinkCmd;
use crate::paths::Paths;
use crate::socket_bounds::QueueError;
use crate::store::{Store, StoreOp};

pub(crate) mod calls;
mod delivery;
mod hooks;
pub mod input;
mod prune;
mod read;
mod receive;
mod send;
mod sessions;
pub mod snapshot;
pub mod state;
#[cfg(test)]
mod tests;

pub use input::{Input, Reply, UplinkEvent};
pub use snapshot::View;
use state::State;

/// Inputs waiting for the core; senders wait when it is full.
pub const INPUT_QUEUE: usize = 4096;
/// Most inputs one turn takes before it commits.
const BATCH: usize = 256;

/// What the core does once a turn is committed.
#[derive(Debug)]
pub enum Effect {
    Reply(Reply, Result<Value, ApiError>),
    Stored(oneshot::Sender<bool>),
    Done(oneshot::Sender<()>),
    Wait(
        oneshot::Sender<Result<(u64, oneshot::Receiver<WaitOutcome>), ApiError>>,
        Result<(u64, oneshot::Receiver<WaitOutcome>), ApiError>,
    ),
    Woken(oneshot::Sender<WaitOutcome>, WaitOutcome),
    /// A line for one connection (a `subscribe` reply, an event).
    Line(u64, AgentLine),
    Uplink(String, UplinkCmd),
}

/// The core and everything it owns.
#[derive(Debug)]
pub struct Core {
    pub(crate) state: State,
    pub(crate) store: Store,
    ops: Vec<StoreOp>,
    effects: Vec<Effect>,
    /// This turn changed something a snapshot shows.
    dirty: bool,
    next_id: u64,
    pub(crate) session_grace: Duration,
    /// How long seen messages are kept, how often they are pruned, and when next.
    pub(crate) retention: prune::Retention,
    pub(crate) paths: Paths,
    pub(crate) started: Instant,
    /// `created_at` of the last send (Unix ms): each new one is later.
    last_send_at: u64,
    view: watch::Sender<Arc<View>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Core {
    /// A core over `store`, with the live part of the inbox loaded. No session survives an
    /// agent restart: what earlier sessions left unseen waits for the next ones.
    pub fn new(
        store: Store,
        paths: Paths,
    ) -> Result<(Self, watch::Receiver<Arc<View>>), crate::store::StoreError> {
        let (live, totals) = store.inbox_live()?;
        let mut state = State { inbox_total: totals, ..Default::default() };
        let now = Instant::now();
        let mut ops = Vec::new();
        for mut rec in live {
            if !rec.deliveries.is_empty() {
                rec.deliveries.retain(|_, d| d.seen);
                rec.pending = true;
                ops.push(StoreOp::Inbox(rec.clone()));
            }
            let key = (rec.mesh_id.clone(), rec.message.msg_id.clone());
            state.pending_since.insert(key.clone(), now);
            state.set_live(key, rec);
        }
        if !ops.is_empty() {
            tracing::info!(
                messages = ops.len(),
                "unseen messages of earlier sessions wait for the next session"
            );
        }
        store.apply(&ops)?;
        let (view, rx) = watch::channel(Arc::new(View::default()));
        let mut core = Self {
            state,
            store,
            ops: Vec::new(),
            effects: Vec::new(),
            dirty: true,
            next_id: 1,
            session_grace: Duration::from_secs(DEFAULT_SESSION_GRACE_SECS),
            retention: prune::Retention::default(),
            paths,
            started: Instant::now(),
            last_send_at: 0,
            view,
        };
        core.publish_view();
        Ok((core, rx))
    }

    /// Runs until every sender of `inputs` is gone. Blocking: run it on its own thread.
    pub fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut stop = false;
        while !stop && inputs.blocking_recv().map(|i| batch.push(i)).is_some() {
            while batch.len() < BATCH {
                match inputs.try_recv() {
                    Ok(i) => batch.push(i),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            for input in batch.drain(..) {
                if matches!(input, Input::Stop) {
                    stop = true;
                    continue;
                }
                self.handle(input, now);
            }
            self.finish_turn();
        }
        tracing::debug!("delivery core stopped");
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Call { conn, call, reply } => {
                let r = self.call(conn, call, now);
                self.effects.push(Effect::Reply(reply, r));
            }
            Input::ConnOpened { conn, tx } => {
                self.state.conns.insert(conn, state::ConnOut { tx, seq: 0 });
            }
            Input::Subscribe { conn, id, topics, session, mesh, service } => {
                let before = self.state.follows();
                self.subscribe(conn, id, topics, session, mesh, service, now);
                self.follows_changed(before);
            }
            Input::Unsubscribe { conn, id } => {
                let before = self.state.follows();
                self.state.subs.retain(|s| !(s.conn == conn && s.id == id));
                self.follows_changed(before);
            }
            Input::ConnClosed { conn } => {
                let before = self.state.follows();
                self.conn_closed(conn, now);
                self.follows_changed(before);
            }
            Input::Wait { session, reply } => {
                let r = self.wait(&session);
                self.effects.push(Effect::Wait(reply, r));
            }
            Input::WaitEnded { session, generation } => self.wait_ended(&session, generation),
            Input::Uplink { mesh, event } => self.uplink(&mesh, event, now),
            Input::MeshAdded(view) => {
                let id = view.config.id.clone();
                self.state.meshes.insert(id.clone(), *view);
                self.dirty = true;
                self.route_pending(now);
            }
            Input::MeshRemoved { mesh } => {
                if let Some(v) = self.state.meshes.remove(&mesh) {
                    v.cancel.cancel();
                }
                self.dirty = true;
            }
            Input::Barrier(done) => self.effect(Effect::Done(done)),
            Input::Repin { mesh, member_id, done } => {
                if let Some(v) = self.state.meshes.get_mut(&mesh) {
                    v.trust.pins.remove(&member_id);
                    let pins = v.reverify(now_ms());
                    self.write(StoreOp::Unpin { mesh_id: mesh.clone(), member_id });
                    for (member_id, pin) in pins {
                        self.write(StoreOp::Pin { mesh_id: mesh.clone(), member_id, pin });
                    }
                    self.dirty = true;
                }
                self.effect(Effect::Done(done));
            }
            Input::Publish { topic, mesh_id, event } => {
                self.publish(topic, Some(&mesh_id), None, &event);
            }
            Input::SessionGrace { secs } => self.session_grace = Duration::from_secs(secs),
            Input::Retention { ttl_secs, every_secs } => self.retention.set(ttl_secs, every_secs),
            Input::Tick => self.tick(now),
            Input::Stop => {}
        }
    }

    /// Commits the turn's writes, publishes the snapshot, then runs the effects. A failed
    /// commit turns every reply of the turn into an error and tells links not to acknowledge.
    pub fn finish_turn(&mut self) {
        let ops = std::mem::take(&mut self.ops);
        let committed = match self.store.apply(&ops) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, writes = ops.len(), "cannot commit the agent store");
                Err(e.to_string())
            }
        };
        self.wake_waiters();
        if self.dirty {
            self.publish_view();
        }
        for effect in std::mem::take(&mut self.effects) {
            self.run_effect(effect, committed.as_ref().err());
        }
    }

    fn run_effect(&mut self, effect: Effect, failed: Option<&String>) {
        let fail = |e: &String| (ErrorCode::Internal, format!("the agent could not store this: {e}"));
        match effect {
            Effect::Reply(tx, r) => {
                let _ = tx.send(match failed {
                    Some(e) if r.is_ok() => Err(fail(e)),
                    _ => r,
                });
            }
            Effect::Stored(tx) => {
                let _ = tx.send(failed.is_none());
            }
            Effect::Done(tx) => {
                let _ = tx.send(());
            }
            Effect::Wait(tx, r) => {
                let _ = tx.send(r);
            }
            Effect::Woken(tx, outcome) => {
                let _ = tx.send(outcome);
            }
            Effect::Line(conn, line) => {
                let gone = match self.state.conns.get(&conn) {
                    Some(c) => match c.tx.try_send(&line) {
                        Ok(()) => false,
                        Err(QueueError::Full) => {
                            tracing::warn!(conn, "client is not reading its events; disconnecting it");
                            true
                        }
                        Err(QueueError::Closed) => true,
                    },
                    None => false,
                };
                if gone {
                    let before = self.state.follows();
                    self.state.subs.retain(|s| s.conn != conn);
                    let after = self.state.follows();
                    // Run now: the effects of this turn are being drained.
                    for (mesh, name) in before.difference(&after) {
                        if let Some(v) = self.state.meshes.get(mesh) {
                            let _ = v.uplink.try_send(crate::mesh::UplinkCmd::Unfollow(name.clone()));
                        }
                    }
                }
            }
            Effect::Uplink(mesh, cmd) => {
                if let Some(v) = self.state.meshes.get(&mesh)
                    && let Err(e) = v.uplink.try_send(cmd)
                {
                    if matches!(e.into_inner(), crate::mesh::UplinkCmd::Queued(_)) {
                        // The send is committed: the link reads it from the outbox instead.
                        v.outbox_missed.store(true, std::sync::atomic::Ordering::Release);
                    } else {
                        tracing::warn!(mesh = %v.config.slug, "mesh link is busy; dropping a command");
                    }
                }
            }
        }
    }

    pub(crate) fn write(&mut self, op: StoreOp) {
        self.ops.push(op);
    }

    pub(crate) fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }

    pub(crate) fn changed(&mut self) {
        self.dirty = true;
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn publish_view(&mut self) {
        self.dirty = false;
        let v = snapshot::build(self);
        self.view.send_replace(Arc::new(v));
    }

    /// Tells the links which service logs to start or stop following after the subscriptions
    /// changed (the first follower of a service starts it, the last one gone stops it).
    fn follows_changed(&mut self, before: std::collections::BTreeSet<(String, String)>) {
        let after = self.state.follows();
        if after == before {
            return;
        }
        for (mesh, name) in after.difference(&before) {
            self.effect(Effect::Uplink(mesh.clone(), crate::mesh::UplinkCmd::Follow(name.clone())));
        }
        for (mesh, name) in before.difference(&after) {
            self.effect(Effect::Uplink(mesh.clone(), crate::mesh::UplinkCmd::Unfollow(name.clone())));
        }
        self.changed();
    }

    /// Sends an `mcp_log` event of `service` on `mesh` to the subscriptions following it.
    pub(crate) fn publish_log(&mut self, mesh: &str, service: &str, event: &LocalEvent) {
        let targets: Vec<(u64, u64)> = self
            .state
            .subs
            .iter()
            .filter(|s| s.topics.contains(&Topic::Services))
            .filter(|s| s.mesh.as_deref() == Some(mesh) && s.service.as_deref() == Some(service))
            .map(|s| (s.conn, s.id))
            .collect();
        for (conn, sub) in targets {
            let Some(c) = self.state.conns.get_mut(&conn) else { continue };
            c.seq += 1;
            let line = AgentLine::Event { sub, seq: c.seq, event: Box::new(event.clone()) };
            self.effects.push(Effect::Line(conn, line));
        }
    }

    /// Sends `event` to every subscription it matches. For `messages`, `session` says whose
    /// subscriptions: `Some(s)` only those of session `s` (a push), `None` only those without a
    /// session (an arrival, for a dashboard). A subscription's `mesh` (id) narrows every topic
    /// when `mesh` is given. Returns how many subscriptions got it.
    pub(crate) fn publish(
        &mut self,
        topic: Topic,
        mesh: Option<&str>,
        session: Option<&str>,
        event: &LocalEvent,
    ) -> usize {
        let mut targets: Vec<(u64, u64)> = Vec::new();
        for s in &self.state.subs {
            if !s.topics.contains(&topic) {
                continue;
            }
            if topic == Topic::Messages && s.session.as_deref() != session {
                continue;
            }
            if let (Some(want), Some(m)) = (&s.mesh, mesh)
                && want != m
            {
                continue;
            }
            targets.push((s.conn, s.id));
        }
        for (conn, sub) in &targets {
            let Some(c) = self.state.conns.get_mut(conn) else { continue };
            c.seq += 1;
            let line = AgentLine::Event { sub: *sub, seq: c.seq, event: Box::new(event.clone()) };
            self.effects.push(Effect::Line(*conn, line));
        }
        targets.len()
    }

    fn tick(&mut self, now: Instant) {
        let expired: Vec<u64> =
            self.state.leases.iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.release_lease(id, now);
        }
        self.route_pending(now);
        self.prune_due(now);
    }

    /// Receipts to send after the turn, per mesh.
    pub(crate) fn receipts(&mut self, by_mesh: BTreeMap<String, Vec<String>>) {
        for (mesh, ids) in by_mesh {
            self.effects.push(Effect::Uplink(mesh, UplinkCmd::Receipt(ids)));
        }
    }
}

/// A handle to a running core: how the socket server, links and config watch reach it.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Input>,
    view: watch::Receiver<Arc<View>>,
}

/// The core is gone (the agent is stopping).
pub fn stopping() -> ApiError {
    (ErrorCode::Unavailable, "the agent is stopping".into())
}

impl CoreHandle {
    /// Starts `core` on its own thread. It stops on [`Input::Stop`] or when every handle is
    /// dropped; join the returned thread to know its store is closed.
    pub fn start(
        core: Core,
        view: watch::Receiver<Arc<View>>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let thread =
            std::thread::Builder::new().name("claudemesh-core".into()).spawn(move || core.run(rx))?;
        Ok((Self { tx, view }, thread))
    }

    /// The latest snapshot. Never waits.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// A receiver that sees each new snapshot.
    pub fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Sends an input; waits while the queue is full.
    pub async fn send(&self, input: Input) -> Result<(), ApiError> {
        self.tx.send(input).await.map_err(|_| stopping())
    }

    /// Sends an input without waiting (for drop handlers); fails when the queue is full or
    /// the core is gone.
    pub fn try_send(&self, input: Input) -> Result<(), ApiError> {
        self.tx.try_send(input).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => (ErrorCode::Unavailable, "the agent is busy".to_string()),
            mpsc::error::TrySendError::Closed(_) => stopping(),
        })
    }

    /// A call the core serves, answered once committed.
    pub async fn call(
        &self,
        conn: u64,
        call: claudemesh_protocol::local::AgentCall,
    ) -> Result<Value, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Call { conn, call, reply }).await?;
        rx.await.map_err(|_| stopping())?
    }
}
