//! Bad input gets a clear error and disturbs nothing: malformed JSON, wrong types, oversized
//! frames, unknown types, frames before hello, binary frames, broken WebSocket framing; plus
//! /health and /metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_broker::testkit::{Client, ClientError};
use claudemesh_protocol::frames::*;
use claudemesh_protocol::limits::MAX_FRAME_BYTES;
use common::*;

async fn raw_error(c: &mut Client, text: String) -> ErrorFrame {
    c.send_text(text).await.unwrap();
    match c.recv_match(|f| matches!(f, ServerFrame::Error(_))).await.unwrap() {
        ServerFrame::Error(e) => e,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays() {
    let h = Harness::start().await;
    let m = mesh_with(&h, "team", 0).await;
    let mut c = m.admin_conn;
    let e = raw_error(&mut c, "{not json".into()).await;
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(e.message.contains("not valid JSON"), "{}", e.message);
    let e = raw_error(&mut c, r#"{"type":"teleport","req":5}"#.into()).await;
    assert_eq!((e.code, e.req), (ErrorCode::Invalid, Some(5)));
    assert!(e.message.contains("teleport"));
    let e = raw_error(&mut c, r#"{"type":"list_peers","req":"seven"}"#.into()).await;
    assert_eq!(e.code, ErrorCode::Invalid);
    let e = raw_error(&mut c, r#"{"type":"send","req":8,"client_msg_id":"x"}"#.into()).await;
    assert_eq!((e.code, e.req), (ErrorCode::Invalid, Some(8)));
    let e = raw_error(&mut c, "[]".into()).await;
    assert_eq!(e.code, ErrorCode::Invalid);
    let e = raw_error(
        &mut c,
        format!(r#"{{"type":"list_peers","req":9,"pad":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES)),
    )
    .await;
    assert_eq!(e.code, ErrorCode::TooLarge);
    c.ws_binary(vec![1, 2, 3]).await;
    let e = c.recv_match(|f| matches!(f, ServerFrame::Error(_))).await.unwrap();
    assert_eq!(error_code(&e), ErrorCode::Invalid);
    // After all that the connection still answers: a member with no vault entries lists none.
    let r = c.request(&ClientFrame::VaultList { req: 10 }).await.unwrap();
    assert!(matches!(&r, ServerFrame::VaultEntries { entries, .. } if entries.is_empty()), "{r:?}");
    // A service frame naming a hostile service name is refused, not used as a path.
    let r = c
        .request(&ClientFrame::McpRegister {
            req: 12,
            name: "../../etc".into(),
            description: String::new(),
            tools: vec![],
            scope: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(error_code(&r), ErrorCode::Invalid);
    // Still served after all that.
    let r = c.request(&ClientFrame::MeshInfo { req: 11 }).await.unwrap();
    assert!(matches!(r, ServerFrame::MeshInfo { .. }), "{r:?}");
}

#[tokio::test]
async fn nothing_but_hello_enroll_or_mesh_create_before_authenticating() {
    let h = Harness::start().await;
    let mut c = Client::connect(h.url()).await.unwrap();
    for f in [
        ClientFrame::ListPeers { req: 1, cursor: None, limit: None },
        ClientFrame::MeshInfo { req: 2 },
        ClientFrame::ClientAck { msg_ids: vec!["x".into()] },
        ClientFrame::SessionOpen {
            req: 3,
            session: SessionInfo { session_id: "s".into(), display_name: "n".into(), ..Default::default() },
        },
    ] {
        c.send(&f).await.unwrap();
        let e = c.recv().await.unwrap();
        assert_eq!(error_code(&e), ErrorCode::Unauthorized, "{f:?}");
    }
    // The connection is still usable for a proper hello afterwards.
    let admin = h.mesh("team").await;
    assert!(matches!(c.hello(&admin).await.unwrap(), ServerFrame::HelloAck { .. }));
}

#[tokio::test]
async fn bad_input_leaves_other_members_unaffected() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    for junk in ["\u{0}", "{\"type\":", "null", "{\"type\":\"send\",\"req\":1,\"envelopes\":{}}"] {
        m.admin_conn.send_text(junk.into()).await.unwrap();
    }
    let r = send_to(
        &mut alice,
        &alice_id,
        "",
        Target::Member(bob_id.member_id.clone()),
        &[&bob_id],
        "still fine",
        "ok1",
    )
    .await;
    assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    assert_eq!(recv_push(&mut bob, &bob_id, &alice_id).await.1.body, "still fine");
    // Oversized envelopes and duplicate envelopes are refused.
    let req = alice.next_req();
    let big = Envelope {
        member_id: bob_id.member_id.clone(),
        nonce: "AAAA".into(),
        ciphertext: "A".repeat(MAX_FRAME_BYTES - 1000),
    };
    let r = alice
        .request(&ClientFrame::Send(Send {
            req,
            client_msg_id: "big".into(),
            from_session: String::new(),
            target: Target::Member(bob_id.member_id.clone()),
            priority: Priority::Low,
            envelopes: vec![big.clone(), big],
        }))
        .await
        .unwrap();
    assert!(matches!(error_code(&r), ErrorCode::TooLarge | ErrorCode::Invalid), "{r:?}");
    // One box bigger than a 64 KiB body can make is refused as too large; the largest legal
    // body goes through.
    let body = "x".repeat(claudemesh_protocol::limits::MAX_BODY_BYTES);
    let plain = claudemesh_protocol::crypto::MessagePlaintext::new("", "alice", body);
    let to = [(bob_id.member_id.clone(), *bob_id.key.public())];
    let mut envelopes = claudemesh_protocol::crypto::fan_out(&plain, &to, &alice_id.key).unwrap();
    let target = Target::Member(bob_id.member_id.clone());
    let mk = |req, id: &str, envelopes| {
        ClientFrame::Send(Send {
            req,
            client_msg_id: id.into(),
            from_session: String::new(),
            target: target.clone(),
            priority: Priority::Low,
            envelopes,
        })
    };
    let req = alice.next_req();
    let ok = alice.request(&mk(req, "max-body", envelopes.clone())).await.unwrap();
    assert!(matches!(ok, ServerFrame::Ack { .. }), "{ok:?}");
    envelopes[0].ciphertext.push_str(&"A".repeat(64 * 1024));
    let req = alice.next_req();
    let r = alice.request(&mk(req, "too-big", envelopes)).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::TooLarge);
    let req = alice.next_req();
    let r = alice
        .request(&ClientFrame::Send(Send {
            req,
            client_msg_id: String::new(),
            from_session: String::new(),
            target: Target::Member(bob_id.member_id.clone()),
            priority: Priority::Low,
            envelopes: vec![],
        }))
        .await
        .unwrap();
    assert_eq!(error_code(&r), ErrorCode::Invalid);
    // Claiming someone else's session as from_session is refused.
    open_session(&mut bob, "5e550000-0000-4000-8000-000000000001", "bob", &[]).await;
    let r = send_to(
        &mut alice,
        &alice_id,
        "5e550000-0000-4000-8000-000000000001",
        Target::Member(bob_id.member_id.clone()),
        &[&bob_id],
        "spoof",
        "sp1",
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::Invalid);
}

#[tokio::test]
async fn health_and_metrics() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 1).await;
    let (mut alice, alice_id) = m.members.pop().unwrap();
    send_to(&mut alice, &alice_id, "", Target::Member(m.admin.member_id.clone()), &[&m.admin], "x", "h1")
        .await;
    let (status, body) = http_get(h.broker.addr, "/health").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["meshes"], 1);
    assert_eq!(v["connections"], 2);
    assert!(v["version"].is_string() && v["uptime_secs"].is_u64());
    let (status, text) = http_get(h.broker.addr, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "claudemesh_connections 2",
        "claudemesh_frames_in_total{type=\"send\"} 1",
        "claudemesh_messages_queued_total 1",
        "claudemesh_messages_routed_total 1",
        "claudemesh_store_commit_seconds_count",
        "claudemesh_errors_total{code=\"rate_limited\"} 0",
        "claudemesh_queue_depth 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Secrets never appear on public endpoints.
    assert!(!text.contains(&h.broker.admin_token) && !body.contains(&h.broker.admin_token));
}

#[tokio::test]
async fn wss_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let cfg = config(dir.path());
    let tls = claudemesh_broker::TlsFiles { cert: cert.clone(), key };
    let b = claudemesh_broker::testkit::RunningBroker::start_with_tls("127.0.0.1:0", cfg, Some(tls))
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", b.addr.port());
    let mut c = Client::connect_tls(&url, ck.cert.pem().as_bytes()).await.unwrap();
    let admin = c.mesh_create(&b.admin_token, "secure", "admin").await.unwrap().unwrap();
    let (_c2, ack) = {
        let mut c2 = Client::connect_tls(&url, ck.cert.pem().as_bytes()).await.unwrap();
        let f = c2.hello(&admin).await.unwrap();
        (c2, f)
    };
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
    // A client that does not trust the certificate cannot connect.
    assert!(Client::connect(&url).await.is_err());
    // Plain ws:// to a TLS port fails too.
    assert!(Client::connect(&format!("ws://127.0.0.1:{}/ws", b.addr.port())).await.is_err());
    b.stop().await.unwrap();
}

#[tokio::test]
async fn broker_binary_reports_a_missing_tls_file_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_claudemesh-broker");
    let out = std::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

#[tokio::test]
async fn health_reports_the_public_url() {
    let h = Harness::start_with(|c| c.public_url = Some("wss://mesh.example.com/ws".into())).await;
    let (status, body) = http_get(h.broker.addr, "/health").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["public_url"], "wss://mesh.example.com/ws");
}

/// The close that ends `c`: its code and reason (`""` when the connection just ended).
async fn close_reason(c: &mut Client) -> String {
    loop {
        match c.recv().await {
            Ok(_) => continue,
            Err(ClientError::Closed(reason)) => return reason.unwrap_or_default(),
            Err(e) => return format!("error: {e}"),
        }
    }
}

/// Broken WebSocket framing gets a close frame saying why (RFC 6455 §7.4.1), not a bare TCP
/// close: a new text message inside a fragmented one (1002), text that is not UTF-8 (1007).
#[tokio::test]
async fn broken_framing_is_closed_with_the_rfc_code() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let h = Harness::start().await;
    let admin = h.mesh("team").await;

    let (mut c, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    c.ws_message(Message::Frame(Frame::message(&b"{\"type\":"[..], OpCode::Data(Data::Text), false))).await;
    c.ws_message(Message::Text("{}".into())).await;
    let reason = close_reason(&mut c).await;
    assert!(reason.starts_with("1002 protocol error"), "{reason}");

    let (mut c, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    c.ws_message(Message::Frame(Frame::message(&[0xff, 0xfe][..], OpCode::Data(Data::Text), true))).await;
    let reason = close_reason(&mut c).await;
    assert!(reason.starts_with("1007"), "{reason}");

    // The broker is fine for everyone else.
    let (mut ok, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let req = ok.next_req();
    assert!(matches!(
        ok.request(&ClientFrame::MeshInfo { req }).await.unwrap(),
        ServerFrame::MeshInfo { .. }
    ));
}
