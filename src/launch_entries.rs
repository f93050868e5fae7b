//! The `mesh:*` MCP server entries `claudemesh launch` puts in `~/.claude.json` (DESIGN §7): one
//! per running service, each tagged with the launch that owns it (`--launch-pid`), so that its
//! launch removes them on exit and the next launch or `claudemesh doctor` sweeps those of a
//! launch that died. Pure edits of the `mcpServers` object plus the liveness check; the locked,
//! atomic file edit is [`crate::claude_settings::edit`].

use serde_json::{Map, Value, json};

/// What every entry key starts with.
pub const PREFIX: &str = "mesh:";

/// The argument that names the owning launch's pid.
const LAUNCH_PID_ARG: &str = "--launch-pid";

/// A running service to give an entry: its mesh slug and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub mesh: String,
    pub name: String,
}

/// The entry keys for `services`, in order: `mesh:<service>`, or `mesh:<slug>.<service>` when
/// an earlier service (of another mesh) already took that name or `taken` says the key is in
/// use by something that is not a launch entry (the user's own). `None` for a service no key
/// is free for.
pub fn names(services: &[Service], taken: impl Fn(&str) -> bool) -> Vec<Option<String>> {
    let mut used: Vec<String> = Vec::new();
    services
        .iter()
        .map(|s| {
            let short = format!("{PREFIX}{}", s.name);
            let long = format!("{PREFIX}{}.{}", s.mesh, s.name);
            let key = [short, long].into_iter().find(|k| !used.contains(k) && !taken(k))?;
            used.push(key.clone());
            Some(key)
        })
        .collect()
}

/// The entry that makes Claude Code start `exe mcp --service NAME --mesh SLUG --launch-pid PID`.
pub fn entry(exe: &str, s: &Service, launch_pid: u32) -> Value {
    json!({
        "type": "stdio",
        "command": exe,
        "args": ["mcp", "--service", s.name, "--mesh", s.mesh, LAUNCH_PID_ARG, launch_pid.to_string()],
    })
}

/// The owning launch's pid, when `key`/`v` is a launch entry (a `mesh:` key whose args are
/// `mcp … --launch-pid PID`); entries the user wrote themselves are never ours.
pub fn launch_pid_of(key: &str, v: &Value) -> Option<u32> {
    if !key.starts_with(PREFIX) {
        return None;
    }
    let args = v.get("args")?.as_array()?;
    if args.first()?.as_str()? != "mcp" {
        return None;
    }
    let at = args.iter().position(|a| a.as_str() == Some(LAUNCH_PID_ARG))?;
    args.get(at + 1)?.as_str()?.parse().ok()
}

/// `root["mcpServers"]` as an object, created if absent; `None` if it is something else.
fn servers(root: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    root.entry("mcpServers").or_insert_with(|| Value::Object(Map::new())).as_object_mut()
}

/// Removes the launch entries whose launch `alive` says is gone; returns (key, pid) of each.
pub fn sweep(root: &mut Map<String, Value>, alive: impl Fn(u32) -> bool) -> Vec<(String, u32)> {
    let Some(Value::Object(servers)) = root.get_mut("mcpServers") else { return Vec::new() };
    let dead: Vec<(String, u32)> = servers
        .iter()
        .filter_map(|(k, v)| launch_pid_of(k, v).map(|p| (k.clone(), p)))
        .filter(|(_, p)| !alive(*p))
        .collect();
    for (k, _) in &dead {
        servers.shift_remove(k);
    }
    dead
}

/// Removes the entries of launch `pid`; returns their keys.
pub fn remove_of(root: &mut Map<String, Value>, pid: u32) -> Vec<String> {
    sweep(root, |p| p != pid).into_iter().map(|(k, _)| k).collect()
}

/// Writes an entry per service of `services` for launch `pid` (a key another live launch holds
/// is taken over: the newest launch's `claude` is the one about to read it); returns the keys
/// written, in order. `Err` if `mcpServers` is not an object.
pub fn install(
    root: &mut Map<String, Value>,
    exe: &str,
    services: &[Service],
    pid: u32,
) -> Result<Vec<String>, String> {
    let Some(servers) = servers(root) else {
        return Err("\"mcpServers\" is not a JSON object".into());
    };
    let keys = names(services, |k| servers.get(k).is_some_and(|v| launch_pid_of(k, v).is_none()));
    let mut written = Vec::new();
    for (s, key) in services.iter().zip(keys) {
        let Some(key) = key else { continue };
        servers.insert(key.clone(), entry(exe, s, pid));
        written.push(key);
    }
    Ok(written)
}

/// Whether `pid` is a running `claudemesh launch`: alive, and its command line is `claudemesh
/// launch …` (or this very program run with `launch`); a reused pid of another program is not.
pub fn is_live_launch(pid: u32) -> bool {
    let argv = match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect(),
        // No /proc (macOS): ask ps, which prints the command line with spaces.
        Err(_) if !std::path::Path::new("/proc/self").exists() => ps_command(pid),
        Err(_) => return false,
    };
    let same_exe = || {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
        exe.is_ok_and(|e| std::env::current_exe().is_ok_and(|me| me == e))
    };
    is_launch_argv(&argv) && (named_claudemesh(&argv) || same_exe())
}

/// Whether `argv` is `<program> launch …`.
fn is_launch_argv(argv: &[String]) -> bool {
    argv.get(1).is_some_and(|a| a == "launch")
}

/// Whether `argv[0]` is `claudemesh` (any directory).
fn named_claudemesh(argv: &[String]) -> bool {
    argv.first().is_some_and(|exe| exe.rsplit('/').next() == Some("claudemesh"))
}

fn ps_command(pid: u32) -> Vec<String> {
    std::process::Command::new("ps")
        .args(["-o", "command=", "-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn svc(mesh: &str, name: &str) -> Service {
        Service { mesh: mesh.into(), name: name.into() }
    }

    #[test]
    fn the_second_mesh_with_the_same_service_gets_its_slug() {
        let s = [svc("team", "gmail"), svc("home", "gmail"), svc("home", "db")];
        assert_eq!(
            names(&s, |_| false),
            [Some("mesh:gmail".into()), Some("mesh:home.gmail".into()), Some("mesh:db".into())]
        );
        // The user's own `mesh:db` is left alone.
        assert_eq!(names(&s[2..], |k| k == "mesh:db"), [Some("mesh:home.db".into())]);
        assert_eq!(names(&s[2..], |_| true), [None]);
    }

    #[test]
    fn entries_are_tagged_with_their_launch_and_only_those_are_swept() {
        let mut root = Map::new();
        root.insert(
            "mcpServers".into(),
            json!({
                "claudemesh": {"type": "stdio", "command": "/bin/claudemesh", "args": ["mcp"]},
                "mesh:mine": {"type": "stdio", "command": "my-server", "args": []},
                "mesh:old": entry("/bin/claudemesh", &svc("team", "old"), 11),
            }),
        );
        let written =
            install(&mut root, "/bin/claudemesh", &[svc("team", "mine"), svc("team", "db")], 22).unwrap();
        assert_eq!(written, ["mesh:team.mine", "mesh:db"]);
        let db = &root["mcpServers"]["mesh:db"];
        assert_eq!(db["args"], json!(["mcp", "--service", "db", "--mesh", "team", "--launch-pid", "22"]));
        assert_eq!(launch_pid_of("mesh:db", db), Some(22));
        assert_eq!(launch_pid_of("other", db), None);
        assert_eq!(launch_pid_of("mesh:mine", &root["mcpServers"]["mesh:mine"]), None);

        assert_eq!(sweep(&mut root, |p| p == 22), [("mesh:old".to_string(), 11)]);
        assert_eq!(remove_of(&mut root, 22), ["mesh:team.mine", "mesh:db"]);
        let keys: Vec<&String> = root["mcpServers"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["claudemesh", "mesh:mine"], "the rest stays, in order");
    }

    #[test]
    fn a_live_launch_is_a_claudemesh_launch_process() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let launch = argv(&["/usr/bin/claudemesh", "launch", "--name", "x"]);
        assert!(is_launch_argv(&launch) && named_claudemesh(&launch));
        assert!(!is_launch_argv(&argv(&["/usr/bin/claudemesh", "mcp"])));
        assert!(!named_claudemesh(&argv(&["/usr/bin/vim", "launch"])));
        assert!(!is_launch_argv(&[]) && !named_claudemesh(&[]));
        // A live process that is no launch; pid 0 is nobody's.
        let mut sleep = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        assert!(!is_live_launch(sleep.id()));
        let _ = sleep.kill();
        let _ = sleep.wait();
        assert!(!is_live_launch(0));
    }

    #[test]
    fn mcp_servers_that_is_not_an_object_is_an_error() {
        let mut root = Map::new();
        root.insert("mcpServers".into(), json!([]));
        assert!(install(&mut root, "x", &[svc("t", "a")], 1).is_err());
        assert!(sweep(&mut root, |_| false).is_empty());
    }
}
