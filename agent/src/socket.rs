//! The agent's Unix socket: JSON lines, peer uid checked, a `hello` first, then requests (served
//! concurrently, replies matched by id) and subscriptions (handed to the core, which numbers
//! their events). A bad line (bad JSON, not even UTF-8) gets an error reply, with its request's
//! id when one could be read, and disturbs neither this connection nor any other client; sessions
//! a client registered close when it disconnects, and its requests in progress are dropped. What
//! a client may cost in memory is bounded ([`crate::socket_bounds`]): an overlong line is dropped
//! with a `too_large` error, a client that does not read is disconnected.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::limits::{
    AGENT_PROTOCOL_VERSION, MAX_AGENT_LINE_BYTES, MAX_CONCURRENT_REQUESTS_PER_CONN,
};
use claudemesh_protocol::local::{AgentLine, ClientLine, LineError, UnsubscribeReply, parse_client_line};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api;
use crate::core::Input;
use crate::shared::Agent;
use crate::socket_bounds::{self, ClientRx, LineRead};

/// Accepts clients until `cancel`.
pub async fn serve(
    agent: Arc<Agent>,
    listener: UnixListener,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (agent, cancel) = (agent.clone(), cancel.clone());
        tracker.spawn(async move { connection(agent, stream, cancel).await });
    }
}

fn line(l: &AgentLine) -> String {
    let mut s = serde_json::to_string(l).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// Writes what is queued for a client until the queue closes or the client is cut off.
async fn write_lines(mut rx: ClientRx, mut write: OwnedWriteHalf, gone: CancellationToken) {
    loop {
        let l = tokio::select! {
            () = gone.cancelled() => return,
            l = rx.recv() => match l {
                Some(l) => l,
                None => return,
            },
        };
        let ok = tokio::select! {
            () = gone.cancelled() => return,
            r = write.write_all(l.as_bytes()) => r.is_ok(),
        };
        rx.written(l.len());
        if !ok {
            gone.cancel();
            return;
        }
    }
}

async fn connection(agent: Arc<Agent>, stream: UnixStream, cancel: CancellationToken) {
    // Only the user who owns the agent's directory may talk to it.
    let own_uid = std::fs::metadata(&agent.paths.dir).map(|m| m.uid()).ok();
    let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    if own_uid.is_none() || peer_uid != own_uid {
        let _ = write
            .write_all(
                line(&AgentLine::err(0, ErrorCode::Forbidden, "this agent belongs to another user"))
                    .as_bytes(),
            )
            .await;
        return;
    }
    let conn = agent.next_conn();
    // Cancelled when the client goes or stops reading what it is sent; not when the agent
    // stops, so the replies of that moment (the `shutdown` request's own) are still written.
    let gone = CancellationToken::new();
    let (tx, rx) = socket_bounds::channel(gone.clone());
    let writer = tokio::spawn(write_lines(rx, write, gone.clone()));
    if agent.core.send(Input::ConnOpened { conn, tx: tx.clone() }).await.is_err() {
        gone.cancel();
        let _ = writer.await;
        return;
    }
    let mut reader = BufReader::new(read);
    let mut greeted = false;
    let mut buf = Vec::new();
    // Requests in progress, served concurrently; dropped (so their waits end) when the client goes.
    let mut work: JoinSet<()> = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS_PER_CONN));
    loop {
        let read = tokio::select! {
            () = gone.cancelled() => break,
            () = cancel.cancelled() => break,
            r = socket_bounds::read_line(&mut reader, &mut buf, MAX_AGENT_LINE_BYTES) => r,
        };
        while work.try_join_next().is_some() {}
        match read {
            Ok(LineRead::Eof) => break,
            Err(e) => {
                let _ =
                    tx.send(&AgentLine::err(0, ErrorCode::Invalid, format!("unreadable line: {e}"))).await;
                break;
            }
            Ok(LineRead::TooLong(n)) => {
                let e = AgentLine::err(
                    0,
                    ErrorCode::TooLarge,
                    format!(
                        "request line of {n} bytes is longer than {MAX_AGENT_LINE_BYTES}; it was dropped"
                    ),
                );
                if tx.send(&e).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(LineRead::Line) => {}
        }
        let msg = match parse_client_line(&buf) {
            Ok(m) => m,
            Err(LineError::Empty) => continue,
            Err(e) => {
                let reply = AgentLine::err(e.id().unwrap_or(0), e.code(), format!("bad request: {e}"));
                if tx.send(&reply).await.is_err() {
                    break;
                }
                continue;
            }
        };
        match msg {
            ClientLine::Hello { protocol, client } => {
                greeted = true;
                tracing::debug!(conn, %client, protocol, "client connected");
                let hello = AgentLine::Hello {
                    protocol: AGENT_PROTOCOL_VERSION,
                    agent_version: env!("CARGO_PKG_VERSION").into(),
                };
                let _ = tx.send(&hello).await;
            }
            _ if !greeted => {
                let _ = tx.send(&AgentLine::err(0, ErrorCode::Unauthorized, "send hello first")).await;
            }
            ClientLine::Request { id, call } => {
                let slot = tokio::select! {
                    () = gone.cancelled() => break,
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                };
                let (agent, tx) = (agent.clone(), tx.clone());
                work.spawn(async move {
                    let reply = match api::handle(&agent, conn, call).await {
                        Ok(v) => AgentLine::ok(id, v),
                        Err((code, msg)) => AgentLine::err(id, code, msg),
                    };
                    let _ = tx.send(&reply).await;
                    drop(slot);
                });
            }
            ClientLine::Subscribe { id, topics, session, mesh, service } => {
                let input = Input::Subscribe { conn, id, topics, session, mesh, service };
                if agent.core.send(input).await.is_err() {
                    break;
                }
            }
            ClientLine::Unsubscribe { id } => {
                let _ = agent.core.send(Input::Unsubscribe { conn, id }).await;
                let reply = AgentLine::ok(
                    id,
                    serde_json::to_value(UnsubscribeReply { unsubscribed: id }).unwrap_or_default(),
                );
                let _ = tx.send(&reply).await;
            }
        }
    }
    if gone.is_cancelled() && !cancel.is_cancelled() {
        tracing::warn!(
            conn,
            queued = tx.queued_bytes(),
            "client does not read what it is sent; disconnected"
        );
    }
    tracing::debug!(conn, "client disconnected");
    if cancel.is_cancelled() {
        // The agent is stopping: requests already answered (shutdown's own reply) get to
        // queue their answer before the rest are dropped.
        let finish = async { while work.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), finish).await;
    }
    work.abort_all();
    while work.join_next().await.is_some() {}
    let _ = agent.core.send(Input::ConnClosed { conn }).await;
    drop(tx);
    // The core dropped its sender with the connection: the writer ends once the queue is
    // written, or is cut off if the client does not take it.
    let mut writer = writer;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut writer).await.is_err() {
        gone.cancel();
        let _ = writer.await;
    }
}
