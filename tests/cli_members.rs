//! Membership as people run it, each step a real `claudemesh` process against real agents and
//! a real broker: `members`, `member set`, `member remove`, `leave` (through the agent, which
//! tells the broker) and joining again under the same name; and invites that carry an address
//! teammates can reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_agent::Paths;
use claudemesh_broker::testkit::{Client, RunningBroker};
use claudemesh_protocol::local::LinkState;
use common::*;
use serde_json::Value;

fn json(paths: &Paths, args: &[&str]) -> Value {
    let (code, out, err) = cli(paths, args);
    assert_eq!(code, 0, "{args:?}: {out} {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Runs `args` until `done(exit code, stdout, stderr)` holds (20 s at most); returns the output.
async fn poll_cli(paths: &Paths, args: &[&str], done: impl Fn(i32, &str, &str) -> bool) -> (String, String) {
    let mut last = (String::new(), String::new());
    for _ in 0..200 {
        let (code, out, err) = cli(paths, args);
        if done(code, &out, &err) {
            return (out, err);
        }
        last = (out, err);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{args:?} never got there: {last:?}");
}

fn member<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|m| m["display_name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lists_changes_and_removes_members() {
    let w = World::start().await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    let mut b = bob.client().await;
    wait_connected(&mut b).await;
    register(&mut b, "000000a0-5e55-4000-8000-000000000000", "bob-laptop", &[]).await;
    let admin = RunningAgent::start(&w.admin_paths()).await;
    let mut a = admin.client().await;
    wait_connected(&mut a).await;

    let (out, _) = poll_cli(&admin.paths, &["members", "--json"], |_, out, _| {
        serde_json::from_str::<Value>(out).is_ok_and(|v| {
            member(&v, "bob").is_some_and(|m| m["sessions"] == serde_json::json!(["bob-laptop"]))
        })
    })
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    let b_entry = member(&v, "bob").unwrap();
    let bob_id = b_entry["member_id"].as_str().unwrap().to_string();
    assert_eq!(b_entry["short_id"], bob_id[..8], "{b_entry}");
    assert_eq!((b_entry["role"].as_str(), b_entry["online"].as_bool()), (Some("member"), Some(true)));
    let me = member(&v, "admin").unwrap();
    assert_eq!((me["me"].as_bool(), me["role"].as_str()), (Some(true), Some("admin")), "{me}");
    let (_, text, _) = cli(&admin.paths, &["members"]);
    assert!(text.contains("bob-laptop") && text.contains(&bob_id[..8]) && text.contains("online"), "{text}");
    assert!(text.contains("admin (you)"), "{text}");

    let r = json(&admin.paths, &["member", "set", "bob", "--role", "admin", "--group", "ops:lead", "--json"]);
    assert_eq!(r["role"], "admin", "{r}");
    poll_cli(&admin.paths, &["members", "--json"], |_, out, _| {
        serde_json::from_str::<Value>(out).is_ok_and(|v| {
            member(&v, "bob").is_some_and(|m| {
                m["role"] == "admin" && m["groups"] == serde_json::json!([{"name": "ops", "role": "lead"}])
            })
        })
    })
    .await;
    let (_, text, _) = cli(&admin.paths, &["members"]);
    assert!(text.contains("ops:lead"), "{text}");
    let (code, _, err) = cli(&admin.paths, &["member", "set", "bob"]);
    assert_ne!(code, 0);
    assert!(err.contains("nothing to change"), "{err}");

    // No terminal and no --yes: refused, nothing happens.
    let (code, _, err) = cli(&admin.paths, &["member", "remove", "bob"]);
    assert_ne!(code, 0);
    assert!(err.contains("pass --yes"), "{err}");
    let (code, out, err) = cli(&admin.paths, &["member", "remove", &bob_id[..8], "--yes"]);
    assert_eq!(code, 0, "a short id works too: {out} {err}");
    assert!(out.contains("removed bob"), "{out}");

    // bob's agent stops for good and says how to clear it; sends to him say why they cannot go.
    let st = wait_mesh_status(&mut b, "refused", |m| m.link == LinkState::Refused).await;
    assert!(st.detail.as_deref().unwrap().contains("claudemesh leave team"), "{st:?}");
    let (_, err) = poll_cli(&admin.paths, &["send", "bob", "are you there?"], |code, _, err| {
        code != 0 && err.contains("was removed")
    })
    .await;
    assert!(err.contains("bob was removed from the mesh"), "{err}");
    let v = json(&admin.paths, &["members", "--json"]);
    assert!(member(&v, "bob").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_is_gone_and_can_come_back_under_the_same_name() {
    // Needs the broker's `leave` frame (branch i9-broker).
    let w = World::start().await;
    let admin = RunningAgent::start(&w.admin_paths()).await;
    let mut a = admin.client().await;
    wait_connected(&mut a).await;
    let invite = |uses: &str| {
        json(&admin.paths, &["invite", "create", "--uses", uses, "--json"])["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let link = invite("2");
    let alice = Paths::new(w.dir.path().join("cli-alice"));
    let bob = Paths::new(w.dir.path().join("cli-bob"));
    for (p, name) in [(&alice, "alice"), (&bob, "bob")] {
        let (code, out, err) = cli(p, &["join", &link, "--name", name]);
        assert_eq!(code, 0, "{out} {err}");
        assert_eq!(cli(p, &["status"]).0, 0);
    }
    poll_cli(&alice, &["send", "bob", "hello bob"], |code, _, _| code == 0).await;
    let old_bob = json(&alice, &["members", "--json"]);
    let old_id = member(&old_bob, "bob").unwrap()["member_id"].as_str().unwrap().to_string();

    let r = json(&bob, &["leave", "team", "--yes", "--json"]);
    assert_eq!(r["broker_told"], true, "{r}");
    assert_eq!(cli(&bob, &["list", "--json"]).1.trim(), "[]");
    let (_, err) =
        poll_cli(&alice, &["send", "bob", "still there?"], |code, _, err| code != 0 && err.contains("left"))
            .await;
    assert!(err.contains("bob left the mesh"), "{err}");

    // bob comes back with a new invite under the same name: sends reach the new bob only.
    let (code, out, err) = cli(&bob, &["join", &invite("1"), "--name", "bob"]);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(cli(&bob, &["status"]).0, 0);
    poll_cli(&alice, &["send", "bob", "welcome back"], |code, _, _| code == 0).await;
    poll_cli(&bob, &["inbox"], |_, out, _| out.contains("welcome back")).await;
    let v = json(&alice, &["members", "--json"]);
    let bobs: Vec<&Value> = v.as_array().unwrap().iter().filter(|m| m["display_name"] == "bob").collect();
    assert_eq!(bobs.len(), 1, "no ghost: {v}");
    assert_ne!(bobs[0]["member_id"], old_id.as_str());
    for p in [&alice, &bob] {
        cli(p, &["agent", "stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_carry_an_address_teammates_can_reach() {
    // A broker on loopback without --public-url: the invite is made, with a warning.
    let w = World::start().await;
    let admin = RunningAgent::start(&w.admin_paths()).await;
    let mut a = admin.client().await;
    wait_connected(&mut a).await;
    let (code, out, err) = cli(&admin.paths, &["invite", "create"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.starts_with("claudemesh://join/"), "{out}");
    assert!(
        err.contains("warning:") && err.contains("--broker-url") && err.contains("--public-url"),
        "{err}"
    );
    let v = json(&admin.paths, &["invite", "create", "--json"]);
    assert!(v["warning"].as_str().unwrap().contains("other machines"), "{v}");
    // An explicit address: carried, no warning; a bad one is refused.
    let (code, out, err) =
        cli(&admin.paths, &["invite", "create", "--broker-url", "ws://10.1.2.3:7000/ws", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let url = serde_json::from_str::<Value>(&out).unwrap()["url"].as_str().unwrap().to_string();
    let inspected = json(&admin.paths, &["invite", "inspect", &url, "--json"]);
    assert_eq!(inspected["payload"]["broker_url"], "ws://10.1.2.3:7000/ws");
    let (code, _, err) = cli(&admin.paths, &["invite", "create", "--broker-url", "http://10.1.2.3/ws"]);
    assert_ne!(code, 0);
    assert!(err.contains("ws://") && err.contains("wss://"), "{err}");

    // A broker started with --public-url: invites carry that address.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = broker_config(dir.path());
    cfg.public_url = Some("wss://mesh.example.com/ws".into());
    let b = RunningBroker::start("127.0.0.1:0", cfg).await.unwrap();
    let mut c = Client::connect(&b.url).await.unwrap();
    let id = c.mesh_create(&b.admin_token, "team", "admin").await.unwrap().unwrap();
    let paths = Paths::new(dir.path().join("agent-admin"));
    common::one_mesh_config(
        None,
        id.mesh_id.clone(),
        b.url.clone(),
        id.member_id.clone(),
        claudemesh_protocol::frames::Role::Admin,
        id.key.secret_hex().to_string(),
        "admin",
    )
    .save(&paths)
    .unwrap();
    let other = RunningAgent::start(&paths).await;
    let mut o = other.client().await;
    let st = wait_mesh_status(&mut o, "connected", |m| m.link == LinkState::Connected).await;
    assert_eq!(st.public_url.as_deref(), Some("wss://mesh.example.com/ws"), "{st:?}");
    let (code, out, err) = cli(&paths, &["invite", "create", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let url = serde_json::from_str::<Value>(&out).unwrap()["url"].as_str().unwrap().to_string();
    let inspected = json(&paths, &["invite", "inspect", &url, "--json"]);
    assert_eq!(inspected["payload"]["broker_url"], "wss://mesh.example.com/ws");
}
