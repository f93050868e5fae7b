//! Shared MCP services as people use them, each step a real `claudemesh` process against real
//! agent processes and a real broker (in this process) with real runner processes
//! (`claudemesh broker runner`) and the workspace's fixture MCP server
//! (`claudemesh-mcp-fixture`, built with `cargo build -p claudemesh-broker --bins`): the
//! admin deploys a command, another member finds it in the catalog, calls it, reads its logs
//! and schema, loses access when the scope narrows; a member hosts a local server with
//! `serve-mcp`, another calls it, and gets a clear error once the host's agent is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use claudemesh_agent::Paths;
use common::*;
use serde_json::Value;

/// The fixture MCP server, next to the `claudemesh` binary under test.
fn fixture() -> String {
    let p = PathBuf::from(EXE).with_file_name("claudemesh-mcp-fixture");
    assert!(p.exists(), "{} is missing: run `cargo build -p claudemesh-broker --bins` first", p.display());
    p.display().to_string()
}

/// A world whose broker runs services with runners from this build.
async fn world() -> World {
    World::start_with(|d| {
        let mut c = broker_config(d);
        c.services.runner_command = vec![EXE.into(), "broker".into(), "runner".into()];
        c
    })
    .await
}

/// `claudemesh <args>` with more environment.
fn cli_env(paths: &Paths, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(EXE)
        .args(args)
        .envs(env.iter().copied())
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn json(paths: &Paths, args: &[&str]) -> Value {
    let (code, out, err) = cli(paths, args);
    assert_eq!(code, 0, "{args:?}: {out} {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn names(catalog: &Value) -> Vec<String> {
    catalog["services"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// Runs `args` until `done(code, stdout, stderr)` holds (20 s at most).
async fn poll_cli(paths: &Paths, args: &[&str], done: impl Fn(i32, &str, &str) -> bool) -> (String, String) {
    let mut last = (0, String::new(), String::new());
    for _ in 0..100 {
        let (code, out, err) = cli(paths, args);
        if done(code, &out, &err) {
            return (out, err);
        }
        last = (code, out, err);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{args:?} never got there: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_service_is_found_called_scoped_and_undeployed() {
    let fixture = fixture();
    let w = world().await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    wait_connected(&mut bob.client().await).await;
    let admin = AgentProcess::start(&w.admin_paths()).await;
    wait_connected(&mut admin.client().await).await;
    let token = w.broker.as_ref().unwrap().admin_token.clone();

    // Without the admin token a command deploy is refused before anything is sent.
    let (code, _, err) = cli(&admin.paths, &["deploy", "tools", "--command", "--", &fixture]);
    assert_ne!(code, 0);
    assert!(err.contains("admin-token-file"), "{err}");

    let (code, out, err) = cli_env(
        &admin.paths,
        &[("CLAUDEMESH_ADMIN_TOKEN", &token)],
        &[
            "deploy",
            "tools",
            "--scope",
            "mesh",
            "--env",
            "FIXTURE_SECRET=hunter2-value",
            "--json",
            "--command",
            "--",
            &fixture,
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(!out.contains("hunter2") && !err.contains("hunter2"), "env values are never printed");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "running", "{r}");
    assert!(r["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{r}");

    // Another member sees it, reads its schema, calls it.
    let cat = json(&bob.paths, &["catalog", "--json"]);
    assert_eq!(names(&cat), ["tools"], "{cat}");
    assert_eq!(cat["services"][0]["mesh"], "team");
    let (code, table, _) = cli(&bob.paths, &["catalog"]);
    assert_eq!(code, 0);
    assert!(table.contains("NAME") && table.contains("tools") && table.contains("running"), "{table}");
    let schema = json(&bob.paths, &["schema", "tools", "echo", "--json"]);
    assert_eq!(schema["tools"][0]["name"], "echo", "{schema}");
    let (code, out, err) = cli(&bob.paths, &["call", "tools", "echo", "--arg", "text=hello mesh"]);
    assert_eq!((code, out.trim()), (0, "hello mesh"), "{err}");
    let (code, out, _) =
        cli(&bob.paths, &["call", "tools", "add", "--json-args", r#"{"a":2}"#, "--arg", "b=40"]);
    assert_eq!((code, out.trim()), (0, "42"));
    let whole = json(&bob.paths, &["call", "tools", "echo", "--arg", "text=x", "--json"]);
    assert_eq!(whole["content"][0]["text"], "x", "{whole}");
    let (code, _, err) = cli(&bob.paths, &["call", "tools", "nope"]);
    assert_ne!(code, 0, "an unknown tool is an error: {err}");
    let logs = json(&bob.paths, &["logs", "tools", "--json"]);
    assert_eq!(logs["name"], "tools", "{logs}");

    // Narrowed to the admin alone (by name): bob loses catalog, schema, logs and calls.
    let (code, out, err) = cli(&admin.paths, &["scope", "tools", "members:admin", "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    let scope: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(scope["scope"]["members"][0], w.admin.member_id, "the name became the member id: {scope}");
    let (code, _, err) = cli(&admin.paths, &["scope", "tools", "members:nobody-here"]);
    assert_ne!(code, 0);
    assert!(err.contains("nobody-here"), "{err}");
    assert!(names(&json(&bob.paths, &["catalog", "--json"])).is_empty());
    for args in
        [&["call", "tools", "echo", "--arg", "text=hi"][..], &["schema", "tools"][..], &["logs", "tools"][..]]
    {
        let (code, out, err) = cli(&bob.paths, args);
        assert_ne!(code, 0, "{args:?}: {out}");
        assert!(err.starts_with("error:") && err.contains("tools"), "{args:?}: {err}");
    }
    let shown = json(&admin.paths, &["scope", "tools", "--json"]);
    assert_eq!(shown["scope"]["members"][0], w.admin.member_id);

    let (code, _, err) = cli(&admin.paths, &["undeploy", "tools"]);
    assert_eq!(code, 0, "{err}");
    assert!(names(&json(&admin.paths, &["catalog", "--json"])).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_hosts_a_local_server_for_the_mesh() {
    let fixture = fixture();
    let w = world().await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    wait_connected(&mut bob.client().await).await;
    let admin = AgentProcess::start(&w.admin_paths()).await;
    wait_connected(&mut admin.client().await).await;

    let (code, out, err) =
        cli(&bob.paths, &["serve-mcp", "bobtools", "--scope", "mesh", "--json", "--", &fixture]);
    assert_eq!(code, 0, "{out} {err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(r["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{r}");
    let cfg = std::fs::read_to_string(bob.paths.config()).unwrap();
    assert!(cfg.contains("bobtools"), "kept in config.json for the next start");

    let cat = json(&admin.paths, &["catalog", "--json"]);
    assert_eq!(names(&cat), ["bobtools"], "{cat}");
    assert_eq!(cat["services"][0]["hosted_by"], "peer");
    let (code, out, err) =
        cli(&admin.paths, &["call", "bobtools", "echo", "--arg", "text=from bob's machine"]);
    assert_eq!((code, out.trim()), (0, "from bob's machine"), "{err}");

    // The host goes away: calls fail at once with a clear error.
    bob.kill9();
    let (_, err) =
        poll_cli(&admin.paths, &["call", "bobtools", "echo", "--arg", "text=x"], |code, _, _| code != 0)
            .await;
    assert!(err.contains("offline") || err.contains("host"), "{err}");
}
