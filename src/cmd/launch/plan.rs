//! What `claudemesh launch` runs, decided before anything is run: which `claude`, its
//! arguments, the environment added for it, and the session id Claude Code, the MCP servers
//! and the hooks share. Pure but for reading the environment, so every rule is unit-tested.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use claudemesh_protocol::frames::GroupRole;

use crate::cli::LaunchArgs;
use crate::cmd::install::SERVER_NAME;

/// How long Claude Code waits for an MCP server to start (ms) unless the user set
/// `MCP_TIMEOUT`: a service's first call may start it on the broker.
pub const MCP_TIMEOUT_MS: &str = "30000";
/// How many tokens of one MCP tool result Claude Code keeps unless the user set
/// `MAX_MCP_OUTPUT_TOKENS`: services return up to 1 MiB.
pub const MAX_MCP_OUTPUT_TOKENS: &str = "50000";

/// What to run: the program, its arguments, the environment added for it, and the session id.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub program: OsString,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    /// The id the session is registered under (`CLAUDEMESH_SESSION_ID`).
    pub session_id: String,
}

/// What the user's own `claude` arguments say about the session id.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionChoice {
    /// None of them: launch passes `--session-id` with its fresh id.
    Ours,
    /// They name it (`--session-id ID`, `--resume ID`, `-r ID`): that id is shared, lowercased.
    Given(String),
    /// Claude picks it (`--continue`, or `--resume` with a search term or nothing): it cannot be
    /// known beforehand, so the MCP server and hooks share launch's id among themselves.
    Claudes,
}

/// Reads `args` (the user's `claude` arguments) for the session they choose.
pub fn session_choice(args: &[String]) -> SessionChoice {
    let uuid = |v: &str| uuid::Uuid::parse_str(v.trim()).ok().map(|u| u.hyphenated().to_string());
    let mut resumes = false;
    let mut forks = false;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        match flag {
            "--session-id" => {
                let v = inline.or_else(|| it.next().cloned()).unwrap_or_default();
                if let Some(id) = uuid(&v) {
                    return SessionChoice::Given(id);
                }
            }
            "--resume" | "-r" => {
                resumes = true;
                // The value is optional: only a UUID is an id (otherwise a search term, or none).
                let v = inline.or_else(|| it.next_if(|n| !n.starts_with('-')).cloned());
                if let Some(id) = v.as_deref().and_then(uuid)
                    && !args.iter().any(|x| x == "--fork-session")
                {
                    return SessionChoice::Given(id);
                }
            }
            "--continue" | "-c" => resumes = true,
            "--fork-session" => forks = true,
            _ => {}
        }
    }
    // A fork is a new session, and Claude Code takes `--session-id` for it.
    if resumes && !forks { SessionChoice::Claudes } else { SessionChoice::Ours }
}

/// `groups` as `CLAUDEMESH_GROUPS` carries them: `name` or `name:role`, comma-separated.
pub fn groups_env(groups: &[GroupRole]) -> String {
    let one = |g: &GroupRole| match &g.role {
        Some(r) => format!("{}:{r}", g.name),
        None => g.name.clone(),
    };
    groups.iter().map(one).collect::<Vec<_>>().join(",")
}

/// `CLAUDEMESH_GROUPS` as [`groups_env`] wrote it, read back (by the MCP server, so that
/// its registration keeps the groups launch registered); invalid parts are left out.
pub fn groups_from_env(raw: &str) -> Vec<GroupRole> {
    let parts: Vec<String> =
        raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    parts
        .iter()
        .filter_map(|p| crate::cmd::invite_create::parse_groups(std::slice::from_ref(p)).ok())
        .flatten()
        .collect()
}

/// Builds the `claude` command line for `args`, a fresh session id `fresh`, this process's pid
/// `launch_pid` (`claude`'s parent) and `groups`; `is_set(VAR)` says whether the user's
/// environment already has VAR (then launch leaves it as is).
pub fn plan(
    args: &LaunchArgs,
    program: OsString,
    fresh: &str,
    launch_pid: u32,
    groups: &[GroupRole],
    is_set: impl Fn(&str) -> bool,
) -> Plan {
    let mut argv = Vec::new();
    let session_id = match session_choice(&args.claude_args) {
        SessionChoice::Ours => {
            argv.extend(["--session-id".to_string(), fresh.to_string()]);
            fresh.to_string()
        }
        SessionChoice::Given(id) => id,
        SessionChoice::Claudes => fresh.to_string(),
    };
    let mut env = vec![
        ("CLAUDEMESH_SESSION_ID", session_id.clone()),
        ("CLAUDEMESH_LAUNCH_PID", launch_pid.to_string()),
    ];
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
    if !groups.is_empty() {
        env.push(("CLAUDEMESH_GROUPS", groups_env(groups)));
    }
    for (k, v) in [("MCP_TIMEOUT", MCP_TIMEOUT_MS), ("MAX_MCP_OUTPUT_TOKENS", MAX_MCP_OUTPUT_TOKENS)] {
        if !is_set(k) {
            env.push((k, v.to_string()));
        }
    }
    argv.extend(args.claude_args.iter().cloned());
    Plan { program, args: argv, env, session_id }
}

/// The `claude` to run: `override_` (`$CLAUDEMESH_CLAUDE`) if set, else `claude`; a name
/// without a `/` is looked up in `path` (`$PATH`). `None` when it is not there.
pub fn find_claude(override_: Option<OsString>, path: Option<OsString>) -> Option<PathBuf> {
    let want = override_.filter(|p| !p.is_empty()).unwrap_or_else(|| "claude".into());
    if Path::new(&want).components().count() > 1 || want.to_string_lossy().contains('/') {
        return Some(PathBuf::from(want));
    }
    let path = path?;
    std::env::split_paths(&path).map(|d| d.join(&want)).find(|p| p.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn args(extra: &[&str]) -> LaunchArgs {
        LaunchArgs {
            mesh: None,
            name: None,
            groups: vec![],
            channels: false,
            claude_args: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn choice(a: &[&str]) -> SessionChoice {
        session_choice(&args(a).claude_args)
    }

    #[test]
    fn shares_the_session_id_with_claude_and_the_mcp_server() {
        let p = plan(&args(&["-p", "hi"]), "claude".into(), "sid-1", 4242, &[], |_| false);
        assert_eq!(p.args, ["--session-id", "sid-1", "-p", "hi"]);
        assert_eq!(p.session_id, "sid-1");
        assert_eq!(
            p.env,
            [
                ("CLAUDEMESH_SESSION_ID", "sid-1".to_string()),
                ("CLAUDEMESH_LAUNCH_PID", "4242".to_string()),
                ("MCP_TIMEOUT", "30000".to_string()),
                ("MAX_MCP_OUTPUT_TOKENS", "50000".to_string()),
            ]
        );
    }

    #[test]
    fn the_users_mcp_limits_are_kept() {
        let p = plan(&args(&[]), "claude".into(), "s", 1, &[], |k| k == "MCP_TIMEOUT");
        assert!(!p.env.iter().any(|(k, _)| *k == "MCP_TIMEOUT"));
        assert!(p.env.contains(&("MAX_MCP_OUTPUT_TOKENS", "50000".into())));
    }

    #[test]
    fn the_id_of_a_resumed_or_chosen_session_is_shared() {
        let upper = ID.to_uppercase();
        for a in [
            &["--resume", ID][..],
            &[&format!("--resume={ID}")],
            &["-r", &upper],
            &["--session-id", ID],
            &[&format!("--session-id={ID}"), "--model", "opus"],
        ] {
            assert_eq!(choice(a), SessionChoice::Given(ID.into()), "{a:?}");
            let p = plan(&args(a), "claude".into(), "fresh", 1, &[], |_| false);
            assert_eq!(p.session_id, ID, "{a:?}");
            assert_eq!(p.args, a, "{a:?}: nothing added");
            assert!(p.env.contains(&("CLAUDEMESH_SESSION_ID", ID.into())));
        }
    }

    #[test]
    fn when_claude_picks_the_session_launch_cannot_tell_it() {
        for a in
            [&["--continue"][..], &["-c"], &["--resume"], &["--resume", "flaky test"], &["-r", "-p", "x"]]
        {
            assert_eq!(choice(a), SessionChoice::Claudes, "{a:?}");
            let p = plan(&args(a), "claude".into(), "fresh", 1, &[], |_| false);
            assert_eq!(p.session_id, "fresh", "{a:?}");
            assert_eq!(p.args, a, "{a:?}: nothing added");
        }
    }

    #[test]
    fn a_fork_is_a_new_session_with_our_id() {
        for a in [&["--resume", ID, "--fork-session"][..], &["-c", "--fork-session"], &["--model", "opus"]] {
            assert_eq!(choice(a), SessionChoice::Ours, "{a:?}");
            let p = plan(&args(a), "claude".into(), "fresh", 1, &[], |_| false);
            assert_eq!(&p.args[..2], ["--session-id", "fresh"], "{a:?}");
        }
    }

    #[test]
    fn name_mesh_groups_and_channels() {
        let mut a = args(&[]);
        a.name = Some("alice".into());
        a.mesh = Some("team".into());
        a.channels = true;
        let groups = [GroupRole { name: "dev".into(), role: Some("lead".into()) }, GroupRole::new("ops")];
        let p = plan(&a, "claude".into(), "s", 1, &groups, |_| false);
        assert!(
            p.args.windows(2).any(|w| w == ["--dangerously-load-development-channels", "server:claudemesh"])
        );
        assert_eq!(groups_from_env("dev:lead, ops,,bad name"), groups, "read back as written");
        for (k, v) in [
            ("CLAUDEMESH_NAME", "alice"),
            ("CLAUDEMESH_MESH", "team"),
            ("CLAUDEMESH_PUSH", "1"),
            ("CLAUDEMESH_GROUPS", "dev:lead,ops"),
        ] {
            assert!(p.env.contains(&(k, v.to_string())), "{k}");
        }
    }

    #[test]
    fn claude_is_found_on_path_or_where_the_override_says() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("claude"), "").unwrap();
        let path = Some(std::env::join_paths(["/nonexistent".as_ref(), dir.path()]).unwrap());
        assert_eq!(find_claude(None, path.clone()), Some(dir.path().join("claude")));
        assert_eq!(find_claude(Some("".into()), path.clone()), Some(dir.path().join("claude")));
        assert_eq!(find_claude(None, Some("/nonexistent".into())), None);
        assert_eq!(find_claude(None, None), None);
        assert_eq!(find_claude(Some("/opt/c/claude".into()), None), Some("/opt/c/claude".into()));
        assert_eq!(find_claude(Some("claude".into()), path), Some(dir.path().join("claude")));
    }
}
