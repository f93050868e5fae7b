//! Fixed data for the dashboard's tests, snapshots and benchmark: two meshes, peers, members
//! with every trust state, conversations both ways with every delivery state, three shared
//! services, four vault entries and three skills, all loaded through `update` exactly as the
//! agent's replies would load them. Times are fixed, so renders are byte-for-byte repeatable.

use claudemesh_protocol::frames::{
    CatalogEntry, DeliveryState, GroupRole, HostedBy, MemberInfo, PeerSession, Priority, Role, ServiceStatus,
    SessionInfo, SessionStatus, ToolInfo,
};
use claudemesh_protocol::frames::{Skill, SkillRecord, SkillSummary, VaultEntryMeta, VaultKind};
use claudemesh_protocol::local::{
    CatalogReply, ServiceEntry, SkillItem, SkillListItem, SkillListReply, VaultItem, VaultListReply,
};
use claudemesh_protocol::local::{
    InboxMessage, InboxReply, LinkState, LocalSessionStatus, MemberEntry, MemberTrust, MeshStatus, PeerEntry,
    SendState, SentRecord, SentReply, Snapshot, StatusReply, SubscribeReply, TrustState,
};
use claudemesh_protocol::scope::Scope;
use serde_json::json;

use crate::effect::Effect;
use crate::event::{AgentEvent, Event};
use crate::state::{Pending, State};
use crate::update::update;

/// The fixed clock: 2026-11-30 12:00:00 UTC, Unix ms.
pub const NOW: u64 = 1_796_040_000_000;

/// A member id of the fixture (`m_` and 20 hex digits; the short ids differ: `m_1cf450`…).
pub fn member_id(i: usize) -> String {
    format!("m_{:06x}{:014x}", 0x1c_f450 + i, i)
}

/// The index [`member_id`] made `id` from.
pub fn member_index(id: &str) -> usize {
    usize::from_str_radix(&id[id.len() - 14..], 16).unwrap_or(0)
}

/// A session id of the fixture (a UUID).
pub fn session_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

fn mesh(slug: &str, i: usize, link: LinkState, role: Role) -> MeshStatus {
    MeshStatus {
        slug: slug.into(),
        id: format!("mesh-{i}"),
        broker_url: format!("wss://broker{i}.example.com"),
        member_id: member_id(0),
        role,
        display_name: "alice".into(),
        link,
        detail: (link != LinkState::Connected).then(|| "connection refused (os error 111)".into()),
        retrying: true,
        peers: 3,
        sessions: 1,
        ..MeshStatus::default()
    }
}

/// A member named `name` (index `i`) of `mesh`.
pub fn member(mesh: &str, i: usize, name: &str, role: Role, trust: TrustState, online: bool) -> MemberEntry {
    let groups = if i.is_multiple_of(2) {
        vec![GroupRole { name: "dev".into(), role: Some("lead".into()) }]
    } else {
        vec![]
    };
    MemberEntry {
        member: MemberInfo {
            member_id: member_id(i),
            pubkey: format!("{:064x}", i),
            display_name: name.into(),
            role,
            groups,
            declared_groups: vec![],
            online,
            statements: vec![],
        },
        mesh: mesh.into(),
        me: i == 0,
        short_id: member_id(i)[..8].into(),
        sessions: if online { vec![format!("{name}-laptop")] } else { vec![] },
        trust: Some(MemberTrust {
            state: trust,
            detail: (trust != TrustState::Verified)
                .then(|| "the broker lists a key that differs from the pinned one".into()),
            safety_code: format!("{:05} {:05} {:05}", 12345 + i, 67890 + i, 11111 * (i % 9)),
            overused_invite: false,
        }),
    }
}

/// Session `i` of member `m` on `mesh`, named `name`.
pub fn peer(mesh: &str, i: usize, m: usize, name: &str, status: SessionStatus, summary: &str) -> PeerEntry {
    PeerEntry {
        peer: PeerSession {
            member_id: member_id(m),
            session: SessionInfo {
                session_id: session_id(i),
                display_name: name.into(),
                cwd: Some(format!("/home/{name}/src/claudemesh")),
                pid: Some(4000 + i as u32),
                hostname: Some(format!("{name}-host")),
                peer_type: Default::default(),
                channel: None,
                model: Some("claude-opus-4".into()),
                groups: if i.is_multiple_of(2) { vec![GroupRole::new("dev")] } else { vec![] },
                status,
                summary: (!summary.is_empty()).then(|| summary.into()),
            },
            connected_since: NOW - 3_600_000 * (i as u64 + 1),
        },
        mesh: mesh.into(),
        member_name: Some(name.split('-').next().unwrap_or(name).into()),
        me: m == 0,
    }
}

/// A message from member `m` (`name`) on `mesh`.
pub fn incoming(
    mesh: &str,
    n: usize,
    m: usize,
    name: &str,
    target: &str,
    body: &str,
    at: u64,
) -> InboxMessage {
    InboxMessage {
        msg_id: format!("msg-{mesh}-{n}"),
        mesh: mesh.into(),
        from_member: member_id(m),
        from_session: session_id(m),
        from_name: name.into(),
        session_name: None,
        target: target.into(),
        priority: if n % 7 == 3 { Priority::Now } else { Priority::Next },
        body: body.into(),
        reply_to: None,
        meta: Default::default(),
        sent_at: at,
        received_at: at,
        seen: n.is_multiple_of(2),
        read: n.is_multiple_of(3),
        error: None,
    }
}

/// A send this machine made to member `to` on mesh `mesh_id`.
pub fn outgoing(
    mesh_id: &str,
    n: usize,
    to: usize,
    to_name: &str,
    body: &str,
    at: u64,
    state: SendState,
) -> SentRecord {
    SentRecord {
        client_msg_id: format!("c-{mesh_id}-{n}"),
        mesh_id: mesh_id.into(),
        to: to_name.into(),
        created_at: at,
        state,
        body: body.into(),
        priority: Priority::Next,
        target: format!("member:{}", member_id(to)),
        from_session: None,
        recipient_ids: vec![member_id(to)],
    }
}

/// The tag of the first call of `fx` that `pending` is for.
fn tag_for(s: &State, fx: &[Effect], want: fn(&Pending) -> bool) -> Option<u64> {
    fx.iter().find_map(|e| match e {
        Effect::Call { tag, .. } if s.pending.get(tag).is_some_and(want) => Some(*tag),
        _ => None,
    })
}

/// Feeds `state` a subscription snapshot and the replies to the loads it asks for.
pub fn load(
    s: &mut State,
    snapshot: Snapshot,
    members: Vec<MemberEntry>,
    inbox: Vec<InboxMessage>,
    sent: Vec<SentRecord>,
) {
    let fx = update(
        s,
        Event::Agent(AgentEvent::Subscribed(Box::new(SubscribeReply { subscribed: 1, seq: 1, snapshot }))),
    );
    let reply = |s: &mut State, want: fn(&Pending) -> bool, v: serde_json::Value| {
        if let Some(tag) = tag_for(s, &fx, want) {
            update(s, Event::Agent(AgentEvent::Reply { tag, result: Ok(v) }));
        }
    };
    reply(s, |p| matches!(p, Pending::Members), json!(members));
    reply(
        s,
        |p| matches!(p, Pending::Inbox),
        json!(InboxReply { messages: inbox, lease: None, more: 0, next: None }),
    );
    reply(s, |p| matches!(p, Pending::Sent), json!(SentReply { sent, more: 0 }));
}

/// A shared service `name` of `mesh` deployed by member `deployer`.
pub fn service(
    mesh: &str,
    name: &str,
    source_kind: &str,
    status: ServiceStatus,
    scope: Scope,
    deployer: usize,
    tools: Vec<ToolInfo>,
) -> ServiceEntry {
    let running = status == ServiceStatus::Running;
    ServiceEntry {
        mesh: mesh.into(),
        entry: CatalogEntry {
            name: name.into(),
            description: format!("the {name} service, shared with the mesh"),
            source_kind: source_kind.into(),
            status,
            tools,
            scope,
            deployer: member_id(deployer),
            hosted_by: HostedBy::Broker,
            updated_at: NOW - 600_000,
            started_at: running.then_some(NOW - 2 * 3_600_000 - 720_000),
            restarts: if status == ServiceStatus::Crashed { 3 } else { 0 },
            version: Some(if source_kind == "git" { "a1b2c3d".into() } else { "1.4.2".into() }),
            error: (status == ServiceStatus::Crashed)
                .then(|| "exited with status 1: connection refused".into()),
            vault_keys: Vec::new(),
        },
    }
}

/// A tool with a description and an input schema.
pub fn tool(name: &str, description: &str, input_schema: serde_json::Value) -> ToolInfo {
    ToolInfo { name: name.into(), description: Some(description.into()), input_schema }
}

/// The fixture's services: `search` (running, two tools) and `db-ops` (crashed) on `team`,
/// `notes` (starting, no tool yet) on `oss`.
pub fn services() -> Vec<ServiceEntry> {
    let search_schema = json!({
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to search for"},
            "limit": {"type": "integer", "description": "most results", "default": 10},
            "safe": {"type": "boolean"},
            "engine": {"type": "string", "enum": ["web", "news", "code"]},
        },
        "required": ["query"],
    });
    let fetch_schema = json!({
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "the page's address"},
            "headers": {"type": "object", "description": "extra request headers"},
        },
        "required": ["url"],
    });
    let sql_schema = json!({
        "type": "object",
        "properties": {"sql": {"type": "string"}, "params": {"type": "array"}},
        "required": ["sql"],
    });
    vec![
        service(
            "team",
            "search",
            "npx",
            ServiceStatus::Running,
            Scope::Mesh,
            0,
            vec![
                tool("web_search", "search the web and return the top results", search_schema),
                tool("fetch_page", "fetch a page as text", fetch_schema),
            ],
        ),
        service(
            "team",
            "db-ops",
            "git",
            ServiceStatus::Crashed,
            Scope::Group("ops".into()),
            1,
            vec![tool("query", "run a read-only SQL query", sql_schema)],
        ),
        service(
            "oss",
            "notes",
            "uvx",
            ServiceStatus::Starting,
            Scope::Members(vec![member_id(3), member_id(9)]),
            3,
            vec![],
        ),
    ]
}

/// Answers the dashboard's pending `service_catalog` (asked at the snapshot) with `services`.
pub fn catalog(s: &mut State, services: Vec<ServiceEntry>) {
    let tag = s.pending.iter().find(|(_, p)| matches!(p, Pending::Catalog(None))).map(|(t, _)| *t);
    if let Some(tag) = tag {
        let reply = CatalogReply { services, errors: vec![] };
        update(s, Event::Agent(AgentEvent::Reply { tag, result: Ok(json!(reply)) }));
    }
}

/// A vault entry `key` of `mesh`.
pub fn vault_entry(
    mesh: &str,
    key: &str,
    mount: Option<&str>,
    description: Option<&str>,
    ago_ms: u64,
) -> VaultItem {
    let entry = VaultEntryMeta {
        key: key.into(),
        kind: if mount.is_some() { VaultKind::File } else { VaultKind::Env },
        mount_path: mount.map(Into::into),
        description: description.map(Into::into),
        updated_at: NOW - ago_ms,
    };
    VaultItem { mesh: mesh.into(), entry }
}

/// The fixture's vault: three entries on `team` (one a file), one on `oss`.
pub fn vault_entries() -> Vec<VaultItem> {
    vec![
        vault_entry("team", "GH_TOKEN", None, Some("GitHub token of the release bot"), 3_600_000),
        vault_entry(
            "team",
            "gcp-sa",
            Some("gcp/sa.json"),
            Some("service account of the CI project"),
            86_400_000,
        ),
        vault_entry("team", "OPENAI_KEY", None, None, 300_000),
        vault_entry("oss", "NPM_TOKEN", None, Some("publishing to npm"), 7_200_000),
    ]
}

/// A whole skill `name` of `mesh` by member `author`.
pub fn skill(
    mesh: &str,
    name: &str,
    description: &str,
    tags: &[&str],
    author: usize,
    ago_ms: u64,
) -> SkillItem {
    let skill = Skill {
        name: name.into(),
        description: description.into(),
        instructions: format!(
            "# {name}\n\n{description}.\n\n1. Read the diff top to bottom.\n2. Run the tests.\n3. Say what you would change, and why."
        ),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        files: [("checklist.md".to_string(), "- [ ] tests\n- [ ] docs\n- [ ] changelog".to_string())].into(),
    };
    SkillItem {
        mesh: mesh.into(),
        skill: SkillRecord { skill, author: member_id(author), updated_at: NOW - ago_ms },
        author_name: None,
    }
}

/// The fixture's skills: `code-review` (alice) and `release` (bob) on `team`, `triage`
/// (dave) on `oss`.
pub fn skills() -> Vec<SkillItem> {
    vec![
        skill("team", "code-review", "Code review checklist for Rust PRs", &["rust", "review"], 0, 600_000),
        skill(
            "team",
            "release",
            "Cutting a release: tags, changelog, crates.io",
            &["release"],
            1,
            172_800_000,
        ),
        skill("oss", "triage", "Triage new issues", &["issues"], 3, 3_600_000),
    ]
}

/// A skill as `skill_list` lists it.
pub fn summary(x: &SkillItem) -> SkillListItem {
    let r = &x.skill;
    SkillListItem {
        mesh: x.mesh.clone(),
        skill: SkillSummary {
            name: r.skill.name.clone(),
            description: r.skill.description.clone(),
            tags: r.skill.tags.clone(),
            author: r.author.clone(),
            updated_at: r.updated_at,
        },
        author_name: x.author_name.clone(),
    }
}

/// Loads the vault and skills lists as their replies would.
pub fn sharing(s: &mut State, vault: Vec<VaultItem>, skills: Vec<SkillListItem>) {
    let tag = s.tag(Pending::VaultList(None));
    update(s, Event::Agent(AgentEvent::Reply { tag, result: Ok(json!(VaultListReply { entries: vault })) }));
    let tag = s.tag(Pending::SkillList(None));
    update(s, Event::Agent(AgentEvent::Reply { tag, result: Ok(json!(SkillListReply { skills })) }));
}

/// The standard fixture at `size`: meshes `team` (connected, admin) and `oss` (disconnected),
/// a handful of peers and members, and three conversations.
pub fn standard(size: (u16, u16)) -> State {
    let mut s = State::new(size, true, NOW);
    let team = "team";
    let meshes = vec![
        mesh(team, 1, LinkState::Connected, Role::Admin),
        mesh("oss", 2, LinkState::Disconnected, Role::Member),
    ];
    let peers = vec![
        peer(team, 0, 0, "alice-laptop", SessionStatus::Working, "refactoring the agent core"),
        peer(team, 1, 1, "bob-desktop", SessionStatus::Idle, "waiting for review of the TUI"),
        peer(team, 2, 2, "carol-ci", SessionStatus::Dnd, "running the release build"),
        peer("oss", 3, 3, "dave-laptop", SessionStatus::Idle, ""),
    ];
    let status = StatusReply {
        agent_version: "0.1.0".into(),
        pid: 4242,
        uptime_secs: 3 * 3600 + 720,
        meshes,
        local_sessions: vec![LocalSessionStatus {
            session_id: session_id(0),
            display_name: "alice-laptop".into(),
            meshes: vec![team.into()],
            ..LocalSessionStatus::default()
        }],
        ..StatusReply::default()
    };
    let members = vec![
        member(team, 0, "alice", Role::Admin, TrustState::Verified, true),
        member(team, 1, "bob", Role::Member, TrustState::Verified, true),
        member(team, 2, "carol", Role::Member, TrustState::KeyChanged, true),
        member(team, 4, "erin", Role::Member, TrustState::Unverified, false),
        member("oss", 3, "dave", Role::Admin, TrustState::Verified, true),
    ];
    let inbox = vec![
        incoming(team, 1, 1, "bob", "member:x", "can you look at the dashboard layout?", NOW - 600_000),
        incoming(
            team,
            2,
            2,
            "carol",
            "@dev",
            "release build is green; tagging v0.2 in 10 minutes",
            NOW - 300_000,
        ),
        incoming(
            team,
            3,
            1,
            "bob",
            "member:x",
            "also: the sparkline looks great\nsecond line of the message",
            NOW - 120_000,
        ),
        incoming("oss", 4, 3, "dave", "*", "hello everyone", NOW - 7_200_000),
    ];
    let sent = vec![
        outgoing(
            "mesh-1",
            1,
            1,
            "bob",
            "on it, give me five minutes",
            NOW - 500_000,
            SendState::Accepted { msg_id: "b-1".into(), recipients: 1 },
        ),
        outgoing("mesh-1", 2, 1, "bob", "done, pushed to main", NOW - 60_000, SendState::Pending),
    ];
    load(&mut s, Snapshot { status, peers }, members, inbox, sent);
    s.messages.set_recipient(team, "b-1", &member_id(1), DeliveryState::Seen);
    catalog(&mut s, services());
    sharing(&mut s, vault_entries(), skills().iter().map(summary).collect());
    s
}
