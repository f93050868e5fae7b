//! Raw protocol clients for the bench and soak binaries (both include this file): create a mesh
//! with one invite, enroll a fresh key with it, connect and authenticate with `hello` (as an agent instance or not), and
//! read the next frame.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use claudemesh_broker::testkit::{Client, Identity};
use claudemesh_protocol::crypto::{MemberKeypair, sign_hello};
use claudemesh_protocol::frames::{
    AgentInstance, ClientFrame, Hello, Role, ServerFrame, decode_server, encode,
};
use claudemesh_protocol::invite::{InvitePayload, SignedInvite};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A raw client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a connect + hello may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates mesh `slug` with the admin token and registers one signed member invite `invite_id`
/// for `uses` enrollments (an hour long); returns the admin and the invite. Both set-up
/// connections are dropped again.
pub async fn mesh_with_invite(
    url: &str,
    token: &str,
    slug: &str,
    invite_id: &str,
    uses: usize,
) -> anyhow::Result<(Identity, SignedInvite)> {
    let mut c = Client::connect(url).await?;
    let admin = c
        .mesh_create(token, slug, "admin")
        .await?
        .map_err(|f| anyhow!("mesh_create was refused: {}", encode(&f)))?;
    c.abort();
    let (mut ac, ack) = Client::connect_as(url, &admin).await?;
    if !matches!(ack, ServerFrame::HelloAck { .. }) {
        bail!("admin hello was refused: {}", encode(&ack));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let payload = InvitePayload {
        v: 1,
        broker_url: url.to_string(),
        mesh_id: admin.mesh_id.clone(),
        mesh_slug: slug.to_string(),
        invite_id: invite_id.to_string(),
        role: Role::Member,
        groups: vec![],
        expires_at: now + 3600,
        max_uses: u32::try_from(uses.max(1))?,
        issuer_pubkey: admin.key.public_hex(),
    };
    let invite = payload.sign(&admin.key)?;
    let req = ac.next_req();
    let r = ac.request(&ClientFrame::InviteRegister { req, invite: invite.token().into() }).await?;
    if r != (ServerFrame::Ok { req }) {
        bail!("invite_register was refused: {}", encode(&r));
    }
    ac.abort();
    Ok((admin, invite))
}

/// Enrolls a fresh key under `name` with the invite token `invite` (id `invite_id`).
pub async fn enroll(url: &str, invite: &str, invite_id: &str, name: &str) -> anyhow::Result<Identity> {
    let key = MemberKeypair::generate();
    let mut c = Client::connect(url).await?;
    let r = c.enroll(invite, &key, invite_id, name).await?;
    c.abort();
    match r {
        ServerFrame::Enrolled { member_id, mesh, .. } => Ok(Identity { mesh_id: mesh.id, member_id, key }),
        other => bail!("enroll was refused: {}", encode(&other)),
    }
}

/// Connects (TCP_NODELAY) and authenticates with `hello`, as `instance` when given; returns
/// the socket right after `hello_ack`, or the refusal with its code.
pub async fn hello(url: &str, id: &Identity, instance: Option<AgentInstance>) -> anyhow::Result<Ws> {
    tokio::time::timeout(IO_TIMEOUT, hello_inner(url, id, instance))
        .await
        .context("connect + hello timed out")?
}

async fn hello_inner(url: &str, id: &Identity, instance: Option<AgentInstance>) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let challenge = match next_frame(&mut ws).await? {
        ServerFrame::Welcome { challenge, .. } => challenge,
        other => bail!("expected welcome, got {}", encode(&other)),
    };
    let hello = ClientFrame::Hello(Hello {
        protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
        mesh_id: id.mesh_id.clone(),
        member_id: id.member_id.clone(),
        pubkey: id.key.public_hex(),
        signature: sign_hello(&id.key, &id.mesh_id, &id.member_id, &challenge),
        instance,
    });
    ws.send(Message::Text(encode(&hello).into())).await?;
    loop {
        match next_frame(&mut ws).await? {
            ServerFrame::HelloAck { .. } => return Ok(ws),
            ServerFrame::Error(e) => bail!("hello was refused: {} {}", e.code.as_str(), e.message),
            _ => continue,
        }
    }
}

/// The next text frame, decoded; an error when the connection ends or closes.
pub async fn next_frame(ws: &mut Ws) -> anyhow::Result<ServerFrame> {
    loop {
        match ws.next().await {
            None => bail!("the broker closed the connection"),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(decode_server(t.as_str())?),
            Some(Ok(Message::Close(c))) => bail!("the broker closed the connection: {c:?}"),
            Some(Ok(_)) => continue,
        }
    }
}
