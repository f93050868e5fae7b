//! `claudemesh install` / `uninstall` edit `~/.claude.json` (MCP server) and `~/.claude/settings.json`
//! (hooks) safely: other content and order kept, backup, idempotent, locked, malformed files refused.
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

/// User settings with their own hooks in two of our events (one with a matcher), another event, other keys.
const SETTINGS: &str = r#"{
  "model": "opus",
  "hooks": {
    "Stop": [{"hooks": [{"type": "command", "command": "say done", "timeout": 5}]}],
    "Notification": [{"hooks": [{"type": "command", "command": "notify-send hi"}]}],
    "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "lint.sh"}]}]
  },
  "permissions": {"allow": ["Bash(ls:*)"]}
}
"#;

const EVENTS: [&str; 4] = ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"];

fn settings(home: &Path) -> std::path::PathBuf {
    home.join(".claude").join("settings.json")
}

/// Our hook for `event` exactly as install writes it.
fn our_hook(event: &str) -> serde_json::Value {
    let command = format!("{} hook {event}", std::path::absolute(EXE).unwrap().display());
    if event == "Stop" {
        serde_json::json!({"type": "command", "command": command, "timeout": 86400, "asyncRewake": true,
            "rewakeMessage": "claudemesh: messages from your mesh arrived while you were idle:",
            "rewakeSummary": "claudemesh: new mesh message"})
    } else {
        serde_json::json!({"type": "command", "command": command, "timeout": 10})
    }
}

/// How many hooks in the file's `event` array are claudemesh's.
fn ours_in(v: &serde_json::Value, event: &str) -> usize {
    let groups = v["hooks"][event].as_array().cloned().unwrap_or_default();
    let hooks = groups.iter().flat_map(|g| g["hooks"].as_array().cloned().unwrap_or_default());
    hooks.filter(|h| h["command"].as_str().unwrap_or("").contains("claudemesh hook ")).count()
}

/// Text with the same keys in the same order as the file (compact, so formatting does not matter).
fn canonical(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).unwrap().to_string()
}

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
    assert!(stdout.contains("already installed: hooks"), "{stdout}");
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
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.path().join(".claude")), 0o700);
    assert_eq!(mode(&settings(home.path())), 0o600);
    assert_eq!(v["hooks"]["action"], "added");
    assert_eq!(v["hooks"]["backup"], serde_json::Value::Null);
    let now = read(&settings(home.path()));
    for e in EVENTS {
        assert_eq!(now["hooks"][e].as_array().unwrap().len(), 1, "{now}");
        assert_eq!(now["hooks"][e][0]["hooks"], serde_json::json!([our_hook(e)]));
    }
    assert_eq!(now["hooks"]["PostToolUse"][0]["matcher"], "*");
    // Uninstall empties what install created, down to `{}`.
    let v = run_json(home.path(), &["uninstall", "--json"]);
    assert_eq!(v["hooks"]["action"], "removed");
    assert_eq!(read(&settings(home.path())), serde_json::json!({}));
    // Uninstall with no file at all is a no-op that creates nothing.
    let empty = tempfile::tempdir().unwrap();
    let v = run_json(empty.path(), &["uninstall", "--json"]);
    assert_eq!(v["changed"], false);
    assert_eq!(v["hooks"]["changed"], false);
    assert!(!empty.path().join(".claude.json").exists());
    assert!(!empty.path().join(".claude").exists());
}

#[test]
fn malformed_file_is_an_error_naming_it_and_left_unchanged() {
    for bad in ["{\"mcpServers\": {", "[1, 2]", "{\"mcpServers\": 3}"] {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".claude.json");
        std::fs::write(&file, bad).unwrap();
        std::fs::create_dir(home.path().join(".claude")).unwrap();
        std::fs::write(settings(home.path()), SETTINGS).unwrap();
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
            assert_eq!(std::fs::read_to_string(settings(home.path())).unwrap(), SETTINGS, "{verb} {bad}");
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
    let (mut added, mut hooks_added) = (0, 0);
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["action"] == "added" {
            added += 1;
        }
        if v["hooks"]["action"] == "added" {
            hooks_added += 1;
        }
    }
    assert_eq!(added, 1, "exactly one process added the entry");
    assert_eq!(hooks_added, 1, "exactly one process added the hooks");
    let hooks = read(&settings(home.path()));
    for e in EVENTS {
        assert_eq!(ours_in(&hooks, e), 1, "{hooks}");
    }
    let now = read(&file);
    assert_eq!(keys(&now["mcpServers"]), ["zzz", "aaa", "claudemesh"]);
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn install_and_uninstall_keep_the_users_settings_and_hooks() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let file = settings(home.path());
    std::fs::create_dir(home.path().join(".claude")).unwrap();
    std::fs::write(&file, SETTINGS).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let original: serde_json::Value = serde_json::from_str(SETTINGS).unwrap();

    let v = run_json(home.path(), &["install", "--json"]);
    assert_eq!(v["changed"], true);
    assert_eq!(v["mcp"]["action"], "added");
    let h = &v["hooks"];
    assert_eq!(h["path"], file.to_str().unwrap());
    assert_eq!(h["action"], "added");
    assert_eq!(h["changed"], true);
    let events: Vec<_> =
        h["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, EVENTS);
    let backup = home.path().join(".claude/settings.json.claudemesh-backup");
    assert_eq!(h["backup"], backup.to_str().unwrap());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), SETTINGS);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644, "mode kept");

    let now = read(&file);
    assert_eq!(keys(&now), ["model", "hooks", "permissions"]);
    assert_eq!(
        keys(&now["hooks"]),
        ["Stop", "Notification", "PostToolUse", "SessionStart", "UserPromptSubmit"]
    );
    assert_eq!(now["hooks"]["Notification"], original["hooks"]["Notification"]);
    for e in ["Stop", "PostToolUse"] {
        assert_eq!(now["hooks"][e][0], original["hooks"][e][0], "the user's group first, untouched");
        assert_eq!(now["hooks"][e][1]["hooks"], serde_json::json!([our_hook(e)]), "ours appended");
    }

    // Second install: unchanged, not rewritten, no new backup.
    std::fs::remove_file(&backup).unwrap();
    let before = std::fs::read(&file).unwrap();
    let v = run_json(home.path(), &["install", "--json"]);
    assert_eq!(v["changed"], false);
    assert_eq!(v["hooks"]["action"], "unchanged");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert!(!backup.exists());

    // Uninstall: exactly the original content and key order.
    let v = run_json(home.path(), &["uninstall", "--json"]);
    assert_eq!(v["hooks"]["action"], "removed");
    assert_eq!(v["hooks"]["changed"], true);
    assert_eq!(read(&file), original);
    assert_eq!(canonical(&std::fs::read_to_string(&file).unwrap()), canonical(SETTINGS));

    // Second uninstall: nothing to do.
    let before = std::fs::read(&file).unwrap();
    let out = run(home.path(), &["uninstall"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove: no claudemesh hooks"));
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn install_replaces_stale_hooks_in_place() {
    let home = tempfile::tempdir().unwrap();
    let file = settings(home.path());
    std::fs::create_dir(home.path().join(".claude")).unwrap();
    let user = serde_json::json!({"hooks": [{"type": "command", "command": "say done"}]});
    let old = "'/old dir/claudemesh' hook Stop";
    let stale = serde_json::json!({"hooks": [{"type": "command", "command": old, "timeout": 60}]});
    let text = serde_json::json!({"hooks": {"Stop": [stale.clone(), user.clone(), stale]}}).to_string();
    std::fs::write(&file, &text).unwrap();
    let v = run_json(home.path(), &["install", "--json"]);
    assert_eq!(v["hooks"]["action"], "updated", "{v}");
    let actions: Vec<_> =
        v["hooks"]["events"].as_array().unwrap().iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions, ["added", "added", "added", "replaced"]);
    let now = read(&file);
    assert_eq!(now["hooks"]["Stop"], serde_json::json!([{"hooks": [our_hook("Stop")]}, user]));
    let out = run(home.path(), &["install"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already installed: hooks"));
}

#[test]
fn malformed_settings_is_an_error_naming_it_and_neither_file_changes() {
    for bad in ["{\"hooks\": {", "[]", "{\"hooks\": []}", "{\"hooks\": {\"Stop\": {}}}"] {
        let home = tempfile::tempdir().unwrap();
        let file = settings(home.path());
        // Installed once, so uninstall would have something to remove from both files.
        run_json(home.path(), &["install", "--json"]);
        std::fs::write(&file, bad).unwrap();
        let claude_json = std::fs::read(home.path().join(".claude.json")).unwrap();
        let backups = |h: &Path| {
            [h.join(".claude.json.claudemesh-backup"), h.join(".claude/settings.json.claudemesh-backup")]
                .map(|b| std::fs::read(b).ok())
        };
        let before = backups(home.path());
        for verb in ["install", "uninstall"] {
            let out = run(home.path(), &[verb]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{verb} on {bad:?} should fail");
            assert!(stderr.contains(file.to_str().unwrap()) && stderr.contains("fix or move it"), "{stderr}");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), bad);
            assert_eq!(std::fs::read(home.path().join(".claude.json")).unwrap(), claude_json, "{verb} {bad}");
            assert_eq!(backups(home.path()), before);
        }
    }
}
