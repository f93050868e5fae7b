//! The hook's (or MCP server's) ancestor processes, nearest first, and which of them is the
//! `claude` process: Claude Code runs hooks (through a shell) and the claudemesh MCP server as
//! its children (DESIGN §6).
//!
//! It also decides whether an inherited `CLAUDEMESH_SESSION_ID` is ours: `claudemesh launch`
//! sets it with `CLAUDEMESH_LAUNCH_PID`, its own pid, and runs `claude` as its child. A
//! `claude -p` run from inside that session inherits both, but its nearest `claude` ancestor
//! is itself, whose parent is not the launch: it must not act as the outer session.

/// How far up to look: the hook, maybe a shell or two, then `claude`.
const MAX_DEPTH: usize = 8;

/// What the decisions need from the process table (faked in tests).
pub trait Procs {
    /// The parent of `pid`, when known.
    fn parent(&self, pid: u32) -> Option<u32>;
    /// Whether `pid` is a `claude` process (Claude Code names its process `claude`).
    fn is_claude(&self, pid: u32) -> bool;
}

/// The real process table: `/proc` on Linux, else `ps` (argv, no shell).
#[derive(Debug, Clone, Copy)]
pub struct System;

impl Procs for System {
    fn parent(&self, pid: u32) -> Option<u32> {
        parent_of(pid)
    }

    fn is_claude(&self, pid: u32) -> bool {
        names_of(pid).iter().any(|n| n == "claude")
    }
}

/// Ancestor pids of this process, nearest first, stopping before pid 1.
pub fn ancestors() -> Vec<u32> {
    ancestors_in(&System, std::os::unix::process::parent_id())
}

/// `first` and its ancestors, nearest first, stopping before pid 1 (and at a loop).
pub fn ancestors_in(p: &impl Procs, first: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = first;
    while pid > 1 && out.len() < MAX_DEPTH && !out.contains(&pid) {
        out.push(pid);
        match p.parent(pid) {
            Some(next) => pid = next,
            None => break,
        }
    }
    out
}

/// The nearest `claude` among `ancestors` (nearest first).
pub fn nearest_claude(p: &impl Procs, ancestors: &[u32]) -> Option<u32> {
    ancestors.iter().copied().find(|&a| p.is_claude(a))
}

/// Whether the session `claudemesh launch` put in the environment belongs to a process whose
/// nearest `claude` ancestor is `claude`. `launch_pid` is `CLAUDEMESH_LAUNCH_PID` as found:
/// - unset: the id was set some other way (by hand, or by a launch that predates the variable),
///   so it is taken as is;
/// - the pid of `claude`'s parent, when that process is not itself a `claude`: the launched
///   `claude` (launch stays its parent). A `claude` started under it, even straight under it
///   (`bash -c 'claude -p …'` may exec), has a `claude` or a shell as parent, never the launch;
/// - anything else (unreadable, no `claude` found, another `claude`): not ours.
pub fn launched_here(p: &impl Procs, launch_pid: Option<&str>, claude: Option<u32>) -> bool {
    let Some(raw) = launch_pid.map(str::trim) else { return true };
    let (Ok(launch), Some(claude)) = (raw.parse::<u32>(), claude) else { return false };
    claude != launch && !p.is_claude(launch) && p.parent(claude) == Some(launch)
}

/// The inherited launch session id, when it is ours (see [`launched_here`]).
pub fn inherited_session(claude: Option<u32>) -> Option<String> {
    let sid = std::env::var("CLAUDEMESH_SESSION_ID").ok().map(|s| s.trim().to_string());
    let sid = sid.filter(|s| {
        !s.is_empty()
            && s.len() <= claudemesh_protocol::limits::MAX_SESSION_ID_BYTES
            && !s.chars().any(char::is_control)
    })?;
    let launch = std::env::var("CLAUDEMESH_LAUNCH_PID").ok();
    launched_here(&System, launch.as_deref(), claude).then_some(sid)
}

/// Whether a launch pid is in the environment (then a rejected session id means "another
/// `claude` inherited it", not "set by hand").
pub fn launch_pid_set() -> bool {
    std::env::var_os("CLAUDEMESH_LAUNCH_PID").is_some()
}

/// The parent of `pid`: from `/proc` on Linux, else from `ps`.
fn parent_of(pid: u32) -> Option<u32> {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return parse_stat_ppid(&stat);
    }
    ps(pid, "ppid=")?.trim().parse().ok()
}

/// The names `pid` goes by: its command name and the file name of its `argv[0]` (Claude Code
/// sets its process title to `claude`, which shows in one or the other).
fn names_of(pid: u32) -> Vec<String> {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).trim().to_string();
    let mut names = Vec::new();
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        names.push(comm.trim().to_string());
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            names.push(base(&String::from_utf8_lossy(argv0)));
        }
        return names;
    }
    if let Some(comm) = ps(pid, "comm=") {
        names.push(base(&comm));
    }
    names
}

fn ps(pid: u32, field: &str) -> Option<String> {
    let out = std::process::Command::new("ps")
        .args(["-o", field, "-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

/// The ppid field of `/proc/<pid>/stat`: `pid (comm) state ppid …`, where `comm` may itself
/// contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A fake process table: pid → (parent, name).
    struct Fake(HashMap<u32, (u32, &'static str)>);

    impl Fake {
        fn new(rows: &[(u32, u32, &'static str)]) -> Self {
            Fake(rows.iter().map(|&(pid, ppid, name)| (pid, (ppid, name))).collect())
        }
    }

    impl Procs for Fake {
        fn parent(&self, pid: u32) -> Option<u32> {
            self.0.get(&pid).map(|r| r.0)
        }
        fn is_claude(&self, pid: u32) -> bool {
            self.0.get(&pid).is_some_and(|r| r.1 == "claude")
        }
    }

    /// launch (100, claudemesh) runs claude (150), whose Bash tool ran `sh` (200) running
    /// `claude -p` (300), which runs a hook through `sh` (400) and its MCP server (500); the
    /// outer claude's own hook shell is 600 and its MCP server 700.
    fn nested() -> Fake {
        Fake::new(&[
            (100, 10, "claudemesh"),
            (150, 100, "claude"),
            (200, 150, "bash"),
            (300, 200, "claude"),
            (400, 300, "sh"),
            (500, 300, "claudemesh"),
            (600, 150, "sh"),
            (700, 150, "claudemesh"),
            (10, 1, "zsh"),
        ])
    }

    #[test]
    fn the_launched_claude_keeps_its_session_and_a_nested_one_does_not() {
        let p = nested();
        for outer in [600, 700] {
            let c = nearest_claude(&p, &ancestors_in(&p, outer));
            assert_eq!(c, Some(150));
            assert!(launched_here(&p, Some("100"), c), "{outer}");
        }
        let inner_hook = nearest_claude(&p, &ancestors_in(&p, 400));
        assert_eq!(inner_hook, Some(300));
        assert!(!launched_here(&p, Some("100"), inner_hook), "claude -p inside must not be the outer");
        let inner_mcp = nearest_claude(&p, &ancestors_in(&p, 500));
        assert!(!launched_here(&p, Some("100"), inner_mcp));
    }

    #[test]
    fn a_claude_exec_d_straight_under_the_launched_claude_is_not_it() {
        // `bash -c 'claude -p x'` may exec, leaving the inner claude 300 a child of claude 150.
        let p = Fake::new(&[
            (100, 10, "claudemesh"),
            (150, 100, "claude"),
            (300, 150, "claude"),
            (400, 300, "sh"),
        ]);
        let c = nearest_claude(&p, &ancestors_in(&p, 400));
        assert_eq!(c, Some(300));
        assert!(!launched_here(&p, Some("100"), c));
    }

    #[test]
    fn a_launch_pid_that_is_a_claude_or_the_claude_itself_is_not_a_launch() {
        // An older launch exec'd claude: its pid is claude's own, which no launch is now.
        let p = Fake::new(&[(100, 10, "claude"), (600, 100, "sh"), (300, 100, "claude")]);
        assert!(!launched_here(&p, Some("100"), nearest_claude(&p, &ancestors_in(&p, 600))));
        assert!(!launched_here(&p, Some("100"), Some(300)), "the launch pid names a claude");
    }

    #[test]
    fn without_a_launch_pid_or_claude() {
        let p = nested();
        assert!(launched_here(&p, None, None), "set by hand: taken as is");
        assert!(launched_here(&p, None, Some(300)));
        assert!(!launched_here(&p, Some("100"), None), "no claude found: not provably ours");
        assert!(!launched_here(&p, Some("x"), Some(100)), "unreadable launch pid");
        assert!(launched_here(&p, Some(" 100\n"), Some(150)));
    }

    #[test]
    fn ancestry_stops_at_loops_and_init() {
        let p = Fake::new(&[(5, 6, "a"), (6, 5, "b")]);
        assert_eq!(ancestors_in(&p, 5), [5, 6]);
        let p = Fake::new(&[(5, 1, "a")]);
        assert_eq!(ancestors_in(&p, 5), [5]);
        assert_eq!(nearest_claude(&p, &[5]), None);
    }

    #[test]
    fn stat_with_odd_command_names() {
        assert_eq!(parse_stat_ppid("123 (claude) S 45 123 123 0"), Some(45));
        assert_eq!(parse_stat_ppid("123 (we ird) (x) R 7 1 1"), Some(7));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn our_parent_comes_first() {
        let a = ancestors();
        assert_eq!(a.first().copied(), Some(std::os::unix::process::parent_id()));
        assert!(!a.contains(&1));
    }
}
