//! `claudemesh launch`: run `claude` as a mesh session (DESIGN §2, §6, §7) and clean up after it.
//!
//! Before `claude` starts: the agent runs and holds the mesh; the session is registered under
//! the id Claude Code, the MCP server and the hooks will share (`--session-id` and
//! `CLAUDEMESH_SESSION_ID`, or the id the user resumes); the services the member may use are
//! fetched and each running one becomes a `mesh:<service>` MCP server in `~/.claude.json`,
//! tagged with this launch's pid (entries of launches that died are swept first). Then
//! `claude` runs as launch's child on the same terminal ([`child`]). When it ends (exit,
//! crash, or SIGTERM/SIGHUP to launch, which it gets too) the entries are removed, the session
//! is closed with the agent, the terminal modes are restored and launch exits with `claude`'s
//! code (128 + the signal if one killed it).
//!
//! `CLAUDEMESH_LAUNCH_PID` is this process's pid: the MCP server and hooks take the session id
//! only when the parent of their nearest `claude` ancestor is that pid (`crate::hook::ancestry`),
//! so a `claude -p` run inside the session (which inherits both) is not taken for it.

mod child;
mod plan;
mod session;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use claudemesh_agent::AgentClient;
use claudemesh_protocol::frames::{GroupRole, ServiceStatus};
use claudemesh_protocol::local::{AgentCall, CatalogReply, MeshEntry, RegisterReply};
use serde::de::IgnoredAny;

use crate::cli::LaunchArgs;
use crate::cmd::install::SERVER_NAME;
use crate::launch_entries::{self, Service};
use claudemesh_protocol::text;

use crate::claude_settings;
pub use plan::groups_from_env;

/// How long launch waits for the agent's catalog (a broker that does not answer must not keep
/// `claude` from starting: it then starts without the services).
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing the session may take on the way out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `~/.claude.json` has our MCP server (user scope), which the session needs.
fn mcp_installed() -> anyhow::Result<bool> {
    let path = claude_settings::claude_json()?;
    let root = claude_settings::read_object(&path)?;
    Ok(root.is_some_and(|r| r.get("mcpServers").and_then(|s| s.get(SERVER_NAME)).is_some()))
}

pub async fn run(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    session::check_name(&args)?;
    let groups = crate::cmd::invite_create::parse_groups(&args.groups)?;
    if !mcp_installed()? {
        bail!(
            "Claude Code does not know the claudemesh MCP server yet: run `claudemesh install` first \
             (it adds it to ~/.claude.json and the hooks to ~/.claude/settings.json)"
        );
    }
    let program = plan::find_claude(std::env::var_os("CLAUDEMESH_CLAUDE"), std::env::var_os("PATH"))
        .context(
            "Claude Code's `claude` is not on PATH: install it with `npm install -g \
             @anthropic-ai/claude-code`, or set CLAUDEMESH_CLAUDE to its path",
        )?;
    let terminal = child::Terminal::save();
    let mut signals = child::Signals::catch()?;
    let fresh = uuid::Uuid::new_v4().to_string();
    let pid = std::process::id();
    let p =
        plan::plan(&args, program.into_os_string(), &fresh, pid, &groups, |k| std::env::var_os(k).is_some());
    let mut own = Owned { pid, agent: None, session_id: p.session_id.clone() };
    // Until `claude` runs, Ctrl-C (or any of the four signals) ends launch, cleaned up.
    let ready = tokio::select! {
        r = own.setup(&args, &groups) => Ok(r),
        sig = signals.next() => Err(sig),
    };
    let code = match ready {
        Ok(Ok(())) => child::run(&p, &mut signals).await.map(child::Ended::code),
        Ok(Err(e)) => Err(e),
        Err(sig) => Ok(child::signal_code(sig)),
    };
    terminal.restore();
    own.cleanup().await;
    code
}

/// What this launch made that it must undo: entries tagged with `pid`, the session
/// registered on `agent`.
#[derive(Debug)]
struct Owned {
    pid: u32,
    agent: Option<AgentClient>,
    session_id: String,
}

impl Owned {
    /// Checks the mesh, registers the session, and writes the services' entries.
    async fn setup(&mut self, args: &LaunchArgs, groups: &[GroupRole]) -> anyhow::Result<()> {
        let agent = self.agent.insert(super::agent().await?);
        let meshes: Vec<MeshEntry> = agent.request(AgentCall::Meshes).await?;
        let slugs: Vec<&str> = meshes.iter().map(|m| m.slug.as_str()).collect();
        if slugs.is_empty() {
            bail!("no mesh joined yet: run `claudemesh join <invite>` first");
        }
        if let Some(m) = &args.mesh
            && !slugs.contains(&m.as_str())
        {
            bail!("not a member of mesh {m}; joined: {}", slugs.join(", "));
        }
        let reg = session::register(args, &super::paths(), &self.session_id, groups);
        let _: RegisterReply = agent
            .request(AgentCall::SessionRegister(reg))
            .await
            .context("the agent did not register the session")?;
        let services = running_services(agent, args.mesh.clone()).await;
        self.write_entries(&services)
    }

    /// Sweeps entries of launches that are gone and writes one per service, in one edit.
    fn write_entries(&self, services: &[Service]) -> anyhow::Result<()> {
        let exe = claudemesh_agent::service_unit::running_exe()?;
        let exe = exe.to_str().with_context(|| {
            format!("the path of this program, {}, is not valid UTF-8; entries cannot name it", exe.display())
        })?;
        let path = claude_settings::claude_json()?;
        let pid = self.pid;
        claude_settings::edit(&path, |root| {
            let swept = launch_entries::sweep(root, |p| p == pid || launch_entries::is_live_launch(p));
            let written = launch_entries::install(root, exe, services, pid)
                .map_err(|e| claude_settings::malformed(&path, &e))?;
            Ok((!swept.is_empty() || !written.is_empty(), ()))
        })?;
        Ok(())
    }

    /// Removes this launch's entries and closes the session; problems are only reported
    /// (launch is on its way out with `claude`'s code).
    async fn cleanup(&mut self) {
        let pid = self.pid;
        let removed = claude_settings::claude_json().and_then(|path| {
            claude_settings::edit(&path, |root| {
                let gone = launch_entries::remove_of(root, pid);
                Ok((!gone.is_empty(), ()))
            })
        });
        if let Err(e) = removed {
            eprintln!(
                "claudemesh launch: could not remove its mesh:* entries from ~/.claude.json: {e:#} \
                 (the next launch or `claudemesh doctor` removes them)"
            );
        }
        if let Some(mut agent) = self.agent.take() {
            let call = AgentCall::SessionClose { session_id: self.session_id.clone() };
            // Dropping the connection closes the session too, should the call fail.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, agent.request::<IgnoredAny>(call)).await;
        }
    }
}

/// The running services of `mesh` (or every joined mesh) the member may use. A catalog that
/// cannot be had is reported and `claude` starts without them.
async fn running_services(agent: &mut AgentClient, mesh: Option<String>) -> Vec<Service> {
    let r = tokio::time::timeout(
        CATALOG_TIMEOUT,
        agent.request::<CatalogReply>(AgentCall::ServiceCatalog { mesh }),
    );
    let reply = match r.await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            eprintln!("claudemesh launch: no services as MCP servers this time: {e}");
            return Vec::new();
        }
        Err(_) => {
            eprintln!("claudemesh launch: no services as MCP servers this time: the catalog took too long");
            return Vec::new();
        }
    };
    for err in &reply.errors {
        eprintln!(
            "claudemesh launch: services of mesh {} left out: {}",
            text::name(&err.mesh),
            text::terminal(&err.message)
        );
    }
    reply
        .services
        .into_iter()
        .filter(|s| s.entry.status == ServiceStatus::Running)
        .map(|s| Service { mesh: s.mesh, name: s.entry.name })
        .collect()
}
