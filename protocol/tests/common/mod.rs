//! One sample of every broker frame, used by the round-trip and documentation tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::collections::BTreeMap;

use claudemesh_protocol::frames::*;
use claudemesh_protocol::scope::Scope;
use serde_json::json;

pub fn session() -> SessionInfo {
    SessionInfo {
        session_id: "6f1c2a4e-0000-4000-8000-000000000001".into(),
        display_name: "alice@laptop".into(),
        cwd: Some("/home/alice/repo".into()),
        pid: Some(4242),
        hostname: Some("laptop".into()),
        peer_type: PeerType::Ai,
        channel: Some("claudemesh".into()),
        model: Some("opus".into()),
        groups: vec![GroupRole { name: "backend".into(), role: Some("lead".into()) }],
        status: SessionStatus::Working,
        summary: Some("refactoring the router".into()),
    }
}

pub fn peer() -> PeerSession {
    PeerSession { member_id: "m_1".into(), session: session(), connected_since: 1_700_000_000_000 }
}

pub fn member() -> MemberInfo {
    MemberInfo {
        member_id: "m_1".into(),
        pubkey: "ab".repeat(32),
        display_name: "alice".into(),
        role: Role::Admin,
        groups: vec![GroupRole::new("ops")],
        declared_groups: vec!["backend".into()],
        online: true,
        statements: vec![statement()],
    }
}

/// A member statement as it travels (its signature is not checked by frame tests).
pub fn statement() -> claudemesh_protocol::trust::SignedStatement {
    claudemesh_protocol::trust::SignedStatement {
        statement: r#"{"kind":"member","v":2,"mesh_id":"mesh_1","member_id":"m_1"}"#.into(),
        signature: "ef".repeat(64),
    }
}

pub fn tool() -> ToolInfo {
    ToolInfo {
        name: "get_time".into(),
        description: Some("Current time".into()),
        input_schema: json!({"type":"object","properties":{"tz":{"type":"string"}}}),
    }
}

pub fn catalog() -> CatalogEntry {
    CatalogEntry {
        name: "time".into(),
        description: "time server".into(),
        source_kind: "uvx".into(),
        status: ServiceStatus::Running,
        tools: vec![tool()],
        scope: Scope::Group("ops".into()),
        deployer: "m_1".into(),
        hosted_by: HostedBy::Broker,
        updated_at: 1_700_000_000_000,
        started_at: Some(1_700_000_000_500),
        restarts: 1,
        version: Some("2025.1.0".into()),
        error: None,
        vault_keys: vec!["TZ_TOKEN".into()],
    }
}

pub fn skill() -> Skill {
    Skill {
        name: "review".into(),
        description: "code review checklist".into(),
        instructions: "Check tests first.".into(),
        tags: vec!["review".into()],
        files: BTreeMap::from([("checklist.md".into(), "- tests".into())]),
    }
}

pub fn send() -> Send {
    Send {
        req: 7,
        client_msg_id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
        from_session: "6f1c2a4e-0000-4000-8000-000000000001".into(),
        target: Target::Group("backend".into()),
        priority: Priority::Now,
        envelopes: vec![
            Envelope { member_id: "m_2".into(), nonce: "bm9uY2U=".into(), ciphertext: "Y2lwaGVy".into() },
            Envelope { member_id: "m_3".into(), nonce: "bm9uY2Uy".into(), ciphertext: "Y2lwaGVyMg==".into() },
        ],
    }
}

pub fn deploy() -> McpDeploy {
    McpDeploy {
        req: 11,
        name: "github".into(),
        source: ServiceSource::Npx {
            package: "@modelcontextprotocol/server-github".into(),
            version: Some("1.2.0".into()),
        },
        description: "GitHub for the team".into(),
        args: vec![],
        entry: None,
        env: BTreeMap::from([("GITHUB_TOKEN".into(), "$vault:gh_token".into())]),
        secrets: vec![SealedSecret { key: "gh_token".into(), sealed: "c2VhbGVk".into() }],
        scope: Scope::Groups(vec!["backend".into(), "ops".into()]),
        admin_token: None,
    }
}

pub fn push() -> Push {
    Push {
        msg_id: "01HZX3K9Q4".into(),
        client_msg_id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
        from: PushFrom { member_id: "m_1".into(), session_id: "6f1c2a4e-0000-4000-8000-000000000001".into() },
        target: Target::Group("backend".into()),
        priority: Priority::Now,
        nonce: "bm9uY2U=".into(),
        ciphertext: "Y2lwaGVy".into(),
        sent_at: 1_700_000_000_123,
    }
}

pub fn all_events() -> Vec<Event> {
    vec![
        Event::PeerJoined(peer()),
        Event::PeerUpdated(peer()),
        Event::PeerLeft { member_id: "m_1".into(), session_id: "s1".into() },
        Event::MemberJoined(member()),
        Event::MemberUpdated(member()),
        Event::MemberOnline { member_id: "m_1".into(), online: true },
        Event::PresenceReset {},
        Event::MemberRemoved {
            member_id: "m_9".into(),
            reason: RemovalReason::Left,
            display_name: "bob".into(),
        },
        Event::Receipt { msg_ids: vec!["x".into()], member_id: "m_2".into(), state: ReceiptState::Seen },
        Event::Receipt { msg_ids: vec!["y".into()], member_id: "m_2".into(), state: ReceiptState::Delivered },
        Event::Expired { msg_ids: vec!["x".into()], member_id: "m_2".into() },
        Event::McpDeployed(catalog()),
        Event::McpStatus {
            name: "time".into(),
            status: ServiceStatus::Restarting,
            error: Some("exit 1".into()),
        },
        Event::McpUndeployed { name: "time".into() },
        Event::McpUpdated(catalog()),
        Event::McpScopeChanged { name: "time".into(), scope: Scope::Mesh },
        Event::McpCrashed { name: "time".into(), error: "5 crashes in 10 minutes".into() },
        Event::McpToolsChanged { name: "time".into(), tools: vec![tool()] },
        Event::McpLog { name: "time".into(), lines: vec!["listening".into()] },
        Event::SkillChanged { name: "review".into(), action: SkillAction::Shared },
    ]
}

pub fn all_client() -> Vec<ClientFrame> {
    use ClientFrame as C;
    vec![
        C::Hello(Hello {
            mesh_id: "mesh_1".into(),
            member_id: "m_1".into(),
            pubkey: "ab".repeat(32),
            signature: "cd".repeat(64),
            instance: Some(AgentInstance { id: "0f".repeat(16), started_at: 1_700_000_000_000 }),
            protocol: 2,
        }),
        C::Enroll(Enroll {
            statement: None,
            invite: "eyJ2IjoxfQ.c2ln".into(),
            pubkey: "ab".repeat(32),
            display_name: "bob".into(),
            signature: "cd".repeat(64),
            protocol: 2,
        }),
        C::SessionOpen { req: 1, session: session() },
        C::SessionUpdate {
            req: 2,
            session_id: "s1".into(),
            patch: SessionPatch {
                status: Some(SessionStatus::Idle),
                summary: Some("done".into()),
                ..Default::default()
            },
        },
        C::SessionClose { req: 3, session_id: "s1".into() },
        C::Send(send()),
        C::ClientAck { msg_ids: vec!["a".into(), "b".into()] },
        C::Receipt { msg_ids: vec!["a".into()], state: ReceiptState::Seen },
        C::MessageStatus { req: 4, msg_id: "a".into() },
        C::ListPeers { req: 5, cursor: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()), limit: Some(10) },
        C::ListMembers { req: 6, cursor: None, limit: None },
        C::ListMembers { req: 6, cursor: Some("m_01".into()), limit: Some(500) },
        C::MeshCreate {
            req: 8,
            slug: "team".into(),
            admin_token: Secret("tok".into()),
            pubkey: "ab".repeat(32),
            display_name: "alice".into(),
        },
        C::InviteRegister { req: 9, invite: "eyJ2IjoxfQ.c2ln".into() },
        C::InviteRevoke { req: 10, invite_id: "inv_1".into() },
        C::InviteList { req: 10 },
        C::MemberRemove { req: 12, member_id: "m_2".into(), statement: Some(statement()) },
        C::MemberSet {
            req: 13,
            member_id: "m_2".into(),
            role: Some(Role::Admin),
            groups: Some(vec![GroupRole::new("ops")]),
            statement: Some(statement()),
        },
        C::Statement { req: 11, statement: statement() },
        C::MeshInfo { req: 14 },
        C::Leave { req: 15, statement: None },
        C::McpDeploy(deploy()),
        C::McpUndeploy { req: 15, name: "github".into() },
        C::McpUpdate(McpUpdate {
            req: 16,
            name: "github".into(),
            source: None,
            description: Some("x".into()),
            args: None,
            env: Some(BTreeMap::new()),
            secrets: None,
        }),
        C::McpLogs { req: 17, name: "github".into(), lines: Some(100), follow: true },
        C::McpLogsUnfollow { req: 30, name: "github".into() },
        C::McpScope { req: 18, name: "github".into(), scope: Scope::Members(vec!["m_2".into()]) },
        C::McpSchema { req: 19, name: "github".into(), tool: Some("search".into()) },
        C::McpCatalog { req: 20 },
        C::McpCall {
            req: 21,
            service: "github".into(),
            tool: "search".into(),
            arguments: json!({"q":"x"}),
            timeout_ms: Some(5000),
        },
        C::McpRegister {
            req: 22,
            name: "local-db".into(),
            description: "my db".into(),
            tools: vec![tool()],
            scope: Scope::Mesh,
        },
        C::McpUnregister { req: 23, name: "local-db".into() },
        C::McpCallResponse { call_id: "c1".into(), result: Some(json!({"content":[]})), error: None },
        C::UploadBegin { req: 24, name: "bundle.zip".into(), size: 1024, sha256: "00".repeat(32) },
        C::UploadChunk { upload_id: "u1".into(), offset: 0, data: "UEsDBA==".into() },
        C::UploadEnd { req: 25, upload_id: "u1".into() },
        C::McpRunnerKey { req: 26 },
        C::VaultSet {
            req: 26,
            key: "gh_token".into(),
            ciphertext: "Y3Q=".into(),
            nonce: "bm9uY2U=".into(),
            sealed_key: "c2s=".into(),
            kind: VaultKind::File,
            mount_path: Some("gh/token".into()),
            description: Some("GitHub PAT".into()),
        },
        C::VaultGet { req: 27, key: "gh_token".into() },
        C::VaultList { req: 28 },
        C::VaultDelete { req: 29, key: "gh_token".into() },
        C::SkillShare { req: 30, skill: skill() },
        C::SkillGet { req: 31, name: "review".into() },
        C::SkillList { req: 32, query: Some("rev".into()) },
        C::SkillRemove { req: 33, name: "review".into() },
    ]
}

pub fn all_server() -> Vec<ServerFrame> {
    use ServerFrame as S;
    let mesh = MeshRef { id: "mesh_1".into(), slug: "team".into() };
    vec![
        S::Welcome {
            protocol: 1,
            challenge: "00".repeat(32),
            broker_version: "0.1.0".into(),
            public_url: Some("wss://mesh.example.com/ws".into()),
        },
        S::HelloAck {
            member_id: "m_1".into(),
            role: Role::Member,
            mesh: mesh.clone(),
            public_url: None,
            services: vec![catalog()],
            runner_pubkey: Some("ef".repeat(32)),
        },
        S::Enrolled { member_id: "m_2".into(), role: Role::Member, mesh: mesh.clone() },
        S::Error(ErrorFrame {
            req: Some(7),
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(250),
        }),
        S::Ok { req: 1 },
        S::Ack { req: 7, msg_id: "01HZX3K9Q4".into(), recipients: 2, online: 1 },
        S::Push(push()),
        S::MessageStatus {
            req: 4,
            msg_id: "a".into(),
            sent_at: 1,
            recipients: vec![RecipientStatus { member_id: "m_2".into(), state: DeliveryState::Seen, at: 2 }],
        },
        S::Peers { req: 5, sessions: vec![peer()], next: None },
        S::Members {
            req: 6,
            members: vec![member()],
            former: vec![FormerMember {
                member_id: "m_8".into(),
                display_name: "carol".into(),
                reason: RemovalReason::Left,
                at: 1_700_000_000_000,
                pubkey: "cd".repeat(32),
                statements: vec![statement()],
            }],
            next: None,
        },
        S::Members { req: 6, members: vec![member()], former: vec![], next: Some("m_1".into()) },
        S::Event(Event::PeerLeft { member_id: "m_1".into(), session_id: "s1".into() }),
        S::Events { events: all_events() },
        S::MeshCreated { req: 8, mesh: mesh.clone(), member_id: "m_1".into(), role: Role::Admin },
        S::Invites {
            req: 10,
            invites: vec![InviteInfo {
                invite_id: "inv_1".into(),
                role: Role::Member,
                groups: vec![],
                expires_at: 2,
                max_uses: 3,
                uses: 1,
                revoked: false,
                issuer: "m_1".into(),
            }],
        },
        S::MeshInfo { req: 14, mesh, created_at: 1, members: 3, online_members: 2, sessions: 4, services: 1 },
        S::McpDeployResult {
            req: 11,
            name: "github".into(),
            status: ServiceStatus::Failed,
            tools: vec![],
            error: Some("npx exited 1".into()),
            log_tail: vec!["npm ERR! 404".into()],
        },
        S::McpLogsResult { req: 17, name: "github".into(), lines: vec!["started".into()] },
        S::McpSchemaResult { req: 19, name: "github".into(), tools: vec![tool()] },
        S::McpCatalogResult { req: 20, services: vec![catalog()] },
        S::McpCallResult {
            req: 21,
            result: json!({"content":[{"type":"text","text":"12:00"}],"isError":false}),
        },
        S::McpCallForward {
            call_id: "c1".into(),
            service: "local-db".into(),
            tool: "query".into(),
            arguments: json!({}),
            from_member: "m_2".into(),
            timeout_ms: 30000,
        },
        S::UploadReady { req: 24, upload_id: "u1".into(), chunk_size: 1 << 20 },
        S::UploadDone { req: 25, upload_id: "u1".into(), size: 1024, sha256: "00".repeat(32) },
        S::RunnerKey { req: 26, public_key: "AA".repeat(22) },
        S::VaultEntry {
            req: 27,
            entry: VaultEntry {
                key: "gh_token".into(),
                ciphertext: "Y3Q=".into(),
                nonce: "bm9uY2U=".into(),
                sealed_key: "c2s=".into(),
                kind: VaultKind::Env,
                mount_path: None,
                description: None,
                updated_at: 5,
            },
        },
        S::VaultEntries {
            req: 28,
            entries: vec![VaultEntryMeta {
                key: "gh_token".into(),
                kind: VaultKind::Env,
                mount_path: None,
                description: Some("pat".into()),
                updated_at: 5,
            }],
        },
        S::Skill { req: 31, skill: SkillRecord { skill: skill(), author: "m_1".into(), updated_at: 9 } },
        S::Skills {
            req: 32,
            skills: vec![SkillSummary {
                name: "review".into(),
                description: "d".into(),
                tags: vec![],
                author: "m_1".into(),
                updated_at: 9,
            }],
        },
    ]
}

/// A member invite of mesh `mesh_1` (group `ops` as lead, 3 uses) issued by `issuer`.
pub fn invite_payload(
    issuer: &claudemesh_protocol::crypto::MemberKeypair,
) -> claudemesh_protocol::invite::InvitePayload {
    claudemesh_protocol::invite::InvitePayload {
        v: 1,
        broker_url: "wss://mesh.example.com/ws".into(),
        mesh_id: "mesh_1".into(),
        mesh_slug: "team".into(),
        invite_id: "inv_1".into(),
        role: Role::Member,
        groups: vec![GroupRole { name: "ops".into(), role: Some("lead".into()) }],
        expires_at: 2_000_000_000,
        max_uses: 3,
        issuer_pubkey: issuer.public_hex(),
    }
}
