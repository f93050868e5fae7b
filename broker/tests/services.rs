//! Shared MCP services end to end through a real broker (127.0.0.1:0, real redb), real runner
//! processes (`claudemesh-broker runner`) and the workspace's fixture MCP server
//! (`claudemesh-mcp-fixture`, on rmcp): deploy as `command` and as `bundle`, calls from another
//! member, logs, scope changes, undeploy leaving no process, the restart policy, timeouts, boot
//! restore, hostile zips, and peer-hosted forwarding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use base64::Engine as _;
use claudemesh_broker::BrokerConfig;
use claudemesh_broker::testkit::{Client, Identity};
use claudemesh_protocol::frames::*;
use claudemesh_protocol::scope::Scope;
use common::*;
use serde_json::{Value, json};

const RUNNER: &str = env!("CARGO_BIN_EXE_claudemesh-broker");
const FIXTURE: &str = env!("CARGO_BIN_EXE_claudemesh-mcp-fixture");

/// Runners from this build; quick health checks and restarts.
fn services(c: &mut BrokerConfig) {
    c.services.runner_command = vec![RUNNER.into(), "runner".into()];
    c.services.health.interval_ms = 500;
    c.services.health.timeout_ms = 500;
    c.services.restart.backoff_min_ms = 50;
    c.services.restart.backoff_max_ms = 200;
    c.services.restart.max_crashes = 3;
}

async fn harness() -> Harness {
    Harness::start_with(services).await
}

fn deploy_frame(
    req: u64,
    name: &str,
    source: ServiceSource,
    scope: Scope,
    token: Option<&str>,
) -> ClientFrame {
    ClientFrame::McpDeploy(McpDeploy {
        req,
        name: name.into(),
        source,
        description: "fixture".into(),
        args: vec![],
        entry: None,
        env: [("FIXTURE_SECRET".to_string(), "s3cr3t-value".to_string())].into(),
        secrets: vec![],
        scope,
        admin_token: token.map(|t| Secret(t.into())),
    })
}

async fn deploy_fixture(h: &Harness, c: &mut Client, name: &str, scope: Scope) -> ServerFrame {
    let req = c.next_req();
    let source = ServiceSource::Command { command: FIXTURE.into() };
    c.timeout = Duration::from_secs(60);
    let r = c.request(&deploy_frame(req, name, source, scope, Some(&h.broker.admin_token))).await.unwrap();
    c.timeout = Duration::from_secs(10);
    r
}

async fn call(
    c: &mut Client,
    service: &str,
    tool: &str,
    args: Value,
    timeout_ms: Option<u64>,
) -> ServerFrame {
    let req = c.next_req();
    let f =
        ClientFrame::McpCall { req, service: service.into(), tool: tool.into(), arguments: args, timeout_ms };
    c.request(&f).await.unwrap()
}

fn text(r: &ServerFrame) -> String {
    match r {
        ServerFrame::McpCallResult { result, .. } => {
            result["content"][0]["text"].as_str().unwrap_or_default().to_string()
        }
        other => panic!("expected a call result, got {other:?}"),
    }
}

async fn req(c: &mut Client, f: impl FnOnce(u64) -> ClientFrame) -> ServerFrame {
    let r = c.next_req();
    c.request(&f(r)).await.unwrap()
}

/// Processes whose working directory is inside `dir` (the services' children).
fn procs_in(dir: &std::path::Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        // A removed directory reads as "<path> (deleted)": compare as text.
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd"))
            && cwd.to_string_lossy().starts_with(&*dir.to_string_lossy())
            && alive(pid)
        {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` runs (a zombie waiting for init to reap it does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')').next().and_then(|r| r.split_whitespace().next()).map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

async fn wait_no_procs(dir: &std::path::Path) {
    for _ in 0..100 {
        if procs_in(dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("processes left behind in {}: {:?}", dir.display(), procs_in(dir));
}

#[tokio::test]
async fn deploy_call_logs_scope_and_undeploy_leave_nothing_behind() {
    let h = harness().await;
    let mut m = mesh_with(&h, "svc", 1).await;
    let r = deploy_fixture(&h, &mut m.admin_conn, "fixture", Scope::Mesh).await;
    let ServerFrame::McpDeployResult { status, tools, .. } = &r else { panic!("{r:?}") };
    assert_eq!(*status, ServiceStatus::Running, "{r:?}");
    assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");

    // Another member sees it and calls it.
    let (other, _) = &mut m.members[0];
    let cat = req(other, |req| ClientFrame::McpCatalog { req }).await;
    let ServerFrame::McpCatalogResult { services, .. } = &cat else { panic!("{cat:?}") };
    assert_eq!(services.len(), 1);
    assert!(services[0].tools.iter().any(|t| t.name == "echo"));
    let r = call(other, "fixture", "echo", json!({"text": "hello mesh"}), None).await;
    assert_eq!(text(&r), "hello mesh");
    let r = call(other, "fixture", "add", json!({"a": 2, "b": 3}), None).await;
    assert!(text(&r).contains('5'), "{r:?}");

    // The child's environment was cleared: the broker's own variables are absent.
    let r = call(other, "fixture", "env", json!({"name": "CARGO_MANIFEST_DIR"}), None).await;
    assert!(!text(&r).contains("/broker"), "the child inherited the broker's env: {r:?}");

    // Its stderr and stray stdout are in the log; the secret env value is not.
    // (Lines reach the broker in batches: wait for them.)
    let mut all = String::new();
    for _ in 0..50 {
        let logs = req(other, |req| ClientFrame::McpLogs {
            req,
            name: "fixture".into(),
            lines: None,
            follow: false,
        })
        .await;
        let ServerFrame::McpLogsResult { lines, .. } = &logs else { panic!("{logs:?}") };
        all = lines.join("\n");
        if all.contains("fixture ready") && all.contains("stray stdout line") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(all.contains("fixture ready") && all.contains("stray stdout line"), "{all}");
    assert!(!all.contains("s3cr3t-value"));

    // Narrowing the scope to the deployer: the other member is told, and refused everywhere.
    let admin_id = m.admin.member_id.clone();
    let r = req(&mut m.admin_conn, |req| ClientFrame::McpScope {
        req,
        name: "fixture".into(),
        scope: Scope::Members(vec![admin_id]),
    })
    .await;
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    let (other, _) = &mut m.members[0];
    wait_event(other, |e| matches!(e, Event::McpUndeployed { name } if name == "fixture")).await;
    let cat = req(other, |req| ClientFrame::McpCatalog { req }).await;
    assert!(matches!(&cat, ServerFrame::McpCatalogResult { services, .. } if services.is_empty()), "{cat:?}");
    let r = call(other, "fixture", "echo", json!({"text": "x"}), None).await;
    assert_eq!(error_code(&r), ErrorCode::Forbidden);
    let r = req(other, |req| ClientFrame::McpSchema { req, name: "fixture".into(), tool: None }).await;
    assert_eq!(error_code(&r), ErrorCode::Forbidden);
    let r =
        req(other, |req| ClientFrame::McpLogs { req, name: "fixture".into(), lines: None, follow: false })
            .await;
    assert_eq!(error_code(&r), ErrorCode::Forbidden);
    // Nor may it manage the service.
    let r = req(other, |req| ClientFrame::McpUndeploy { req, name: "fixture".into() }).await;
    assert_eq!(error_code(&r), ErrorCode::Forbidden);

    // A grandchild the server started dies with it on undeploy.
    let r = call(&mut m.admin_conn, "fixture", "spawn_child", json!({}), None).await;
    let grandchild: u32 = text(&r).trim().parse().unwrap();
    let services_dir = h.dir.path().join("data").join("services");
    assert!(!procs_in(&services_dir).is_empty());
    let r = req(&mut m.admin_conn, |req| ClientFrame::McpUndeploy { req, name: "fixture".into() }).await;
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    wait_no_procs(&services_dir).await;
    for _ in 0..100 {
        if !alive(grandchild) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn command_sources_need_the_broker_admin_token() {
    let h = harness().await;
    let mut m = mesh_with(&h, "cmd", 0).await;
    let req = m.admin_conn.next_req();
    let f = deploy_frame(req, "x", ServiceSource::Command { command: FIXTURE.into() }, Scope::Mesh, None);
    let r = m.admin_conn.request(&f).await.unwrap();
    assert_eq!(error_code(&r), ErrorCode::Forbidden);
    let req = m.admin_conn.next_req();
    let f = deploy_frame(
        req,
        "../x",
        ServiceSource::Command { command: FIXTURE.into() },
        Scope::Mesh,
        Some(&h.broker.admin_token),
    );
    assert_eq!(error_code(&m.admin_conn.request(&f).await.unwrap()), ErrorCode::Invalid);
}

#[tokio::test]
async fn a_hanging_tool_times_out_and_a_crash_mid_call_is_an_error() {
    let h = harness().await;
    let mut m = mesh_with(&h, "hang", 0).await;
    deploy_fixture(&h, &mut m.admin_conn, "fx", Scope::Peer).await;
    let t = std::time::Instant::now();
    let r = call(&mut m.admin_conn, "fx", "sleep", json!({"ms": 60_000}), Some(500)).await;
    assert_eq!(error_code(&r), ErrorCode::Timeout, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    let r = call(&mut m.admin_conn, "fx", "crash", json!({}), None).await;
    assert_eq!(error_code(&r), ErrorCode::Unavailable, "{r:?}");
    let r = call(&mut m.admin_conn, "nope", "echo", json!({}), None).await;
    assert_eq!(error_code(&r), ErrorCode::NotFound, "{r:?}");
}

#[tokio::test]
async fn a_crashing_server_walks_the_restart_policy_to_crashed() {
    let h = harness().await;
    let mut m = mesh_with(&h, "crash", 0).await;
    deploy_fixture(&h, &mut m.admin_conn, "fx", Scope::Peer).await;
    let mut crashed = false;
    for _ in 0..20 {
        let r = call(&mut m.admin_conn, "fx", "crash", json!({}), Some(2000)).await;
        if let ServerFrame::Error(e) = &r
            && e.message.contains("crashed")
        {
            crashed = true;
            break;
        }
        // Wait for it to run again (or give up) before crashing it once more.
        m.admin_conn
            .recv_match(|f| {
                matches!(
                    f,
                    ServerFrame::Event(Event::McpStatus {
                        status: ServiceStatus::Running | ServiceStatus::Crashed,
                        ..
                    })
                )
            })
            .await
            .unwrap();
        let cat = req(&mut m.admin_conn, |req| ClientFrame::McpCatalog { req }).await;
        if let ServerFrame::McpCatalogResult { services, .. } = &cat
            && services[0].status == ServiceStatus::Crashed
        {
            crashed = true;
            break;
        }
    }
    assert!(crashed, "never reached crashed");
    let cat = req(&mut m.admin_conn, |req| ClientFrame::McpCatalog { req }).await;
    let ServerFrame::McpCatalogResult { services, .. } = &cat else { panic!() };
    assert_eq!(services[0].status, ServiceStatus::Crashed);
    assert!(services[0].restarts >= 2, "{:?}", services[0]);
    let r = call(&mut m.admin_conn, "fx", "echo", json!({"text": "x"}), None).await;
    assert_eq!(error_code(&r), ErrorCode::Unavailable);
}

#[tokio::test]
async fn a_broker_restart_restores_a_running_service() {
    let h = harness().await;
    let admin = {
        let mut m = mesh_with(&h, "boot", 0).await;
        deploy_fixture(&h, &mut m.admin_conn, "fx", Scope::Mesh).await;
        m.admin_conn.close().await;
        m.admin
    };
    let services_dir = h.dir.path().join("data").join("services");
    let h = h.restart_with(services).await;
    let (mut c, _) = Client::connect_as(h.url(), &admin).await.unwrap();
    let mut last = None;
    for _ in 0..100 {
        let cat = req(&mut c, |req| ClientFrame::McpCatalog { req }).await;
        if let ServerFrame::McpCatalogResult { services, .. } = &cat
            && services.first().is_some_and(|s| s.status == ServiceStatus::Running)
        {
            last = None;
            break;
        }
        last = Some(cat);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_none(), "not running after restart: {last:?}");
    let r = call(&mut c, "fx", "echo", json!({"text": "back"}), None).await;
    assert_eq!(text(&r), "back");
    h.broker.stop().await.unwrap();
    wait_no_procs(&services_dir).await;
}

fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    for (name, body) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap();
    buf.into_inner()
}

async fn upload(c: &mut Client, bytes: &[u8]) -> String {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    let r = req(c, |req| ClientFrame::UploadBegin {
        req,
        name: "b.zip".into(),
        size: bytes.len() as u64,
        sha256: sha,
    })
    .await;
    let ServerFrame::UploadReady { upload_id, chunk_size, .. } = r else { panic!("{r:?}") };
    for (i, chunk) in bytes.chunks(chunk_size as usize).enumerate() {
        let data = base64::engine::general_purpose::STANDARD.encode(chunk);
        c.send(&ClientFrame::UploadChunk {
            upload_id: upload_id.clone(),
            offset: (i * chunk_size as usize) as u64,
            data,
        })
        .await
        .unwrap();
    }
    let r = req(c, |req| ClientFrame::UploadEnd { req, upload_id: upload_id.clone() }).await;
    assert!(matches!(r, ServerFrame::UploadDone { .. }), "{r:?}");
    upload_id
}

/// A minimal MCP server in JavaScript (node, no dependencies): initialize, tools/list, ping and
/// one `shout` tool.
const NODE_SERVER: &str = r#"
const rl = require('readline').createInterface({ input: process.stdin });
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
rl.on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id === undefined) return;
  if (m.method === 'initialize') send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'bundle', version: '1.0.0' } } });
  else if (m.method === 'tools/list') send({ jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'shout', description: 'upper-case', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } }] } });
  else if (m.method === 'tools/call') send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: String(m.params.arguments.text).toUpperCase() }] } });
  else send({ jsonrpc: '2.0', id: m.id, result: {} });
});
"#;

#[tokio::test]
async fn a_bundle_deploys_from_an_upload_and_a_hostile_zip_is_refused() {
    let h = harness().await;
    let mut m = mesh_with(&h, "bundle", 1).await;
    let (member, _) = &mut m.members[0];
    let bytes =
        zip_of(&[("package.json", r#"{"name":"shout","main":"index.js"}"#), ("index.js", NODE_SERVER)]);
    let upload_id = upload(member, &bytes).await;
    let r =
        req(member, |req| deploy_frame(req, "shout", ServiceSource::Bundle { upload_id }, Scope::Mesh, None))
            .await;
    let ServerFrame::McpDeployResult { status, error, log_tail, .. } = &r else { panic!("{r:?}") };
    assert_eq!(*status, ServiceStatus::Running, "{error:?} {log_tail:?}");
    let r = call(&mut m.admin_conn, "shout", "shout", json!({"text": "quiet"}), None).await;
    assert_eq!(text(&r), "QUIET");

    let (member, _) = &mut m.members[0];
    let evil = zip_of(&[("../evil.js", "x"), ("index.js", NODE_SERVER)]);
    let upload_id = upload(member, &evil).await;
    let r =
        req(member, |req| deploy_frame(req, "evil", ServiceSource::Bundle { upload_id }, Scope::Mesh, None))
            .await;
    assert_eq!(error_code(&r), ErrorCode::Invalid, "{r:?}");
    assert!(!h.dir.path().join("data").join("services").join("evil.js").exists());
    // A wrong checksum fails the upload.
    let r = req(member, |req| ClientFrame::UploadBegin {
        req,
        name: "b".into(),
        size: 3,
        sha256: "00".repeat(32),
    })
    .await;
    let ServerFrame::UploadReady { upload_id, .. } = r else { panic!() };
    member
        .send(&ClientFrame::UploadChunk { upload_id: upload_id.clone(), offset: 0, data: "YWJj".into() })
        .await
        .unwrap();
    let r = req(member, |req| ClientFrame::UploadEnd { req, upload_id }).await;
    assert_eq!(error_code(&r), ErrorCode::Invalid);
}

#[tokio::test]
async fn peer_hosted_calls_are_forwarded_and_an_offline_host_is_a_clear_error() {
    let h = harness().await;
    let mut m = mesh_with(&h, "peer", 1).await;
    let tool = ToolInfo { name: "ask".into(), description: None, input_schema: json!({"type": "object"}) };
    let r = req(&mut m.admin_conn, |req| ClientFrame::McpRegister {
        req,
        name: "local".into(),
        description: "mine".into(),
        tools: vec![tool],
        scope: Scope::Mesh,
    })
    .await;
    assert!(matches!(r, ServerFrame::Ok { .. }), "{r:?}");
    let (member, _) = &mut m.members[0];
    let req_id = member.next_req();
    member
        .send(&ClientFrame::McpCall {
            req: req_id,
            service: "local".into(),
            tool: "ask".into(),
            arguments: json!({"q": 1}),
            timeout_ms: Some(5000),
        })
        .await
        .unwrap();
    let fwd = m.admin_conn.recv_match(|f| matches!(f, ServerFrame::McpCallForward { .. })).await.unwrap();
    let ServerFrame::McpCallForward { call_id, from_member, .. } = fwd else { unreachable!() };
    assert_eq!(from_member, m.members[0].1.member_id);
    let result = json!({"content": [{"type": "text", "text": "answer"}]});
    m.admin_conn
        .send(&ClientFrame::McpCallResponse { call_id, result: Some(result), error: None })
        .await
        .unwrap();
    let (member, _) = &mut m.members[0];
    let r = member.recv_match(|f| f.req() == Some(req_id)).await.unwrap();
    assert_eq!(text(&r), "answer");

    let Mesh { admin_conn, mut members, .. } = m;
    admin_conn.close().await;
    let (member, _) = &mut members[0];
    wait_event(member, |e| matches!(e, Event::McpStatus { status: ServiceStatus::Offline, .. })).await;
    let r = call(member, "local", "ask", json!({}), None).await;
    assert_eq!(error_code(&r), ErrorCode::Unavailable, "{r:?}");
    let _: &Identity = &members[0].1;
}
