//! The command-line surface of `claudemesh` (DESIGN §12), declared with clap.

use clap::{Args, Parser, Subcommand};

mod services;
mod vault;
pub use services::*;
pub use vault::*;

/// Claude Code sessions on different machines talk to each other through a mesh.
#[derive(Debug, Parser)]
#[command(name = "claudemesh", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// First run in one command: a broker on this machine, the agent, a mesh with you as admin,
    /// claudemesh added to Claude Code. Run again, it changes nothing and shows the mesh.
    Up(UpArgs),
    /// Stop what `up` started (the agent and the local broker); all data is kept.
    Down(JsonArg),
    /// The dashboard: peers, members, messages, events, meshes, services, vault and skills of every mesh, live (`?` lists the
    /// keys).
    Tui,
    /// Run and manage the local agent that holds broker connections and keys.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Create meshes on a broker.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Create, list, revoke and inspect invite links.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Join a mesh with an invite link.
    Join(JoinArgs),
    /// Show the meshes you joined.
    List(JsonArg),
    /// Leave a mesh: tell its broker, drop the link and delete your key for it.
    Leave(LeaveArgs),
    /// List the members of your meshes: name, short id, role, groups, online, sessions.
    Members(MembersArgs),
    /// Remove a member, or change its role and groups (admins).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Deploy a shared MCP server (service) to a mesh's broker: npx, uvx, git, a bundle, or a
    /// command on the broker host (broker admins).
    Deploy(DeployArgs),
    /// Stop and remove a deployed service (its deployer or a mesh admin).
    Undeploy(ServiceNameArgs),
    /// Fetch and restart a service (git: new commit; npx/uvx: resolve the version again).
    Update(ServiceNameArgs),
    /// A service's log: the newest lines, or follow it with -f.
    Logs(LogsArgs),
    /// Show who may use a service, or set it: peer, mesh, group:NAME, groups:a,b, role:admin,
    /// members:alice,bob, or the scope's JSON.
    Scope(ScopeArgs),
    /// The services you may use in your meshes, with their status and tools.
    Catalog(MeshArgs),
    /// A service's tools and their input schemas.
    Schema(SchemaArgs),
    /// Call a tool of a service and print its result.
    Call(CallArgs),
    /// Expose an MCP server on this machine to a mesh (the agent runs it and keeps it running):
    /// `claudemesh serve-mcp NAME -- CMD ARGS…`.
    ServeMcp(ServeMcpArgs),
    /// Your secrets for services' environments (`deploy --env VAR='$vault:KEY'`): set, list,
    /// delete. Your agent encrypts them; the broker only stores ciphertext.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Skills (instructions, SKILL.md) shared with your meshes; `claudemesh mcp` offers them to
    /// Claude Code as prompts.
    #[command(subcommand)]
    Skill(SkillCommand),
    /// Show who is online in your meshes.
    Peers(MeshArgs),
    /// Send a message to a peer (name or id), a member, `@group`, or `*`; prints its id.
    Send(SendArgs),
    /// Where a message you sent stands, per recipient: queued, delivered, seen, expired or failed.
    MessageStatus(MessageStatusArgs),
    /// Show received messages (unseen ones, or all with --all).
    Inbox(InboxArgs),
    /// The agent, your meshes, their links, and unread messages.
    Status(JsonArg),
    /// Check the set-up and say how to fix what is wrong.
    Doctor(JsonArg),
    /// Serve MCP over stdio for Claude Code (started by Claude Code, not by hand): the mesh
    /// tools, or with --service one mesh service's own tools.
    Mcp(McpArgs),
    /// Run `claude` as a mesh session: shared session id, a name, groups, optionally one mesh and
    /// channels; the mesh's running services become MCP servers (`mesh:NAME`) while it runs.
    Launch(LaunchArgs),
    /// Handle a Claude Code hook (run by Claude Code with the hook JSON on stdin; never fails).
    Hook(HookArgs),
    /// Register claudemesh's MCP server with Claude Code (user scope).
    Install(JsonArg),
    /// Remove what `claudemesh install` added.
    Uninstall(JsonArg),
    /// Run the broker (the same code as `claudemesh-broker`): `claudemesh broker serve …`,
    /// `claudemesh broker mesh create …`; `claudemesh broker --help` lists them.
    #[command(disable_help_flag = true)]
    Broker(BrokerArgs),
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Serve exactly this mesh service's tools (what `claudemesh launch` writes as a
    /// `mesh:<service>` MCP server), instead of the mesh tools.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The service's mesh (slug), when you are in several.
    #[arg(long, value_name = "SLUG", requires = "service")]
    pub mesh: Option<String>,
    /// The `claudemesh launch` process that wrote this server's entry (a tag for the owner;
    /// only recorded in debug logs).
    #[arg(long, value_name = "PID")]
    pub launch_pid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The broker's own subcommand and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the local broker listens: 127.0.0.1:7900 (this machine only) by default;
    /// 0.0.0.0:7900 serves a team on your network (with --public-url). Port 0 picks a free one.
    #[arg(long)]
    pub listen: Option<String>,
    /// The URL teammates use to reach the broker, e.g. ws://HOST:7900/ws (invites carry it).
    #[arg(long)]
    pub public_url: Option<String>,
    /// The mesh to create (default: local).
    #[arg(long)]
    pub mesh: Option<String>,
    /// How others see you (default: your configured name, else user@host).
    #[arg(long)]
    pub name: Option<String>,
    /// Do not ask: add claudemesh to Claude Code when `claude` is installed.
    #[arg(long, short)]
    pub yes: bool,
    /// Do not touch Claude Code's settings (no MCP entry, no hooks).
    #[arg(long)]
    pub no_claude: bool,
    /// Do not open the dashboard afterwards.
    #[arg(long)]
    pub no_tui: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Open the session on this mesh only (default: every joined mesh).
    #[arg(long)]
    pub mesh: Option<String>,
    /// How peers see this session (default: your configured name, else the directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// A group the session joins for messaging, as name or name:role (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Push messages into the session as channel events (Claude Code's research-preview
    /// `--dangerously-load-development-channels server:claudemesh`); hooks deliver them otherwise.
    #[arg(long)]
    pub channels: bool,
    /// Arguments for `claude`, after `--`.
    #[arg(last = true)]
    pub claude_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// SessionStart, UserPromptSubmit, PostToolUse or Stop (default: the input's hook_event_name).
    #[arg(allow_hyphen_values = true)]
    pub event: Option<String>,
    /// Ignored, so that no argument can make a hook fail.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// claudemesh://join/<token>, https://<host>/join/<token>, or the bare token.
    pub invite: String,
    /// How others see you (default: your configured name, else user@host).
    #[arg(long)]
    pub name: Option<String>,
    /// Accept plaintext ws:// to a broker that is not this machine (anyone on the network path
    /// can read and alter the connection). Without it such a URL is refused: use wss://.
    #[arg(long)]
    pub insecure_transport: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// The mesh's slug.
    pub slug: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Forget the mesh on this machine only, without telling its broker (gone for good, or
    /// this is a copy of another machine's identity).
    #[arg(long)]
    pub local_only: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Remove a member from the mesh (admins): its key stops working at once.
    Remove(MemberRemoveArgs),
    /// Change a member's role and/or granted groups (admins).
    Set(MemberSetArgs),
    /// Accept a member's changed key, after comparing safety codes (`members --verify`).
    Repin(MemberRepinArgs),
}

/// `member repin` names a member like `member remove` does, and confirms the same way.
pub type MemberRepinArgs = MemberRemoveArgs;

#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Only this mesh (slug).
    #[arg(long)]
    pub mesh: Option<String>,
    /// Show each member's safety code and whether its key is verified: read codes to each
    /// other to confirm you see the same keys.
    #[arg(long)]
    pub verify: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MemberRemoveArgs {
    /// The member: display name, member id, or a unique prefix of the id.
    pub member: String,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MemberSetArgs {
    /// The member: display name, member id, or a unique prefix of the id.
    pub member: String,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    /// The new role.
    #[arg(long, value_parser = ["admin", "member"])]
    pub role: Option<String>,
    /// The member's groups, as name or name:role (repeatable; replaces the whole list).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Only this mesh (slug).
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// A session or member name or id, `@group`, or `*`.
    pub to: String,
    /// The message text, at most 64 KiB (less for text full of quotes, backslashes or control
    /// characters, which take more room once encoded); `-` reads it from stdin (`echo hi |
    /// claudemesh send bob -`). From stdin or a file, one trailing newline is dropped.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub message: Option<String>,
    /// Read the message from this file (as with `-`, one trailing newline is dropped).
    #[arg(long, value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
    /// now (interrupts), next (at the next turn boundary), low (when the model asks).
    #[arg(long, default_value = "next", value_parser = ["now", "next", "low"])]
    pub priority: String,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MessageStatusArgs {
    /// The id `claudemesh send` printed.
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Include messages already seen.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the agent in the foreground (what the service unit and auto-start run).
    Run,
    /// Start the agent in the background (logs to agent.log in the config dir).
    Start(JsonArg),
    /// Stop the running agent.
    Stop(JsonArg),
    /// Show the agent, its meshes, links, sessions, inbox and outbox.
    Status(JsonArg),
    /// Install a systemd user unit (Linux) or launchd agent (macOS) that keeps the agent running.
    Install(JsonArg),
    /// Remove what `agent install` installed.
    Uninstall(JsonArg),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create an invite link (admins): who may join, how often, for how long.
    Create(InviteCreateArgs),
    /// List this mesh's invites and their uses (admins).
    List(MeshArgs),
    /// Revoke an invite so nobody else can join with it (admins).
    Revoke(InviteRevokeArgs),
    /// Verify an invite link's signature and expiry and show what it grants.
    Inspect(InviteInspectArgs),
}

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Create a mesh on a broker and become its first admin.
    Create(MeshCreateArgs),
}

#[derive(Debug, Args)]
pub struct MeshCreateArgs {
    /// The mesh's name: lowercase letters, digits, '-' and '_'.
    pub slug: String,
    /// The broker's WebSocket URL.
    #[arg(long, env = "CLAUDEMESH_BROKER_URL")]
    pub broker: String,
    /// File holding the broker admin token (on the broker host: <data>/admin.token). The token
    /// can also come from $CLAUDEMESH_ADMIN_TOKEN; it is never taken on the command line.
    #[arg(long)]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// How others see you.
    #[arg(long)]
    pub name: Option<String>,
    /// Accept plaintext ws:// to a broker that is not this machine (anyone on the network path
    /// can read and alter the connection). Without it such a URL is refused: use wss://.
    #[arg(long)]
    pub insecure_transport: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InviteCreateArgs {
    /// admin or member.
    #[arg(long, default_value = "member", value_parser = ["admin", "member"])]
    pub role: String,
    /// How many people may join with it.
    #[arg(long, default_value_t = 1)]
    pub uses: u32,
    /// Lifetime, with a unit: e.g. 30m, 24h, 7d, 1h30m (at most a year).
    #[arg(long, default_value = "7d")]
    pub expires: String,
    /// Grant a group, as name or name:role (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    #[arg(long)]
    pub mesh: Option<String>,
    /// The broker address the invite carries (ws://HOST:PORT/ws or wss://…), when teammates
    /// reach the broker at another address than you (default: the broker's --public-url, else
    /// the address you use).
    #[arg(long)]
    pub broker_url: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InviteRevokeArgs {
    pub invite_id: String,
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InviteInspectArgs {
    /// The invite: claudemesh://join/<token>, https://<host>/join/<token>, or the bare token.
    pub link: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
