//! Arguments of the shared-services verbs (`deploy`, `undeploy`, `update`, `logs`, `scope`,
//! `schema`, `call`, `serve-mcp`).

use clap::Args;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["npx", "uvx", "git", "bundle", "command"])))]
pub struct DeployArgs {
    /// The service's name in the mesh (1–64 of lowercase letters, digits, `-` and `_`, starting with a letter or digit).
    pub name: String,
    /// An npm package run with npx: PKG or PKG@VERSION.
    #[arg(long, value_name = "PKG[@VER]")]
    pub npx: Option<String>,
    /// A PyPI package run with uvx: PKG or PKG==VERSION.
    #[arg(long, value_name = "PKG[==VER]")]
    pub uvx: Option<String>,
    /// A git repository the broker clones (and builds: package.json, pyproject.toml, Cargo.toml).
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// The branch, tag or commit of --git.
    #[arg(long, requires = "git")]
    pub rev: Option<String>,
    /// A directory (zipped, without .git, target, node_modules) or a .zip, at most 50 MiB.
    #[arg(long, value_name = "DIR|ZIP")]
    pub bundle: Option<std::path::PathBuf>,
    /// Run a command on the broker host (broker admins): `--command -- CMD ARGS…`.
    #[arg(long, requires = "argv")]
    pub command: bool,
    /// With --command: a file holding the broker admin token (or set $CLAUDEMESH_ADMIN_TOKEN).
    #[arg(long, requires = "command")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The command that starts a git or bundle service, overriding detection (split on spaces,
    /// never run through a shell), e.g. --entry "node dist/index.js".
    #[arg(long, value_name = "CMD")]
    pub entry: Option<String>,
    /// An extra argument for the server (repeatable).
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// An environment variable for the server, KEY=VALUE (repeatable; values are never printed).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Who may use it: peer (you, the default), mesh, group:NAME, groups:a,b, role:admin,
    /// members:alice,bob, or the scope's JSON.
    #[arg(long)]
    pub scope: Option<String>,
    /// What the service is for, shown in the catalog.
    #[arg(long)]
    pub description: Option<String>,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// With --command: the command and its arguments, after `--`.
    #[arg(last = true, id = "argv", value_name = "CMD ARGS")]
    pub argv: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServiceNameArgs {
    /// The service's name.
    pub name: String,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The service's name.
    pub name: String,
    /// How many of the newest lines (default 100, at most 1000).
    #[arg(short = 'n', long = "lines")]
    pub lines: Option<u32>,
    /// Keep printing new lines until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// The service's name.
    pub name: String,
    /// The new scope: peer, mesh, group:NAME, groups:a,b, role:admin|member, members:alice,bob,
    /// or JSON; absent, the scope is shown.
    pub scope: Option<String>,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The service's name.
    pub name: String,
    /// Only this tool.
    pub tool: Option<String>,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The service's name.
    pub service: String,
    /// The tool to call.
    pub tool: String,
    /// An argument, key=value; the value is taken as JSON when it parses (42, true, [1]),
    /// else as a string (repeatable).
    #[arg(long = "arg", value_name = "K=V", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// All arguments as one JSON object (`--json` is the output flag); --arg values are added
    /// to it.
    #[arg(long = "json-args", alias = "input", value_name = "JSON")]
    pub json_args: Option<String>,
    /// How long the tool may run, in milliseconds (default 30000, at most 300000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    /// Print the whole MCP result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeMcpArgs {
    /// The service's name in the mesh.
    pub name: String,
    /// Who may use it (as for `deploy`); default peer (only you).
    #[arg(long)]
    pub scope: Option<String>,
    /// An environment variable for the server, KEY=VALUE (repeatable; kept in config.json,
    /// never printed).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// What the service is for, shown in the catalog.
    #[arg(long)]
    pub description: Option<String>,
    /// Stay in the foreground; Ctrl-C stops hosting it. By default the agent keeps it running.
    #[arg(long)]
    pub foreground: bool,
    /// Stop hosting the service (unregister it and stop its server).
    #[arg(long, conflicts_with = "argv")]
    pub stop: bool,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// The server's command and arguments, after `--` (run directly, never through a shell).
    #[arg(last = true, id = "argv", value_name = "CMD ARGS", required_unless_present = "stop")]
    pub argv: Vec<String>,
}
