//! `claudemesh doctor` names what is wrong and how to fix it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

fn doctor(paths: &claudemesh_agent::Paths, home: &std::path::Path) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(EXE)
        .args(["doctor", "--json"])
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("HOME", home)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), serde_json::from_slice(&out.stdout).unwrap())
}

fn status_of<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v.as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no check {name}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_each_problem_with_a_fix() {
    let mut w = World::start().await;
    let paths = w.member("alice").await;
    let home = tempfile::tempdir().unwrap();
    let mut v = serde_json::Value::Null;
    for _ in 0..100 {
        let (code, out) = doctor(&paths, home.path());
        v = out;
        if code == 0 && status_of(&v, "broker link")["status"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_of(&v, "broker link")["status"], "ok", "{v}");
    assert_eq!(status_of(&v, "config permissions")["status"], "ok");
    assert_eq!(status_of(&v, "key for team")["status"], "ok");
    assert_eq!(status_of(&v, "MCP entry")["status"], "warn");
    assert!(status_of(&v, "MCP entry")["fix"].as_str().unwrap().contains("claudemesh install"));
    let hooks = status_of(&v, "hooks");
    assert_eq!(hooks["status"], "warn");
    assert!(hooks["detail"].as_str().unwrap().starts_with("no claudemesh hooks"), "{hooks}");
    assert_eq!(hooks["fix"], "`claudemesh install`");

    // Installed hooks are recognized; one removed by hand is named.
    let out = std::process::Command::new(EXE).args(["install"]).env("HOME", home.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status_of(&doctor(&paths, home.path()).1, "hooks")["status"], "ok");
    let settings = home.path().join(".claude/settings.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap();
    s["hooks"].as_object_mut().unwrap().shift_remove("Stop");
    std::fs::write(&settings, s.to_string()).unwrap();
    let hooks = status_of(&doctor(&paths, home.path()).1, "hooks").clone();
    assert_eq!(hooks["status"], "warn");
    assert!(hooks["detail"].as_str().unwrap().starts_with("claudemesh hooks missing for Stop in"), "{hooks}");

    // Malformed JSON in either file is named as such, with where it breaks.
    let claude_json = home.path().join(".claude.json");
    let good = std::fs::read(&claude_json).unwrap();
    std::fs::write(&claude_json, "{\n  \"mcpServers\": {},\n}\n").unwrap();
    std::fs::write(&settings, "{\"hooks\": {\"Stop\": [}").unwrap();
    let (code, v) = doctor(&paths, home.path());
    assert_eq!(code, 1, "{v}");
    for (check, path, place) in
        [("MCP entry", &claude_json, "at line 3, column 1"), ("hooks", &settings, "at line 1, column 21")]
    {
        let c = status_of(&v, check);
        let detail = c["detail"].as_str().unwrap();
        assert_eq!(c["status"], "fail", "{c}");
        assert!(detail.starts_with(path.to_str().unwrap()), "{c}");
        assert!(detail.contains("is not valid JSON") && detail.contains(place), "{c}");
        assert!(c["fix"].as_str().unwrap().contains("fix or move it"), "{c}");
    }
    std::fs::write(&claude_json, good).unwrap();

    // Loose permissions on the key file fail, with the chmod to run.
    std::fs::set_permissions(paths.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, v) = doctor(&paths, home.path());
    assert_eq!(code, 1);
    let c = status_of(&v, "config permissions");
    assert_eq!(c["status"], "fail");
    assert!(c["fix"].as_str().unwrap().contains("chmod 600"), "{c}");
    std::fs::set_permissions(paths.config(), std::fs::Permissions::from_mode(0o600)).unwrap();

    // A broker that went away fails with how to check it.
    w.stop_broker().await;
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let (code, v) = doctor(&paths, home.path());
        last = v;
        if code == 1 && status_of(&last, "broker link")["status"] == "fail" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = status_of(&last, "broker link");
    assert_eq!(c["status"], "fail", "{last}");
    assert!(c["fix"].as_str().unwrap().contains("/health"), "{c}");
    cli(&paths, &["agent", "stop"]);
}
