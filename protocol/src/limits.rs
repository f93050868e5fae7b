//! The numeric limits of DESIGN §13 and §5–§7, named once so both sides agree on them.

/// Wire protocol version spoken between agents and brokers: 2 verifies keys end to end; 3 adds
/// `member_online` and `presence_reset` (the presence budget), which a version-2 agent cannot
/// decode; 4 has the broker push before its commit's sync, which is safe only with agents that
/// seal every resend again and drop a resealed copy as a duplicate. A broker refuses an agent
/// older than this with a message saying what to upgrade.
pub const PROTOCOL_VERSION: u32 = 4;
/// The oldest broker an agent of [`PROTOCOL_VERSION`] talks to: version 3 (it pushes after the
/// sync, which version-4 agents handle as well), so upgrading an agent does not wait for its
/// team's broker.
pub const MIN_BROKER_PROTOCOL: u32 = 3;
/// Version of the agent's local socket protocol (DESIGN §10).
pub const AGENT_PROTOCOL_VERSION: u32 = 1;

/// Largest WebSocket frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// The WebSocket layer's cap on one message, on both sides: twice [`MAX_FRAME_BYTES`], so a
/// frame between the two is read whole and refused by size (`too_large`) while the link stays;
/// only a frame beyond this closes the connection (1009).
pub const MAX_WS_MESSAGE_BYTES: usize = 2 * MAX_FRAME_BYTES;
/// Bytes a connection may send the broker before it authenticates: the HTTP upgrade request
/// and every frame up to its `hello`/`enroll` (which are well under 4 KiB). More closes it
/// with `too_large` and close code 1009.
pub const MAX_PREAUTH_BYTES: usize = 64 * 1024;
/// Seconds from accept until the WebSocket upgrade completes (broker default).
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// Seconds from `welcome` until `hello`/`enroll` succeeds (broker default).
pub const HELLO_TIMEOUT_SECS: u64 = 10;
/// Bytes of presence one member may hold over all its sessions (broker default), counted as
/// the sum of [`crate::names::presence_bytes`] of each session.
pub const MAX_PRESENCE_BYTES_PER_MEMBER: usize = 256 * 1024;
/// Most sessions one `peers` page carries, and the page size when `list_peers` names none.
pub const MAX_PEERS_PAGE: usize = 1000;
/// Most members one paged `members` answer carries (each is about 1 KB with its signed
/// statements, so a page stays far under [`MAX_FRAME_BYTES`]); agents ask for pages of this
/// size. An unpaged directory passed the 8 MiB WebSocket cap at about 8,000 members.
pub const MAX_MEMBERS_PAGE: usize = 500;
/// Largest message body (plaintext, UTF-8 bytes) a sender may put in a box.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest base64 ciphertext of one envelope: a 64 KiB body, up to 16 KiB of other plaintext
/// fields (session, name, reply_to, meta) and the 16-byte MAC, base64-encoded. The broker
/// cannot see the body, so this is how it enforces the body limit.
pub const MAX_ENVELOPE_CIPHERTEXT_B64: usize = (MAX_BODY_BYTES + 16 * 1024 + 16).div_ceil(3) * 4;
/// Sum of all envelopes' ciphertext in one `send`.
pub const MAX_SEND_ENVELOPE_BYTES: usize = MAX_FRAME_BYTES;
/// Longest name (mesh slug, service, group): see [`crate::names`].
pub const MAX_NAME_LEN: usize = 64;
/// Longest vault key.
pub const MAX_VAULT_KEY_LEN: usize = 128;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest session summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 512;
/// Longest free-text field such as a cwd, hostname, model or channel, in bytes.
pub const MAX_SHORT_TEXT_BYTES: usize = 1024;
/// Most groups a member or session may declare.
pub const MAX_GROUPS: usize = 64;
/// Former members (left or removed) a `members` reply lists, newest first.
pub const MAX_FORMER_MEMBERS: usize = 256;
/// Most recipients' envelopes in one send.
pub const MAX_ENVELOPES: usize = 10_000;
/// Most message ids in one `client_ack` or `receipt`.
pub const MAX_IDS_PER_ACK: usize = 4096;

/// How long the broker queues an undelivered message before marking it expired.
pub const QUEUE_TTL_SECS: u64 = 7 * 24 * 3600;
/// A reconnect within this window with the same session ids is the same peer.
pub const RECONNECT_GRACE_SECS: u64 = 90;
/// Interval of WebSocket pings from either side.
pub const PING_INTERVAL_SECS: u64 = 30;
/// A connection silent for this long is closed.
pub const IDLE_TIMEOUT_SECS: u64 = 75;
/// Presence events per connection are flushed at most this often.
pub const PRESENCE_BATCH_MILLIS: u64 = 100;

/// Services a mesh may host (configurable on the broker; this is the default).
pub const DEFAULT_MAX_SERVICES_PER_MESH: usize = 20;
/// Largest uploaded bundle.
pub const MAX_BUNDLE_BYTES: u64 = 50 * 1024 * 1024;
/// Address-space limit of a service child, by default.
pub const DEFAULT_CHILD_ADDRESS_SPACE_BYTES: u64 = 512 * 1024 * 1024;
/// Default and maximum `mcp_call` timeouts.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 30_000;
pub const MAX_CALL_TIMEOUT_MS: u64 = 300_000;
/// Call results larger than this are truncated with a notice.
pub const MAX_CALL_RESULT_BYTES: usize = 1024 * 1024;
/// Lines kept per service in its log ring.
pub const SERVICE_LOG_RING_LINES: usize = 1000;

/// Largest vault value (plaintext bytes; a file secret such as a service-account JSON or a
/// kubeconfig fits).
pub const MAX_VAULT_VALUE_BYTES: usize = 64 * 1024;
/// Largest base64 ciphertext of a vault value: the value plus its 16-byte MAC.
pub const MAX_VAULT_CIPHERTEXT_B64: usize = (MAX_VAULT_VALUE_BYTES + 16).div_ceil(3) * 4;
/// Vault entries one member may keep in one mesh.
pub const MAX_VAULT_ENTRIES: usize = 200;
/// Longest vault entry or skill description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Largest skill instructions (`SKILL.md`), in bytes.
pub const MAX_SKILL_INSTRUCTIONS_BYTES: usize = 64 * 1024;
/// Most extra files one skill may carry.
pub const MAX_SKILL_FILES: usize = 32;
/// Largest skill as a whole: instructions plus every file, in bytes.
pub const MAX_SKILL_BYTES: usize = 1024 * 1024;
/// Most tags on a skill, and the longest tag in characters.
pub const MAX_SKILL_TAGS: usize = 16;
pub const MAX_SKILL_TAG_CHARS: usize = 32;
/// Skills one mesh may hold.
pub const MAX_SKILLS_PER_MESH: usize = 500;

/// Largest single line on the agent socket.
pub const MAX_AGENT_LINE_BYTES: usize = MAX_FRAME_BYTES;
/// Longest local session id (bytes; no control characters).
pub const MAX_SESSION_ID_BYTES: usize = 256;
/// Longest idempotency key of a local `send`.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// How long the agent remembers an idempotency key.
pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;
/// Requests one socket connection may have in progress at once; more wait for a free slot.
pub const MAX_CONCURRENT_REQUESTS_PER_CONN: usize = 64;
/// How long a take (`inbox` with `take`, `hook`) holds its messages for a `confirm`; after
/// it they are unseen again.
pub const LEASE_MILLIS: u64 = 5_000;
/// A message pushed as a channel notification and not seen within this long is shown by the
/// session's next hook (Claude Code confirms no notification and drops some).
pub const PUSH_GRACE_MILLIS: u64 = 10_000;
/// How long a message addressed to one session waits for that session to come back before it
/// goes to the member's next session (configurable in the agent's `config.json`).
pub const DEFAULT_SESSION_GRACE_SECS: u64 = 600;
/// Sends a `sent` call returns when it names no `limit`.
pub const SENT_DEFAULT_LIMIT: u32 = 500;
/// Most sends one `sent` reply carries (a larger `limit` is cut to this).
pub const SENT_MAX_LIMIT: u32 = 10_000;
/// Most messages one `inbox` read (no `take`) returns, whatever its `limit`.
pub const INBOX_PAGE_MAX: u32 = 1000;
/// Most bytes of message bodies one `inbox` read returns (at least one message always).
pub const INBOX_PAGE_MAX_BYTES: usize = 2 * 1024 * 1024;
/// How long the agent keeps a received message once it was seen, by default (its
/// `inbox_ttl_secs`): as long as the broker queues one.
pub const DEFAULT_INBOX_TTL_SECS: u64 = QUEUE_TTL_SECS;
/// How often the agent prunes seen messages past their TTL, by default (also once at start).
pub const DEFAULT_INBOX_PRUNE_SECS: u64 = 3600;
/// How long the agent remembers a received message's sender and client message id (and its
/// msg_id) after the message itself was pruned, counted from when it was sent or received,
/// whichever is later: the queue TTL and a day of clock skew. A message sent longer ago than
/// this is refused as a replay, so a pruned message can never be shown again.
pub const REPLAY_WINDOW_SECS: u64 = QUEUE_TTL_SECS + 24 * 3600;
/// Bytes of replies and events queued for one agent-socket client that does not read: a line
/// that would go past it (while others wait) disconnects the client.
pub const MAX_AGENT_CLIENT_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// `check_messages` page size, by default.
pub const CHECK_MESSAGES_DEFAULT_LIMIT: u32 = 20;
/// Most characters of message bodies one `check_messages` page carries by default: about
/// 15k tokens, under Claude Code's default MCP output limit of 25k (`MAX_MCP_OUTPUT_TOKENS`).
pub const CHECK_MESSAGES_MAX_CHARS: u32 = 60_000;
/// Most characters one hook puts in `additionalContext` (Claude Code moves longer hook output
/// to a file and shows the model only a preview).
pub const HOOK_CONTEXT_MAX_CHARS: usize = 8_000;
/// How long a client of the agent waits for one reply before giving up on the call.
pub const AGENT_CALL_TIMEOUT_MILLIS: u64 = 12_000;
/// How often `claudemesh mcp` checks that its agent still knows its session, re-registering
/// after an agent restart.
pub const MCP_KEEPALIVE_MILLIS: u64 = 1_000;

/// Close code sent to a connection replaced by a newer hello of the same member.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code for a policy violation (failed hello or enroll).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for a frame too large (1009), also for too much sent before hello.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a peer that broke the WebSocket framing rules (RFC 6455 §7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message that is not UTF-8 (RFC 6455 §7.4.1).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code "try again later" (1013): an unauthenticated connection evicted at a cap.
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code on broker shutdown.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Environment variables that say how this host reaches package registries (proxies, CA
/// bundles, mirrors). The agent keeps them for the broker it runs, the broker for its runners,
/// and the runner gives them to a service's preparation steps (npm, uv, git), never to the
/// service. Without them a host behind a TLS-inspecting proxy or with a registry mirror cannot
/// install anything.
pub const REGISTRY_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "npm_config_registry",
    "npm_config_cafile",
    "npm_config_globalconfig",
    "NPM_CONFIG_REGISTRY",
    "NPM_CONFIG_CAFILE",
    "NPM_CONFIG_GLOBALCONFIG",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_FIND_LINKS",
    "UV_NATIVE_TLS",
    "UV_SYSTEM_CERTS",
];
