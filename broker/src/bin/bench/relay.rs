//! The two floors the broker is measured against, served by `claudemesh-broker-bench relay`
//! in its own process: a relay that speaks just enough of the protocol for the scenarios
//! (`welcome`, a verified `hello` → `hello_ack`, `send` → `ack` + `push` per envelope,
//! `client_ack`) and stores nothing (the WebSocket + JSON floor), and the same relay that
//! appends every accepted send and every `client_ack` to one file and group-commits it with
//! `fdatasync` before acking and pushing (the durable floor: what any broker that syncs before
//! it acks must at least pay). Identities are not checked against a member list: any key
//! that signs the challenge is let in under the member id it claims.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use claudemesh_protocol::crypto::verify_hello;
use claudemesh_protocol::frames::{
    ClientFrame, MeshRef, Push, PushFrom, Role, ServerFrame, decode_client, encode,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Frames queued to one connection's writer before it is dropped (as the broker's `OUT_QUEUE`).
const OUT_QUEUE: usize = 4096;

/// Who is online: member id → its writer queue. Locked only to look up or change an entry.
type Online = Arc<Mutex<HashMap<String, mpsc::Sender<String>>>>;

/// What runs once a record is synced: the send's pushes and its ack.
type Then = Box<dyn FnOnce() + Send>;

/// One record for the durable floor's log, and what to do once it is synced (nothing for
/// `client_ack` records). Like the broker's store jobs, senders do not wait: the connection
/// keeps reading while its sends are committed.
struct Append {
    bytes: Vec<u8>,
    then: Option<Then>,
}

/// Serves until the process is killed. Prints `listening on ws://…/ws` once bound, as the
/// broker does, so [`super::broker::Broker`] starts both the same way.
pub async fn serve(durable: Option<PathBuf>) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot bind 127.0.0.1:0")?;
    let log = match durable {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("relay.log");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let (tx, rx) = mpsc::channel::<Append>(65_536);
            std::thread::spawn(move || committer(file, rx));
            Some(tx)
        }
        None => None,
    };
    println!("listening on ws://{}/ws", listener.local_addr()?);
    let online: Online = Arc::default();
    let ids = Arc::new(AtomicU64::new(1));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(tcp, online.clone(), log.clone(), ids.clone()));
    }
}

/// The durable floor's single writer: takes every record waiting, appends them in one write,
/// `fdatasync`s once, then releases every sender of the batch.
fn committer(mut file: std::fs::File, mut rx: mpsc::Receiver<Append>) {
    let mut batch: Vec<Append> = Vec::new();
    let mut buf = Vec::with_capacity(1 << 20);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        buf.clear();
        for a in &batch {
            buf.extend_from_slice(&a.bytes);
        }
        if file.write_all(&buf).and_then(|()| file.sync_data()).is_err() {
            eprintln!("relay: cannot append to its log; stopping");
            std::process::exit(1);
        }
        for a in batch.drain(..) {
            if let Some(then) = a.then {
                then();
            }
        }
    }
}

async fn connection(
    tcp: TcpStream,
    online: Online,
    log: Option<mpsc::Sender<Append>>,
    ids: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    // The broker's buffer sizes (server.rs), so both pay the same per connection.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(claudemesh_broker::server::WS_BUFFER_BYTES)
        .write_buffer_size(claudemesh_broker::server::WS_BUFFER_BYTES);
    let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<String>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            sink.feed(Message::Text(first.into())).await?;
            while let Ok(more) = rx.try_recv() {
                sink.feed(Message::Text(more.into())).await?;
            }
            sink.flush().await?;
        }
        anyhow::Ok(())
    });
    let challenge = claudemesh_protocol::codec::to_hex(&claudemesh_protocol::crypto::random_bytes::<32>());
    let welcome = ServerFrame::Welcome {
        protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
        challenge: challenge.clone(),
        broker_version: "relay".into(),
        public_url: None,
    };
    tx.send(encode(&welcome)).await?;
    let mut me: Option<String> = None;
    while let Some(m) = stream.next().await {
        let text = match m? {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        match decode_client(text.as_str()) {
            Ok(ClientFrame::Hello(h)) => {
                verify_hello(&h.mesh_id, &h.member_id, &h.pubkey, &challenge, &h.signature)?;
                online
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(h.member_id.clone(), tx.clone());
                let ack = ServerFrame::HelloAck {
                    member_id: h.member_id.clone(),
                    role: Role::Member,
                    mesh: MeshRef { id: h.mesh_id.clone(), slug: "relay".into() },
                    public_url: None,
                    services: vec![],
                    runner_pubkey: None,
                };
                me = Some(h.member_id);
                tx.send(encode(&ack)).await?;
            }
            Ok(ClientFrame::Send(s)) => {
                let Some(from) = me.clone() else { break };
                let msg_id = format!("r{}", ids.fetch_add(1, Relaxed));
                let sent_at = claudemesh_broker::ids::now_ms();
                let recipients = u32::try_from(s.envelopes.len())?;
                let pushes: Vec<(String, String)> = s
                    .envelopes
                    .into_iter()
                    .map(|e| {
                        let push = ServerFrame::Push(Push {
                            msg_id: msg_id.clone(),
                            client_msg_id: s.client_msg_id.clone(),
                            from: PushFrom { member_id: from.clone(), session_id: s.from_session.clone() },
                            target: s.target.clone(),
                            priority: s.priority,
                            nonce: e.nonce,
                            ciphertext: e.ciphertext,
                            sent_at,
                        });
                        (e.member_id, encode(&push))
                    })
                    .collect();
                let (online, reply, req, id) = (online.clone(), tx.clone(), s.req, msg_id.clone());
                let deliver = move || {
                    let mut online_n = 0u32;
                    for (member, text) in pushes {
                        let to = online.lock().ok().and_then(|o| o.get(&member).cloned());
                        if to.is_some_and(|to| to.try_send(text).is_ok()) {
                            online_n += 1;
                        }
                    }
                    let ack = ServerFrame::Ack { req, msg_id: id, recipients, online: online_n };
                    let _ = reply.try_send(encode(&ack));
                };
                match &log {
                    Some(log) => {
                        let mut bytes = Vec::with_capacity(text.len() + msg_id.len() + 2);
                        bytes.extend_from_slice(msg_id.as_bytes());
                        bytes.push(b' ');
                        bytes.extend_from_slice(text.as_bytes());
                        bytes.push(b'\n');
                        if log.send(Append { bytes, then: Some(Box::new(deliver)) }).await.is_err() {
                            anyhow::bail!("the relay's log writer stopped");
                        }
                    }
                    None => deliver(),
                }
            }
            Ok(ClientFrame::ClientAck { msg_ids }) => {
                if let Some(log) = &log {
                    let mut bytes = b"ack".to_vec();
                    for id in &msg_ids {
                        bytes.push(b' ');
                        bytes.extend_from_slice(id.as_bytes());
                    }
                    bytes.push(b'\n');
                    if log.send(Append { bytes, then: None }).await.is_err() {
                        anyhow::bail!("the relay's log writer stopped");
                    }
                }
            }
            Ok(_) | Err(_) => {}
        }
    }
    if let Some(me) = me
        && let Ok(mut o) = online.lock()
        && o.get(&me).is_some_and(|t| t.same_channel(&tx))
    {
        o.remove(&me);
    }
    drop(tx);
    writer.abort();
    Ok(())
}
