//! Broker configuration: paths, public URL and every tunable limit, with the defaults of
//! DESIGN §5–§13. Tests and the CLI build one and hand it to [`crate::serve`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use claudemesh_protocol::limits;

/// Everything the broker needs besides its listener and shutdown signal.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Directory holding `broker.redb` (and, later, services).
    pub data_dir: PathBuf,
    /// File holding the broker admin token (created 0600 when missing).
    pub admin_token_file: PathBuf,
    /// URL members use to reach this broker (for invites and logs).
    pub public_url: Option<String>,
    /// How long undelivered messages are kept.
    pub queue_ttl: Duration,
    /// Most undelivered messages queued for one member before sends to it are refused.
    pub max_queue_per_member: u32,
    /// Sends per second per member, and the burst allowed.
    pub send_rate_per_sec: f64,
    pub send_burst: f64,
    /// Read-only list requests per member (`list_peers`, `list_members`, …): a client that
    /// asks faster gets `rate_limited` instead of making the broker encode answers it never
    /// reads. Burst 200 covers a full 50,000-session `list_peers` walk at link start.
    pub query_rate: crate::rate::RateRule,
    /// Presence changes per member (`session_open`/`update`/`close`), each fanned out to
    /// every connection of the mesh.
    pub presence_rate: crate::rate::RateRule,
    /// Presence events (`peer_*`, `member_online`) one connection is sent, a second and in a
    /// burst. Past it the connection gets one `presence_reset` and no more presence until it
    /// lists again, so a connect storm costs each connection a bounded number of bytes (O(N)
    /// in all) instead of one event per join.
    pub presence_budget: crate::rate::RateRule,
    /// Session ids a member may open for the first time: each is remembered (`session_owner`)
    /// so ids grow at most by this rate, not by how fast a client can invent them.
    pub new_session_rate: crate::rate::RateRule,
    /// Bytes queued to one connection's writer beyond which it is dropped (a member that
    /// does not read is disconnected, not buffered); at least a few largest frames.
    pub out_queue_bytes: usize,
    /// One write to a connection (a frame, a flush, a ping) taking longer than this drops it.
    pub write_timeout: Duration,
    /// Connections per mesh.
    pub max_connections_per_mesh: usize,
    /// Sessions per mesh, and per member.
    pub max_sessions_per_mesh: usize,
    pub max_sessions_per_member: usize,
    /// Reconnect grace: sessions of a dropped connection stay present this long.
    pub reconnect_grace: Duration,
    /// Ping interval and idle timeout of connections.
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// Presence batching interval per connection.
    pub presence_batch: Duration,
    /// How often sessions past their grace are swept.
    pub sweep_interval: Duration,
    /// How often expired messages are swept.
    pub expiry_interval: Duration,
    /// Largest write batch committed at once, in jobs (a send or an ack frame each). Larger
    /// batches spread each commit's fixed cost (the B-tree pages every batch rewrites) over more
    /// messages: under saturation 4,096 gave 1.21-1.30x the DMs/s of 1,024 at 104-113 ms
    /// commits, 16,384 no more at ~540 ms (docs/performance.md, *Changes*). Below saturation a
    /// batch is whatever waited, so this does not add latency at ordinary rates. The memory
    /// sends may hold while they wait is bounded apart
    /// ([`crate::store::writer::MAX_PENDING_BYTES`]).
    pub max_commit_batch: usize,
    /// Memory the store may use to cache pages ([`crate::store::DEFAULT_CACHE_BYTES`]).
    pub store_cache_bytes: usize,
    /// Two agents with one member key: this many replacements of the member's connection by a
    /// different agent instance within `key_in_use_window` stop the one that started later.
    pub key_in_use_replacements: usize,
    /// See `key_in_use_replacements` (120 s).
    pub key_in_use_window: Duration,
    /// From accept until the WebSocket upgrade (and TLS handshake) completes; a connection
    /// slower than this is dropped. Plain HTTP requests (`/health`, `/metrics`) share it.
    pub handshake_timeout: Duration,
    /// From `welcome` until `hello` or `enroll` succeeds; then the connection gets a `timeout`
    /// error and is closed (1008).
    pub hello_timeout: Duration,
    /// Unauthenticated connections in all; a new one beyond it evicts the oldest.
    pub max_unauthenticated: usize,
    /// Unauthenticated connections per source IP; a new one beyond it evicts that IP's oldest.
    pub max_unauthenticated_per_ip: usize,
    /// Bytes a connection may send before it authenticates (HTTP upgrade request and frames).
    pub preauth_bytes: usize,
    /// Serve `/metrics` on this address (`host:port`) instead of the public listener.
    pub metrics_listen: Option<String>,
    /// File (0600) holding a bearer token `/metrics` requires.
    pub metrics_token_file: Option<PathBuf>,
    /// Bytes of presence (the sum of its sessions' field sizes) one member may hold.
    pub max_presence_bytes_per_member: usize,
    /// Shared MCP services (DESIGN §7): runner command, wrap, policy and limits.
    pub services: crate::services::ServicesConfig,
}

impl BrokerConfig {
    /// Defaults for a broker whose state lives in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            admin_token_file: data_dir.join("admin.token"),
            data_dir,
            public_url: None,
            queue_ttl: Duration::from_secs(limits::QUEUE_TTL_SECS),
            max_queue_per_member: 10_000,
            send_rate_per_sec: 50.0,
            send_burst: 200.0,
            query_rate: crate::rate::RateRule { per_sec: 20.0, burst: 200.0 },
            presence_rate: crate::rate::RateRule { per_sec: 20.0, burst: 200.0 },
            presence_budget: crate::rate::RateRule { per_sec: 32.0, burst: 64.0 },
            new_session_rate: crate::rate::RateRule { per_sec: 0.2, burst: 200.0 },
            out_queue_bytes: 4 * limits::MAX_WS_MESSAGE_BYTES,
            write_timeout: Duration::from_secs(15),
            max_connections_per_mesh: 20_000,
            max_sessions_per_mesh: 50_000,
            max_sessions_per_member: 64,
            reconnect_grace: Duration::from_secs(limits::RECONNECT_GRACE_SECS),
            ping_interval: Duration::from_secs(limits::PING_INTERVAL_SECS),
            idle_timeout: Duration::from_secs(limits::IDLE_TIMEOUT_SECS),
            presence_batch: Duration::from_millis(limits::PRESENCE_BATCH_MILLIS),
            sweep_interval: Duration::from_secs(5),
            expiry_interval: Duration::from_secs(60),
            max_commit_batch: 4096,
            store_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            key_in_use_replacements: 3,
            key_in_use_window: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(limits::HANDSHAKE_TIMEOUT_SECS),
            hello_timeout: Duration::from_secs(limits::HELLO_TIMEOUT_SECS),
            max_unauthenticated: 1024,
            max_unauthenticated_per_ip: 64,
            preauth_bytes: limits::MAX_PREAUTH_BYTES,
            max_presence_bytes_per_member: limits::MAX_PRESENCE_BYTES_PER_MEMBER,
            metrics_listen: None,
            metrics_token_file: None,
            services: crate::services::ServicesConfig::default(),
        }
    }

    /// The rule [`crate::keyuse::KeyUse`] judges replacements by.
    pub fn key_use_rule(&self) -> crate::keyuse::KeyUseRule {
        crate::keyuse::KeyUseRule { window: self.key_in_use_window, threshold: self.key_in_use_replacements }
    }

    /// What the pre-authentication gate enforces.
    pub fn gate_limits(&self) -> crate::guard::GateLimits {
        crate::guard::GateLimits {
            handshake_timeout: self.handshake_timeout,
            max_unauthenticated: self.max_unauthenticated,
            max_unauthenticated_per_ip: self.max_unauthenticated_per_ip,
            preauth_bytes: self.preauth_bytes,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("broker.redb")
    }

    /// `<data>/services/`: one directory per mesh, one per service inside (DESIGN §7).
    pub fn services_dir(&self) -> PathBuf {
        self.data_dir.join("services")
    }
}

/// Creates `dir` and any missing parents readable by the broker's user only (0700): it holds
/// the store and the admin token. An existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
