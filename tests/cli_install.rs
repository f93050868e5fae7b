//! `claudemesh install` / `uninstall` edit `~/.claude.json` safely: order kept, backup, idempotent, locked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

const EXE: &str = env!("CARGO_BIN_EXE_claudemesh");

const ORIGINAL: &str = r#"{
  "zeta": 1,
  "numStartups": 42,
  "mcpServers": {
    "zzz": {"type": "stdio", "command": "/bin/zzz", "args": [], "env": {}},
    "aaa": {"type": "http", "url": "https://example.com/mcp"}
  },
  "alpha": {"nested": [1, "two", null]},
  "beta": true
}
"#;

fn run(home: &Path, args: &[&str]) -> Output {
    std::process::Command::new(EXE).args(args).env("HOME", home).output().unwrap()
}

fn run_json(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn read(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn install_preserves_other_keys_and_uninstall_removes_exactly_the_entry() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".claude.json");
    std::fs::write(&file, ORIGINAL).unwrap();
    let original: serde_json::Value = serde_json::from_str(ORIGINAL).unwrap();

    let v = run_json(home.path(), &["install", "--json"]);
    assert_eq!(v["changed"], true);
    assert_eq!(v["action"], "added");
    assert_eq!(v["path"], file.to_str().unwrap());
    let backup = home.path().join(".claude.json.claudemesh-backup");
    assert_eq!(v["backup"], backup.to_str().unwrap());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), ORIGINAL);

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with("}\n"), "trailing newline kept");
    assert!(text.contains("\n  \"zeta\": 1,\n"), "2-space indent: {text}");
    let now = read(&file);
    assert_eq!(keys(&now), keys(&original), "top-level keys and their order");
    for k in ["zeta", "numStartups", "alpha", "beta"] {
        assert_eq!(now[k], original[k]);
    }
    assert_eq!(keys(&now["mcpServers"]), ["zzz", "aaa", "claudemesh"]);
    assert_eq!(now["mcpServers"]["zzz"], original["mcpServers"]["zzz"]);
    assert_eq!(now["mcpServers"]["aaa"], original["mcpServers"]["aaa"]);
    let exe = std::path::absolute(EXE).unwrap();
    assert_eq!(
        now["mcpServers"]["claudemesh"],
        serde_json::json!({"type": "stdio", "command": exe, "args": ["mcp"], "env": {}})
    );

    // Second install: nothing to do, file byte-identical.
    let before = std::fs::read(&file).unwrap();
    let out = run(home.path(), &["install"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("already installed"), "{stdout}");
    assert!(stdout.contains("hooks: not installed by this version"), "{stdout}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // Uninstall: back to exactly the other servers.
    let v = run_json(home.path(), &["uninstall", "--json"]);
    assert_eq!(v["changed"], true);
    assert_eq!(v["action"], "removed");
    let now = read(&file);
    assert_eq!(keys(&now), keys(&original));
    assert_eq!(keys(&now["mcpServers"]), ["zzz", "aaa"]);
    assert_eq!(now, original);

    // Second uninstall: no-op.
    let before = std::fs::read(&file).unwrap();
    let out = run(home.path(), &["uninstall"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove"));
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn install_replaces_a_stale_entry() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".claude.json");
    std::fs::write(
        &file,
        r#"{"mcpServers": {"claudemesh": {"type": "stdio", "command": "/old/claudemesh", "args": ["mcp"], "env": {}}}}"#,
    )
    .unwrap();
    let v = run_json(home.path(), &["install", "--json"]);
    assert_eq!(v["action"], "replaced");
    assert_eq!(v["changed"], true);
    let now = read(&file);
    assert_eq!(
        now["mcpServers"]["claudemesh"]["command"],
        std::path::absolute(EXE).unwrap().to_str().unwrap()
    );
    assert!(!std::fs::read_to_string(&file).unwrap().ends_with('\n'), "no trailing newline added");
}

#[test]
fn install_creates_a_missing_file_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".claude.json");
    let v = run_json(home.path(), &["install", "--json"]);
    assert_eq!(v["action"], "added");
    assert_eq!(v["backup"], serde_json::Value::Null);
    assert_eq!(keys(&read(&file)), ["mcpServers"]);
    assert_eq!(keys(&read(&file)["mcpServers"]), ["claudemesh"]);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // Uninstall with no file at all is a no-op that creates nothing.
    let empty = tempfile::tempdir().unwrap();
    let v = run_json(empty.path(), &["uninstall", "--json"]);
    assert_eq!(v["changed"], false);
    assert!(!empty.path().join(".claude.json").exists());
}

#[test]
fn malformed_file_is_an_error_naming_it_and_left_unchanged() {
    for bad in ["{\"mcpServers\": {", "[1, 2]", "{\"mcpServers\": 3}"] {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".claude.json");
        std::fs::write(&file, bad).unwrap();
        for verb in ["install", "uninstall"] {
            let out = run(home.path(), &[verb]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if verb == "uninstall" && bad == "{\"mcpServers\": 3}" {
                // Nothing of ours to remove; still must not touch the file.
                assert!(out.status.success(), "{stderr}");
            } else {
                assert!(!out.status.success(), "{verb} on {bad:?} should fail");
                assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
            }
            assert_eq!(std::fs::read_to_string(&file).unwrap(), bad);
            assert!(!home.path().join(".claude.json.claudemesh-backup").exists());
        }
    }
}

#[test]
fn concurrent_installs_leave_exactly_one_entry() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".claude.json");
    std::fs::write(&file, ORIGINAL).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(EXE)
                .args(["install", "--json"])
                .env("HOME", home.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut added = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["action"] == "added" {
            added += 1;
        }
    }
    assert_eq!(added, 1, "exactly one process added the entry");
    let now = read(&file);
    assert_eq!(keys(&now["mcpServers"]), ["zzz", "aaa", "claudemesh"]);
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
