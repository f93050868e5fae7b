//! The agent's Unix socket: JSON lines, peer uid checked, a `hello` first, then requests (served
//! concurrently, replies matched by id) and subscriptions (handed to the core, which numbers
//! their events). A bad line gets an error reply and disturbs no other client; sessions a client
//! registered close when it disconnects, and its requests in progress are dropped.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::limits::{
    AGENT_PROTOCOL_VERSION, MAX_AGENT_LINE_BYTES, MAX_CONCURRENT_REQUESTS_PER_CONN,
};
use claudemesh_protocol::local::{AgentLine, ClientLine, UnsubscribeReply};
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
    let mut buf = String::new();
    // Requests in progress, served concurrently; dropped (so their waits end) when the client goes.
    let mut work: JoinSet<()> = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS_PER_CONN));
    loop {
        buf.clear();
        let mut limited = (&mut reader).take(MAX_AGENT_LINE_BYTES as u64 + 1);
        let n = tokio::select! {
            _ = cancel.cancelled() => break,
            r = limited.read_line(&mut buf) => match r {
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
        if buf.len() > MAX_AGENT_LINE_BYTES {
            let _ = tx
                .send(AgentLine::err(
                    0,
                    ErrorCode::TooLarge,
                    format!("line longer than {MAX_AGENT_LINE_BYTES} bytes; closing"),
                ))
                .await;
            break;
        }
        if buf.trim().is_empty() {
            continue;
        }
        let msg = match parse_line(&buf) {
            Ok(m) => m,
            Err((id, e)) => {
                let _ = tx.send(AgentLine::err(id, ErrorCode::Invalid, format!("bad request: {e}"))).await;
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

/// Reads one client line. A method without params also takes `"params": {}` (what hand-written
/// clients send). An error carries the request's id when one could be read.
fn parse_line(line: &str) -> Result<ClientLine, (u64, serde_json::Error)> {
    let first = match serde_json::from_str::<ClientLine>(line) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(line) else { return Err((0, first)) };
    let id = v.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let empty = v.get("params").is_some_and(|p| p.as_object().is_some_and(serde_json::Map::is_empty));
    if let (true, Some(o)) = (empty, v.as_object_mut()) {
        o.remove("params");
        if let Ok(m) = serde_json::from_value::<ClientLine>(v) {
            return Ok(m);
        }
    }
    Err((id, first))
}

#[cfg(test)]
mod tests {
    use claudemesh_protocol::local::AgentCall;

    use super::*;

    #[test]
    fn empty_params_are_no_params_and_bad_lines_keep_their_id() {
        let l = parse_line(r#"{"type":"request","id":3,"method":"status","params":{}}"#).unwrap();
        assert_eq!(l, ClientLine::Request { id: 3, call: AgentCall::Status });
        let l = parse_line(r#"{"type":"request","id":4,"method":"status"}"#).unwrap();
        assert_eq!(l, ClientLine::Request { id: 4, call: AgentCall::Status });
        let (id, _) = parse_line(r#"{"type":"request","id":5,"method":"nope","params":{}}"#).unwrap_err();
        assert_eq!(id, 5);
        assert_eq!(parse_line("not json").unwrap_err().0, 0);
    }
}
