//! `claudemesh send` takes the body from an argument, stdin (`-`) or `--file`, refuses empty and
//! oversized ones, and prints the id `claudemesh message-status` follows per recipient.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

/// Runs `message-status id` until its output contains `want`; returns it.
async fn status_until(paths: &claudemesh_agent::Paths, id: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        let (code, out, err) = cli(paths, &["message-status", id]);
        assert_eq!(code, 0, "{err}");
        if out.contains(want) {
            return out;
        }
        last = out;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("message-status {id} never showed {want:?}; last:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_from_stdin_or_a_file_and_follow_each_recipient() {
    let w = World::start().await;
    let (alice, mut a) = connected_agent(&w, "alice").await;
    let (_bob, mut b) = connected_agent(&w, "bob").await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob", &[]).await;
    wait_peer(&mut a, "bob").await;
    let p = &alice.paths;

    let (code, out, err) = cli_stdin(p, &["send", "bob", "-", "--json"], b"from stdin\n");
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = first["id"].as_str().unwrap().to_string();
    let file = w.dir.path().join("note.md");
    std::fs::write(&file, "from a file\nsecond line\n").unwrap();
    let (code, out, err) = cli(p, &["send", "bob", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let second = out.strip_prefix("queued message ").and_then(|r| r.split(' ').next()).unwrap().to_string();
    assert!(out.contains(&format!("`claudemesh message-status {second}`")), "{out}");
    let inbox = wait_inbox(&mut b, Some("000000a0-5e55-4000-8000-000000000000"), 2).await;
    assert_eq!(bodies(&inbox), ["from stdin", "from a file\nsecond line"], "the trailing newline is dropped");

    // Bad bodies are refused before anything is sent, saying why.
    let missing = w.dir.path().join("nope.txt");
    let big = w.dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(70 * 1024)).unwrap();
    for (args, stdin, want) in [
        (
            vec!["send", "bob", "--file", missing.to_str().unwrap()],
            "",
            format!("cannot read --file {}", missing.display()),
        ),
        (vec!["send", "bob", "-"], "\n", "stdin is empty; nothing was sent".to_string()),
        (vec!["send", "bob", ""], "", "the message is empty".to_string()),
        (
            vec!["send", "bob", "--file", big.to_str().unwrap()],
            "",
            "is 71680 bytes; a message holds at most 64 KiB".into(),
        ),
        (vec!["send", "bob", "-"], &*"y".repeat(70 * 1024), "stdin holds more than 64 KiB".into()),
        (vec!["send", "bob", "text", "--file", big.to_str().unwrap()], "", "cannot be used with".into()),
    ] {
        let (code, _, err) = cli_stdin(p, &args, stdin.as_bytes());
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(&want), "{args:?}: {err}");
    }

    // Each recipient's state: delivered to bob's agent, then seen once a session reads it.
    status_until(p, &first, "bob (").await;
    let out = status_until(p, &first, ": delivered at ").await;
    assert!(out.starts_with(&format!("message {first} to bob in team, sent ")), "{out}");
    assert!(out.contains("accepted by the broker as "), "{out}");
    take_and_confirm(&mut b, "000000a0-5e55-4000-8000-000000000000").await;
    let out = status_until(p, &second, ": seen at ").await;
    assert!(out.contains("seen in a session"), "{out}");
    let (code, out, _) = cli(p, &["message-status", &second, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["recipient_states"][0]["state"].as_str()),
        (Some("accepted"), Some("seen"))
    );
    let (code, _, err) = cli(p, &["message-status", "no-such-id"]);
    assert_ne!(code, 0);
    assert!(err.contains("no message no-such-id"), "{err}");
}
