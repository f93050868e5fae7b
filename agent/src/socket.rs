//! The agent's Unix socket: JSON lines, peer uid checked, a `hello` first, then requests and
//! subscriptions. A bad line gets an error reply and disturbs no other client; sessions a
//! client registered close when it disconnects.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::limits::{AGENT_PROTOCOL_VERSION, MAX_AGENT_LINE_BYTES};
use claudemesh_protocol::local::{AgentCall, AgentLine, ClientLine, Topic};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api;
use crate::inbox::push_deliverable;
use crate::state::{Agent, Subscription};

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
    let conn = agent.next_id();
    let (tx, mut rx) = mpsc::channel::<AgentLine>(1024);
    let writer = tokio::spawn(async move {
        while let Some(l) = rx.recv().await {
            if write.write_all(line(&l).as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut reader = BufReader::new(read);
    let mut registered: Vec<String> = Vec::new();
    let mut greeted = false;
    let mut buf = String::new();
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
        let parsed: Result<ClientLine, _> = serde_json::from_str(&buf);
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(&buf)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                    .unwrap_or(0);
                let _ = tx.send(AgentLine::err(id, ErrorCode::Invalid, format!("bad request: {e}"))).await;
                continue;
            }
        };
        match msg {
            ClientLine::Hello { protocol, client } => {
                greeted = true;
                tracing::debug!(conn, %client, protocol, "client connected");
                let _ = tx
                    .send(AgentLine::Hello {
                        protocol: AGENT_PROTOCOL_VERSION,
                        agent_version: env!("CARGO_PKG_VERSION").into(),
                    })
                    .await;
            }
            _ if !greeted => {
                let _ = tx.send(AgentLine::err(0, ErrorCode::Unauthorized, "send hello first")).await;
            }
            ClientLine::Request { id, call } => {
                let long = matches!(call, AgentCall::HookWait { .. });
                let result = {
                    let work = api::handle(&agent, call, &mut registered);
                    tokio::pin!(work);
                    if long {
                        // A waiting hook may be killed: stop waiting for a client that is gone.
                        tokio::select! {
                            r = &mut work => Some(r),
                            gone = client_gone(&mut reader) => if gone { None } else { Some(work.await) },
                        }
                    } else {
                        Some(work.await)
                    }
                };
                let Some(result) = result else { break };
                let reply = match result {
                    Ok(v) => AgentLine::ok(id, v),
                    Err((code, msg)) => AgentLine::err(id, code, msg),
                };
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
            ClientLine::Subscribe { id, topics, session, mesh } => {
                let mesh = match mesh {
                    Some(m) => match agent.resolve_mesh(Some(&m)) {
                        Ok(id) => Some(id),
                        Err(e) => {
                            let _ = tx.send(AgentLine::err(id, ErrorCode::NotFound, e)).await;
                            continue;
                        }
                    },
                    None => None,
                };
                let wants_messages = topics.contains(&Topic::Messages);
                agent.subscribe(Subscription {
                    conn,
                    id,
                    topics,
                    session: session.clone(),
                    mesh,
                    tx: tx.clone(),
                });
                let _ = tx.send(AgentLine::ok(id, serde_json::json!({ "subscribed": id, "seq": 0, "snapshot": claudemesh_protocol::local::Snapshot::default() }))).await;
                if let (true, Some(s)) = (wants_messages, session)
                    && let Err(e) = push_deliverable(&agent, &s)
                {
                    tracing::warn!(error = %e, "cannot push waiting messages");
                }
            }
            ClientLine::Unsubscribe { id } => {
                agent.unsubscribe(conn, Some(id));
                let _ = tx.send(AgentLine::ok(id, serde_json::json!({ "unsubscribed": id }))).await;
            }
        }
    }
    tracing::debug!(conn, "client disconnected");
    agent.unsubscribe(conn, None);
    for s in registered {
        crate::sessions::close_session(&agent, &s);
    }
    drop(tx);
    let _ = writer.await;
}

/// Resolves when the client closed its end (`true`) or sent another line (`false`, left unread).
async fn client_gone(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> bool {
    match reader.fill_buf().await {
        Ok(buf) => buf.is_empty(),
        Err(_) => true,
    }
}
