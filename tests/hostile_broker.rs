//! A hostile broker, written here and speaking the real protocol to a real agent: it lists keys
//! of its own, reflects a member's message back to it, replays a message under a new msg_id and
//! raises a message's priority. Each is refused with a reason the person can read; nothing it
//! forges is shown as from the claimed sender. It serves the directory one member per page (the
//! agent joins the pages before it verifies them), and a broker whose pages never advance is
//! refused after two pages, not followed forever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudemesh_agent::Paths;
use claudemesh_protocol::crypto::{MemberKeypair, MessagePlaintext, seal_message};
use claudemesh_protocol::frames::{
    ClientFrame, Event, MemberInfo, MeshRef, Priority, Push, PushFrom, Role, ServerFrame, Target,
    decode_client, encode,
};
use claudemesh_protocol::invite::InvitePayload;
use claudemesh_protocol::limits::MIN_BROKER_PROTOCOL;
use claudemesh_protocol::local::{AgentCall, MemberEntry, TrustState};
use claudemesh_protocol::trust::{STATEMENT_VERSION, SignedStatement, Statement, member_id_for};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const MESH: &str = "mesh_hostile";

struct Who {
    key: MemberKeypair,
    id: String,
    name: &'static str,
    invite: Option<String>,
}

/// The mesh's founder fay, and alice and bob enrolled with invites she signed.
fn fay_alice_bob() -> (Who, Who, Who) {
    let founder = Who::new("fay", None);
    let alice = Who::new("alice", Some(&founder.key));
    let bob = Who::new("bob", Some(&founder.key));
    (founder, alice, bob)
}

impl Who {
    fn new(name: &'static str, issuer: Option<&MemberKeypair>) -> Self {
        let key = MemberKeypair::generate();
        let id = member_id_for(&key.public_hex());
        let invite = issuer.map(|f| {
            InvitePayload {
                v: 1,
                broker_url: "ws://127.0.0.1:1".into(),
                mesh_id: MESH.into(),
                mesh_slug: "team".into(),
                invite_id: format!("inv-{name}"),
                role: Role::Member,
                groups: vec![],
                expires_at: 4_000_000_000,
                max_uses: 1,
                issuer_pubkey: f.public_hex(),
            }
            .sign(f)
            .unwrap()
            .token()
            .to_string()
        });
        Self { key, id, name, invite }
    }

    fn statement(&self) -> SignedStatement {
        Statement::Member {
            v: STATEMENT_VERSION,
            mesh_id: MESH.into(),
            member_id: self.id.clone(),
            pubkey: self.key.public_hex(),
            display_name: self.name.into(),
            invite: self.invite.clone(),
            at: 1,
        }
        .sign(&self.key)
        .unwrap()
    }

    /// Its directory entry, honest.
    fn info(&self) -> MemberInfo {
        MemberInfo {
            member_id: self.id.clone(),
            pubkey: self.key.public_hex(),
            display_name: self.name.into(),
            role: if self.invite.is_none() { Role::Admin } else { Role::Member },
            groups: vec![],
            declared_groups: vec![],
            online: true,
            statements: vec![self.statement()],
        }
    }
}

/// How the hostile broker answers a paged `list_members` (one without `limit` gets it whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paging {
    /// One member per page, in member_id order, as a real broker pages.
    One,
    /// The first member again and again, always with the same `next`.
    Stuck,
}

/// What the hostile broker saw and lets the test do.
struct Hostile {
    url: String,
    directory: Arc<Mutex<Vec<MemberInfo>>>,
    /// `list_members` frames the agent sent.
    listed: Arc<std::sync::atomic::AtomicUsize>,
    /// How many of the next `send`s to refuse with `recipients_changed`, and of the next
    /// `list_members` with `rate_limited`.
    refuse: Arc<Mutex<(usize, usize)>>,
    /// Frames to push to the connected agent.
    inject: mpsc::UnboundedSender<ServerFrame>,
    /// `send` frames the agent made.
    sends: mpsc::UnboundedReceiver<claudemesh_protocol::frames::Send>,
}

async fn hostile_broker(directory: Vec<MemberInfo>, paging: Paging) -> Hostile {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let directory = Arc::new(Mutex::new(directory));
    let (inject, mut injected) = mpsc::unbounded_channel::<ServerFrame>();
    let (sent, sends) = mpsc::unbounded_channel();
    let dir = directory.clone();
    let listed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lists = listed.clone();
    let refuse = Arc::new(Mutex::new((0usize, 0usize)));
    let refusing = refuse.clone();
    let refused = |req: u64, code: claudemesh_protocol::frames::ErrorCode| {
        ServerFrame::Error(claudemesh_protocol::frames::ErrorFrame {
            req: Some(req),
            code,
            message: "refused by the test".into(),
            retry_after_ms: Some(50),
        })
    };
    tokio::spawn(async move {
        // One agent connection at a time is all this test needs.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // The oldest protocol an agent still talks to (a version-3 broker pushes after its sync).
        let welcome = ServerFrame::Welcome {
            protocol: MIN_BROKER_PROTOCOL,
            challenge: "00".repeat(32),
            broker_version: "hostile".into(),
            public_url: None,
        };
        ws.send(Message::Text(encode(&welcome).into())).await.unwrap();
        loop {
            let frame = tokio::select! {
                f = injected.recv() => match f { Some(f) => f, None => return },
                m = ws.next() => {
                    let t = match m {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(_)) => continue,
                        // The agent went away: this broker serves one connection only.
                        Some(Err(_)) | None => return,
                    };
                    let Ok(frame) = decode_client(t.as_str()) else { continue };
                    match frame {
                        ClientFrame::Hello(h) => ServerFrame::HelloAck {
                            member_id: h.member_id,
                            role: Role::Member,
                            mesh: MeshRef { id: MESH.into(), slug: "team".into() },
                            public_url: None,
                            services: vec![],
                            runner_pubkey: None,
                        },
                        ClientFrame::ListMembers { req, .. } if take_one(&refusing, |r| &mut r.1) => {
                            refused(req, claudemesh_protocol::frames::ErrorCode::RateLimited)
                        }
                        ClientFrame::Send(s) if take_one(&refusing, |r| &mut r.0) => {
                            let _ = sent.send(s.clone());
                            refused(s.req, claudemesh_protocol::frames::ErrorCode::RecipientsChanged)
                        }
                        ClientFrame::ListMembers { req, cursor, limit } => {
                            lists.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let mut all = dir.lock().unwrap().clone();
                            all.sort_by(|a, b| a.member_id.cmp(&b.member_id));
                            let (members, next) = match (limit, paging) {
                                (None, _) => (all, None),
                                (Some(_), Paging::One) => {
                                    let after: Vec<MemberInfo> = all
                                        .into_iter()
                                        .filter(|m| cursor.as_ref().is_none_or(|c| m.member_id > *c))
                                        .collect();
                                    let next = (after.len() > 1).then(|| after[0].member_id.clone());
                                    (after.into_iter().take(1).collect(), next)
                                }
                                (Some(_), Paging::Stuck) => (all[..1].to_vec(), Some(all[0].member_id.clone())),
                            };
                            ServerFrame::Members { req, members, former: vec![], next }
                        }
                        ClientFrame::ListPeers { req, .. } => ServerFrame::Peers { req, sessions: vec![], next: None },
                        ClientFrame::Send(s) => {
                            let ack = ServerFrame::Ack { req: s.req, msg_id: format!("b-{}", s.client_msg_id), recipients: 1, online: 1 };
                            let _ = sent.send(s);
                            ack
                        }
                        other => match other.req() {
                            Some(req) => ServerFrame::Ok { req },
                            None => continue,
                        },
                    }
                }
            };
            if ws.send(Message::Text(encode(&frame).into())).await.is_err() {
                return;
            }
        }
    });
    Hostile { url, directory, listed, refuse, inject, sends }
}

/// Takes one from the counter `pick` selects, if it is above zero.
fn take_one(r: &Mutex<(usize, usize)>, pick: impl Fn(&mut (usize, usize)) -> &mut usize) -> bool {
    let mut r = r.lock().unwrap();
    let n = pick(&mut r);
    if *n == 0 {
        return false;
    }
    *n -= 1;
    true
}

/// Bob's agent on `url` (see [`bob_paths`]), started and connected, with a client.
async fn bob_connected(
    dir: &std::path::Path,
    url: &str,
    bob: &Who,
    founder: &Who,
) -> (RunningAgent, claudemesh_agent::AgentClient) {
    let agent = RunningAgent::start(&bob_paths(dir, url, bob, founder)).await;
    let mut c = agent.client().await;
    wait_connected(&mut c).await;
    (agent, c)
}

/// Bob's agent config: joined with the founder's invite, so the founder is its root.
fn bob_paths(dir: &std::path::Path, url: &str, bob: &Who, founder: &Who) -> Paths {
    let paths = Paths::new(dir.join("agent-bob"));
    let mut cfg = one_mesh_config(
        Some("bob".into()),
        MESH,
        url,
        bob.id.clone(),
        Role::Member,
        bob.key.secret_hex().to_string(),
        "bob",
    );
    cfg.meshes[0].root_pubkey = Some(founder.key.public_hex());
    cfg.meshes[0].invite = bob.invite.clone();
    cfg.save(&paths).unwrap();
    paths
}

/// A push of a box `from` sealed to `to_key`, with what the box says inside.
fn push(
    from: &Who,
    to_key: &MemberKeypair,
    to_id: &str,
    msg_id: &str,
    client_id: &str,
    inside: Priority,
    outside: Priority,
) -> ServerFrame {
    let target = Target::Member(to_id.to_string());
    let mut p = MessagePlaintext::new("", from.name, format!("hello from {}", from.name)).addressed(
        from.id.clone(),
        client_id,
        inside,
        target.to_string(),
        // Sent now: a box older than the agent's replay window is refused by its age.
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64,
    );
    p.to_member = to_id.to_string();
    let sealed = seal_message(&p, to_key.public(), &from.key).unwrap();
    ServerFrame::Push(Push {
        msg_id: msg_id.into(),
        client_msg_id: client_id.into(),
        from: PushFrom { member_id: from.id.clone(), session_id: String::new() },
        target,
        priority: outside,
        nonce: sealed.nonce,
        ciphertext: sealed.ciphertext,
        sent_at: 7,
    })
}

async fn members(c: &mut claudemesh_agent::AgentClient) -> Vec<MemberEntry> {
    c.request(AgentCall::Members { mesh: None }).await.unwrap()
}

async fn wait_trust(c: &mut claudemesh_agent::AgentClient, name: &str, want: TrustState) -> MemberEntry {
    for _ in 0..400 {
        if let Some(m) = members(c).await.into_iter().find(|m| m.member.display_name == name)
            && m.trust.as_ref().is_some_and(|t| t.state == want)
        {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never became {want:?}: {:#?}", members(c).await);
}

async fn inbox_error(c: &mut claudemesh_agent::AgentClient, msg_id: &str) -> Option<String> {
    for _ in 0..400 {
        let r = read_inbox(c, None).await;
        if let Some(m) = r.messages.iter().find(|m| m.msg_id == msg_id) {
            return m.error.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("message {msg_id} never reached the inbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_broker_cannot_substitute_reflect_replay_or_raise_priority() {
    let dir = tempfile::tempdir().unwrap();
    let (founder, alice, bob) = fay_alice_bob();
    // The broker lists its own key under carol's name with nothing that chains it to the root.
    let evil = MemberKeypair::generate();
    let carol = Who { key: evil, id: member_id_for("aa"), name: "carol", invite: None };
    let mut carol_info = carol.info();
    carol_info.role = Role::Member;
    let mut h = hostile_broker(vec![founder.info(), alice.info(), bob.info(), carol_info], Paging::One).await;
    let (agent, mut c) = bob_connected(dir.path(), &h.url, &bob, &founder).await;

    // Verified by the chain: the founder (root) and alice (the founder's invite).
    let a = wait_trust(&mut c, "alice", TrustState::Verified).await;
    assert_eq!(a.trust.as_ref().unwrap().safety_code.len(), 17);
    // Substitution with an unvouched key: refused, with what to do.
    let m = wait_trust(&mut c, "carol", TrustState::Unverified).await;
    assert!(m.trust.unwrap().detail.unwrap().contains("members --verify"));
    let err = c
        .request::<serde_json::Value>(send_call("carol", "secret for carol", Priority::Now, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not vouched for"), "{err}");
    assert!(
        matches!(&err, claudemesh_agent::ClientError::Api(e) if e.code == claudemesh_protocol::frames::ErrorCode::Forbidden),
        "{err:?}"
    );
    assert!(h.sends.try_recv().is_err(), "nothing was sealed to the broker's key");

    // A message from alice, honest: stored and opened, with the in-box priority.
    let first = push(&alice, &bob.key, &bob.id, "m1", "c1", Priority::Low, Priority::Now);
    h.inject.send(first.clone()).unwrap();
    assert_eq!(inbox_error(&mut c, "m1").await, None);
    let r = read_inbox(&mut c, None).await;
    let m1 = r.messages.iter().find(|m| m.msg_id == "m1").unwrap();
    assert_eq!(m1.priority, Priority::Low, "the broker raised the priority; the box's wins");
    assert_eq!(m1.from_name, "alice");
    // Alice's agent resending c1 sealed again (its first attempt reached bob before the
    // broker's commit failed): a duplicate, not shown again and not stored.
    h.inject.send(push(&alice, &bob.key, &bob.id, "m1-retry", "c1", Priority::Low, Priority::Low)).unwrap();
    // Replay: the same box under a new msg_id.
    let ServerFrame::Push(mut replay) = first else { unreachable!("push() builds a push") };
    replay.msg_id = "m2".into();
    h.inject.send(ServerFrame::Push(replay)).unwrap();
    let e = inbox_error(&mut c, "m2").await.expect("a replay is refused");
    assert!(e.contains("replay of message m1"), "{e}");
    let r = read_inbox(&mut c, None).await;
    assert!(
        !r.messages.iter().any(|m| m.msg_id == "m1-retry"),
        "a resealed retry is dropped as a duplicate (pushed before m2, so handled by now)"
    );

    // Reflection: bob sends to alice; the broker pushes bob's own box back as if alice sent it.
    let reply: claudemesh_protocol::local::SendReply =
        c.request(send_call("alice", "for alice only", Priority::Now, None)).await.unwrap();
    assert_eq!(reply.recipients, 1);
    let sent = tokio::time::timeout(Duration::from_secs(10), h.sends.recv()).await.unwrap().unwrap();
    let env = &sent.envelopes[0];
    assert_eq!(env.member_id, alice.id);
    let reflected = ServerFrame::Push(Push {
        msg_id: "m3".into(),
        client_msg_id: sent.client_msg_id.clone(),
        from: PushFrom { member_id: alice.id.clone(), session_id: String::new() },
        target: Target::Member(bob.id.clone()),
        priority: Priority::Now,
        nonce: env.nonce.clone(),
        ciphertext: env.ciphertext.clone(),
        sent_at: 8,
    });
    h.inject.send(reflected).unwrap();
    let e = inbox_error(&mut c, "m3").await.expect("a reflected box is refused");
    assert!(e.contains("reflected, misdirected or altered"), "{e}");

    // Key change after pinning: the broker now lists its own key for alice, with a statement
    // it signed itself using alice's invite (an invite it has seen).
    let fake = Who {
        key: MemberKeypair::generate(),
        id: alice.id.clone(),
        name: "alice",
        invite: alice.invite.clone(),
    };
    let mut fake_info = fake.info();
    fake_info.member_id = alice.id.clone();
    let fake_statement = Statement::Member {
        v: STATEMENT_VERSION,
        mesh_id: MESH.into(),
        member_id: alice.id.clone(),
        pubkey: fake.key.public_hex(),
        display_name: "alice".into(),
        invite: alice.invite.clone(),
        at: 2,
    }
    .sign(&fake.key)
    .unwrap();
    fake_info.statements = vec![fake_statement];
    {
        let mut d = h.directory.lock().unwrap();
        d.retain(|m| m.member_id != alice.id);
        d.push(fake_info.clone());
    }
    h.inject.send(ServerFrame::Event(Event::MemberUpdated(fake_info))).unwrap();
    let m = wait_trust(&mut c, "alice", TrustState::KeyChanged).await;
    // Loud: `status` carries it for every client to show.
    let st = mesh_status(&mut c).await;
    assert!(st.trust_warnings.iter().any(|w| w.contains("alice's KEY CHANGED")), "{st:?}");
    let detail = m.trust.unwrap().detail.unwrap();
    assert!(detail.contains("KEY CHANGED") && detail.contains("member repin alice"), "{detail}");
    let err = c
        .request::<serde_json::Value>(send_call("alice", "now to the broker?", Priority::Now, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("KEY CHANGED"), "{err}");
    // And a message "from alice" sealed with the broker's key is refused too.
    h.inject.send(push(&fake, &bob.key, &bob.id, "m4", "c4", Priority::Now, Priority::Now)).unwrap();
    let e = inbox_error(&mut c, "m4").await.expect("a message from a changed key is refused");
    assert!(e.contains("not trusted"), "{e}");
    agent.stop().await;
}

/// A broker whose directory pages never advance (the same member and the same `next` each
/// time) is refused after its second page: the agent stays connected and does not page on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_pages_that_never_advance_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let founder = Who::new("fay", None);
    let bob = Who::new("bob", Some(&founder.key));
    let h = hostile_broker(vec![founder.info(), bob.info()], Paging::Stuck).await;
    let (_agent, mut c) = bob_connected(dir.path(), &h.url, &bob, &founder).await;
    // A listing of its own, answered from the cached view once the broker's is refused.
    let _ = members(&mut c).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed = h.listed.load(std::sync::atomic::Ordering::Relaxed);
    assert!((2..=6).contains(&listed), "two pages per listing, then refused: {listed} list_members");
    assert_eq!(link_state(&mut c).await, claudemesh_protocol::local::LinkState::Connected);
}

/// A send refused as `recipients_changed` is sealed again against a fresh directory; when that
/// listing is itself refused (`rate_limited`), the send waits a second and goes again instead
/// of the link waiting for a directory that will not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_directory_reseals_and_a_refused_listing_does_not_stall_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let (founder, alice, bob) = fay_alice_bob();
    let mut h = hostile_broker(vec![founder.info(), alice.info(), bob.info()], Paging::One).await;
    let (_agent, mut c) = bob_connected(dir.path(), &h.url, &bob, &founder).await;
    wait_trust(&mut c, "alice", TrustState::Verified).await;

    *h.refuse.lock().unwrap() = (2, 1);
    let lists_before = h.listed.load(std::sync::atomic::Ordering::Relaxed);
    let _: claudemesh_protocol::local::SendReply =
        c.request(send_call("alice", "after a stale directory", Priority::Now, None)).await.unwrap();
    let mut sends = vec![];
    for i in 0..3 {
        let s = tokio::time::timeout(Duration::from_secs(20), h.sends.recv()).await;
        sends.push(s.unwrap_or_else(|_| panic!("send {} never came", i + 1)).unwrap());
    }
    assert!(sends.iter().all(|s| s.client_msg_id == sends[0].client_msg_id), "one message, three tries");
    assert!(
        h.listed.load(std::sync::atomic::Ordering::Relaxed) > lists_before,
        "the directory was listed again"
    );
    assert_eq!(link_state(&mut c).await, claudemesh_protocol::local::LinkState::Connected);
}
