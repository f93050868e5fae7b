//! The journey a new team takes, each step a real `claudemesh` process against a real broker:
//! create a mesh, invite, join, message, and manage invites.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_agent::Paths;
use claudemesh_broker::testkit::RunningBroker;
use common::*;

async fn until(paths: &Paths, args: &[&str], want: &str) -> String {
    for _ in 0..200 {
        // Links and presence settle asynchronously; retry until the output shows `want`.
        let (_, out, _) = cli(paths, args);
        if out.contains(want) {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("`claudemesh {}` never printed {want:?}", args.join(" "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_invite_join_message_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let broker = RunningBroker::start("127.0.0.1:0", broker_config(dir.path())).await.unwrap();
    let token_file = broker.data_dir.join("admin.token");
    let alice = Paths::new(dir.path().join("alice"));
    let bob = Paths::new(dir.path().join("bob"));

    let (code, _, err) = cli(&alice, &["mesh", "create", "team", "--broker", &broker.url]);
    assert_ne!(code, 0);
    assert!(err.contains("--admin-token-file"), "says how to give the token: {err}");
    let (code, out, err) = cli(
        &alice,
        &[
            "mesh",
            "create",
            "team",
            "--broker",
            &broker.url,
            "--admin-token-file",
            token_file.to_str().unwrap(),
            "--name",
            "alice",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created mesh team"), "{out}");

    let (code, link, err) =
        cli(&alice, &["invite", "create", "--uses", "1", "--expires", "1h", "--group", "backend:lead"]);
    assert_eq!(code, 0, "{err}");
    let link = link.trim().to_string();
    assert!(link.starts_with("claudemesh://join/"), "{link}");
    let (code, out, _) = cli(&bob, &["invite", "inspect", &link]);
    assert_eq!(code, 0);
    assert!(out.contains("backend:lead") && out.contains("max uses:   1"), "{out}");
    let (code, out, err) = cli(&bob, &["join", &link, "--name", "bob"]);
    assert_eq!(code, 0, "{out}{err}");

    let out = until(&alice, &["invite", "list"], "used up").await;
    assert!(out.contains("1/1 uses"), "{out}");

    // Bob is a member, not an admin.
    let (code, _, err) = cli(&bob, &["invite", "create"]);
    assert_ne!(code, 0);
    assert!(err.contains("only admins"), "{err}");

    until(&bob, &["status"], "connected").await;
    until(&alice, &["send", "bob", "welcome to the team"], "queued").await;
    let out = until(&bob, &["inbox"], "welcome to the team").await;
    assert!(out.contains("alice"), "{out}");

    // A revoked invite cannot be used.
    let (_, spare, _) = cli(&alice, &["invite", "create", "--uses", "5", "--json"]);
    let spare: serde_json::Value = serde_json::from_str(&spare).unwrap();
    let (code, _, err) = cli(&alice, &["invite", "revoke", spare["invite_id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let carol = Paths::new(dir.path().join("carol"));
    let (code, _, err) = cli(&carol, &["join", spare["url"].as_str().unwrap(), "--name", "carol"]);
    assert_ne!(code, 0);
    assert!(err.contains("revoked"), "{err}");

    for p in [&alice, &bob] {
        cli(p, &["agent", "stop"]);
    }
    broker.stop().await.unwrap();
}
