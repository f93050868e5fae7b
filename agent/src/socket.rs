//! The agent's Unix socket: JSON lines, peer uid checked, a `hello` first, then requests (served
//! concurrently, replies matched by id) and subscriptions (handed to the core, which numbers
//! their events). A bad line (bad JSON, not even UTF-8) gets an error reply, with its request's id
//! when one could be read, and disturbs neither this connection nor any other client; sessions a client
//! registered close when it disconnects, and its requests in progress are dropped.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::limits::{
    AGENT_PROTOCOL_VERSION, MAX_AGENT_LINE_BYTES, MAX_CONCURRENT_REQUESTS_PER_CONN,
};
use claudemesh_protocol::local::{AgentLine, ClientLine, LineError, UnsubscribeReply, parse_client_line};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api;
use crate::core::Input;
use crate::shared::Agent;

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
    let (tx, mut rx) = mpsc::channel::<AgentLine>(1024);
    let writer = tokio::spawn(async move {
        while let Some(l) = rx.recv().await {
            if write.write_all(line(&l).as_bytes()).await.is_err() {
                break;
            }
        }
    });
    if agent.core.send(Input::ConnOpened { conn, tx: tx.clone() }).await.is_err() {
        return;
    }
    let mut reader = BufReader::new(read);
    let mut greeted = false;
    let mut buf = Vec::new();
    // Requests in progress, served concurrently; dropped (so their waits end) when the client goes.
    let mut work: JoinSet<()> = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS_PER_CONN));
    loop {
        buf.clear();
        // Bytes, not text: a line that is not UTF-8 is answered like any bad line.
        let mut limited = (&mut reader).take(MAX_AGENT_LINE_BYTES as u64 + 1);
        let n = tokio::select! {
            _ = cancel.cancelled() => break,
            r = limited.read_until(b'\n', &mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(AgentLine::err(0, ErrorCode::Invalid, format!("unreadable line: {e}"))).await;
                    break;
                }
            },
        };
        if n == 0 {
            break;
        }
        while work.try_join_next().is_some() {}
        let msg = match parse_client_line(&buf) {
            Ok(m) => m,
            Err(LineError::Empty) => continue,
            // The rest of the line was never read: the next one cannot be found.
            Err(e @ LineError::TooLong { .. }) => {
                let _ = tx.send(AgentLine::err(0, e.code(), format!("{e}; closing"))).await;
                break;
            }
            Err(e) => {
                let _ =
                    tx.send(AgentLine::err(e.id().unwrap_or(0), e.code(), format!("bad request: {e}"))).await;
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
                let _ = tx.send(hello).await;
            }
            _ if !greeted => {
                let _ = tx.send(AgentLine::err(0, ErrorCode::Unauthorized, "send hello first")).await;
            }
            ClientLine::Request { id, call } => {
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let (agent, tx) = (agent.clone(), tx.clone());
                work.spawn(async move {
                    let reply = match api::handle(&agent, conn, call).await {
                        Ok(v) => AgentLine::ok(id, v),
                        Err((code, msg)) => AgentLine::err(id, code, msg),
                    };
                    let _ = tx.send(reply).await;
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
                let _ = tx
                    .send(AgentLine::ok(
                        id,
                        serde_json::to_value(UnsubscribeReply { unsubscribed: id }).unwrap_or_default(),
                    ))
                    .await;
            }
        }
    }
    tracing::debug!(conn, "client disconnected");
    work.abort_all();
    while work.join_next().await.is_some() {}
    let _ = agent.core.send(Input::ConnClosed { conn }).await;
    drop(tx);
    let _ = writer.await;
}
