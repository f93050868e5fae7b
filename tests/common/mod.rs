//! Set-up for agent tests: a real broker on 127.0.0.1:0 with a real redb file, members enrolled
//! through it, and real agents (each in its own temp config dir) serving real Unix sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod external;
pub mod fake_broker;
pub mod launch;
pub mod mcp_client;

use std::time::Duration;

use claudemesh_agent::{AgentClient, Config, MeshConfig, Paths};
use claudemesh_broker::BrokerConfig;
use claudemesh_broker::testkit::{Client, Identity, RunningBroker};
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::{ClientFrame, Role, ServerFrame};
use claudemesh_protocol::invite::InvitePayload;
use claudemesh_protocol::local::{
    AgentCall, ConfirmReply, InboxParams, InboxReply, LinkState, MeshStatus, PeerEntry, StatusReply,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct World {
    pub broker: Option<RunningBroker>,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub mesh_id: String,
    pub admin: Identity,
}

pub fn broker_config(dir: &std::path::Path) -> BrokerConfig {
    let mut c = BrokerConfig::new(dir.join("broker"));
    c.send_rate_per_sec = 1000.0;
    c.send_burst = 1000.0;
    // The broker runs in this test process: its services' runner is `claudemesh broker runner`.
    c.services.runner_command = vec![EXE.into(), "broker".into(), "runner".into()];
    c
}

/// The workspace's MCP fixture server (`claudemesh-mcp-fixture`, built beside `claudemesh`).
pub fn fixture_exe() -> std::path::PathBuf {
    std::path::Path::new(EXE).with_file_name("claudemesh-mcp-fixture")
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(broker_config).await
    }

    /// A world whose broker runs with `config(dir)` (e.g. the shipped rate limits).
    pub async fn start_with(config: impl Fn(&std::path::Path) -> BrokerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = RunningBroker::start("127.0.0.1:0", config(dir.path())).await.unwrap();
        let mut c = Client::connect(&broker.url).await.unwrap();
        let admin = c.mesh_create(&broker.admin_token, "team", "admin").await.unwrap().unwrap();
        Self {
            addr: broker.addr.to_string(),
            mesh_id: admin.mesh_id.clone(),
            broker: Some(broker),
            dir,
            admin,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn stop_broker(&mut self) {
        if let Some(b) = self.broker.take() {
            b.stop().await.unwrap();
        }
    }

    pub async fn start_broker(&mut self) {
        let b = RunningBroker::start(&self.addr, broker_config(self.dir.path())).await.unwrap();
        self.broker = Some(b);
    }

    /// Invite `id` of the world's mesh (role member, no groups, `max_uses` uses, far expiry),
    /// issued by its admin; sign it with `self.admin.key`.
    pub fn invite_payload(&self, id: &str, max_uses: u32) -> InvitePayload {
        InvitePayload {
            v: 1,
            broker_url: self.url(),
            mesh_id: self.mesh_id.clone(),
            mesh_slug: "team".into(),
            invite_id: id.into(),
            role: Role::Member,
            groups: vec![],
            expires_at: 4_000_000_000,
            max_uses,
            issuer_pubkey: self.admin.key.public_hex(),
        }
    }

    /// Enrolls a new member and writes its agent config dir; returns the paths.
    pub async fn member(&self, name: &str) -> Paths {
        let (mut ac, _) = Client::connect_as(&self.url(), &self.admin).await.unwrap();
        let invite_id = format!("inv-{name}");
        let inv = self.invite_payload(&invite_id, 1).sign(&self.admin.key).unwrap();
        let req = ac.next_req();
        assert_eq!(
            ac.request(&ClientFrame::InviteRegister { req, invite: inv.token().into() }).await.unwrap(),
            ServerFrame::Ok { req }
        );
        let key = MemberKeypair::generate();
        let mut c = Client::connect(&self.url()).await.unwrap();
        let ServerFrame::Enrolled { member_id, .. } =
            c.enroll(inv.token(), &key, &invite_id, name).await.unwrap()
        else {
            panic!()
        };
        c.close().await;
        let paths = Paths::new(self.dir.path().join(format!("agent-{name}")));
        let mut cfg = one_mesh_config(
            Some(name.into()),
            self.mesh_id.clone(),
            self.url(),
            member_id,
            Role::Member,
            key.secret_hex().to_string(),
            name,
        );
        // As `join` does: the inviting admin is the root of trust, the invite goes in the
        // member's statement.
        cfg.meshes[0].root_pubkey = Some(self.admin.key.public_hex());
        cfg.meshes[0].invite = Some(inv.token().to_string());
        cfg.save(&paths).unwrap();
        paths
    }
}

impl World {
    /// A config dir for the mesh's admin (its creator), for an agent that acts as the admin.
    /// Start that agent after the last [`World::member`] call: those connect as the admin too.
    pub fn admin_paths(&self) -> Paths {
        let paths = Paths::new(self.dir.path().join("agent-admin"));
        let mut cfg = one_mesh_config(
            Some("admin".into()),
            self.mesh_id.clone(),
            self.url(),
            self.admin.member_id.clone(),
            Role::Admin,
            self.admin.key.secret_hex().to_string(),
            "admin",
        );
        // The creator is its own root of trust, as `mesh create` records.
        cfg.meshes[0].root_pubkey = Some(self.admin.key.public_hex());
        cfg.save(&paths).unwrap();
        paths
    }
}

/// The agent's `status`.
pub async fn status(c: &mut AgentClient) -> StatusReply {
    c.request(AgentCall::Status).await.unwrap()
}

/// The `status` entry of the agent's first mesh (a default one, `connecting` with nothing in it,
/// while the agent has not taken the mesh in yet).
pub async fn mesh_status(c: &mut AgentClient) -> MeshStatus {
    status(c).await.meshes.into_iter().next().unwrap_or_default()
}

/// Polls the first mesh's `status` entry until `pred` holds (20 s at most); returns it.
pub async fn wait_mesh_status(
    c: &mut AgentClient,
    what: &str,
    pred: impl Fn(&MeshStatus) -> bool,
) -> MeshStatus {
    let mut last = MeshStatus::default();
    for _ in 0..800 {
        last = mesh_status(c).await;
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("mesh status never showed {what}: {last:?}");
}

/// Whether the broker's last refusal of `m`'s hello had `code`.
pub fn refused_with(m: &MeshStatus, code: claudemesh_protocol::frames::ErrorCode) -> bool {
    m.refusal.as_ref().is_some_and(|r| r.code == code)
}

/// An agent running in this process on its own config dir.
pub struct RunningAgent {
    pub paths: Paths,
    pub stop: CancellationToken,
    pub handle: JoinHandle<()>,
}

impl RunningAgent {
    pub async fn start(paths: &Paths) -> Self {
        let stop = CancellationToken::new();
        let (p, s) = (paths.clone(), stop.clone());
        let handle = tokio::spawn(async move {
            if let Err(e) = claudemesh_agent::run(p, s).await {
                panic!("agent failed: {e}");
            }
        });
        for _ in 0..200 {
            if AgentClient::connect(paths, "test").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Self { paths: paths.clone(), stop, handle }
    }

    pub async fn client(&self) -> AgentClient {
        AgentClient::connect(&self.paths, "test").await.unwrap()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

pub async fn link_state(c: &mut AgentClient) -> LinkState {
    mesh_status(c).await.link
}

pub async fn wait_connected(c: &mut AgentClient) {
    for _ in 0..400 {
        if link_state(c).await == LinkState::Connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("agent never connected");
}

/// A member's agent running in-process, with a connected client.
pub async fn connected_agent(w: &World, name: &str) -> (RunningAgent, AgentClient) {
    let agent = RunningAgent::start(&w.member(name).await).await;
    let mut c = agent.client().await;
    wait_connected(&mut c).await;
    (agent, c)
}

/// A `send` request, from session `from_session` or (None) from the member itself.
pub fn send_call(
    to: &str,
    message: &str,
    priority: claudemesh_protocol::frames::Priority,
    from_session: Option<&str>,
) -> AgentCall {
    AgentCall::Send(claudemesh_protocol::local::SendParams {
        to: to.into(),
        message: message.into(),
        priority,
        mesh: None,
        from_session: from_session.map(Into::into),
        reply_to: None,
        idempotency_key: None,
    })
}

/// Registers a session on every mesh.
pub async fn register(c: &mut AgentClient, id: &str, name: &str, groups: &[&str]) {
    use claudemesh_protocol::frames::{GroupRole, SessionInfo};
    use claudemesh_protocol::local::SessionRegister;
    let session = SessionInfo {
        session_id: id.into(),
        display_name: name.into(),
        groups: groups.iter().map(|g| GroupRole::new(*g)).collect(),
        ..Default::default()
    };
    c.call(AgentCall::SessionRegister(SessionRegister {
        meshes: vec![],
        session,
        claude_pid: None,
        default_name: false,
    }))
    .await
    .unwrap();
}

/// Waits until `c` sees a peer session named `name`.
pub async fn wait_peer(c: &mut AgentClient, name: &str) {
    for _ in 0..400 {
        let peers: Vec<PeerEntry> = c.request(AgentCall::Peers { mesh: None }).await.unwrap();
        if peers.iter().any(|p| p.peer.session.display_name == name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("peer {name} never appeared");
}

/// `session`'s unseen inbox (the user's with `None`), read without taking anything.
pub async fn read_inbox(c: &mut AgentClient, session: Option<&str>) -> InboxReply {
    c.request(AgentCall::Inbox(InboxParams { session: session.map(Into::into), ..Default::default() }))
        .await
        .unwrap()
}

/// Waits until `session`'s unseen inbox has `n` messages; returns them.
pub async fn wait_inbox(c: &mut AgentClient, session: Option<&str>, n: usize) -> InboxReply {
    for _ in 0..400 {
        let r = read_inbox(c, session).await;
        if r.messages.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("inbox never reached {n} messages");
}

/// Reads `session`'s unseen messages as a session does: takes them under a lease, then
/// confirms it, which marks them seen (and sends the receipts). Returns what was taken.
pub async fn take_and_confirm(c: &mut AgentClient, session: &str) -> InboxReply {
    let r: InboxReply = c
        .request(AgentCall::Inbox(InboxParams {
            session: Some(session.into()),
            take: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    if let Some(lease) = r.lease {
        let done: ConfirmReply = c.request(AgentCall::Confirm { lease, msg_ids: None }).await.unwrap();
        assert!(!done.expired, "the lease ran out before it was confirmed: {done:?}");
    }
    r
}

pub fn bodies(r: &InboxReply) -> Vec<String> {
    r.messages.iter().map(|m| m.body.clone()).collect()
}

/// The `claudemesh` binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_claudemesh");

/// `claudemesh <args>` with this agent's config dir; returns (exit code, stdout, stderr).
pub fn cli(paths: &Paths, args: &[&str]) -> (i32, String, String) {
    let out =
        std::process::Command::new(EXE).args(args).env("CLAUDEMESH_CONFIG_DIR", &paths.dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// [`cli`] with `input` on stdin. A child that stops reading early (input over a size limit)
/// closes the pipe: not an error here.
pub fn cli_stdin(paths: &Paths, args: &[&str], input: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = std::process::Command::new(EXE)
        .args(args)
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// An agent running as a real `claudemesh agent run` process (killed on drop).
pub struct AgentProcess {
    pub paths: Paths,
    pub child: std::process::Child,
}

impl AgentProcess {
    pub async fn start(paths: &Paths) -> Self {
        Self::start_with_env(paths, &[]).await
    }

    /// As [`AgentProcess::start`], with more environment (e.g. `CLAUDEMESH_DEBUG`).
    pub async fn start_with_env(paths: &Paths, env: &[(&str, &str)]) -> Self {
        let log = std::fs::File::create(paths.dir.join("test-agent.log")).unwrap();
        let mut child = std::process::Command::new(EXE)
            .args(["agent", "run"])
            .envs(env.iter().copied())
            .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        for _ in 0..400 {
            if AgentClient::connect(paths, "test").await.is_ok() {
                return Self { paths: paths.clone(), child };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "agent process did not come up; log:\n{}",
            std::fs::read_to_string(paths.dir.join("test-agent.log")).unwrap_or_default()
        );
    }

    pub async fn client(&self) -> AgentClient {
        AgentClient::connect(&self.paths, "test").await.unwrap()
    }

    /// SIGKILL: no cleanup at all, as in a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `config.json` with one mesh, `team`, as `join` writes it: `display_name` is the user's
/// default name, `name` the member's name in the mesh.
pub fn one_mesh_config(
    display_name: Option<String>,
    mesh_id: impl Into<String>,
    broker_url: impl Into<String>,
    member_id: impl Into<String>,
    role: Role,
    secret_key: String,
    name: impl Into<String>,
) -> Config {
    Config {
        display_name,
        meshes: vec![MeshConfig {
            id: mesh_id.into(),
            slug: "team".into(),
            broker_url: broker_url.into(),
            member_id: member_id.into(),
            role,
            secret_key,
            display_name: name.into(),
            joined_at: 0,
            root_pubkey: None,
            invite: None,
            extra: Default::default(),
        }],
        local_broker: None,
        session_grace_secs: None,
        inbox_ttl_secs: None,
        inbox_prune_secs: None,
        hosted_services: vec![],
        extra: Default::default(),
    }
}
