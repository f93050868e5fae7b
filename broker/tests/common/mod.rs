//! Shared set-up for broker tests: a real broker on 127.0.0.1:0 with a real redb file in a
//! temp dir, meshes, signed invites and enrolled members.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use claudemesh_broker::BrokerConfig;
use claudemesh_broker::testkit::{Client, Identity, RunningBroker};
use claudemesh_protocol::crypto::{MemberKeypair, MessagePlaintext, fan_out, open_message};
use claudemesh_protocol::frames::*;
use claudemesh_protocol::invite::{InvitePayload, SignedInvite};

pub struct Harness {
    pub broker: RunningBroker,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut c = BrokerConfig::new(dir.join("data"));
    c.send_rate_per_sec = 10_000.0;
    c.send_burst = 10_000.0;
    c
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        tweak(&mut cfg);
        let broker = RunningBroker::start("127.0.0.1:0", cfg).await.unwrap();
        Self { broker, dir }
    }

    pub fn url(&self) -> &str {
        &self.broker.url
    }

    /// Stops the broker and starts it again on the same port and data dir.
    pub async fn restart_with(self, tweak: impl FnOnce(&mut BrokerConfig)) -> Self {
        let addr = self.broker.addr;
        self.broker.stop().await.unwrap();
        let mut cfg = config(self.dir.path());
        tweak(&mut cfg);
        let broker = RunningBroker::start(&addr.to_string(), cfg).await.unwrap();
        Self { broker, dir: self.dir }
    }

    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// Creates a mesh; returns its admin identity.
    pub async fn mesh(&self, slug: &str) -> Identity {
        let mut c = Client::connect(self.url()).await.unwrap();
        let id = c.mesh_create(&self.broker.admin_token, slug, "admin").await.unwrap().expect("mesh_create");
        c.close().await;
        id
    }
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn invite_payload(admin: &Identity, slug: &str, id: &str, max_uses: u32) -> InvitePayload {
    InvitePayload {
        v: 1,
        broker_url: "ws://127.0.0.1/ws".into(),
        mesh_id: admin.mesh_id.clone(),
        mesh_slug: slug.into(),
        invite_id: id.into(),
        role: Role::Member,
        groups: vec![],
        expires_at: now_s() + 3600,
        max_uses,
        issuer_pubkey: admin.key.public_hex(),
    }
}

/// Signs and registers an invite through the admin's connection.
pub async fn register(admin_conn: &mut Client, admin: &Identity, payload: InvitePayload) -> SignedInvite {
    let inv = payload.sign(&admin.key).unwrap();
    let req = admin_conn.next_req();
    let r =
        admin_conn.request(&ClientFrame::InviteRegister { req, invite: inv.token().into() }).await.unwrap();
    assert_eq!(r, ServerFrame::Ok { req }, "invite_register");
    inv
}

/// Enrolls a fresh key with `inv`; returns the connected client and its identity.
pub async fn enroll(url: &str, inv: &SignedInvite, name: &str) -> (Client, Identity) {
    let key = MemberKeypair::generate();
    let mut c = Client::connect(url).await.unwrap();
    match c.enroll(inv.token(), &key, &inv.payload.invite_id, name).await.unwrap() {
        ServerFrame::Enrolled { member_id, mesh, .. } => (c, Identity { mesh_id: mesh.id, member_id, key }),
        other => panic!("enroll failed: {other:?}"),
    }
}

/// A mesh with an admin connection and `n` enrolled members (all connected).
pub struct Mesh {
    pub slug: String,
    pub admin: Identity,
    pub admin_conn: Client,
    pub members: Vec<(Client, Identity)>,
}

pub async fn mesh_with(h: &Harness, slug: &str, n: usize) -> Mesh {
    let admin = h.mesh(slug).await;
    let (mut admin_conn, ack) = Client::connect_as(h.url(), &admin).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
    let inv = register(&mut admin_conn, &admin, invite_payload(&admin, slug, "inv-all", 100)).await;
    let mut members = Vec::new();
    for i in 0..n {
        members.push(enroll(h.url(), &inv, &format!("member{i}")).await);
    }
    Mesh { slug: slug.into(), admin, admin_conn, members }
}

/// Opens a session and waits for `ok`.
pub async fn open_session(c: &mut Client, session_id: &str, name: &str, groups: &[&str]) {
    let req = c.next_req();
    let session = SessionInfo {
        session_id: session_id.into(),
        display_name: name.into(),
        groups: groups.iter().map(|g| GroupRole::new(*g)).collect(),
        ..Default::default()
    };
    let r = c.request(&ClientFrame::SessionOpen { req, session }).await.unwrap();
    assert_eq!(r, ServerFrame::Ok { req }, "session_open");
}

/// The member directory as seen by `c`.
pub async fn members(c: &mut Client) -> Vec<MemberInfo> {
    let req = c.next_req();
    match c.request(&ClientFrame::ListMembers { req, cursor: None, limit: None }).await.unwrap() {
        ServerFrame::Members { members, .. } => members,
        other => panic!("{other:?}"),
    }
}

/// The member directory as seen by `c`, with the former members (left or removed).
pub async fn directory(c: &mut Client) -> (Vec<MemberInfo>, Vec<FormerMember>) {
    let req = c.next_req();
    match c.request(&ClientFrame::ListMembers { req, cursor: None, limit: None }).await.unwrap() {
        ServerFrame::Members { members, former, .. } => (members, former),
        other => panic!("{other:?}"),
    }
}

/// Waits for the first event matching `pred`, looking inside `events` batches too (the other
/// events of a batch are dropped).
pub async fn wait_event(c: &mut Client, pred: impl Fn(&Event) -> bool) -> Event {
    loop {
        let f =
            c.recv_match(|f| matches!(f, ServerFrame::Event(_) | ServerFrame::Events { .. })).await.unwrap();
        let events = match f {
            ServerFrame::Event(e) => vec![e],
            ServerFrame::Events { events } => events,
            _ => vec![],
        };
        if let Some(e) = events.into_iter().find(|e| pred(e)) {
            return e;
        }
    }
}

/// A plain HTTP GET against the broker: status and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// An admin's `member_remove`; returns the reply frame.
pub async fn remove_member(admin_conn: &mut Client, member_id: &str) -> ServerFrame {
    let req = admin_conn.next_req();
    admin_conn
        .request(&ClientFrame::MemberRemove { statement: None, req, member_id: member_id.into() })
        .await
        .unwrap()
}

/// Encrypts `body` for `recipients` and sends it; returns the reply frame.
pub async fn send_to(
    c: &mut Client,
    from: &Identity,
    from_session: &str,
    target: Target,
    recipients: &[&Identity],
    body: &str,
    client_msg_id: &str,
) -> ServerFrame {
    let plain = MessagePlaintext::new(from_session, "sender", body);
    let list: Vec<(String, [u8; 32])> =
        recipients.iter().map(|r| (r.member_id.clone(), *r.key.public())).collect();
    let envelopes = fan_out(&plain, &list, &from.key).unwrap();
    let req = c.next_req();
    c.request(&ClientFrame::Send(Send {
        req,
        client_msg_id: client_msg_id.into(),
        from_session: from_session.into(),
        target,
        priority: Priority::Next,
        envelopes,
    }))
    .await
    .unwrap()
}

/// Alice and bob, online in a fresh two-member mesh `team`, and alice's DM `body` (client
/// message id `cid`) as pushed to bob.
pub async fn dm_pushed(h: &Harness, body: &str, cid: &str) -> (Client, Identity, Client, Identity, Push) {
    let mut m = mesh_with(h, "team", 2).await;
    let (mut bob, bob_id) = m.members.pop().unwrap();
    let (mut alice, alice_id) = m.members.pop().unwrap();
    let t = Target::Member(bob_id.member_id.clone());
    send_to(&mut alice, &alice_id, "", t, &[&bob_id], body, cid).await;
    let (p, _) = recv_push(&mut bob, &bob_id, &alice_id).await;
    (alice, alice_id, bob, bob_id, p)
}

/// The sender's `message_status` of `msg_id`: its recipients' states.
pub async fn status_of(sender: &mut Client, msg_id: &str) -> Vec<RecipientStatus> {
    let req = sender.next_req();
    let r = sender.request(&ClientFrame::MessageStatus { req, msg_id: msg_id.to_string() }).await.unwrap();
    let ServerFrame::MessageStatus { recipients, .. } = r else { panic!("{r:?}") };
    recipients
}

/// Closes `c` (member `me`), connects again and checks nothing is pushed: its queue is empty.
pub async fn reconnect_gets_nothing(h: &Harness, c: Client, me: &Identity) {
    c.close().await;
    let (mut again, _) = Client::connect_as(h.url(), me).await.unwrap();
    assert_no_push(&mut again, 300).await;
}

/// Waits for the next push and decrypts it.
pub async fn recv_push(c: &mut Client, me: &Identity, sender: &Identity) -> (Push, MessagePlaintext) {
    let f = c.recv_match(|f| matches!(f, ServerFrame::Push(_))).await.unwrap();
    let ServerFrame::Push(p) = f else { unreachable!() };
    assert_eq!(p.from.member_id, sender.member_id);
    let m = open_message(&p.nonce, &p.ciphertext, sender.key.public(), &me.key).unwrap();
    (p, m)
}

/// Asserts no push arrives within `ms`.
pub async fn assert_no_push(c: &mut Client, ms: u64) {
    c.timeout = Duration::from_millis(ms);
    let r = c.recv_match(|f| matches!(f, ServerFrame::Push(_))).await;
    c.timeout = Duration::from_secs(10);
    assert!(r.is_err(), "unexpected push: {r:?}");
}

/// Asserts no `receipt` event reaches `c` within `ms`.
pub async fn assert_no_receipt(c: &mut Client, ms: u64) {
    c.timeout = Duration::from_millis(ms);
    let r = c.recv_match(|f| matches!(f, ServerFrame::Event(Event::Receipt { .. }))).await;
    c.timeout = Duration::from_secs(10);
    assert!(r.is_err(), "unexpected receipt: {r:?}");
}

pub fn error_code(f: &ServerFrame) -> ErrorCode {
    match f {
        ServerFrame::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}
