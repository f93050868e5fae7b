//! A hostile member cannot lock the mesh out (issue 11, points 4, 7, 9): every presence field
//! is validated and a member's presence has a byte budget, `list_peers` pages, a removed
//! member is cut off at once, session ids are UUIDs only, and the admin and metrics tokens
//! are private.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use claudemesh_broker::testkit::Client;
use claudemesh_protocol::frames::*;
use common::*;

fn sid(n: usize) -> String {
    format!("0c0ffee0-0000-4000-8000-{n:012x}")
}

async fn open(c: &mut Client, session: SessionInfo) -> ServerFrame {
    let req = c.next_req();
    c.request(&ClientFrame::SessionOpen { req, session }).await.unwrap()
}

async fn peers(
    c: &mut Client,
    cursor: Option<String>,
    limit: Option<u32>,
) -> (Vec<PeerSession>, Option<String>) {
    let req = c.next_req();
    match c.request(&ClientFrame::ListPeers { req, cursor, limit }).await.unwrap() {
        ServerFrame::Peers { sessions, next, .. } => (sessions, next),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_huge_group_role_is_refused_and_the_mesh_keeps_working() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 1).await;
    let (mut alice, _) = m.members.pop().unwrap();
    let s = |role: &str| SessionInfo {
        session_id: sid(1),
        display_name: "alice".into(),
        groups: vec![GroupRole { name: "dev".into(), role: Some(role.into()) }],
        ..Default::default()
    };
    let r = open(&mut alice, s(&"r".repeat(3_900_000))).await;
    let ServerFrame::Error(e) = r else { panic!("{r:?}") };
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(e.message.contains("groups[0].role"), "{}", e.message);
    let ServerFrame::Error(e) = open(&mut alice, s("Lead Dev")).await else { panic!() };
    assert_eq!(e.code, ErrorCode::Invalid);
    for (field, session) in [
        ("hostname", SessionInfo { hostname: Some("h".repeat(300)), ..s("lead") }),
        ("summary", SessionInfo { summary: Some("s".repeat(600)), ..s("lead") }),
        ("cwd", SessionInfo { cwd: Some("/\u{1b}[2J".into()), ..s("lead") }),
    ] {
        let ServerFrame::Error(e) = open(&mut alice, session).await else { panic!("{field}") };
        assert!(e.message.contains(field), "{field}: {}", e.message);
    }
    assert!(matches!(open(&mut alice, s("lead")).await, ServerFrame::Ok { .. }));
    let (list, next) = peers(&mut m.admin_conn, None, None).await;
    assert_eq!((list.len(), next), (1, None));
}

#[tokio::test]
async fn a_members_presence_has_a_byte_budget() {
    let h = Harness::start_with(|c| c.max_presence_bytes_per_member = 4096).await;
    let mut m = mesh_with(&h, "team", 1).await;
    let (mut alice, _) = m.members.pop().unwrap();
    let s = |i| SessionInfo {
        session_id: sid(i),
        display_name: format!("a{i}"),
        summary: Some("s".repeat(500)),
        ..Default::default()
    };
    let mut refused = None;
    for i in 0..20 {
        if let ServerFrame::Error(e) = open(&mut alice, s(i)).await {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("the budget refused a session");
    assert!(i >= 4, "refused after {i} sessions");
    assert_eq!(e.code, ErrorCode::Limit);
    assert!(e.message.contains("summary") && e.message.contains("4096"), "{}", e.message);
    // An update that would grow past the budget is refused too; a shrinking one is not.
    let req = alice.next_req();
    let grow =
        SessionPatch { summary: Some("s".repeat(512)), cwd: Some("/".repeat(1024)), ..Default::default() };
    let r =
        alice.request(&ClientFrame::SessionUpdate { req, session_id: sid(0), patch: grow }).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::Limit);
    let req = alice.next_req();
    let shrink = SessionPatch { summary: Some("short".into()), ..Default::default() };
    let r =
        alice.request(&ClientFrame::SessionUpdate { req, session_id: sid(0), patch: shrink }).await.unwrap();
    assert_eq!(r, ServerFrame::Ok { req });
}

#[tokio::test]
async fn list_peers_comes_in_pages() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 3).await;
    let mut n = 0;
    for (c, _) in &mut m.members {
        for _ in 0..50 {
            let s = SessionInfo { session_id: sid(n), display_name: format!("p{n}"), ..Default::default() };
            let r = open(c, s).await;
            assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
            n += 1;
        }
    }
    // An old client (no cursor, no limit) gets everything that fits one page.
    let (all, next) = peers(&mut m.admin_conn, None, None).await;
    assert_eq!((all.len(), next), (150, None));
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (page, next) = peers(&mut m.admin_conn, cursor, Some(40)).await;
        assert!(page.len() <= 40);
        pages += 1;
        seen.extend(page.into_iter().map(|p| p.session.session_id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted), (150, seen.clone()));
}

#[tokio::test]
async fn session_ids_are_uuids_and_never_a_member_id_or_name() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (_, bob) = m.members.pop().unwrap();
    let (mut alice, _) = m.members.pop().unwrap();
    for bad in [bob.member_id.clone(), "member1".into(), "admin".into(), sid(1).to_uppercase(), "s1".into()] {
        let s = SessionInfo { session_id: bad.clone(), display_name: "alice".into(), ..Default::default() };
        let r = open(&mut alice, s).await;
        let ServerFrame::Error(e) = r else { panic!("{bad} accepted") };
        assert_eq!(e.code, ErrorCode::Invalid, "{bad}");
        assert!(e.message.contains("lowercase UUID"), "{}", e.message);
    }
    let s = SessionInfo { session_id: sid(1), display_name: "alice".into(), ..Default::default() };
    assert!(matches!(open(&mut alice, s).await, ServerFrame::Ok { .. }));
}

#[tokio::test]
async fn a_removed_member_is_cut_off_at_once() {
    let h = Harness::start().await;
    let mut m = mesh_with(&h, "team", 2).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    open_session(&mut alice, &sid(7), "alice", &[]).await;
    open_session(&mut bob, &sid(8), "bob", &[]).await;
    // Alice does not read: pushes to her back up her socket, so a close queued for her waits
    // behind them (the probe saw 40 of her messages accepted after her removal).
    let big = "x".repeat(60_000);
    for i in 0..200 {
        let target = Target::Member(alice_id.member_id.clone());
        let r = send_to(&mut bob, &bob_id, "", target, &[&alice_id], &big, &format!("fill-{i}")).await;
        assert!(matches!(r, ServerFrame::Ack { .. }), "{r:?}");
    }
    let r = remove_member(&mut m.admin_conn, &alice_id.member_id).await;
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    // Alice did not read a thing meanwhile; now she pipelines 40 sends and a new session.
    let plain = claudemesh_protocol::crypto::MessagePlaintext::new("", "alice", "after removal");
    let to = [(bob_id.member_id.clone(), *bob_id.key.public())];
    for i in 0..40 {
        let envelopes = claudemesh_protocol::crypto::fan_out(&plain, &to, &alice_id.key).unwrap();
        let req = alice.next_req();
        let f = ClientFrame::Send(Send {
            req,
            client_msg_id: format!("late-{i}"),
            from_session: String::new(),
            target: Target::Member(bob_id.member_id.clone()),
            priority: Priority::Next,
            envelopes,
        });
        if alice.feed(&f).await.is_err() {
            break;
        }
    }
    let later = SessionInfo { session_id: sid(9), display_name: "ghost".into(), ..Default::default() };
    let req = alice.next_req();
    let _ = alice.feed(&ClientFrame::SessionOpen { req, session: later }).await;
    let _ = alice.flush().await;
    // Bob saw her session leave and gets none of it.
    wait_event(&mut bob, |e| matches!(e, Event::PeerLeft { session_id, .. } if *session_id == sid(7))).await;
    assert_no_push(&mut bob, 1000).await;
    let (list, _) = peers(&mut bob, None, None).await;
    assert!(list.iter().all(|p| p.member_id != alice_id.member_id), "{list:?}");
    // Her connection ends (the broker stopped reading at once and gives her writer 2 s) and
    // none of her late sends was acknowledged. `revoked` is queued behind the backlog, so she
    // may not get to read it; her next hello is refused with `revoked`.
    let mut acks = 0;
    let end = loop {
        match alice.recv().await {
            Ok(ServerFrame::Ack { .. }) => acks += 1,
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(!matches!(end, claudemesh_broker::testkit::ClientError::Timeout), "connection kept: {end}");
    assert_eq!(acks, 0);
    let mut again = Client::connect(h.url()).await.unwrap();
    assert_eq!(error_code(&again.hello(&alice_id).await.unwrap()), ErrorCode::Revoked);
}

#[tokio::test]
async fn metrics_can_move_and_require_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("metrics.token");
    std::fs::write(&tok, "m3trics-secret\n").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let h = Harness::start_with(|c| {
        c.metrics_listen = Some(port.to_string());
        c.metrics_token_file = Some(tok.clone());
    })
    .await;
    let (status, _) = http_get(h.broker.addr, "/metrics").await;
    assert_eq!(status, 404, "metrics still on the public listener");
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 401);
    assert!(!body.contains("m3trics-secret"));
    let (status, body) = http_get_auth(port, "/metrics", "Bearer wrong").await;
    assert_eq!((status, body.contains("claudemesh_connections")), (401, false));
    let (status, body) = http_get_auth(port, "/metrics", "Bearer m3trics-secret").await;
    assert_eq!(status, 200);
    assert!(body.contains("claudemesh_unauthenticated_connections"), "{body}");
}

/// A GET with an Authorization header.
async fn http_get_auth(addr: std::net::SocketAddr, path: &str, auth: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[tokio::test]
async fn an_admin_token_others_can_read_stops_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("admin.token");
    std::fs::write(&tok, "very-secret-admin-token").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exe = env!("CARGO_BIN_EXE_claudemesh-broker");
    let out = std::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--admin-token-file")
        .arg(&tok)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&tok.display().to_string()) && err.contains("chmod 600"), "{err}");
    assert!(!err.contains("very-secret-admin-token"), "{err}");
}
