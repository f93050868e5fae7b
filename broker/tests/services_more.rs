//! Shared MCP services through a real broker and runner, continued: the runner inside a
//! `--runner-wrap`, and a failed deploy replaced by deploying again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_broker::BrokerConfig;
use claudemesh_broker::testkit::Client;
use claudemesh_protocol::frames::*;
use claudemesh_protocol::scope::Scope;
use common::*;
use serde_json::{Value, json};

const RUNNER: &str = env!("CARGO_BIN_EXE_claudemesh-broker");
const FIXTURE: &str = env!("CARGO_BIN_EXE_claudemesh-mcp-fixture");

fn services(c: &mut BrokerConfig) {
    c.services.runner_command = vec![RUNNER.into(), "runner".into()];
}

async fn deploy(h: &Harness, c: &mut Client, name: &str, env: &[(&str, &str)]) -> ServerFrame {
    let req = c.next_req();
    c.timeout = Duration::from_secs(60);
    let f = ClientFrame::McpDeploy(McpDeploy {
        req,
        name: name.into(),
        source: ServiceSource::Command { command: FIXTURE.into() },
        description: String::new(),
        args: vec![],
        entry: None,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        secrets: vec![],
        scope: Scope::Peer,
        admin_token: Some(Secret(h.broker.admin_token.clone())),
    });
    let r = c.request(&f).await.unwrap();
    c.timeout = Duration::from_secs(10);
    r
}

async fn call(c: &mut Client, service: &str, tool: &str, args: Value) -> ServerFrame {
    let req = c.next_req();
    let f = ClientFrame::McpCall {
        req,
        service: service.into(),
        tool: tool.into(),
        arguments: args,
        timeout_ms: None,
    };
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

#[tokio::test]
async fn a_failed_deploy_is_replaced_by_deploying_again() {
    let h = Harness::start_with(services).await;
    let mut m = mesh_with(&h, "retry", 0).await;
    let r = deploy(&h, &mut m.admin_conn, "fx", &[("FIXTURE_CRASH_ON_START", "1")]).await;
    let ServerFrame::McpDeployResult { status, error, .. } = &r else { panic!("{r:?}") };
    assert_eq!(*status, ServiceStatus::Failed, "{r:?}");
    assert!(error.is_some());
    let r = deploy(&h, &mut m.admin_conn, "fx", &[]).await;
    assert!(matches!(&r, ServerFrame::McpDeployResult { status: ServiceStatus::Running, .. }), "{r:?}");
    assert_eq!(text(&call(&mut m.admin_conn, "fx", "echo", json!({"text": "again"})).await), "again");
    // A running service is not replaced that way.
    let r = deploy(&h, &mut m.admin_conn, "fx", &[]).await;
    assert_eq!(error_code(&r), ErrorCode::Conflict);
}

#[tokio::test]
async fn the_runner_starts_inside_its_wrap() {
    let marker = format!("CLAUDEMESH_WRAP_TEST={}", std::process::id());
    let wrap = marker.clone();
    let h = Harness::start_with(move |c| {
        services(c);
        c.services.runner_wrap = vec!["env".into(), wrap];
    })
    .await;
    let mut m = mesh_with(&h, "wrap", 0).await;
    let r = deploy(&h, &mut m.admin_conn, "fx", &[]).await;
    assert!(matches!(&r, ServerFrame::McpDeployResult { status: ServiceStatus::Running, .. }), "{r:?}");
    assert_eq!(text(&call(&mut m.admin_conn, "fx", "echo", json!({"text": "wrapped"})).await), "wrapped");
    // `env VAR=… claudemesh-broker runner` exec'd the runner with the variable set.
    let wrapped = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
            && cmdline.split(|b| *b == 0).any(|a| a == b"runner")
    });
    assert!(wrapped, "no runner process carries the wrap's {marker}");
}

/// Uploads `bytes` as a bundle over this connection; returns the upload id.
async fn upload(c: &mut Client, bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    let req = c.next_req();
    let begin = ClientFrame::UploadBegin { req, name: "b.zip".into(), size: bytes.len() as u64, sha256: sha };
    let ServerFrame::UploadReady { upload_id, chunk_size, .. } = c.request(&begin).await.unwrap() else {
        panic!()
    };
    for (i, chunk) in bytes.chunks(chunk_size as usize).enumerate() {
        let data = base64::engine::general_purpose::STANDARD.encode(chunk);
        let offset = (i * chunk_size as usize) as u64;
        c.send(&ClientFrame::UploadChunk { upload_id: upload_id.clone(), offset, data }).await.unwrap();
    }
    let req = c.next_req();
    let r = c.request(&ClientFrame::UploadEnd { req, upload_id: upload_id.clone() }).await.unwrap();
    assert!(matches!(r, ServerFrame::UploadDone { .. }), "{r:?}");
    upload_id
}

/// The workspace's own MCP server (the rmcp fixture binary) deployed as a `bundle` by a plain
/// member, with an explicit entry, and called by another member.
#[tokio::test]
async fn the_workspace_fixture_deploys_as_a_bundle() {
    use std::io::Write;
    let h = Harness::start_with(services).await;
    let mut m = mesh_with(&h, "fxbundle", 1).await;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file("claudemesh-mcp-fixture", opts).unwrap();
        z.write_all(&std::fs::read(FIXTURE).unwrap()).unwrap();
        z.finish().unwrap();
    }
    let bytes = buf.into_inner();
    let (member, _) = &mut m.members[0];
    let upload_id = upload(member, &bytes).await;
    let req = member.next_req();
    member.timeout = Duration::from_secs(120);
    let f = ClientFrame::McpDeploy(McpDeploy {
        req,
        name: "fxb".into(),
        source: ServiceSource::Bundle { upload_id },
        description: String::new(),
        args: vec![],
        entry: Some(vec!["./claudemesh-mcp-fixture".into()]),
        env: Default::default(),
        secrets: vec![],
        scope: Scope::Mesh,
        admin_token: None,
    });
    let r = member.request(&f).await.unwrap();
    let ServerFrame::McpDeployResult { status, error, log_tail, .. } = &r else { panic!("{r:?}") };
    assert_eq!(*status, ServiceStatus::Running, "{error:?} {log_tail:?}");
    assert_eq!(text(&call(&mut m.admin_conn, "fxb", "echo", json!({"text": "bundled"})).await), "bundled");
}
