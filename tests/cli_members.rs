//! Membership as people run it, each step a real `claudemesh` process against real agents and
//! a real broker: invites that carry an address teammates can reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_agent::Paths;
use claudemesh_broker::testkit::{Client, RunningBroker};
use common::*;
use serde_json::Value;

fn json(paths: &Paths, args: &[&str]) -> Value {
    let (code, out, err) = cli(paths, args);
    assert_eq!(code, 0, "{args:?}: {out} {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
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
    claudemesh_agent::Config {
        display_name: None,
        meshes: vec![claudemesh_agent::MeshConfig {
            id: id.mesh_id.clone(),
            slug: "team".into(),
            broker_url: b.url.clone(),
            member_id: id.member_id.clone(),
            role: claudemesh_protocol::frames::Role::Admin,
            secret_key: id.key.secret_hex().to_string(),
            display_name: "admin".into(),
            joined_at: 0,
            extra: Default::default(),
        }],
        extra: Default::default(),
    }
    .save(&paths)
    .unwrap();
    let other = RunningAgent::start(&paths).await;
    let mut o = other.client().await;
    let st = wait_mesh_status(&mut o, "connected", |m| m["link"] == "connected").await;
    assert_eq!(st["public_url"], "wss://mesh.example.com/ws", "{st}");
    let (code, out, err) = cli(&paths, &["invite", "create", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let url = serde_json::from_str::<Value>(&out).unwrap()["url"].as_str().unwrap().to_string();
    let inspected = json(&paths, &["invite", "inspect", &url, "--json"]);
    assert_eq!(inspected["payload"]["broker_url"], "wss://mesh.example.com/ws");
}
