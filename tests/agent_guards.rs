//! What an agent accepts and inherits (security.md, "Processes and secrets" and "Plaintext
//! transport"): the agent a CLI command starts gets a cleared environment, so a secret in the
//! caller's environment never reaches it; and `mesh create` and `join` refuse a `ws://` broker
//! that is not this machine unless `--insecure-transport` is given, which the mesh's config
//! keeps for the agent's link; a config edited by hand to a plaintext remote URL without it
//! leaves the link refused, saying the fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_agent::{AgentClient, Config, Paths};
use claudemesh_broker::testkit::RunningBroker;
use claudemesh_protocol::local::LinkState;
use common::*;

/// The environment of process `pid`, as `NAME=value` strings.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
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
        if let Some(p) = std::fs::read_to_string(paths.pid()).ok().and_then(|s| s.trim().parse::<u32>().ok())
        {
            pid = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = pid.expect("the agent wrote its pid file");
    let env = environ(pid);
    // What it writes is this user's only: the log names peers, the store holds decrypted mail.
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [paths.log(), paths.pid(), paths.db(), paths.config()] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
        }
    }
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

/// This machine's first non-loopback IPv4 address (`hostname -I`), if it has one.
fn non_loopback_ip() -> Option<String> {
    let out = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback() && !a.is_unspecified())
        .map(|a| a.to_string())
}

/// `claudemesh <args>` for `paths` with the broker admin token in the environment.
fn cli_with_token(paths: &Paths, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(EXE)
        .args(args)
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("CLAUDEMESH_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn assert_names_the_fix(err: &str) {
    for fix in ["wss://", "--tls-cert", "reverse proxy", "--insecure-transport"] {
        assert!(err.contains(fix), "the refusal does not name {fix}: {err}");
    }
}

fn meshes(paths: &Paths) -> Vec<claudemesh_agent::MeshConfig> {
    Config::load(paths).map(|c| c.meshes).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_another_host_needs_insecure_transport_at_join_and_in_the_link() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this machine has no non-loopback IPv4 address to address a broker by");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = RunningBroker::start(&format!("{ip}:0"), broker_config(dir.path())).await.unwrap();
    let url = format!("ws://{ip}:{}/ws", broker.addr.port());
    let admin = Paths::new(dir.path().join("admin"));
    let token = broker.admin_token.clone();

    // mesh create: refused before connecting, nothing saved; accepted with the flag, recorded.
    let (code, _, err) =
        cli_with_token(&admin, &token, &["mesh", "create", "team", "--broker", &url, "--name", "admin"]);
    assert_ne!(code, 0);
    assert_names_the_fix(&err);
    assert!(meshes(&admin).is_empty());
    let (code, _, err) = cli_with_token(
        &admin,
        &token,
        &["mesh", "create", "team", "--broker", &url, "--name", "admin", "--insecure-transport"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(meshes(&admin)[0].insecure_transport());

    // The agent's link honours the recorded choice: it connects, and an invite can be made.
    let (code, link, err) = cli(&admin, &["invite", "create", "--mesh", "team"]);
    assert_eq!(code, 0, "{err}");
    let link = link.trim().to_string();

    // join: the same rule for the invite's URL.
    let bob = Paths::new(dir.path().join("bob"));
    let (code, _, err) = cli(&bob, &["join", &link, "--name", "bob"]);
    assert_ne!(code, 0);
    assert_names_the_fix(&err);
    assert!(meshes(&bob).is_empty());
    let (code, _, err) = cli(&bob, &["join", &link, "--name", "bob", "--insecure-transport"]);
    assert_eq!(code, 0, "{err}");
    assert!(meshes(&bob)[0].insecure_transport());
    let mut b = AgentClient::connect(&bob, "test").await.unwrap();
    wait_mesh_status(&mut b, "connected", |m| m.link == LinkState::Connected).await;
    drop(b);
    assert_eq!(cli(&bob, &["agent", "stop"]).0, 0);

    // A config edited by hand to drop the choice: the agent's link refuses, naming the fix.
    let mut cfg = Config::load(&bob).unwrap();
    cfg.meshes[0].set_insecure_transport(false);
    cfg.save(&bob).unwrap();
    assert_eq!(cli(&bob, &["status"]).0, 0);
    let mut b = AgentClient::connect(&bob, "test").await.unwrap();
    let m = wait_mesh_status(&mut b, "refused", |m| m.link == LinkState::Refused).await;
    assert_names_the_fix(m.detail.as_deref().unwrap_or_default());
    drop(b);
    assert_eq!(cli(&bob, &["agent", "stop"]).0, 0);
    assert_eq!(cli(&admin, &["agent", "stop"]).0, 0);
    broker.stop().await.unwrap();
}
