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
