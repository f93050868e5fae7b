//! `claudemesh launch`: run `claude` as a mesh session (DESIGN §6, §12). It gives the session
//! an id that Claude Code, the MCP server and the hooks all share (`--session-id` and
//! `CLAUDEMESH_SESSION_ID`), a name, optionally one mesh and push over channels, then replaces
//! itself with `claude` (exec, argv only), so the terminal, signals and exit code are Claude's.
//!
//! It also sets `CLAUDEMESH_LAUNCH_PID` to its own pid, which after the exec is `claude`'s: the
//! MCP server and hooks take the session id only when their nearest `claude` ancestor is that
//! process, so a `claude -p` run inside the session (which inherits both) is not taken for it.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{Context, bail};
use claudemesh_protocol::local::{AgentCall, MeshEntry};
use claudemesh_protocol::names::validate_display_name;

use crate::cli::LaunchArgs;
use crate::cmd::install::SERVER_NAME;

/// Claude Code flags that choose the session themselves: then `--session-id` is not passed.
const SESSION_FLAGS: &[&str] = &["--resume", "-r", "--continue", "-c", "--session-id", "--fork-session"];

/// What to run: the program, its arguments and the environment added for it.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub program: OsString,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
}

/// Builds the `claude` command line for `args`, session id `sid` and this process's pid
/// `launch_pid` (which `claude` keeps: it is exec'd).
pub fn plan(args: &LaunchArgs, program: OsString, sid: &str, launch_pid: u32) -> Plan {
    let mut argv = Vec::new();
    let chooses_session =
        args.claude_args.iter().any(|a| SESSION_FLAGS.contains(&a.split('=').next().unwrap_or(a.as_str())));
    if !chooses_session {
        argv.extend(["--session-id".to_string(), sid.to_string()]);
    }
    let mut env =
        vec![("CLAUDEMESH_SESSION_ID", sid.to_string()), ("CLAUDEMESH_LAUNCH_PID", launch_pid.to_string())];
    if args.channels {
        argv.extend(["--dangerously-load-development-channels".to_string(), format!("server:{SERVER_NAME}")]);
        env.push(("CLAUDEMESH_PUSH", "1".into()));
    }
    if let Some(n) = &args.name {
        env.push(("CLAUDEMESH_NAME", n.clone()));
    }
    if let Some(m) = &args.mesh {
        env.push(("CLAUDEMESH_MESH", m.clone()));
    }
    argv.extend(args.claude_args.iter().cloned());
    Plan { program, args: argv, env }
}

/// The `claude` to run: `$CLAUDEMESH_CLAUDE`, else `claude` from PATH.
fn claude_program() -> OsString {
    std::env::var_os("CLAUDEMESH_CLAUDE").filter(|p| !p.is_empty()).unwrap_or_else(|| "claude".into())
}

/// Whether `~/.claude.json` has our MCP server (user scope), which the session needs.
fn mcp_installed() -> anyhow::Result<bool> {
    let path = crate::claude_settings::claude_json()?;
    let root = crate::claude_settings::read_object(&path)?;
    Ok(root.is_some_and(|r| r.get("mcpServers").and_then(|s| s.get(SERVER_NAME)).is_some()))
}

/// The session name this launch gives (`--name`, else an inherited `CLAUDEMESH_NAME`), checked
/// as the agent checks it at register, so a bad one fails here rather than inside Claude Code.
fn check_name(args: &LaunchArgs) -> anyhow::Result<()> {
    let (name, from) = match &args.name {
        Some(n) => (n.clone(), "--name"),
        None => match std::env::var("CLAUDEMESH_NAME") {
            Ok(n) if !n.trim().is_empty() => (n, "CLAUDEMESH_NAME"),
            _ => return Ok(()),
        },
    };
    // `claudemesh mcp` trims the name before registering it.
    validate_display_name(name.trim())
        .with_context(|| format!("{from} {name:?} cannot be a session name; choose another"))
}

pub async fn run(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    check_name(&args)?;
    if !mcp_installed()? {
        bail!(
            "Claude Code does not know the claudemesh MCP server yet: run `claudemesh install` first \
             (it adds it to ~/.claude.json and the hooks to ~/.claude/settings.json)"
        );
    }
    // The agent must run and hold the mesh before Claude Code starts the MCP server.
    let mut agent = super::agent().await?;
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
    drop(agent);
    let sid = uuid::Uuid::new_v4().to_string();
    let p = plan(&args, claude_program(), &sid, std::process::id());
    let mut cmd = std::process::Command::new(&p.program);
    cmd.args(&p.args);
    for (k, v) in &p.env {
        cmd.env(k, v);
    }
    exec(cmd, &p.program)
}

#[cfg(unix)]
fn exec(mut cmd: std::process::Command, program: &OsString) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    // exec only returns on failure.
    let err = cmd.exec();
    Err(err).with_context(|| {
        format!(
            "cannot run {}: install Claude Code (npm install -g @anthropic-ai/claude-code) or set \
             CLAUDEMESH_CLAUDE to its path",
            program.to_string_lossy()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> LaunchArgs {
        LaunchArgs {
            mesh: None,
            name: None,
            channels: false,
            claude_args: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn shares_the_session_id_with_claude_and_the_mcp_server() {
        let p = plan(&args(&["-p", "hi"]), "claude".into(), "sid-1", 4242);
        assert_eq!(p.args, ["--session-id", "sid-1", "-p", "hi"]);
        assert_eq!(
            p.env,
            [("CLAUDEMESH_SESSION_ID", "sid-1".to_string()), ("CLAUDEMESH_LAUNCH_PID", "4242".to_string())]
        );
    }

    #[test]
    fn resuming_keeps_claudes_own_session() {
        for flag in ["--resume", "-c", "--session-id=abc", "--continue"] {
            let p = plan(&args(&[flag]), "claude".into(), "sid-1", 1);
            assert!(!p.args.iter().any(|a| a == "sid-1"), "{flag}: {:?}", p.args);
            assert_eq!(p.args.last().unwrap(), flag);
        }
    }

    #[test]
    fn name_mesh_and_channels() {
        let mut a = args(&[]);
        a.name = Some("alice".into());
        a.mesh = Some("team".into());
        a.channels = true;
        let p = plan(&a, "claude".into(), "s", 1);
        assert!(
            p.args.windows(2).any(|w| w == ["--dangerously-load-development-channels", "server:claudemesh"])
        );
        for (k, v) in [("CLAUDEMESH_NAME", "alice"), ("CLAUDEMESH_MESH", "team"), ("CLAUDEMESH_PUSH", "1")] {
            assert!(p.env.contains(&(k, v.to_string())), "{k}");
        }
    }
}
