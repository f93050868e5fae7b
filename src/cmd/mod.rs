//! Verb dispatch: one module per CLI verb, and what verbs share (runtime, agent connection).

mod agent_install;
mod agent_run;
mod agent_start;
mod agent_status;
mod agent_stop;
mod agent_uninstall;
mod call;
mod catalog;
mod deploy;
mod doctor;
mod down;
mod hook;
mod inbox;
mod install;
mod invite_create;
mod invite_inspect;
mod invite_list;
mod invite_revoke;
mod join;
pub mod launch;
mod leave;
mod list;
mod logs;
mod mcp;
mod member_remove;
mod member_repin;
mod member_set;
mod members;
mod mesh_create;
mod message_status;
mod peers;
mod schema;
mod scope;
mod send;
mod serve_mcp;
pub mod service_args;
mod skill_files;
mod skill_get;
pub mod skill_list;
mod skill_remove;
mod skill_share;
mod status;
mod tui;
mod undeploy;
mod uninstall;
mod up;
mod update;
mod vault_delete;
mod vault_list;
mod vault_set;

use std::process::ExitCode;

use claudemesh_agent::Paths;

use claudemesh_agent::ClientError;
use claudemesh_protocol::frames::ErrorCode;

use crate::cli::{
    AgentCommand, Cli, Command, InviteCommand, MemberCommand, MeshCommand, SkillCommand, VaultCommand,
};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(a) => block_on(up::run(a)),
        Command::Down(a) => block_on(down::run(a.json)),
        Command::Tui => tui::run(),
        Command::Agent(AgentCommand::Run) => agent_run::run(),
        Command::Agent(AgentCommand::Start(a)) => block_on(agent_start::run(a.json)),
        Command::Agent(AgentCommand::Stop(a)) => block_on(agent_stop::run(a.json)),
        Command::Agent(AgentCommand::Status(a)) => block_on(agent_status::run(a.json)),
        Command::Agent(AgentCommand::Install(a)) => agent_install::run(a.json),
        Command::Agent(AgentCommand::Uninstall(a)) => agent_uninstall::run(a.json),
        Command::Invite(InviteCommand::Inspect(args)) => invite_inspect::run(&args),
        Command::Invite(InviteCommand::Create(a)) => block_on(invite_create::run(a)),
        Command::Invite(InviteCommand::List(a)) => block_on(invite_list::run(a)),
        Command::Invite(InviteCommand::Revoke(a)) => block_on(invite_revoke::run(a)),
        Command::Mesh(MeshCommand::Create(a)) => block_on(mesh_create::run(a)),
        Command::Join(a) => block_on(join::run(a)),
        Command::List(a) => list::run(a.json),
        Command::Leave(a) => block_on(leave::run(a)),
        Command::Members(a) => block_on(members::run(a)),
        Command::Member(MemberCommand::Remove(a)) => block_on(member_remove::run(a)),
        Command::Member(MemberCommand::Set(a)) => block_on(member_set::run(a)),
        Command::Member(MemberCommand::Repin(a)) => block_on(member_repin::run(a)),
        Command::Deploy(a) => block_on(deploy::run(a)),
        Command::Undeploy(a) => block_on(undeploy::run(a)),
        Command::Update(a) => block_on(update::run(a)),
        Command::Logs(a) => block_on(logs::run(a)),
        Command::Scope(a) => block_on(scope::run(a)),
        Command::Catalog(a) => block_on(catalog::run(a)),
        Command::Schema(a) => block_on(schema::run(a)),
        Command::Call(a) => block_on(call::run(a)),
        Command::ServeMcp(a) => block_on(serve_mcp::run(a)),
        Command::Vault(VaultCommand::Set(a)) => block_on(vault_set::run(a)),
        Command::Vault(VaultCommand::List(a)) => block_on(vault_list::run(a)),
        Command::Vault(VaultCommand::Delete(a)) => block_on(vault_delete::run(a)),
        Command::Skill(SkillCommand::Share(a)) => block_on(skill_share::run(a)),
        Command::Skill(SkillCommand::List(a)) => block_on(skill_list::run(a)),
        Command::Skill(SkillCommand::Get(a)) => block_on(skill_get::run(a)),
        Command::Skill(SkillCommand::Remove(a)) => block_on(skill_remove::run(a)),
        Command::Peers(a) => block_on(peers::run(a)),
        Command::Send(a) => block_on(send::run(a)),
        Command::MessageStatus(a) => block_on(message_status::run(a)),
        Command::Inbox(a) => block_on(inbox::run(a)),
        Command::Status(a) => block_on(status::run(a.json)),
        Command::Doctor(a) => block_on(doctor::run(a.json)),
        Command::Mcp(a) => mcp::run(a),
        Command::Hook(a) => Ok(hook::run(a)),
        Command::Launch(a) => block_on(launch::run(a)),
        Command::Install(a) => install::run(a.json),
        Command::Uninstall(a) => uninstall::run(a.json),
        Command::Broker(a) => Ok(claudemesh_broker::cli::main_with(
            std::iter::once(std::ffi::OsString::from("claudemesh broker")).chain(a.args),
        )),
    }
}

/// Connects to the agent, starting it if none runs.
pub async fn agent() -> anyhow::Result<claudemesh_agent::AgentClient> {
    let exe = std::env::current_exe()?;
    Ok(claudemesh_agent::connect_or_start(&paths(), "cli", &exe).await?)
}

/// Runs a verb on a small runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

pub fn paths() -> Paths {
    Paths::from_env()
}

/// Asks `question` on the terminal and whether the answer is `expected`. Without a terminal
/// it refuses, naming `--yes`, since nobody can answer.
pub fn confirm(question: &str, expected: &str, what: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{what}; pass --yes to confirm");
    }
    crate::out::out!("{question} ")?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == expected)
}

/// The word a protocol enum is written as on the wire (`connected`, `idle`, `now`, `seen`), for
/// text output: the protocol's enums serialize as one snake_case string.
pub fn word(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// An agent error with what to do next appended, when `next` has advice for its code (the
/// agent's and broker's messages say what failed, not which verb to run about it).
pub fn advise(e: ClientError, next: impl Fn(ErrorCode) -> Option<String>) -> anyhow::Error {
    if let ClientError::Api(le) = &e
        && let Some(n) = next(le.code)
    {
        let stop = if le.message.ends_with(['.', '!', '?']) { "" } else { ";" };
        return anyhow::anyhow!("{}{stop} {n}", le.message);
    }
    e.into()
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
