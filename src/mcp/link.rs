//! The MCP servers' connection to the agent for request/response calls, and the session it
//! registered. The connection is made lazily and remade after the agent went away; every
//! (re)connection registers the session again with its current state (summary, status,
//! groups). A call that fails because the connection broke is retried once on a new one.
//!
//! `claudemesh mcp --service` uses a [`Link::bare`] one: the same reconnecting connection, with
//! no session (a service's tools are not a peer others can message).

use std::time::Duration;

use claudemesh_agent::{AgentClient, ClientError, Paths};
use claudemesh_protocol::frames::{GroupRole, SessionInfo, SessionPatch};
use claudemesh_protocol::limits::AGENT_CALL_TIMEOUT_MILLIS;
use claudemesh_protocol::local::{AgentCall, ConfirmReply, RegisterReply, SessionRegister, UpdateReply};
use serde::de::{DeserializeOwned, IgnoredAny};

use super::confirm::Written;
use super::debug;

/// The longest one agent call may take, starting the agent included: a stopped or wedged agent
/// (`kill -STOP`, what Ctrl-Z does to `agent run`) must not hang Claude Code.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(AGENT_CALL_TIMEOUT_MILLIS);
/// How long a keepalive probe waits for the agent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent connection of one MCP server process; shared behind [`super::Shared`].
#[derive(Debug)]
pub struct Link {
    paths: Paths,
    /// The session registered on every (re)connection; `None` for a [`Link::bare`] link.
    session: Option<SessionInfo>,
    claude_pid: Option<u32>,
    /// The name was not chosen (no `CLAUDEMESH_NAME`): the agent may suffix it (`repo-2`).
    default_name: bool,
    /// Mesh slugs to open the session on (empty: every joined mesh).
    meshes: Vec<String>,
    client: Option<AgentClient>,
    /// Leases of tool results already written, to confirm before anything else.
    written: Written,
    /// See [`Link::groups`].
    groups: Vec<GroupRole>,
}

/// Whether `e` means the connection broke (so a new one may succeed), not that the agent
/// refused the call or is wedged (a timeout: retrying would only double the wait).
fn broken(e: &ClientError) -> bool {
    match e {
        ClientError::Io(io) => io.kind() != std::io::ErrorKind::TimedOut,
        ClientError::Protocol(_) => true,
        _ => false,
    }
}

impl Link {
    /// A link that registers `session` (on `meshes`, every joined one when empty) on each
    /// connection, for the `claude` process `claude_pid`.
    pub fn new(
        paths: Paths,
        session: SessionInfo,
        claude_pid: Option<u32>,
        default_name: bool,
        meshes: Vec<String>,
        written: Written,
    ) -> Self {
        let groups = session.groups.clone();
        Self {
            paths,
            session: Some(session),
            claude_pid,
            default_name,
            meshes,
            client: None,
            written,
            groups,
        }
    }

    /// A link that registers no session: calls only (`claudemesh mcp --service`), about
    /// `meshes` (every joined one when empty).
    pub fn bare(paths: Paths, meshes: Vec<String>) -> Self {
        Self {
            paths,
            session: None,
            claude_pid: None,
            default_name: false,
            meshes,
            client: None,
            written: Written::default(),
            groups: Vec::new(),
        }
    }

    /// Confirms the leases of the tool results written so far (never starting an agent: one
    /// that restarted no longer knows them and offers their messages again).
    pub async fn confirm_written(&mut self) {
        for lease in self.written.take() {
            match self.request_with::<ConfirmReply>(AgentCall::Confirm { lease, msg_ids: None }, false).await
            {
                Ok(r) if r.expired => debug(&format!("lease {lease} ran out before it was confirmed")),
                Ok(r) => debug(&format!("lease {lease}: {} seen", r.confirmed)),
                Err(e) => debug(&format!("cannot confirm lease {lease}: {e}")),
            }
        }
    }

    /// The registered session's id; empty for a [`Link::bare`] link.
    pub fn session_id(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.session_id.as_str())
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The mesh slugs the session was opened on (empty: every joined mesh).
    pub fn meshes(&self) -> &[String] {
        &self.meshes
    }

    /// The groups the session is in, as the agent last said: those it declared and those
    /// granted to the member that it did not leave. A `groups` patch gives the whole set.
    pub fn groups(&self) -> &[GroupRole] {
        &self.groups
    }

    /// The connected client, connecting (starting the agent if needed, unless `!start`) and
    /// registering first.
    async fn client_with(&mut self, start: bool) -> Result<&mut AgentClient, ClientError> {
        if self.client.is_none() {
            let mut c = if start {
                let exe = std::env::current_exe()?;
                claudemesh_agent::connect_or_start(&self.paths, "mcp", &exe).await?
            } else {
                AgentClient::connect(&self.paths, "mcp").await?
            };
            if let Some(session) = self.session.as_mut() {
                let r: RegisterReply = c
                    .request(AgentCall::SessionRegister(SessionRegister {
                        meshes: self.meshes.clone(),
                        session: session.clone(),
                        claude_pid: self.claude_pid,
                        default_name: self.default_name,
                    }))
                    .await?;
                // A default name may come back made distinct (`repo-2`): keep it for re-registering.
                session.display_name = r.display_name;
                self.groups = r.groups;
                debug(&format!("registered session {} ({} waiting)", r.session_id, r.waiting));
            }
            self.client = Some(c);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(ClientError::Protocol("no agent connection".into())),
        }
    }

    /// One call and its typed reply, within [`CALL_TIMEOUT`], starting the agent if none runs;
    /// a broken or silent connection is dropped (the next call reconnects and re-registers)
    /// and the call retried once on a new connection (the agent restarted). Only for calls that are safe to repeat: a `send` must carry an
    /// idempotency key.
    pub async fn request_retry<T: DeserializeOwned>(&mut self, call: AgentCall) -> Result<T, ClientError> {
        // What the model was shown before this call counts as seen for it.
        self.confirm_written().await;
        match self.request_with(call.clone(), true).await {
            Err(e) if broken(&e) => {
                debug(&format!("agent connection broke ({e}); retrying once"));
                self.request_with(call, true).await
            }
            r => r,
        }
    }

    /// One call that may take long (a deploy, a service call), within `limit`; never
    /// repeated (a deploy or a tool call is not safe to run twice).
    pub async fn request_long<T: DeserializeOwned>(
        &mut self,
        call: AgentCall,
        limit: Duration,
    ) -> Result<T, ClientError> {
        self.confirm_written().await;
        self.request_within(call, true, limit).await
    }

    async fn request_with<T: DeserializeOwned>(
        &mut self,
        call: AgentCall,
        start: bool,
    ) -> Result<T, ClientError> {
        self.request_within(call, start, CALL_TIMEOUT).await
    }

    async fn request_within<T: DeserializeOwned>(
        &mut self,
        call: AgentCall,
        start: bool,
        limit: Duration,
    ) -> Result<T, ClientError> {
        let r = match tokio::time::timeout(limit, async {
            self.client_with(start).await?.request::<T>(call).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the agent did not answer within {} s; is it stopped? (`claudemesh agent status`)",
                    limit.as_secs()
                ),
            ))),
        };
        if matches!(r, Err(ClientError::Io(_) | ClientError::Protocol(_))) {
            self.client = None;
        }
        r
    }

    /// Makes sure a live, registered connection exists (one retry after a dead one), starting
    /// the agent if none runs. Asks the agent for its mesh list: the cheapest call that proves
    /// the connection is alive.
    pub async fn ensure(&mut self) -> Result<(), ClientError> {
        self.ensure_with(true).await
    }

    async fn ensure_with(&mut self, start: bool) -> Result<(), ClientError> {
        // The first check may start the agent (up to its start timeout); later probes hold the
        // link only briefly, so a tool call behind a probe of a frozen agent waits little more
        // than its own timeout.
        let limit = if start { CALL_TIMEOUT } else { PROBE_TIMEOUT };
        match self.request_within::<IgnoredAny>(AgentCall::Meshes, start, limit).await {
            Ok(_) => Ok(()),
            Err(e) if broken(&e) => {
                self.request_within::<IgnoredAny>(AgentCall::Meshes, start, limit).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Registers again with an agent that runs (after a restart), never starting one: an agent
    /// stopped on purpose (`claudemesh down`) stays stopped until a tool call needs it.
    pub async fn keep_alive(&mut self) -> Result<(), ClientError> {
        self.ensure_with(false).await
    }

    /// Applies `patch` at the agent (retried once after a broken connection: a patch is
    /// idempotent), then to the local copy (kept for re-registration).
    pub async fn update(&mut self, patch: SessionPatch) -> Result<UpdateReply, ClientError> {
        let session_id = self.session_id().to_string();
        let r: UpdateReply =
            self.request_retry(AgentCall::SessionUpdate { session_id, patch: patch.clone() }).await?;
        if let Some(session) = self.session.as_mut() {
            patch.apply(session);
        }
        self.groups.clone_from(&r.groups);
        Ok(r)
    }

    /// Closes the session at the agent and drops the connection (a silent agent gets
    /// [`CALL_TIMEOUT`]; the agent also closes the session when the connection goes).
    pub async fn close(&mut self) {
        let session_id = self.session_id().to_string();
        if let Some(mut c) = self.client.take()
            && !session_id.is_empty()
        {
            match tokio::time::timeout(
                CALL_TIMEOUT,
                c.request::<IgnoredAny>(AgentCall::SessionClose { session_id }),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => debug(&format!("session close failed: {e}")),
                Err(_) => debug("session close: the agent did not answer"),
            }
        }
    }
}
