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
