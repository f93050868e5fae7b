//! Core tests: inputs fed straight into a [`Core`] on a temp store, no sockets, the clock passed
//! in (so lease expiry and the session grace run in microseconds of real time).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh_protocol::crypto::{MemberKeypair, MessagePlaintext, seal_message};
use claudemesh_protocol::frames::{
    GroupRole, MemberInfo, Priority, Push, PushFrom, Role, SessionInfo, SessionPatch, Target,
};
use claudemesh_protocol::limits::LEASE_MILLIS;
use claudemesh_protocol::local::{
    AgentCall, ConfirmReply, HookCall, HookEvent, HookReply, InboxParams, InboxReply, RegisterReply,
    SessionRegister, UpdateReply,
};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::*;
use crate::config::MeshConfig;
use crate::mesh::MeshView;

mod dashboard;
mod follows;
mod prune;
mod sealed;

const MESH: &str = "mesh_1";

struct T {
    core: Core,
    bob: Arc<MemberKeypair>,
    alice: MemberKeypair,
    now: Instant,
    n: u64,
    _dir: tempfile::TempDir,
    _uplink: mpsc::Receiver<UplinkCmd>,
}

fn member(id: &str, name: &str, key: &MemberKeypair, groups: &[&str]) -> MemberInfo {
    MemberInfo {
        member_id: id.into(),
        pubkey: key.public_hex(),
        display_name: name.into(),
        role: Role::Member,
        groups: groups.iter().map(|g| GroupRole { name: (*g).into(), role: None }).collect(),
        declared_groups: vec![],
        online: true,
        statements: vec![],
    }
}

/// A core for member bob (granted `granted`) in a mesh with alice.
fn setup(granted: &[&str]) -> T {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path().to_path_buf());
    let store = Store::open(&dir.path().join("agent.redb")).unwrap();
    let (mut core, _view) = Core::new(store, paths).unwrap();
    let bob = Arc::new(MemberKeypair::generate());
    let alice = MemberKeypair::generate();
    let config = MeshConfig {
        id: MESH.into(),
        slug: "team".into(),
        broker_url: "ws://127.0.0.1:1/ws".into(),
        member_id: "m_bob".into(),
        role: Role::Member,
        secret_key: bob.secret_hex().to_string(),
        display_name: "bob".into(),
        joined_at: 0,
        root_pubkey: None,
        invite: None,
        extra: Default::default(),
    };
    let (tx, rx) = mpsc::channel(1024);
    let mut view = MeshView::new(config, bob.clone(), tx, Default::default());
    view.set_directory(
        vec![member("m_bob", "bob", &bob, granted), member("m_alice", "alice", &alice, &[])],
        vec![],
        0,
    );
    let now = Instant::now();
    core.handle(Input::MeshAdded(Box::new(view)), now);
    core.finish_turn();
    T { core, bob, alice, now, n: 0, _dir: dir, _uplink: rx }
}

impl T {
    fn call<R: DeserializeOwned>(&mut self, conn: u64, call: AgentCall) -> Result<R, crate::error::ApiError> {
        let (reply, mut rx) = oneshot::channel();
        self.core.handle(Input::Call { conn, call, reply }, self.now);
        self.core.finish_turn();
        rx.try_recv().expect("answered within the turn").map(|v| serde_json::from_value(v).unwrap())
    }

    fn register(&mut self, conn: u64, sid: &str) -> RegisterReply {
        let r = SessionRegister {
            meshes: vec![],
            session: SessionInfo { session_id: sid.into(), display_name: sid.into(), ..Default::default() },
            claude_pid: None,
            default_name: false,
        };
        self.call(conn, AgentCall::SessionRegister(r)).unwrap()
    }

    /// A message from alice to `target`, pushed by the broker; returns whether it was stored.
    fn push(&mut self, target: Target, priority: Priority) -> String {
        self.n += 1;
        let id = format!("msg_{}", self.n);
        let mut plain =
            MessagePlaintext::new("s-alice".to_string(), "alice".to_string(), format!("hello {}", self.n))
                .addressed("m_alice", id.clone(), priority, target.to_string(), crate::core::now_ms());
        plain.to_member = "m_bob".into();
        let sealed = seal_message(&plain, self.bob.public(), &self.alice).unwrap();
        let push = Push {
            msg_id: id.clone(),
            client_msg_id: id.clone(),
            from: PushFrom { member_id: "m_alice".into(), session_id: "s-alice".into() },
            target,
            priority,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            sent_at: 1,
        };
        let (stored, mut rx) = oneshot::channel();
        let event = UplinkEvent::Push { push: Box::new(push), stored };
        self.core.handle(Input::Uplink { mesh: MESH.into(), event }, self.now);
        self.core.finish_turn();
        assert_eq!(rx.try_recv(), Ok(true), "acknowledged only once stored");
        id
    }

    fn take(&mut self, sid: &str) -> InboxReply {
        let p = InboxParams { session: Some(sid.into()), take: true, ..Default::default() };
        self.call(1, AgentCall::Inbox(p)).unwrap()
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        self.core.handle(Input::Tick, self.now);
        self.core.finish_turn();
    }

    fn groups(&mut self, sid: &str, groups: &[&str]) -> UpdateReply {
        let patch = SessionPatch {
            groups: Some(groups.iter().map(|g| GroupRole { name: (*g).into(), role: None }).collect()),
            ..Default::default()
        };
        self.call(1, AgentCall::SessionUpdate { session_id: sid.into(), patch }).unwrap()
    }
}

fn ids(r: &InboxReply) -> Vec<String> {
    r.messages.iter().map(|m| m.msg_id.clone()).collect()
}

#[test]
fn a_take_not_confirmed_comes_back_after_the_lease_and_a_confirmed_one_never_does() {
    let mut t = setup(&[]);
    t.register(1, "00000001-0000-4000-8000-000000000001");
    let a = t.push(Target::Member("m_bob".into()), Priority::Low);
    let first = t.take("00000001-0000-4000-8000-000000000001");
    assert_eq!(ids(&first), std::slice::from_ref(&a));
    assert!(
        t.take("00000001-0000-4000-8000-000000000001").messages.is_empty(),
        "held by the lease meanwhile"
    );
    t.tick(Duration::from_millis(LEASE_MILLIS + 1));
    let again = t.take("00000001-0000-4000-8000-000000000001");
    assert_eq!(ids(&again), std::slice::from_ref(&a), "nobody confirmed: unseen again");
    let late: ConfirmReply =
        t.call(1, AgentCall::Confirm { lease: first.lease.unwrap(), msg_ids: None }).unwrap();
    assert!(late.expired && late.confirmed == 0);
    let ok: ConfirmReply =
        t.call(1, AgentCall::Confirm { lease: again.lease.unwrap(), msg_ids: None }).unwrap();
    assert_eq!((ok.confirmed, ok.expired), (1, false));
    t.tick(Duration::from_millis(LEASE_MILLIS + 1));
    assert!(t.take("00000001-0000-4000-8000-000000000001").messages.is_empty(), "seen stays seen");
}

#[test]
fn a_partial_confirm_releases_the_rest_at_once() {
    let mut t = setup(&[]);
    t.register(1, "00000001-0000-4000-8000-000000000001");
    let a = t.push(Target::Member("m_bob".into()), Priority::Low);
    let b = t.push(Target::Member("m_bob".into()), Priority::Low);
    let r = t.take("00000001-0000-4000-8000-000000000001");
    assert_eq!(ids(&r), [a, b.clone()]);
    let c: ConfirmReply = t
        .call(1, AgentCall::Confirm { lease: r.lease.unwrap(), msg_ids: Some(vec![ids(&r)[0].clone()]) })
        .unwrap();
    assert_eq!(c.confirmed, 1);
    assert_eq!(ids(&t.take("00000001-0000-4000-8000-000000000001")), [b]);
}

#[test]
fn pages_follow_limit_and_say_how_many_more_wait() {
    let mut t = setup(&[]);
    t.register(1, "00000001-0000-4000-8000-000000000001");
    for _ in 0..5 {
        t.push(Target::Member("m_bob".into()), Priority::Low);
    }
    let p = InboxParams {
        session: Some("00000001-0000-4000-8000-000000000001".into()),
        take: true,
        limit: Some(2),
        ..Default::default()
    };
    let r: InboxReply = t.call(1, AgentCall::Inbox(p)).unwrap();
    assert_eq!((ids(&r), r.more), (vec!["msg_1".to_string(), "msg_2".to_string()], 3), "oldest first");
}

#[test]
fn a_message_that_arrives_before_its_session_registers_reaches_it() {
    let mut t = setup(&[]);
    let a = t.push(Target::Member("m_bob".into()), Priority::Next);
    let r = t.register(1, "00000001-0000-4000-8000-000000000001");
    assert_eq!(r.waiting, 1);
    assert_eq!(ids(&t.take("00000001-0000-4000-8000-000000000001")), [a]);
}

#[test]
fn a_granted_group_reaches_every_session_until_it_leaves_and_joining_again_takes_what_waits() {
    let mut t = setup(&["backend"]);
    let r = t.register(1, "00000001-0000-4000-8000-000000000001");
    assert_eq!(r.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["backend"]);
    let a = t.push(Target::Group("backend".into()), Priority::Next);
    assert_eq!(ids(&t.take("00000001-0000-4000-8000-000000000001")), [a]);
    t.groups("00000001-0000-4000-8000-000000000001", &[]);
    let b = t.push(Target::Group("backend".into()), Priority::Next);
    assert!(t.take("00000001-0000-4000-8000-000000000001").messages.is_empty(), "left: not for it");
    let joined = t.groups("00000001-0000-4000-8000-000000000001", &["backend"]);
    assert_eq!(joined.rerouted, 1);
    assert_eq!(ids(&t.take("00000001-0000-4000-8000-000000000001")), [b]);
}

#[test]
fn a_message_for_a_session_that_never_returns_goes_to_the_next_one_after_the_grace() {
    let mut t = setup(&[]);
    t.core.handle(Input::SessionGrace { secs: 600 }, t.now);
    t.register(1, "0000000d-0000-4000-8000-00000000000d");
    t.core.handle(Input::ConnClosed { conn: 1 }, t.now);
    t.core.finish_turn();
    let a = t.push(Target::Session("0000000d-0000-4000-8000-00000000000d".into()), Priority::Next);
    t.register(2, "0000000e-0000-4000-8000-00000000000e");
    assert!(
        t.take("0000000e-0000-4000-8000-00000000000e").messages.is_empty(),
        "waits for its own session first"
    );
    t.tick(Duration::from_secs(601));
    assert_eq!(ids(&t.take("0000000e-0000-4000-8000-00000000000e")), [a]);
}

#[test]
fn a_closed_sessions_unseen_messages_go_to_the_next_session_and_a_lease_dies_with_it() {
    let mut t = setup(&[]);
    t.register(1, "00000001-0000-4000-8000-000000000001");
    let a = t.push(Target::Member("m_bob".into()), Priority::Low);
    assert_eq!(ids(&t.take("00000001-0000-4000-8000-000000000001")), std::slice::from_ref(&a));
    t.core.handle(Input::ConnClosed { conn: 1 }, t.now);
    t.core.finish_turn();
    t.register(2, "00000002-0000-4000-8000-000000000002");
    assert_eq!(ids(&t.take("00000002-0000-4000-8000-000000000002")), [a]);
}

#[test]
fn a_hook_skips_a_fresh_push_but_shows_one_left_unseen_past_the_grace() {
    let mut t = setup(&[]);
    t.register(1, "00000001-0000-4000-8000-000000000001");
    let (tx, _rx) = crate::socket_bounds::channel(Default::default());
    t.core.handle(Input::ConnOpened { conn: 1, tx }, t.now);
    let sub = Input::Subscribe {
        conn: 1,
        id: 9,
        topics: vec![claudemesh_protocol::local::Topic::Messages],
        session: Some("00000001-0000-4000-8000-000000000001".into()),
        mesh: None,
        service: None,
    };
    t.core.handle(sub, t.now);
    t.core.finish_turn();
    let a = t.push(Target::Member("m_bob".into()), Priority::Now);
    let hook = HookCall {
        event: HookEvent::UserPromptSubmit,
        session_id: Some("00000001-0000-4000-8000-000000000001".into()),
        claude_session_id: None,
        pids: vec![],
        status_only: false,
        claude_pid: None,
    };
    let r: HookReply = t.call(3, AgentCall::Hook(hook.clone())).unwrap();
    assert!(r.messages.is_empty(), "just pushed: the channel shows it");
    // The push is older than the grace and nobody saw it: the notification may be lost.
    for rec in t.core.state.live.values_mut() {
        for d in rec.deliveries.values_mut() {
            d.pushed_at = d.pushed_at.map(|at| at - claudemesh_protocol::limits::PUSH_GRACE_MILLIS - 1);
        }
    }
    let r: HookReply = t.call(3, AgentCall::Hook(hook)).unwrap();
    assert_eq!(r.messages.iter().map(|m| m.msg_id.clone()).collect::<Vec<_>>(), [a]);
    assert!(r.lease.is_some());
}

#[test]
fn a_hook_of_another_claude_does_not_act_as_the_session_it_inherited() {
    let mut t = setup(&[]);
    let r = SessionRegister {
        meshes: vec![],
        session: SessionInfo {
            session_id: "0000000f-0000-4000-8000-00000000000f".into(),
            display_name: "outer".into(),
            ..Default::default()
        },
        claude_pid: Some(100),
        default_name: false,
    };
    let _: RegisterReply = t.call(1, AgentCall::SessionRegister(r)).unwrap();
    t.push(Target::Member("m_bob".into()), Priority::Now);
    let nested = HookCall {
        event: HookEvent::UserPromptSubmit,
        session_id: Some("0000000f-0000-4000-8000-00000000000f".into()),
        claude_session_id: Some("inner-claude".into()),
        pids: vec![200, 100],
        status_only: false,
        claude_pid: Some(200),
    };
    let e = t.call::<HookReply>(3, AgentCall::Hook(nested)).unwrap_err();
    assert_eq!(e.0, claudemesh_protocol::frames::ErrorCode::NotFound);
    assert_eq!(
        t.take("0000000f-0000-4000-8000-00000000000f").messages.len(),
        1,
        "still waiting for the outer session"
    );
}

#[test]
fn an_agent_restart_releases_every_session_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys: HashMap<String, usize>;
    {
        let mut t = setup(&[]);
        t.register(1, "00000001-0000-4000-8000-000000000001");
        for _ in 0..3 {
            t.push(Target::Member("m_bob".into()), Priority::Low);
        }
        let r = t.take("00000001-0000-4000-8000-000000000001");
        assert_eq!(r.messages.len(), 3);
        // Crash: the lease dies with the process. Reopen the same store.
        let store = t.core.store.clone();
        let paths = t.core.paths.clone();
        drop(t.core);
        let (core, _v) = Core::new(store, paths).unwrap();
        keys = core.state.live.values().map(|r| (r.message.msg_id.clone(), usize::from(r.pending))).collect();
    }
    drop(dir);
    assert_eq!(keys.len(), 3);
    assert!(keys.values().all(|p| *p == 1), "all waiting for the next session: {keys:?}");
}

#[test]
fn what_a_hook_showed_and_confirmed_is_reported_seen_to_the_sender() {
    let mut t = setup(&[]);
    t.register(1, "00000001-0000-4000-8000-000000000001");
    let a = t.push(Target::Member("m_bob".into()), Priority::Now);
    let hook = HookCall {
        event: HookEvent::PostToolUse,
        session_id: Some("00000001-0000-4000-8000-000000000001".into()),
        claude_session_id: None,
        pids: vec![],
        status_only: false,
        claude_pid: None,
    };
    let r: HookReply = t.call(3, AgentCall::Hook(hook)).unwrap();
    assert_eq!(r.messages.len(), 1);
    while t._uplink.try_recv().is_ok() {}
    let c: ConfirmReply =
        t.call(3, AgentCall::Confirm { lease: r.lease.unwrap(), msg_ids: Some(vec![a.clone()]) }).unwrap();
    assert_eq!(c.confirmed, 1);
    let mut receipts = Vec::new();
    while let Ok(cmd) = t._uplink.try_recv() {
        if let UplinkCmd::Receipt(ids) = cmd {
            receipts.extend(ids);
        }
    }
    assert_eq!(receipts, [a]);
}
