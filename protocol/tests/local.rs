//! Agent-socket lines (DESIGN §10): every client line and agent line round-trips, and the
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! request envelope has the documented shape.

use claudemesh_protocol::frames::{
    ErrorCode, Event, GroupRole, Priority, Role, SessionInfo, SessionPatch, SessionStatus,
};
use claudemesh_protocol::local::*;
use serde_json::{Value, json};

mod common;

fn rt<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) -> Value {
    let text = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, v, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn client_lines_round_trip() {
    let calls = vec![
        AgentCall::Status,
        AgentCall::Meshes,
        AgentCall::Peers { mesh: Some("team".into()) },
        AgentCall::Members { mesh: None },
        AgentCall::Send(SendParams {
            to: "@ops".into(),
            message: "hi".into(),
            priority: Priority::Low,
            mesh: None,
            from_session: Some("s".into()),
            reply_to: None,
            idempotency_key: Some("k1".into()),
        }),
        AgentCall::Confirm { lease: 8, msg_ids: Some(vec!["m1".into()]) },
        AgentCall::Inbox(InboxParams { session: Some("s".into()), all: true, ..Default::default() }),
        AgentCall::MarkSeen { msg_ids: vec!["a".into()], session: Some("s".into()) },
        AgentCall::MarkRead { msg_ids: vec!["a".into()], mesh: Some("team".into()) },
        AgentCall::MessageStatus { msg_id: "a".into() },
        AgentCall::Sent { mesh: Some("team".into()), limit: Some(50) },
        AgentCall::SessionRegister(SessionRegister {
            meshes: vec!["team".into()],
            session: SessionInfo { session_id: "s".into(), display_name: "n".into(), ..Default::default() },
            claude_pid: Some(9),
            default_name: true,
        }),
        AgentCall::SessionUpdate {
            session_id: "s".into(),
            patch: SessionPatch { status: Some(SessionStatus::Dnd), ..Default::default() },
        },
        AgentCall::SessionClose { session_id: "s".into() },
        AgentCall::MemberRemove { member: "bob".into(), mesh: None },
        AgentCall::MemberSet {
            member: "m_1".into(),
            mesh: Some("team".into()),
            role: Some(Role::Admin),
            groups: Some(vec![GroupRole { name: "backend".into(), role: None }]),
        },
        AgentCall::MemberRepin { member: "bob".into(), mesh: Some("team".into()) },
        AgentCall::Leave { mesh: "team".into(), local_only: false },
        AgentCall::InviteCreate(InviteCreate {
            mesh: None,
            role: claudemesh_protocol::frames::Role::Member,
            groups: vec![],
            max_uses: 3,
            expires_in_secs: 3600,
            broker_url: Some("wss://mesh.example.com/ws".into()),
        }),
        AgentCall::InviteList { mesh: Some("team".into()) },
        AgentCall::InviteRevoke { invite_id: "i".into(), mesh: None },
        AgentCall::Hook(HookCall {
            event: HookEvent::UserPromptSubmit,
            session_id: None,
            claude_session_id: Some("c-1".into()),
            pids: vec![10, 1],
            status_only: true,
            claude_pid: Some(42),
        }),
        AgentCall::HookWait { session_id: "s".into(), timeout_ms: 1000 },
        AgentCall::Shutdown,
        AgentCall::ServiceDeploy(Box::new(DeployParams {
            mesh: Some("team".into()),
            name: "time".into(),
            source: LocalSource::Uvx { package: "mcp-server-time".into(), version: None },
            description: String::new(),
            args: vec!["--local-timezone=UTC".into()],
            entry: None,
            env: Default::default(),
            scope: Some(json!({"group": "ops"})),
            admin_token: None,
        })),
        AgentCall::ServiceUndeploy { name: "time".into(), mesh: None },
        AgentCall::ServiceUpdate(UpdateParams {
            mesh: None,
            name: "time".into(),
            source: None,
            args: None,
            env: None,
        }),
        AgentCall::ServiceCatalog { mesh: None },
        AgentCall::ServiceSchema { name: "time".into(), tool: Some("get_current_time".into()), mesh: None },
        AgentCall::ServiceLogs { name: "time".into(), lines: Some(50), mesh: None },
        AgentCall::ServiceScope { name: "time".into(), scope: Some(json!("mesh")), mesh: None },
        AgentCall::ServiceCall(CallParams {
            mesh: None,
            service: "time".into(),
            tool: "get_current_time".into(),
            arguments: json!({"timezone": "UTC"}),
            timeout_ms: Some(5000),
        }),
        AgentCall::ServiceHost(HostParams {
            mesh: None,
            name: "local-db".into(),
            command: vec!["python3".into(), "server.py".into()],
            env: Default::default(),
            description: String::new(),
            scope: None,
        }),
        AgentCall::ServiceUnhost { name: "local-db".into(), mesh: None },
        AgentCall::VaultSet(VaultSetParams {
            mesh: None,
            key: "GH_TOKEN".into(),
            value: Some("ghp_x".into()),
            value_b64: None,
            kind: None,
            mount_path: None,
            description: Some("github".into()),
        }),
        AgentCall::VaultList { mesh: Some("team".into()) },
        AgentCall::VaultDelete { key: "GH_TOKEN".into(), mesh: None },
        AgentCall::SkillShare(Box::new(SkillShareParams { mesh: None, skill: common::skill() })),
        AgentCall::SkillList { query: Some("review".into()), mesh: None },
        AgentCall::SkillGet { name: "review".into(), mesh: None },
        AgentCall::SkillRemove { name: "review".into(), mesh: None },
    ];
    let mut methods = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let v = rt(&ClientLine::Request { id: i as u64, call });
        assert_eq!(v["type"], "request");
        assert_eq!(v["id"], i as u64);
        let m = v["method"].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
        assert!(AGENT_METHODS.contains(&m.as_str()), "{m} missing from AGENT_METHODS");
        methods.push(m);
    }
    assert_eq!(methods.len(), AGENT_METHODS.len(), "every method has a sample here");
    let v = rt(&HookEvent::PostToolUse);
    assert_eq!(v, json!("post_tool_use"));
    assert_eq!(rt(&WaitOutcome::Superseded), json!("superseded"));
    rt(&ClientLine::Hello { protocol: 1, client: "cli".into() });
    let v = rt(&ClientLine::Subscribe {
        id: 3,
        topics: vec![Topic::Messages, Topic::Presence, Topic::Links, Topic::Services, Topic::Vault],
        session: Some("s".into()),
        mesh: None,
        service: Some("time".into()),
    });
    assert_eq!(v["topics"], json!(["messages", "presence", "links", "services", "vault"]));
    rt(&ClientLine::Unsubscribe { id: 3 });
}

#[test]
fn request_envelope_shape() {
    let line = r#"{"type":"request","id":5,"method":"send","params":{"to":"bob","message":"hi"}}"#;
    let parsed: ClientLine = serde_json::from_str(line).unwrap();
    match parsed {
        ClientLine::Request { id: 5, call: AgentCall::Send(p) } => {
            assert_eq!(p.to, "bob");
            assert_eq!(p.priority, Priority::Next, "priority defaults to next");
        }
        other => panic!("{other:?}"),
    }
    let status: ClientLine = serde_json::from_str(r#"{"type":"request","id":1,"method":"status"}"#).unwrap();
    assert_eq!(status, ClientLine::Request { id: 1, call: AgentCall::Status });
    assert!(
        serde_json::from_str::<ClientLine>(r#"{"type":"request","id":1,"method":"format_disk"}"#).is_err()
    );
}

#[test]
fn agent_lines_round_trip() {
    rt(&AgentLine::Hello { protocol: 1, agent_version: "0.1.0".into() });
    let v = rt(&AgentLine::ok(1, json!({"x": 1})));
    assert_eq!(v["ok"], true);
    let v = rt(&AgentLine::err(2, ErrorCode::NotFound, "no such peer \"bob\"; peers: alice, carol"));
    assert_eq!(v["error"]["code"], "not_found");
    let msg = InboxMessage {
        msg_id: "m".into(),
        mesh: "team".into(),
        from_member: "m_1".into(),
        from_session: "s".into(),
        from_name: "alice".into(),
        session_name: None,
        target: "*".into(),
        priority: Priority::Now,
        body: "hi".into(),
        reply_to: None,
        meta: Default::default(),
        sent_at: 1,
        received_at: 2,
        seen: false,
        read: true,
        error: None,
    };
    let v = rt(&msg);
    assert_eq!(v["read"], true);
    let unread = rt(&InboxMessage { read: false, ..msg.clone() });
    assert!(unread.get("read").is_none(), "absent when false: {unread}");
    let old: InboxMessage =
        serde_json::from_value(json!({"msg_id": "m", "mesh": "team", "from_member": "m_1",
        "from_session": "s", "from_name": "alice", "target": "*", "priority": "now", "body": "hi",
        "sent_at": 1, "received_at": 2, "seen": true}))
        .unwrap();
    assert!(!old.read, "a record stored before read marks reads as unread");
    for event in [
        LocalEvent::Messages(msg),
        LocalEvent::Presence {
            mesh: "team".into(),
            event: Event::PeerLeft { member_id: "m".into(), session_id: "s".into() },
        },
        LocalEvent::Links {
            mesh: "team".into(),
            state: LinkState::Disconnected,
            detail: Some("retry in 2s".into()),
        },
        LocalEvent::Services { mesh: "team".into(), event: Event::McpUndeployed { name: "x".into() } },
        LocalEvent::Vault { mesh: "team".into(), key: "k".into(), action: VaultAction::Set },
        LocalEvent::Skills(SkillEvent {
            mesh: "team".into(),
            name: "review".into(),
            action: claudemesh_protocol::frames::SkillAction::Shared,
        }),
    ] {
        let v = rt(&AgentLine::Event { sub: 4, seq: 1, event: Box::new(event) });
        assert_eq!(v["type"], "event");
        assert_eq!(v["sub"], 4);
        assert!(v["topic"].is_string() && v.get("data").is_some(), "{v}");
    }
}

#[test]
fn sent_records_carry_the_message_and_keep_their_count_apart() {
    let rec = SentRecord {
        client_msg_id: "c1".into(),
        mesh_id: "mesh_1".into(),
        to: "@ops".into(),
        created_at: 5,
        body: "deploy done".into(),
        priority: Priority::Now,
        target: "@ops".into(),
        from_session: Some("s".into()),
        recipient_ids: vec!["m_1".into(), "m_2".into()],
        state: SendState::Accepted { msg_id: "m".into(), recipients: 2 },
    };
    let v = rt(&rec);
    assert_eq!((v["recipients"].clone(), v["recipient_ids"].clone()), (json!(2), json!(["m_1", "m_2"])));
    rt(&SentReply { sent: vec![rec.clone()], more: 3 });
    // Sent before bodies were kept: the new fields read as their defaults.
    let old: SentRecord = serde_json::from_value(json!({"client_msg_id": "c0", "mesh_id": "mesh_1",
        "to": "bob", "created_at": 1, "state": "pending"}))
    .unwrap();
    assert_eq!(
        (old.body.as_str(), old.priority, old.from_session, old.recipient_ids.len()),
        ("", Priority::Next, None, 0)
    );
    // A new send's outbox event carries the record; the ones that end it do not.
    let pending = LocalEvent::Outbox {
        mesh: "team".into(),
        client_msg_id: "c1".into(),
        state: SendState::Pending,
        sent: Some(Box::new(SentRecord { state: SendState::Pending, ..rec })),
    };
    let v = rt(&AgentLine::Event { sub: 1, seq: 2, event: Box::new(pending) });
    assert_eq!(
        (v["data"]["state"].clone(), v["data"]["sent"]["body"].clone()),
        (json!("pending"), json!("deploy done"))
    );
    let accepted = LocalEvent::Outbox {
        mesh: "team".into(),
        client_msg_id: "c1".into(),
        state: SendState::Accepted { msg_id: "m".into(), recipients: 2 },
        sent: None,
    };
    let v = rt(&AgentLine::Event { sub: 1, seq: 3, event: Box::new(accepted) });
    assert!(v["data"].get("sent").is_none(), "{v}");
}
