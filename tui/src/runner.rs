//! The dashboard's I/O: one task holds the agent subscription (connect, subscribe, forward
//! sequenced events; on loss report it and retry with backoff), each call runs on its own
//! short connection (so a slow `message_status` never holds the others; a call with a file
//! reads it first, off the async threads), and joins talk to the broker the invite names; the Services view's log follow has its own subscription, one at a
//! time. Every task ends with the dashboard (a cancellation token).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claudemesh_agent::{AgentClient, ClientError, Paths};
use claudemesh_protocol::frames::Event as Wire;
use claudemesh_protocol::local::{AgentCall, LocalEvent, Topic};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::effect::FileCall;
use crate::event::{AgentEvent, CallError, Event};
use crate::state::Follow;

/// Calls in flight at once.
const MAX_CALLS: usize = 8;
/// The first retry after the agent went away, then doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the subscription task is told.
#[derive(Debug, Clone, Copy)]
enum Control {
    /// Reconnect now; `start` starts the agent when none runs (the person asked).
    Reconnect { start: bool },
}

/// Performs effects; owns the tasks it spawns.
#[derive(Debug)]
pub struct Runner {
    paths: Paths,
    tx: mpsc::Sender<Event>,
    control: mpsc::Sender<Control>,
    calls: Arc<Semaphore>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Ends the current log follow (a child of `cancel`).
    follow: Option<CancellationToken>,
}

impl Runner {
    /// Starts the subscription task (which starts the agent if none runs, as `exe agent run`).
    pub fn start(paths: Paths, exe: PathBuf, tx: mpsc::Sender<Event>, cancel: CancellationToken) -> Self {
        let (control, rx) = mpsc::channel(4);
        let tasks = TaskTracker::new();
        tasks.spawn(subscription(paths.clone(), exe, tx.clone(), rx, cancel.clone()));
        Runner { paths, tx, control, calls: Arc::new(Semaphore::new(MAX_CALLS)), tasks, cancel, follow: None }
    }

    /// Asks the subscription task to reconnect now.
    pub fn reconnect(&self, start: bool) {
        let _ = self.control.try_send(Control::Reconnect { start });
    }

    /// Runs one call; its reply comes back as an event.
    pub fn call(&self, tag: u64, call: AgentCall) {
        self.run_call(tag, async move { Ok(call) });
    }

    /// Reads the file a call sends (on a blocking thread), then runs the call; a file that
    /// cannot be read or sent comes back as the call's error.
    pub fn call_with_file(&self, tag: u64, call: FileCall) {
        self.run_call(tag, async move {
            tokio::task::spawn_blocking(move || crate::files::prepare(call))
                .await
                .map_err(|e| CallError { code: None, message: format!("reading the file failed: {e}") })?
        });
    }

    /// Runs the call `build` makes (unless it fails) on its own connection.
    fn run_call(
        &self,
        tag: u64,
        build: impl std::future::Future<Output = Result<AgentCall, CallError>> + Send + 'static,
    ) {
        let (paths, tx, sem, cancel) =
            (self.paths.clone(), self.tx.clone(), self.calls.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            let work = async {
                let call = build.await?;
                let _permit = sem.acquire().await;
                let mut c = AgentClient::connect(&paths, "tui").await.map_err(call_error)?;
                c.call(call).await.map_err(call_error)
            };
            let result = tokio::select! {
                r = work => r,
                () = cancel.cancelled() => return,
            };
            let _ = tx.send(Event::Agent(AgentEvent::Reply { tag, result })).await;
        });
    }

    /// Follows one service's log on its own subscription (ending the follow before), or none.
    /// A lost connection is retried until the follow ends.
    pub fn follow(&mut self, f: Option<Follow>) {
        if let Some(old) = self.follow.take() {
            old.cancel();
        }
        let Some(f) = f else { return };
        let token = self.cancel.child_token();
        self.follow = Some(token.clone());
        let (paths, tx) = (self.paths.clone(), self.tx.clone());
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    gone = follow_once(&paths, &f, &tx) => if gone { return },
                    () = token.cancelled() => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(MAX_BACKOFF) => {}
                    () = token.cancelled() => return,
                }
            }
        });
    }

    /// Joins a mesh with `invite` as `name`; the reply is the new mesh's slug.
    pub fn join(&self, tag: u64, invite: String, name: String) {
        let (paths, tx, cancel) = (self.paths.clone(), self.tx.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            let work = async {
                let inv = claudemesh_protocol::invite::parse_invite(&invite)
                    .map_err(|e| CallError { code: None, message: format!("not an invite: {e}") })?;
                let joined = claudemesh_agent::enroll::join(&paths, &inv, &name, false)
                    .await
                    .map_err(|e| CallError { code: None, message: e.to_string() })?;
                Ok(serde_json::Value::String(joined.mesh.slug))
            };
            let result = tokio::select! {
                r = work => r,
                () = cancel.cancelled() => return,
            };
            let _ = tx.send(Event::Agent(AgentEvent::Reply { tag, result })).await;
        });
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }
}

fn call_error(e: ClientError) -> CallError {
    match e {
        ClientError::Api(e) => CallError { code: Some(e.code), message: e.message },
        other => CallError { code: None, message: other.to_string() },
    }
}

/// One follow connection: subscribe with the service set, forward its `mcp_log` lines. True
/// when the dashboard is gone (its channel closed); false when the connection failed.
async fn follow_once(paths: &Paths, f: &Follow, tx: &mpsc::Sender<Event>) -> bool {
    let Ok(mut c) = AgentClient::connect(paths, "tui").await else { return false };
    if c.follow_service(Some(f.mesh.clone()), f.name.clone()).await.is_err() {
        return false;
    }
    while let Ok((_, _, ev)) = c.next_event().await {
        if let LocalEvent::Services { mesh, event: Wire::McpLog { name, lines } } = ev
            && mesh == f.mesh
            && name == f.name
        {
            let ev = Event::Agent(AgentEvent::ServiceLog { mesh, name, lines });
            if tx.send(ev).await.is_err() {
                return true;
            }
        }
    }
    false
}

/// Holds the subscription: connect, subscribe, forward; on loss, say so and retry.
async fn subscription(
    paths: Paths,
    exe: PathBuf,
    tx: mpsc::Sender<Event>,
    mut control: mpsc::Receiver<Control>,
    cancel: CancellationToken,
) {
    let mut start = true;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = tokio::select! {
            e = session(&paths, &exe, start, &tx, &mut control) => e,
            () = cancel.cancelled() => return,
        };
        let Some(error) = error else { return };
        if error.subscribed {
            backoff = FIRST_BACKOFF;
        }
        let retry_in_ms = backoff.as_millis() as u64;
        if tx.send(Event::Agent(AgentEvent::Gone { error: error.message, retry_in_ms })).await.is_err() {
            return;
        }
        start = false;
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            c = control.recv() => match c {
                Some(Control::Reconnect { start: s }) => start = s,
                None => return,
            },
            () = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why one subscription ended, and whether it got as far as subscribing.
struct Ended {
    message: String,
    subscribed: bool,
}

/// One connection's life; `None` when the dashboard is gone (its channel closed).
async fn session(
    paths: &Paths,
    exe: &std::path::Path,
    start: bool,
    tx: &mpsc::Sender<Event>,
    control: &mut mpsc::Receiver<Control>,
) -> Option<Ended> {
    let connected = if start {
        claudemesh_agent::connect_or_start(paths, "tui", exe).await
    } else {
        AgentClient::connect(paths, "tui").await
    };
    let ended = |message: String, subscribed| Some(Ended { message, subscribed });
    let mut c = match connected {
        Ok(c) => c,
        Err(e) => return ended(e.to_string(), false),
    };
    let topics = vec![
        Topic::Messages,
        Topic::Presence,
        Topic::Links,
        Topic::Sessions,
        Topic::Outbox,
        Topic::Services,
        Topic::Vault,
        Topic::Skills,
    ];
    let reply = match c.subscribe(topics, None, None).await {
        Ok(r) => r,
        Err(e) => return ended(e.to_string(), false),
    };
    tx.send(Event::Agent(AgentEvent::Subscribed(Box::new(reply)))).await.ok()?;
    loop {
        tokio::select! {
            ev = c.next_event() => match ev {
                Ok((_, seq, event)) => {
                    tx.send(Event::Agent(AgentEvent::Event { seq, event: Box::new(event) })).await.ok()?;
                }
                Err(e) => return ended(e.to_string(), true),
            },
            ctl = control.recv() => match ctl {
                Some(Control::Reconnect { .. }) => return ended("subscribing again".into(), true),
                None => return None,
            },
        }
    }
}
