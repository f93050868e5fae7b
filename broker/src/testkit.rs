//! A raw protocol client and a broker launcher, for tests, the benchmark and protocol probes.
//! The client speaks the wire protocol directly (no agent): connect, hello/enroll, send
//! frames, wait for replies by `req`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claudemesh_protocol::crypto::{MemberKeypair, sign_enroll, sign_hello};
use claudemesh_protocol::frames::{
    AgentInstance, ClientFrame, DecodeError, Enroll, Hello, Secret, ServerFrame, decode_server, encode,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::{BrokerConfig, BrokerError};

/// What went wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    Ws(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("connection closed{}", .0.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Closed(Option<String>),
    #[error("bad frame from broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("timed out waiting for the broker")]
    Timeout,
    #[error("unexpected frame: {0}")]
    Unexpected(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Box::new(e).into()
    }
}

/// A member identity to connect as.
#[derive(Debug)]
pub struct Identity {
    pub mesh_id: String,
    pub member_id: String,
    pub key: MemberKeypair,
}

/// One raw WebSocket connection to a broker.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub challenge: String,
    next_req: u64,
    /// Frames received while waiting for something else, in arrival order.
    pub inbox: VecDeque<ServerFrame>,
    pub timeout: Duration,
}

impl Client {
    /// Connects and reads the `welcome`.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Self::from_stream(ws).await
    }

    /// Connects over `wss://` trusting `root` (a PEM certificate) in addition to nothing else.
    pub async fn connect_tls(url: &str, root_pem: &[u8]) -> Result<Self, ClientError> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem) {
            let cert = cert.map_err(|e| ClientError::Unexpected(format!("bad root certificate: {e}")))?;
            roots.add(cert).map_err(|e| ClientError::Unexpected(format!("bad root certificate: {e}")))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Unexpected(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(cfg));
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)).await?;
        Self::from_stream(ws).await
    }

    async fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Result<Self, ClientError> {
        let mut c = Self {
            ws,
            challenge: String::new(),
            next_req: 1,
            inbox: VecDeque::new(),
            timeout: Duration::from_secs(10),
        };
        match c.next_frame().await? {
            ServerFrame::Welcome { challenge, .. } => c.challenge = challenge,
            other => return Err(ClientError::Unexpected(encode(&other))),
        }
        Ok(c)
    }

    /// Connects and authenticates with `hello`, returning the `hello_ack` (or error) frame.
    pub async fn connect_as(url: &str, id: &Identity) -> Result<(Self, ServerFrame), ClientError> {
        let mut c = Self::connect(url).await?;
        let f = c.hello(id).await?;
        Ok((c, f))
    }

    pub fn next_req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    pub async fn send(&mut self, f: &ClientFrame) -> Result<(), ClientError> {
        self.send_text(encode(f)).await
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Queues a frame without flushing (for pipelined benchmarks); see [`Client::flush`].
    pub async fn feed(&mut self, f: &ClientFrame) -> Result<(), ClientError> {
        self.ws.feed(Message::Text(encode(f).into())).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.ws.flush().await?;
        Ok(())
    }

    /// The next frame off the socket (not the inbox), skipping pings.
    async fn next_frame(&mut self) -> Result<ServerFrame, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.next_frame_by(deadline).await
    }

    /// The next frame off the socket before `deadline`: pings do not extend the wait.
    async fn next_frame_by(&mut self, deadline: tokio::time::Instant) -> Result<ServerFrame, ClientError> {
        loop {
            let msg =
                tokio::time::timeout_at(deadline, self.ws.next()).await.map_err(|_| ClientError::Timeout)?;
            match msg {
                None => return Err(ClientError::Closed(None)),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(t))) => return Ok(decode_server(t.as_str())?),
                Some(Ok(Message::Close(c))) => {
                    return Err(ClientError::Closed(
                        c.map(|c| format!("{} {}", u16::from(c.code), c.reason)),
                    ));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame: first from the inbox, then from the socket.
    pub async fn recv(&mut self) -> Result<ServerFrame, ClientError> {
        if let Some(f) = self.inbox.pop_front() {
            return Ok(f);
        }
        self.next_frame().await
    }

    /// Waits for the first frame matching `pred`, keeping the others in the inbox.
    pub async fn recv_match(
        &mut self,
        pred: impl Fn(&ServerFrame) -> bool,
    ) -> Result<ServerFrame, ClientError> {
        if let Some(i) = self.inbox.iter().position(&pred) {
            return self.inbox.remove(i).ok_or(ClientError::Timeout);
        }
        // One deadline for the whole wait, however many other frames arrive meanwhile.
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let f = self.next_frame_by(deadline).await?;
            if pred(&f) {
                return Ok(f);
            }
            self.inbox.push_back(f);
        }
    }

    /// Sends a request and waits for the reply with its `req`.
    pub async fn request(&mut self, f: &ClientFrame) -> Result<ServerFrame, ClientError> {
        let req = f.req();
        self.send(f).await?;
        self.recv_match(|r| r.req() == req).await
    }

    /// Authenticates with `hello` naming no agent instance; returns `hello_ack` or the error.
    pub async fn hello(&mut self, id: &Identity) -> Result<ServerFrame, ClientError> {
        self.hello_with(id, None).await
    }

    /// Authenticates with `hello` as the agent process `instance`.
    pub async fn hello_with(
        &mut self,
        id: &Identity,
        instance: Option<AgentInstance>,
    ) -> Result<ServerFrame, ClientError> {
        let signature = sign_hello(&id.key, &id.mesh_id, &id.member_id, &self.challenge);
        self.send(&ClientFrame::Hello(Hello {
            protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
            mesh_id: id.mesh_id.clone(),
            member_id: id.member_id.clone(),
            pubkey: id.key.public_hex(),
            signature,
            instance,
        }))
        .await?;
        self.recv_match(|f| matches!(f, ServerFrame::HelloAck { .. } | ServerFrame::Error(_))).await
    }

    pub async fn enroll(
        &mut self,
        invite: &str,
        key: &MemberKeypair,
        invite_id: &str,
        name: &str,
    ) -> Result<ServerFrame, ClientError> {
        let signature = sign_enroll(key, invite_id, &self.challenge);
        // The statement names the invite's mesh; a token that does not parse gets none, so the
        // broker's own refusal of the invite is what the caller sees.
        let statement = claudemesh_protocol::invite::parse_invite(invite).ok().and_then(|i| {
            claudemesh_protocol::trust::enrollment_statement(key, &i.payload.mesh_id, name, i.token(), 1).ok()
        });
        self.send(&ClientFrame::Enroll(Enroll {
            protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
            invite: invite.to_string(),
            pubkey: key.public_hex(),
            display_name: name.to_string(),
            signature,
            statement,
        }))
        .await?;
        self.recv_match(|f| matches!(f, ServerFrame::Enrolled { .. } | ServerFrame::Error(_))).await
    }

    /// Creates a mesh with the broker admin token; returns the admin identity.
    pub async fn mesh_create(
        &mut self,
        token: &str,
        slug: &str,
        name: &str,
    ) -> Result<Result<Identity, ServerFrame>, ClientError> {
        let key = MemberKeypair::generate();
        let req = self.next_req();
        let f = ClientFrame::MeshCreate {
            req,
            slug: slug.to_string(),
            admin_token: Secret(token.to_string()),
            pubkey: key.public_hex(),
            display_name: name.to_string(),
        };
        match self.request(&f).await? {
            ServerFrame::MeshCreated { mesh, member_id, .. } => {
                Ok(Ok(Identity { mesh_id: mesh.id, member_id, key }))
            }
            other => Ok(Err(other)),
        }
    }

    /// Sends any WebSocket message as it is, raw frames included (to break the framing rules).
    pub async fn ws_message(&mut self, m: Message) {
        let _ = self.ws.send(m).await;
    }

    /// Sends a binary frame (only uploads use them).
    pub async fn ws_binary(&mut self, data: Vec<u8>) {
        let _ = self.ws.send(Message::Binary(data.into())).await;
    }

    /// Sends a WebSocket close and waits for the socket to end.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { while self.ws.next().await.is_some() {} })
                .await;
    }

    /// Drops the TCP connection without a close frame (a crash, seen from the broker).
    pub fn abort(self) {
        drop(self);
    }
}

/// A broker serving in this process on 127.0.0.1, for tests.
#[derive(Debug)]
pub struct RunningBroker {
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: PathBuf,
    pub admin_token: String,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), BrokerError>>,
}

impl RunningBroker {
    /// Starts a broker on `addr` (use port 0 for any) with `config`.
    pub async fn start(addr: &str, config: BrokerConfig) -> std::io::Result<Self> {
        Self::start_with_tls(addr, config, None).await
    }

    /// Starts a broker serving `wss://` with the given certificate and key.
    pub async fn start_with_tls(
        addr: &str,
        config: BrokerConfig,
        tls: Option<crate::TlsFiles>,
    ) -> std::io::Result<Self> {
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let data_dir = config.data_dir.clone();
        let token_file = config.admin_token_file.clone();
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        let handle = tokio::spawn(crate::serve(listener, config, tls, async move { s2.cancelled().await }));
        let admin_token = wait_for_token(&token_file).await?;
        Ok(Self { addr, url: format!("{scheme}://{addr}/ws"), data_dir, admin_token, stop, handle })
    }

    /// Stops the broker gracefully and waits until its store is closed.
    pub async fn stop(self) -> Result<(), BrokerError> {
        self.stop.cancel();
        self.handle.await.unwrap_or(Ok(()))
    }
}

async fn wait_for_token(path: &Path) -> std::io::Result<String> {
    for _ in 0..500 {
        if let Ok(t) = std::fs::read_to_string(path)
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_string());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(std::io::Error::other(format!("broker did not write {}", path.display())))
}
