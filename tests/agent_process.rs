//! The agent as a real process: `claudemesh agent run/start/stop/status`, the singleton lock,
//! stale files from a crash, SIGKILL with work in flight, socket permissions, bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use claudemesh_agent::AgentClient;
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::AgentCall;
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_status_stop_and_the_singleton() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    let (code, out, _) = cli(&paths, &["agent", "status"]);
    assert_eq!(code, 3, "not running: {out}");
    assert!(out.contains("not running"));
    let (code, out, err) = cli(&paths, &["agent", "start"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("agent started"), "{out}");
    let (code, out, _) = cli(&paths, &["agent", "start"]);
    assert_eq!(code, 0);
    assert!(out.contains("already running"), "a second start reports the running one: {out}");
    // A second foreground agent refuses, naming the running one.
    let (code, _, err) = cli(&paths, &["agent", "run"]);
    assert_eq!(code, 1);
    assert!(err.contains("already running"), "{err}");
    for _ in 0..200 {
        let (_, out, _) = cli(&paths, &["agent", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["meshes"][0]["link"] == "connected" {
            assert_eq!(v["meshes"][0]["slug"], "team");
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, out, _) = cli(&paths, &["agent", "status"]);
    assert!(out.contains("team") && out.contains("connected"), "{out}");
    let (code, out, _) = cli(&paths, &["agent", "stop"]);
    assert_eq!(code, 0);
    assert!(out.contains("agent stopped"), "{out}");
    assert!(!paths.socket().exists() && !paths.pid().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_by_a_crashed_agent_are_cleaned_up() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    let a = AgentProcess::start(&paths).await;
    a.kill9();
    assert!(paths.socket().exists(), "SIGKILL leaves the socket behind");
    assert!(paths.pid().exists(), "and the pid file");
    let a = AgentProcess::start(&paths).await;
    let mut c = a.client().await;
    wait_connected(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_accepted_before_sigkill_is_delivered_after_restart() {
    let mut w = World::start().await;
    let alice_paths = w.member("alice").await;
    let bob = RunningAgent::start(&w.member("bob").await).await;
    let mut b = bob.client().await;
    wait_connected(&mut b).await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob", &[]).await;
    let alice = AgentProcess::start(&alice_paths).await;
    let mut a = alice.client().await;
    wait_connected(&mut a).await;
    wait_peer(&mut a, "bob").await;
    // The broker is down, so the send can only be in alice's outbox when she dies.
    w.stop_broker().await;
    let r = a.call(send_call("bob", "survives a crash", Priority::Now, None)).await.unwrap();
    assert!(r["id"].is_string());
    drop(a);
    alice.kill9();
    w.start_broker().await;
    let _alice = AgentProcess::start(&alice_paths).await;
    let inbox = wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 1).await;
    assert_eq!(bodies(&inbox), ["survives a crash"]);
}

/// alice's agent in-process and bob's as a real process (to be SIGKILLed), both connected, with
/// a bob session `sid` named `name` that alice sees.
async fn alice_and_bob_process(
    w: &World,
    sid: &str,
    name: &str,
) -> (RunningAgent, AgentClient, AgentProcess, AgentClient) {
    let alice = RunningAgent::start(&w.member("alice").await).await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    let mut a = alice.client().await;
    let mut b = bob.client().await;
    wait_connected(&mut a).await;
    wait_connected(&mut b).await;
    register(&mut b, sid, name, &[]).await;
    wait_peer(&mut a, name).await;
    (alice, a, bob, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_interrupted_by_sigkill_come_back_and_show_once() {
    let w = World::start().await;
    let (_alice, mut a, bob, b) =
        alice_and_bob_process(&w, "000000a0-5e55-4000-8000-000000000000", "bob").await;
    let bob_paths = bob.paths.clone();
    for i in 0..40 {
        a.call(send_call("bob", &format!("m{i:02}"), Priority::Next, None)).await.unwrap();
    }
    // Kill bob while messages are arriving: some are stored but not yet acknowledged.
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(b);
    bob.kill9();
    let bob = AgentProcess::start(&bob_paths).await;
    let mut b = bob.client().await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob", &[]).await;
    let all = wait_inbox(&mut b, None, 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = {
        let again = read_inbox(&mut b, None).await;
        assert_eq!(again.messages.len(), all.messages.len());
        again
    };
    let mut got = bodies(&all);
    got.sort();
    let want: Vec<String> = (0..40).map(|i| format!("m{i:02}")).collect();
    assert_eq!(got, want, "every message exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_sessions_left_unseen_before_a_crash_goes_to_the_next_session() {
    let w = World::start().await;
    let (_alice, mut a, bob, mut b) =
        alice_and_bob_process(&w, "000000a9-5e55-4000-8000-000000000000", "bob-laptop").await;
    let bob_paths = bob.paths.clone();
    // To the member, not to that session: any of bob's sessions may take it.
    a.call(send_call("bob", "sent before the crash", Priority::Next, None)).await.unwrap();
    wait_inbox(&mut b, Some("000000a9-5e55-4000-8000-000000000000"), 1).await;
    drop(b);
    bob.kill9();

    // The session is gone with the agent; a new one (another Claude Code) gets the message.
    let bob = AgentProcess::start(&bob_paths).await;
    let mut b = bob.client().await;
    register(&mut b, "000000aa-5e55-4000-8000-000000000000", "bob-laptop", &[]).await;
    let got = wait_inbox(&mut b, Some("000000aa-5e55-4000-8000-000000000000"), 1).await;
    assert_eq!(bodies(&got), ["sent before the crash"]);
    // A session id with control characters is refused (ids are index keys).
    let bad = b
        .call(AgentCall::SessionRegister(claudemesh_protocol::local::SessionRegister {
            meshes: vec![],
            session: claudemesh_protocol::frames::SessionInfo {
                session_id: "a\u{1f}b".into(),
                display_name: "x".into(),
                ..Default::default()
            },
            claude_pid: None,
            default_name: false,
        }))
        .await;
    assert!(bad.is_err(), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_private_and_bad_requests_do_not_disturb_others() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    let a = AgentProcess::start(&paths).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&paths.socket()), 0o600);
    assert_eq!(mode(&paths.dir), 0o700);
    assert_eq!(mode(&paths.config()), 0o600);

    let mut good = a.client().await;
    let raw = tokio::net::UnixStream::connect(paths.socket()).await.unwrap();
    let (r, mut wr) = raw.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    // Before hello: refused.
    wr.write_all(b"{\"type\":\"request\",\"id\":1,\"method\":\"status\"}\n").await.unwrap();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains("\"ok\":false") && line.contains("unauthorized"), "{line}");
    wr.write_all(b"{\"type\":\"hello\",\"protocol\":1,\"client\":\"probe\"}\n").await.unwrap();
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains("agent_version"), "{line}");
    for (bad, want) in [
        ("not json\n", "invalid"),
        ("{\"type\":\"request\",\"id\":7,\"method\":\"format_disk\"}\n", "invalid"),
        ("{\"type\":\"request\",\"id\":8,\"method\":\"send\",\"params\":{\"to\":\"x\"}}\n", "invalid"),
        (
            "{\"type\":\"request\",\"id\":9,\"method\":\"send\",\"params\":{\"to\":\"x\",\"message\":\"hi\",\"mesh\":\"nope\"}}\n",
            "not_found",
        ),
    ] {
        wr.write_all(bad.as_bytes()).await.unwrap();
        line.clear();
        r.read_line(&mut line).await.unwrap();
        assert!(line.contains("\"ok\":false") && line.contains(want), "{bad} -> {line}");
    }
    // The probe's id comes back so it can match the error.
    assert!(line.contains("\"id\":9"), "{line}");
    // A line that is not UTF-8 is one more bad line: answered (with its id), the connection
    // stays open and its next request is served.
    wr.write_all(b"{\"type\":\"request\",\"id\":10,\"method\":\"st\xffatus\"}\n").await.unwrap();
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert!(
        line.contains("\"ok\":false") && line.contains("invalid") && line.contains("\"id\":10"),
        "{line}"
    );
    wr.write_all(b"\xc3\x28\xa0\xa1\n{\"type\":\"request\",\"id\":11,\"method\":\"status\"}\n")
        .await
        .unwrap();
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains("\"ok\":false") && line.contains("UTF-8"), "{line}");
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains("\"ok\":true") && line.contains("\"id\":11"), "{line}");
    // An oversized line is dropped with `too_large`; only that line is lost.
    let big = vec![b'x'; claudemesh_protocol::limits::MAX_AGENT_LINE_BYTES + 10];
    let _ = wr.write_all(&big).await;
    let _ = wr.write_all(b"\n").await;
    line.clear();
    let _ = r.read_line(&mut line).await;
    assert!(line.contains("too_large"), "{line}");
    // The other client never noticed.
    let st = good.call(AgentCall::Status).await.unwrap();
    assert!(st["pid"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_finds_no_agent_starts_one() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    assert!(!paths.socket().exists());
    let exe = std::path::Path::new(EXE);
    let mut c = claudemesh_agent::connect_or_start(&paths, "test", exe).await.unwrap();
    wait_connected(&mut c).await;
    let st = c.call(AgentCall::Status).await.unwrap();
    assert!(st["pid"].as_u64().unwrap() != u64::from(std::process::id()), "a separate agent process");
    c.call(AgentCall::Shutdown).await.unwrap();
    // A failed start names the log: an unusable config makes the agent exit at once.
    for _ in 0..200 {
        if !paths.socket().exists() && !paths.pid().exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    std::fs::write(paths.config(), "{ broken").unwrap();
    let e = claudemesh_agent::connect_or_start(&paths, "test", exe).await.unwrap_err().to_string();
    assert!(e.contains("agent.log"), "{e}");
    assert!(e.contains("not valid"), "the log tail says why: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_another_protocol_version_is_restarted() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    // A stand-in for an older agent: answers hello with protocol 99 and exits on shutdown.
    let listener = tokio::net::UnixListener::bind(paths.socket()).unwrap();
    let sock = paths.socket();
    let old = tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut wr) = s.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            wr.write_all(b"{\"type\":\"hello\",\"protocol\":99,\"agent_version\":\"0.0.1\"}\n")
                .await
                .unwrap();
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) > 0 && line.contains("shutdown") {
                wr.write_all(b"{\"type\":\"response\",\"id\":1,\"ok\":true,\"result\":{}}\n").await.unwrap();
                std::fs::remove_file(&sock).unwrap();
                return;
            }
        }
    });
    let mut c = claudemesh_agent::connect_or_start(&paths, "test", std::path::Path::new(EXE)).await.unwrap();
    old.await.unwrap();
    let st = c.call(AgentCall::Status).await.unwrap();
    assert_eq!(st["agent_version"], env!("CARGO_PKG_VERSION"), "the current agent replaced the old one");
    c.call(AgentCall::Shutdown).await.unwrap();
}

#[test]
fn agent_install_explains_the_fallback_where_systemd_is_unavailable() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(EXE)
            .args(args)
            .env("HOME", home.path())
            .env("CLAUDEMESH_CONFIG_DIR", home.path().join(".claudemesh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run(&["agent", "install", "--json"]);
    let unit = std::path::PathBuf::from(v["unit"].as_str().unwrap());
    assert!(unit.ends_with(".config/systemd/user/claudemesh-agent.service"), "{unit:?}");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("agent run") && text.contains("Restart=on-failure"), "{text}");
    assert!(text.contains(EXE), "absolute path of the running binary: {text}");
    if v["activated"] == false {
        assert!(v["note"].as_str().unwrap().contains("auto-start"), "{v}");
    }
    let v = run(&["agent", "uninstall", "--json"]);
    assert_eq!(v["removed"], true);
    assert!(!unit.exists());
    let v = run(&["agent", "uninstall", "--json"]);
    assert_eq!(v["removed"], false, "idempotent");
}
