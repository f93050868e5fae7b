//! The messaging verbs as a person runs them: join with an invite, list, peers, send, inbox,
//! status, leave; each a real `claudemesh` process against a real agent and broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_broker::testkit::Client;
use claudemesh_protocol::frames::{ClientFrame, Role, ServerFrame};
use claudemesh_protocol::invite::InvitePayload;
use common::*;

/// Signs and registers an invite as the mesh admin; returns its link.
async fn invite(w: &World, id: &str, uses: u32) -> String {
    let (mut ac, _) = Client::connect_as(&w.url(), &w.admin).await.unwrap();
    let inv = w.invite_payload(id, uses).sign(&w.admin.key).unwrap();
    let req = ac.next_req();
    assert_eq!(
        ac.request(&ClientFrame::InviteRegister { req, invite: inv.token().into() }).await.unwrap(),
        ServerFrame::Ok { req }
    );
    inv.claudemesh_url()
}

fn stop_agent(paths: &claudemesh_agent::Paths) {
    let _ = cli(paths, &["agent", "stop"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_send_peers_inbox_leave() {
    let w = World::start().await;
    let link = invite(&w, "for-two", 2).await;
    let alice = claudemesh_agent::Paths::new(w.dir.path().join("cli-alice"));
    let bob = claudemesh_agent::Paths::new(w.dir.path().join("cli-bob"));

    let (code, out, err) = cli(&alice, &["join", &link, "--name", "alice"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("joined mesh team as alice"), "{out}");
    let (code, _, err) = cli(&alice, &["join", &link, "--name", "alice"]);
    assert_ne!(code, 0);
    assert!(err.contains("already joined"), "{err}");
    let (code, out, _) = cli(&bob, &["join", &link, "--name", "bob", "--json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["mesh"], "team");
    // Uses are counted: a third person is refused with the broker's reason.
    let carol = claudemesh_agent::Paths::new(w.dir.path().join("cli-carol"));
    let (code, _, err) = cli(&carol, &["join", &link, "--name", "carol"]);
    assert_ne!(code, 0);
    assert!(err.contains("used 2 of 2"), "{err}");

    let (_, out, _) = cli(&alice, &["list"]);
    assert!(out.contains("team") && out.contains("alice"), "{out}");

    // send starts alice's agent on demand; bob's agent starts with his first command.
    let (code, out, _) = cli(&bob, &["status", "--json"]);
    assert_eq!(code, 0, "{out}");
    let mut sent = false;
    for _ in 0..200 {
        let (code, out, _) = cli(&alice, &["send", "bob", "hello bob", "--priority", "now"]);
        if code == 0 {
            assert!(out.contains("queued"), "{out}");
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "alice could not address bob");
    let mut got = String::new();
    for _ in 0..200 {
        let (_, out, _) = cli(&bob, &["inbox"]);
        if out.contains("hello bob") {
            got = out;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got.contains("alice") && got.contains("now"), "{got}");
    let (_, out, _) = cli(&bob, &["inbox", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "reading at the CLI does not mark seen for sessions");

    let (code, _, err) = cli(&alice, &["send", "nobody-here", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("bob") || err.contains("known"), "the error lists who is known: {err}");

    // Leaving without --yes and without a terminal refuses; with --yes it removes the key.
    let (code, _, err) = cli(&alice, &["leave", "team"]);
    assert_ne!(code, 0);
    assert!(err.contains("--yes"), "{err}");
    let (code, out, _) = cli(&alice, &["leave", "team", "--yes"]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = cli(&alice, &["list", "--json"]);
    assert_eq!(out.trim(), "[]");
    stop_agent(&alice);
    stop_agent(&bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refuses_bad_and_expired_invites_before_any_network() {
    let w = World::start().await;
    let p = claudemesh_agent::Paths::new(w.dir.path().join("x"));
    let (code, _, err) = cli(&p, &["join", "claudemesh://join/garbage"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot be used"), "{err}");
    let mut pl = InvitePayload {
        v: 1,
        broker_url: "ws://127.0.0.1:1/ws".into(),
        mesh_id: w.mesh_id.clone(),
        mesh_slug: "team".into(),
        invite_id: "old".into(),
        role: Role::Member,
        groups: vec![],
        expires_at: 1000,
        max_uses: 1,
        issuer_pubkey: w.admin.key.public_hex(),
    };
    let expired = pl.clone().sign(&w.admin.key).unwrap();
    let (code, _, err) = cli(&p, &["join", &expired.claudemesh_url()]);
    assert_ne!(code, 0);
    assert!(err.contains("expired"), "{err}");
    // A broker that is not there: a clear error naming it, and no half-written config.
    pl.expires_at = 4_000_000_000;
    let unreachable = pl.sign(&w.admin.key).unwrap();
    let (code, _, err) = cli(&p, &["join", &unreachable.claudemesh_url()]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach the broker at ws://127.0.0.1:1/ws"), "{err}");
    assert!(!p.config().exists());
}
