//! The agent a CLI command starts gets a cleared environment: a secret in the caller's
//! environment (an API key, a broker admin token) never reaches the long-lived agent process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

/// The environment of process `pid`, as `NAME=value` strings.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_started_agent_gets_no_secret_of_its_caller() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    let out = std::process::Command::new(EXE)
        .args(["status"])
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("ANTHROPIC_API_KEY", "sk-ant-secret-1")
        .env("CLAUDEMESH_ADMIN_TOKEN", "admin-secret-2")
        .env("GITHUB_TOKEN", "ghp-secret-3")
        .env("LC_ALL", "C.UTF-8")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut pid = None;
    for _ in 0..100 {
        if let Some(p) = std::fs::read_to_string(paths.pid()).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            pid = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = pid.expect("the agent wrote its pid file");
    let env = environ(pid);
    let stop = cli(&paths, &["agent", "stop"]);
    assert_eq!(stop.0, 0, "{stop:?}");
    for secret in ["sk-ant-secret-1", "admin-secret-2", "ghp-secret-3"] {
        assert!(!env.iter().any(|v| v.contains(secret)), "{secret} reached the agent: {env:?}");
    }
    assert!(!env.iter().any(|v| v.starts_with("ANTHROPIC_API_KEY=")), "{env:?}");
    // What it needs still passes.
    let dir = format!("CLAUDEMESH_CONFIG_DIR={}", paths.dir.display());
    for want in [dir.as_str(), "LC_ALL=C.UTF-8", "RUST_LOG=info"] {
        assert!(env.iter().any(|v| v == want), "{want} missing: {env:?}");
    }
    assert!(env.iter().any(|v| v.starts_with("PATH=")), "{env:?}");
}
