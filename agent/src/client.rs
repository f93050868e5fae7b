//! A client of the agent's socket, used by the CLI, `claudemesh mcp`, hooks and the TUI; and
//! auto-start: a client that finds no agent starts one and waits for its socket.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use claudemesh_protocol::limits::AGENT_PROTOCOL_VERSION;
use claudemesh_protocol::local::{
    AgentCall, AgentLine, ClientLine, LocalError, LocalEvent, SubscribeReply, Topic,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no agent is running for {0}")]
    NotRunning(String),
    /// The running agent is another build: another local protocol, or another release.
    #[error(
        "the agent is version {agent} (protocol {agent_protocol}); this client is {ours} (protocol {ours_protocol})"
    )]
    VersionMismatch { agent: String, agent_protocol: u32, ours: String, ours_protocol: u32 },
    #[error("the agent did not start within {secs} s; see its log {log}{tail}")]
    StartFailed { secs: u64, log: String, tail: String },
    #[error("agent socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("agent sent something unreadable: {0}")]
    Protocol(String),
    #[error("{}", .0.message)]
    Api(LocalError),
}

/// One connection to the agent.
#[derive(Debug)]
pub struct AgentClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    pub agent_version: String,
    events: VecDeque<(u64, u64, LocalEvent)>,
}

/// This client's release, which the agent it talks to must match.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

impl AgentClient {
    /// Connects and exchanges hellos. An agent of another protocol or another release is
    /// [`ClientError::VersionMismatch`] ([`connect_or_start`] restarts it).
    pub async fn connect(paths: &Paths, client: &str) -> Result<Self, ClientError> {
        let (c, protocol) = Self::handshake(paths, client).await?;
        if protocol != AGENT_PROTOCOL_VERSION || c.agent_version != CLIENT_VERSION {
            return Err(ClientError::VersionMismatch {
                agent: c.agent_version.clone(),
                agent_protocol: protocol,
                ours: CLIENT_VERSION.into(),
                ours_protocol: AGENT_PROTOCOL_VERSION,
            });
        }
        Ok(c)
    }

    /// Connects and exchanges hellos; returns the agent's protocol version, whatever it is.
    async fn handshake(paths: &Paths, client: &str) -> Result<(Self, u32), ClientError> {
        let stream = match UnixStream::connect(paths.socket()).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning(paths.dir.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let (r, w) = stream.into_split();
        let mut c = Self {
            reader: BufReader::new(r),
            writer: w,
            next_id: 0,
            agent_version: String::new(),
            events: VecDeque::new(),
        };
        c.write(&ClientLine::Hello { protocol: AGENT_PROTOCOL_VERSION, client: client.into() }).await?;
        match c.read().await? {
            AgentLine::Hello { protocol, agent_version } => {
                c.agent_version = agent_version;
                Ok((c, protocol))
            }
            AgentLine::Response { error: Some(e), .. } => Err(ClientError::Api(e)),
            other => Err(ClientError::Protocol(format!("expected hello, got {other:?}"))),
        }
    }

    async fn write(&mut self, l: &ClientLine) -> Result<(), ClientError> {
        let mut s = serde_json::to_string(l).map_err(|e| ClientError::Protocol(e.to_string()))?;
        s.push('\n');
        self.writer.write_all(s.as_bytes()).await?;
        Ok(())
    }

    async fn read(&mut self) -> Result<AgentLine, ClientError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the agent closed the connection",
            )));
        }
        serde_json::from_str(&line).map_err(|e| ClientError::Protocol(format!("{e}: {line}")))
    }

    /// Waits for the response to request `id`, keeping events that arrive meanwhile.
    async fn response(&mut self, id: u64) -> Result<Value, ClientError> {
        loop {
            match self.read().await? {
                AgentLine::Response { id: rid, ok, result, error } if rid == id || rid == 0 => {
                    return if ok {
                        Ok(result.unwrap_or(Value::Null))
                    } else {
                        Err(ClientError::Api(error.unwrap_or(LocalError {
                            code: claudemesh_protocol::frames::ErrorCode::Internal,
                            message: "error without detail".into(),
                        })))
                    };
                }
                AgentLine::Event { sub, seq, event } => self.events.push_back((sub, seq, *event)),
                _ => {}
            }
        }
    }

    /// Sends one call and returns its result as JSON (for `--json` output of calls whose
    /// reply is printed as is). Prefer [`AgentClient::request`].
    pub async fn call(&mut self, call: AgentCall) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        self.write(&ClientLine::Request { id, call }).await?;
        self.response(id).await
    }

    /// Sends one call and reads its typed reply (`T` is the reply struct of
    /// `claudemesh_protocol::local` that answers this call, e.g. `StatusReply` for `status`).
    pub async fn request<T: DeserializeOwned>(&mut self, call: AgentCall) -> Result<T, ClientError> {
        let v = self.call(call).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(format!("unexpected reply: {e}")))
    }

    /// Subscribes; events then come from [`AgentClient::next_event`]. The reply carries the
    /// snapshot the events apply to, and its sequence number.
    pub async fn subscribe(
        &mut self,
        topics: Vec<Topic>,
        session: Option<String>,
        mesh: Option<String>,
    ) -> Result<SubscribeReply, ClientError> {
        self.subscribe_with(topics, session, mesh, None).await
    }

    /// As [`AgentClient::subscribe`]; with topic `services` and `service`, the subscription
    /// also carries that service's new log lines (`mcp_log` events).
    pub async fn subscribe_with(
        &mut self,
        topics: Vec<Topic>,
        session: Option<String>,
        mesh: Option<String>,
        service: Option<String>,
    ) -> Result<SubscribeReply, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        self.write(&ClientLine::Subscribe { id, topics, session, mesh, service }).await?;
        let v = self.response(id).await?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Protocol(format!("unexpected subscribe reply: {e}")))
    }

    /// Subscribes to `services` of `mesh` and follows `service`'s log: its new lines then come
    /// from [`AgentClient::next_event`] as `mcp_log` events (with the mesh's other service
    /// events).
    pub async fn follow_service(
        &mut self,
        mesh: Option<String>,
        service: String,
    ) -> Result<SubscribeReply, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        let topics = vec![Topic::Services];
        self.write(&ClientLine::Subscribe { id, topics, session: None, mesh, service: Some(service) })
            .await?;
        let v = self.response(id).await?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Protocol(format!("unexpected subscribe reply: {e}")))
    }

    /// The next event: `(subscription id, sequence number, event)`.
    pub async fn next_event(&mut self) -> Result<(u64, u64, LocalEvent), ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            if let AgentLine::Event { sub, seq, event } = self.read().await? {
                return Ok((sub, seq, *event));
            }
        }
    }
}

/// Connects to the agent, starting it (as `exe agent run`) when none is running, and
/// restarting it when it speaks another protocol version.
pub async fn connect_or_start(paths: &Paths, client: &str, exe: &Path) -> Result<AgentClient, ClientError> {
    match AgentClient::connect(paths, client).await {
        Ok(c) => return Ok(c),
        Err(ClientError::NotRunning(_)) => {}
        Err(ClientError::VersionMismatch { .. }) => {
            // Connect without insisting on our protocol, only to ask the old agent to stop.
            if let Ok((mut old, _)) = AgentClient::handshake(paths, "restart").await {
                let _ = old.call(AgentCall::Shutdown).await;
            }
            for _ in 0..100 {
                if !paths.socket().exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(e) => return Err(e),
    }
    let mut child = spawn_agent(paths, exe)?;
    let secs = 10;
    for _ in 0..(secs * 20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match AgentClient::connect(paths, client).await {
            Ok(c) => return Ok(c),
            Err(ClientError::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        // An agent that already exited will not come up: say why now, not after the timeout.
        // (Exit code 1 with "already running" means another client raced us and won.)
        if let Ok(Some(status)) = child.try_wait() {
            if status.success() || AgentClient::connect(paths, client).await.is_ok() {
                continue;
            }
            break;
        }
    }
    let log = paths.log();
    let tail = std::fs::read_to_string(&log)
        .map(|s| {
            let lines: Vec<&str> = s.lines().rev().take(5).collect();
            format!(":\n  {}", lines.into_iter().rev().collect::<Vec<_>>().join("\n  "))
        })
        .unwrap_or_default();
    Err(ClientError::StartFailed { secs, log: log.display().to_string(), tail })
}

/// The variables of the caller's environment an agent keeps: what locating files, locale and
/// logging need, and the `CLAUDEMESH_*` settings the agent reads. Nothing else passes, so an
/// `ANTHROPIC_API_KEY` or a broker admin token in the shell that first ran `claudemesh` never
/// reaches the long-lived agent.
const AGENT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_CACHE_HOME",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "CLAUDEMESH_CONFIG_DIR",
    "CLAUDEMESH_CA_FILE",
    "CLAUDEMESH_DEBUG",
];

/// Whether the agent keeps variable `name` of its starter's environment ([`AGENT_ENV`], the
/// locale's `LC_*`, and how this host reaches package registries,
/// [`claudemesh_protocol::limits::REGISTRY_ENV`], for the services of the broker it may run).
pub fn agent_keeps_env(name: &str) -> bool {
    AGENT_ENV.contains(&name)
        || name.starts_with("LC_")
        || claudemesh_protocol::limits::REGISTRY_ENV.contains(&name)
}

/// Starts `exe agent run` detached (own process group, output appended to `agent.log`),
/// holding none of this process's other descriptors (a pipe the caller inherited must close
/// when the caller exits, not when the agent does) and only the environment
/// [`agent_keeps_env`] lets through.
pub fn spawn_agent(paths: &Paths, exe: &Path) -> Result<std::process::Child, ClientError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    paths.ensure_dir()?;
    // The log names peers and meshes: this user's only, like everything in the directory.
    let log = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(paths.log())?;
    // A log an older release left readable by others is tightened too.
    log.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let log2 = log.try_clone()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["agent", "run"]).env_clear();
    for (k, v) in std::env::vars_os() {
        if k.to_str().is_some_and(agent_keeps_env) {
            cmd.env(k, v);
        }
    }
    cmd.env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    crate::fds::spawn_without_inherited(|| cmd.spawn()).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_agent_keeps_paths_locale_and_its_settings_only() {
        for keep in
            ["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "RUST_LOG", "CLAUDEMESH_CONFIG_DIR"]
        {
            assert!(super::agent_keeps_env(keep), "{keep}");
        }
        for drop in [
            "ANTHROPIC_API_KEY",
            "CLAUDEMESH_ADMIN_TOKEN",
            "CLAUDEMESH_SESSION_ID",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "LD_PRELOAD",
            "path",
        ] {
            assert!(!super::agent_keeps_env(drop), "{drop}");
        }
    }
}
