//! `claudemesh launch` end to end, with real processes: a real broker (in this process) running
//! a deployed service (the workspace's fixture MCP server, built with `cargo build -p
//! claudemesh-broker --bins`), a real agent process, the real `claudemesh launch`, and for
//! `claude` the stand-in `claudemesh-claude-standin` (tests/standin/claude.rs) put on PATH as
//! `claude` — the one thing not real. It records what launch gave it; these tests check the
//! flags and environment, the `mesh:*` entries while it runs, the session at the agent, the exit
//! code, and the clean-up after a normal exit, a SIGTERM to launch and a crash; entries of
//! launches that ended are swept at start and by `claudemesh doctor`. tests/launch_tty.rs runs
//! launch in a real terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_protocol::local::StatusReply;
use common::launch::*;
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const RESUMED: &str = "5ea51e55-0000-4000-8000-000000000001";

/// The agent's open sessions.
async fn sessions(agent: &AgentProcess) -> StatusReply {
    status(&mut agent.client().await).await
}

/// Waits until the agent has no session `sid` open.
async fn wait_closed(agent: &AgentProcess, sid: &str) {
    for _ in 0..200 {
        if !sessions(agent).await.local_sessions.iter().any(|s| s.session_id == sid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session {sid} still open at the agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_runs_claude_with_the_session_and_the_services_and_cleans_up() {
    let w = services_world().await;
    let admin = AgentProcess::start(&w.admin_paths()).await;
    wait_connected(&mut admin.client().await).await;
    deploy_fixture(&w, &admin.paths, "tools");
    let home = Home::new(&admin.paths);

    // Entries a launch that ended left behind (a dead pid, a live pid that is no launch), an
    // entry of the user's own, and a key order to keep.
    let dead = dead_pid();
    let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    home.edit_servers(|s| {
        s.insert("mesh:gone".into(), stale_entry("gone", dead));
        s.insert("mine".into(), json!({"type": "stdio", "command": "my-server", "args": []}));
        s.insert("mesh:reused".into(), stale_entry("reused", sleeper.id()));
    });

    // SIGTERM to launch: claude gets it, launch exits as it did, and cleans up.
    let mut launch = home.spawn(
        "wait",
        &["launch", "--name", "alice-cc", "--group", "dev:lead", "--channels", "--", "--model", "opus"],
    );
    let start = home.wait_record("start", 1).await;
    let sid = start["env"]["CLAUDEMESH_SESSION_ID"].as_str().unwrap().to_string();
    let argv: Vec<&str> = start["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(
        argv,
        [
            "--session-id",
            &sid,
            "--dangerously-load-development-channels",
            "server:claudemesh",
            "--model",
            "opus"
        ]
    );
    let env = &start["env"];
    assert_eq!(env["MCP_TIMEOUT"], "30000");
    assert_eq!(env["MAX_MCP_OUTPUT_TOKENS"], "50000");
    assert_eq!(env["CLAUDEMESH_LAUNCH_PID"], launch.id().to_string());
    assert_eq!(start["ppid"], launch.id(), "launch stays claude's parent");
    assert_eq!(
        (&env["CLAUDEMESH_NAME"], &env["CLAUDEMESH_GROUPS"]),
        (&json!("alice-cc"), &json!("dev:lead"))
    );
    assert_eq!(env["CLAUDEMESH_PUSH"], "1");

    // What claude found in ~/.claude.json when it started: the running service as an MCP
    // server tagged with this launch, the stale entries gone, the rest in its order.
    let servers = start["claude_json"]["mcpServers"].as_object().unwrap().clone();
    let keys: Vec<&str> = servers.keys().map(String::as_str).collect();
    assert_eq!(keys, ["claudemesh", "mine", "mesh:tools"], "{servers:?}");
    let pid = launch.id().to_string();
    // The command is this claudemesh, as `install` names it.
    assert_eq!(
        servers["mesh:tools"],
        json!({"type": "stdio", "command": servers["claudemesh"]["command"], "args":
            ["mcp", "--service", "tools", "--mesh", "team", "--launch-pid", pid]})
    );
    assert_eq!(home.servers(), servers, "the entries stay while claude runs");

    // The session was registered before claude started, with its name and groups.
    let st = sessions(&admin).await;
    let s = st.local_sessions.iter().find(|s| s.session_id == sid).expect("session registered");
    assert_eq!(s.display_name, "alice-cc");
    assert!(s.groups.contains(&"dev".to_string()), "{:?}", s.groups);

    kill(Pid::from_raw(launch.id() as i32), Signal::SIGTERM).unwrap();
    let code = wait_exit(&mut launch, Duration::from_secs(20)).await;
    assert_eq!(code, 128 + 15, "claude was killed by the SIGTERM launch forwarded");
    let keys: Vec<String> = home.servers().keys().cloned().collect();
    assert_eq!(keys, ["claudemesh", "mine"], "its entries are gone after SIGTERM");
    wait_closed(&admin, &sid).await;

    // A normal exit: claude's code, entries gone; the id of a resumed session is shared, and
    // MCP limits the user set are kept.
    let mut launch = home
        .command("exit:7", &["launch", "--", "--resume", RESUMED])
        .env("MCP_TIMEOUT", "1234")
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut launch, Duration::from_secs(20)).await, 7);
    let start = home.wait_record("start", 2).await;
    assert_eq!(start["argv"], json!(["--resume", RESUMED]));
    assert_eq!(
        (&start["env"]["CLAUDEMESH_SESSION_ID"], &start["env"]["MCP_TIMEOUT"]),
        (&json!(RESUMED), &json!("1234"))
    );
    assert!(start["claude_json"]["mcpServers"]["mesh:tools"].is_object());
    assert!(!home.servers().contains_key("mesh:tools"));
    wait_closed(&admin, RESUMED).await;

    // claude crashing: launch exits 128 + the signal, and cleans up all the same.
    for (mode, sig, n) in [("segv", 11, 3), ("kill", 9, 4)] {
        let mut launch = home.spawn(mode, &["launch"]);
        assert_eq!(wait_exit(&mut launch, Duration::from_secs(20)).await, 128 + sig, "{mode}");
        let start = home.wait_record("start", n).await;
        assert!(start["claude_json"]["mcpServers"]["mesh:tools"].is_object(), "{mode}");
        assert!(!home.servers().contains_key("mesh:tools"), "{mode}: entries left");
        wait_closed(&admin, start["env"]["CLAUDEMESH_SESSION_ID"].as_str().unwrap()).await;
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_removes_entries_of_launches_that_ended() {
    let w = World::start().await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    wait_connected(&mut bob.client().await).await;
    let home = Home::new(&bob.paths);
    let dead = dead_pid();
    // A live launch's entry stays: this one is a real launch, waiting in its claude.
    let mut live = home.spawn("wait", &["launch"]);
    home.wait_record("start", 1).await;
    home.edit_servers(|s| {
        s.insert("mesh:gone".into(), stale_entry("gone", dead));
        s.insert("mesh:live".into(), stale_entry("live", live.id()));
    });

    let out = home.command("exit:0", &["doctor", "--json"]).output().unwrap();
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = checks.as_array().unwrap().iter().find(|c| c["check"] == "launch entries").unwrap();
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("removed 1") && detail.contains(&format!("mesh:gone (launch pid {dead})")),
        "{c}"
    );
    let servers = home.servers();
    assert!(!servers.contains_key("mesh:gone") && servers.contains_key("mesh:live"), "{servers:?}");

    let out = home.command("exit:0", &["doctor", "--json"]).output().unwrap();
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = checks.as_array().unwrap().iter().find(|c| c["check"] == "launch entries").unwrap();
    assert_eq!(c["detail"], "none of an ended launch", "{c}");

    kill(Pid::from_raw(live.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_exit(&mut live, Duration::from_secs(20)).await, 143);
    assert!(!home.servers().contains_key("mesh:live"), "the live launch removed its own on exit");
}

#[test]
fn without_claude_launch_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = claudemesh_agent::Paths::new(dir.path().join("cm"));
    let home = Home::new(&paths);
    let out = home.command("exit:0", &["launch"]).env("PATH", "/nonexistent").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("npm install -g @anthropic-ai/claude-code") && err.contains("CLAUDEMESH_CLAUDE"),
        "{err}"
    );
}

/// The real Claude Code (`claude mcp list`, which starts every MCP server of `~/.claude.json`
/// and health-checks it) sees each service a launch wrote as a connected server. The launched
/// `claude` is the stand-in, waiting; the real one runs beside it in the same home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_sees_the_launched_services_connected() {
    let Some(claude) = common::external::claude("real_claude_sees_the_launched_services_connected").await
    else {
        return;
    };
    let w = services_world().await;
    let admin = AgentProcess::start(&w.admin_paths()).await;
    wait_connected(&mut admin.client().await).await;
    deploy_fixture(&w, &admin.paths, "tools");
    deploy_fixture(&w, &admin.paths, "search");
    let home = Home::new(&admin.paths);
    let mut launch = home.spawn("wait", &["launch", "--name", "cc-list"]);
    home.wait_record("start", 1).await;

    let mut cmd = tokio::process::Command::new(&claude);
    cmd.args(["mcp", "list"])
        .current_dir(home.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home.home)
        .env("CLAUDEMESH_CONFIG_DIR", &home.paths.dir)
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    let out = common::external::run("claude mcp list", &mut cmd, Duration::from_secs(120)).await;
    let text = format!("{}{}", common::external::stdout(&out), common::external::stderr(&out));
    for name in ["mesh:tools", "mesh:search"] {
        let line = text.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_else(|| {
            panic!("claude mcp list does not show {name}:\n{text}");
        });
        assert!(line.contains("Connected"), "{name} is not connected: {line}\n{text}");
        assert!(line.contains("--service") && line.contains("--launch-pid"), "{line}");
    }

    kill(Pid::from_raw(launch.id() as i32), Signal::SIGTERM).unwrap();
    wait_exit(&mut launch, Duration::from_secs(20)).await;
    assert!(!home.servers().keys().any(|k| k.starts_with("mesh:")), "{:?}", home.servers());
}
