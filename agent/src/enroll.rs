//! Joining a mesh: enroll a fresh key with an invite over a one-shot broker connection, then
//! record the mesh in `config.json` (the running agent picks it up through its config watch).

use std::time::Duration;

use claudemesh_protocol::crypto::{MemberKeypair, sign_enroll};
use claudemesh_protocol::frames::{ClientFrame, Enroll, ServerFrame, decode_server, encode};
use claudemesh_protocol::invite::SignedInvite;
use claudemesh_protocol::limits::{MIN_BROKER_PROTOCOL, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::config::{Config, ConfigError, MeshConfig};
use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("you already joined mesh {0}; `claudemesh leave {0}` first to join it again")]
    AlreadyJoined(String),
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the broker refused to enroll you ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker URL is plaintext to another machine and `--insecure-transport` was not given.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
}

/// What the broker granted.
#[derive(Debug, Clone)]
pub struct Joined {
    pub mesh: MeshConfig,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A one-shot broker connection used before a member has an agent link: connect, read the
/// welcome, ask one question.
struct OneShot {
    ws: Ws,
    url: String,
    challenge: String,
}

impl OneShot {
    async fn open(url: &str) -> Result<Self, JoinError> {
        let unreachable = |reason: String| JoinError::Unreachable { url: url.into(), reason };
        let connector = crate::tls::connector_from_env().map_err(unreachable)?;
        let connect = tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector);
        let (ws, _) = tokio::time::timeout(Duration::from_secs(15), connect)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let mut c = Self { ws, url: url.into(), challenge: String::new() };
        match c.next().await? {
            ServerFrame::Welcome { protocol, .. } if protocol < MIN_BROKER_PROTOCOL => {
                return Err(JoinError::Refused {
                    code: "invalid".into(),
                    message: format!(
                        "the broker at {url} speaks claudemesh protocol {protocol}, and this claudemesh \
                         needs {MIN_BROKER_PROTOCOL} or later: upgrade the broker"
                    ),
                });
            }
            ServerFrame::Welcome { challenge, .. } => c.challenge = challenge,
            other => return Err(JoinError::Protocol(other.type_name().into())),
        }
        Ok(c)
    }

    async fn next(&mut self) -> Result<ServerFrame, JoinError> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(15), self.ws.next()).await.map_err(|_| {
                JoinError::Unreachable { url: self.url.clone(), reason: "no answer in 15 s".into() }
            })?;
            match m {
                Some(Ok(Message::Text(t))) => {
                    return decode_server(t.as_str()).map_err(|e| JoinError::Protocol(e.to_string()));
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(JoinError::Protocol("connection closed before an answer".into()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(JoinError::Unreachable { url: self.url.clone(), reason: e.to_string() });
                }
            }
        }
    }

    /// Sends `frame`, returns the answer (a broker `error` becomes [`JoinError::Refused`]), and
    /// closes the connection.
    async fn ask(mut self, frame: &ClientFrame) -> Result<ServerFrame, JoinError> {
        self.ws
            .send(Message::Text(encode(frame).into()))
            .await
            .map_err(|e| JoinError::Unreachable { url: self.url.clone(), reason: e.to_string() })?;
        let answer = self.next().await?;
        let _ = self.ws.close(None).await;
        match answer {
            ServerFrame::Error(e) => {
                Err(JoinError::Refused { code: e.code.as_str().into(), message: e.message })
            }
            other => Ok(other),
        }
    }
}

/// Adds a newly enrolled mesh to config.json, re-reading it right before writing so a
/// concurrent join by another process is not lost.
fn save_mesh(paths: &Paths, mc: MeshConfig) -> Result<Joined, JoinError> {
    let mut config = Config::load(paths)?;
    if config.meshes.iter().any(|m| m.id == mc.id) {
        return Err(JoinError::AlreadyJoined(mc.slug));
    }
    config.meshes.push(mc.clone());
    config.save(paths)?;
    Ok(Joined { mesh: mc })
}

/// Now, in whole Unix seconds: `joined_at`, and (in ms) the time of the enrollment statement,
/// which the link publishes again on every hello — the same statement, so nothing changes.
fn joined_now() -> u64 {
    crate::core::now_ms() / 1000
}

fn mesh_config(
    mesh: claudemesh_protocol::frames::MeshRef,
    url: String,
    member_id: String,
    role: claudemesh_protocol::frames::Role,
    key: &MemberKeypair,
    display_name: &str,
    joined_at: u64,
) -> MeshConfig {
    MeshConfig {
        id: mesh.id,
        slug: mesh.slug,
        broker_url: url,
        member_id,
        role,
        secret_key: key.secret_hex().to_string(),
        display_name: display_name.into(),
        joined_at,
        root_pubkey: None,
        invite: None,
        extra: Default::default(),
    }
}

/// Enrolls with `invite` as `display_name` and saves the mesh. `insecure_transport` accepts a
/// plaintext `ws://` broker that is not loopback (refused otherwise, before connecting), and is
/// recorded in the mesh's config for the agent's link.
pub async fn join(
    paths: &Paths,
    invite: &SignedInvite,
    display_name: &str,
    insecure_transport: bool,
) -> Result<Joined, JoinError> {
    let p = &invite.payload;
    if Config::load(paths)?.meshes.iter().any(|m| m.id == p.mesh_id) {
        return Err(JoinError::AlreadyJoined(p.mesh_slug.clone()));
    }
    crate::transport::check(&p.broker_url, insecure_transport)?;
    let conn = OneShot::open(&p.broker_url).await?;
    let key = MemberKeypair::generate();
    let joined_at = joined_now();
    let frame = ClientFrame::Enroll(Enroll {
        invite: invite.token().into(),
        pubkey: key.public_hex(),
        display_name: display_name.into(),
        signature: sign_enroll(&key, &p.invite_id, &conn.challenge),
        protocol: PROTOCOL_VERSION,
        statement: Some(
            claudemesh_protocol::trust::enrollment_statement(
                &key,
                &p.mesh_id,
                display_name,
                invite.token(),
                joined_at * 1000,
            )
            .map_err(|e| JoinError::Protocol(format!("cannot sign the enrollment statement: {e}")))?,
        ),
    });
    match conn.ask(&frame).await? {
        ServerFrame::Enrolled { member_id, role, mesh } => {
            let mut mc =
                mesh_config(mesh, p.broker_url.clone(), member_id, role, &key, display_name, joined_at);
            // The admin who signed the invite is this member's root of trust (pinned here).
            mc.root_pubkey = Some(p.issuer_pubkey.to_ascii_lowercase());
            mc.invite = Some(invite.token().to_string());
            mc.set_insecure_transport(insecure_transport);
            save_mesh(paths, mc)
        }
        other => Err(JoinError::Protocol(other.type_name().into())),
    }
}

/// Creates a mesh on `broker_url` with the broker admin token and joins it as its first admin;
/// `insecure_transport` as for [`join`].
pub async fn create_mesh(
    paths: &Paths,
    broker_url: &str,
    slug: &str,
    display_name: &str,
    admin_token: &str,
    insecure_transport: bool,
) -> Result<Joined, JoinError> {
    crate::transport::check(broker_url, insecure_transport)?;
    let conn = OneShot::open(broker_url).await?;
    let key = MemberKeypair::generate();
    let frame = ClientFrame::MeshCreate {
        req: 1,
        slug: slug.into(),
        admin_token: claudemesh_protocol::frames::Secret(admin_token.into()),
        pubkey: key.public_hex(),
        display_name: display_name.into(),
    };
    match conn.ask(&frame).await? {
        ServerFrame::MeshCreated { mesh, member_id, role, .. } => {
            let mut mc =
                mesh_config(mesh, broker_url.into(), member_id, role, &key, display_name, joined_now());
            // The creator is its own root: every member chains to an invite it or its admins signed.
            mc.root_pubkey = Some(key.public_hex());
            mc.set_insecure_transport(insecure_transport);
            save_mesh(paths, mc)
        }
        other => Err(JoinError::Protocol(other.type_name().into())),
    }
}
