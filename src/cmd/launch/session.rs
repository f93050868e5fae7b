//! The session `claudemesh launch` registers with the agent before `claude` starts: the same
//! id, name, groups and meshes the MCP server registers a moment later (the agent then only
//! adds it as a second holder), so peers see the session from the start and messages for it
//! wait for it rather than for the member.

use claudemesh_agent::Paths;
use claudemesh_protocol::frames::{GroupRole, PeerType, SessionInfo, SessionStatus};
use claudemesh_protocol::local::SessionRegister;
use claudemesh_protocol::names::validate_display_name;

use crate::cli::LaunchArgs;

/// The `channel` the MCP server declares (`crate::mcp`): the same here, so re-registering
/// changes nothing.
const CHANNEL: &str = "claudemesh";

/// The name the user chose: `--name`, else an inherited `CLAUDEMESH_NAME` (trimmed, as
/// `claudemesh mcp` reads it), with where it came from.
fn chosen_name(args: &LaunchArgs) -> Option<(String, &'static str)> {
    match &args.name {
        Some(n) => Some((n.trim().to_string(), "--name")),
        None => std::env::var("CLAUDEMESH_NAME")
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .map(|n| (n, "CLAUDEMESH_NAME")),
    }
}

/// Checks the chosen session name as the agent checks it at register, so a bad one fails here
/// rather than inside Claude Code.
pub fn check_name(args: &LaunchArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some((name, from)) = chosen_name(args) else { return Ok(()) };
    let raw = args.name.clone().unwrap_or_else(|| name.clone());
    validate_display_name(&name)
        .with_context(|| format!("{from} {raw:?} cannot be a session name; choose another"))
}

/// The registration of session `sid`: a chosen name as is, else the configured name or the
/// directory's (then the agent may make it distinct, `repo-2`, as it does for the MCP server).
pub fn register(args: &LaunchArgs, paths: &Paths, sid: &str, groups: &[GroupRole]) -> SessionRegister {
    let cwd = std::env::current_dir().ok().map(|d| d.display().to_string());
    let chosen = chosen_name(args).map(|(n, _)| n);
    let default_name = chosen.is_none();
    let display_name = chosen
        .or_else(|| claudemesh_agent::Config::load(paths).ok().and_then(|c| c.display_name))
        .filter(|n| !n.is_empty())
        .or_else(|| {
            let dir = cwd.as_deref().map(std::path::Path::new).and_then(|c| c.file_name());
            dir.map(|f| f.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "claude".into());
    let hostname =
        std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
    SessionRegister {
        meshes: args.mesh.iter().cloned().collect(),
        session: SessionInfo {
            session_id: sid.to_string(),
            display_name,
            cwd,
            pid: Some(std::process::id()),
            hostname,
            peer_type: PeerType::Ai,
            channel: Some(CHANNEL.into()),
            groups: groups.to_vec(),
            status: SessionStatus::Idle,
            ..Default::default()
        },
        // Not known before `claude` starts; the MCP server's registration brings it.
        claude_pid: None,
        default_name,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_name_is_kept_and_a_default_one_may_be_suffixed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().to_path_buf());
        let mut a = LaunchArgs {
            mesh: Some("team".into()),
            name: Some(" bob ".into()),
            groups: vec![],
            channels: false,
            claude_args: vec![],
        };
        let g = [GroupRole::new("dev")];
        let r = register(&a, &paths, "sid", &g);
        assert_eq!((r.session.display_name.as_str(), r.default_name), ("bob", false));
        assert_eq!((r.meshes, r.session.groups, r.claude_pid), (vec!["team".to_string()], g.to_vec(), None));
        assert_eq!(r.session.channel.as_deref(), Some("claudemesh"));
        a.name = None;
        if std::env::var_os("CLAUDEMESH_NAME").is_none() {
            assert!(register(&a, &paths, "sid", &[]).default_name);
        }
        a.name = Some("tab\there".into());
        assert!(check_name(&a).unwrap_err().to_string().contains("--name"));
    }
}
