//! `mesh create` and `join` say what failed and what to do when the broker cannot be reached the
//! way the URL says (http(s)://, wss:// without TLS, ws:// to TLS) or refuses the request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_agent::Paths;
use claudemesh_broker::testkit::RunningBroker;
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::Role;
use claudemesh_protocol::invite::InvitePayload;
use common::*;

fn mesh_create(p: &Paths, broker: &str, slug: &str, token_file: &std::path::Path) -> (i32, String, String) {
    cli(p, &["mesh", "create", slug, "--broker", broker, "--admin-token-file", token_file.to_str().unwrap()])
}

/// A signed invite to `broker_url` (signed by a key of its own: `join` checks the signature
/// offline and reaches the broker before anything else).
fn invite_to(broker_url: &str) -> String {
    let key = MemberKeypair::generate();
    let p = InvitePayload {
        v: 1,
        broker_url: broker_url.into(),
        mesh_id: "mesh_x".into(),
        mesh_slug: "team".into(),
        invite_id: "inv_x".into(),
        role: Role::Member,
        groups: vec![],
        expires_at: 4_000_000_000,
        max_uses: 1,
        issuer_pubkey: key.public_hex(),
    };
    p.sign(&key).unwrap().claudemesh_url()
}

fn assert_no_enroll(err: &str) {
    assert!(!err.contains("enroll"), "says what failed in this verb's words: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_create_says_what_the_broker_refused_and_which_url_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let broker = RunningBroker::start("127.0.0.1:0", broker_config(dir.path())).await.unwrap();
    let token = broker.data_dir.join("admin.token");
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let alice = Paths::new(dir.path().join("alice"));
    let addr = broker.addr;

    let (code, _, err) = mesh_create(&alice, &broker.url, "team", &wrong);
    assert_ne!(code, 0);
    assert!(
        err.contains("the broker refused the admin token") && err.contains("check --admin-token-file"),
        "{err}"
    );
    assert_no_enroll(&err);

    let (code, out, err) = mesh_create(&alice, &broker.url, "team", &token);
    assert_eq!(code, 0, "{out}{err}");
    let bob = Paths::new(dir.path().join("bob"));
    let (code, _, err) = mesh_create(&bob, &broker.url, "team", &token);
    assert_ne!(code, 0);
    assert!(err.contains("a mesh named team already exists on that broker; pick another name"), "{err}");
    assert_no_enroll(&err);

    for (url, want) in [
        (format!("http://{addr}"), format!("http:// is not a broker URL; use ws://{addr}/ws")),
        (format!("https://{addr}/ws"), format!("https:// is not a broker URL; use wss://{addr}/ws")),
        (
            format!("wss://{addr}/ws"),
            format!("does not speak TLS; use ws:// instead of wss://: --broker ws://{addr}/ws"),
        ),
    ] {
        let (code, _, err) = mesh_create(&bob, &url, "other", &token);
        assert_ne!(code, 0, "{url}");
        assert!(err.contains(&want), "{url}: {err}");
        assert_no_enroll(&err);
    }
    assert!(!bob.config().exists(), "nothing saved");

    // join: the invite's wss:// URL names a broker without TLS.
    let (code, _, err) = cli(&bob, &["join", &invite_to(&format!("wss://{addr}/ws")), "--name", "bob"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not speak TLS") && err.contains("ask an admin of team"), "{err}");
    assert!(err.contains(&format!("ws://{addr}/ws")), "{err}");
    cli(&alice, &["agent", "stop"]);
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_to_a_tls_broker_says_to_use_wss() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let tls = claudemesh_broker::TlsFiles { cert, key };
    let broker =
        RunningBroker::start_with_tls("127.0.0.1:0", broker_config(dir.path()), Some(tls)).await.unwrap();
    let token = broker.data_dir.join("admin.token");
    let p = Paths::new(dir.path().join("carol"));
    let addr = broker.addr;

    let (code, _, err) = mesh_create(&p, &format!("ws://{addr}/ws"), "team", &token);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("speaks TLS; use wss:// instead of ws://: --broker wss://{addr}/ws")),
        "{err}"
    );
    let (code, _, err) = cli(&p, &["join", &invite_to(&format!("ws://{addr}/ws")), "--name", "carol"]);
    assert_ne!(code, 0);
    assert!(err.contains("speaks TLS; use wss:// instead of ws://") && err.contains("ask an admin"), "{err}");
    assert!(!p.config().exists());
    broker.stop().await.unwrap();
}
