//! What `claudemesh` prints, as a person sees it: output into a pipe whose reader went away
//! (`claudemesh peers | head -1`) ends quietly, and `inbox` says how and when a message came.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Runs `claudemesh <args>` with stdout into a pipe whose read end is already closed, as after
/// `| head` exited; returns (exit code, stderr).
fn into_closed_pipe(paths: &claudemesh_agent::Paths, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(EXE)
        .args(args)
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("HOME", paths.dir.join("home"))
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let w = World::start().await;
    let alice = w.member("alice").await;
    // The agent starts with the first command that needs it; wait until it is linked.
    for _ in 0..200 {
        if cli(&alice, &["status"]).1.contains("connected") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["invite", "--help"],
        &["list"],
        &["list", "--json"],
        &["peers"],
        &["inbox", "--json"],
        &["inbox", "--all"],
        &["status"],
        &["doctor", "--json"],
    ] {
        let (code, stderr) = into_closed_pipe(&alice, args);
        assert_eq!(code, 141, "claudemesh {args:?}: exit {code}, stderr {stderr:?}");
        assert_eq!(stderr, "", "claudemesh {args:?} printed nothing on stderr");
    }
    // A usage error still goes to stderr with clap's code, pipe or not.
    let (code, stderr) = into_closed_pipe(&alice, &["list", "--bogus"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--bogus"), "{stderr}");
    cli(&alice, &["agent", "stop"]);
}

/// Whether `s` is a time as `inbox` shows one: `15:04`, `Nov 29 15:04` or `2024-11-29 15:04`.
fn is_time(s: &str) -> bool {
    let hm = s.rsplit(' ').next().unwrap_or("");
    hm.len() == 5 && hm.as_bytes()[2] == b':' && hm.chars().filter(char::is_ascii_digit).count() == 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_shows_when_and_how_each_message_was_addressed() {
    use claudemesh_protocol::frames::Priority;
    let w = World::start().await;
    let (_alice, mut a) = connected_agent(&w, "alice").await;
    let (bob, mut b) = connected_agent(&w, "bob").await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob", &["backend"]).await;
    wait_peer(&mut a, "bob").await;
    for (to, body) in [("bob", "just for you"), ("@backend", "for the backend"), ("*", "for everyone")] {
        a.call(send_call(to, body, Priority::Next, None)).await.unwrap();
    }
    wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 3).await;

    let (code, out, err) = cli(&bob.paths, &["inbox"]);
    assert_eq!(code, 0, "{err}");
    for (body, to) in
        [("just for you", "to you"), ("for the backend", "to @backend"), ("for everyone", "to everyone (*)")]
    {
        let line = out.lines().find(|l| l.ends_with(body)).unwrap_or_else(|| panic!("no {body:?} in {out}"));
        let (head, _) = line.split_once(" [team] ").unwrap_or_else(|| panic!("{line}"));
        assert!(is_time(head.trim_start_matches(['*', ' '])), "a readable time first: {line}");
        assert!(line.contains(" alice (") && line.contains(&format!(") {to} (next): {body}")), "{line}");
    }
    // --json keeps the raw fields.
    let (_, out, _) = cli(&bob.paths, &["inbox", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let targets: Vec<&str> = v.as_array().unwrap().iter().map(|m| m["target"].as_str().unwrap()).collect();
    assert!(targets.contains(&"@backend") && targets.contains(&"*"), "{targets:?}");
    assert!(targets.iter().any(|t| t.starts_with("session:") || t.starts_with("member:")), "{targets:?}");
    assert!(v[0]["sent_at"].as_u64().unwrap() > 1_700_000_000_000, "Unix milliseconds");
}
