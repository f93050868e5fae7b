//! The hook's ancestor processes, nearest first: Claude Code runs hooks (through a shell) and the
//! claudemesh MCP server as its children, so one of these pids is the `claude` process that the
//! MCP server registered as its parent (DESIGN §6).

/// How far up to look: the hook, maybe a shell or two, then `claude`.
const MAX_DEPTH: usize = 8;

/// Ancestor pids of this process, nearest first, stopping before pid 1.
pub fn ancestors() -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = std::os::unix::process::parent_id();
    while pid > 1 && out.len() < MAX_DEPTH && !out.contains(&pid) {
        out.push(pid);
        match parent_of(pid) {
            Some(p) => pid = p,
            None => break,
        }
    }
    out
}

/// The parent of `pid`: from `/proc` on Linux, else from `ps` (argv, no shell).
fn parent_of(pid: u32) -> Option<u32> {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return parse_stat_ppid(&stat);
    }
    let out = std::process::Command::new("ps")
        .args(["-o", "ppid=", "-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
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
    use super::*;

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
