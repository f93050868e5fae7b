//! Real MCP servers from the registries deployed through a real broker and runner, then
//! called by another member: npm `@modelcontextprotocol/server-everything` (npx, its `echo`
//! tool) and PyPI `mcp-server-time` (uvx, its `get_current_time` tool). They need the network
//! and npm/uv: skipped unless `CLAUDEMESH_SERVICES_NETWORK` is set; with `required` (CI) a
//! missing tool fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_protocol::frames::*;
use claudemesh_protocol::scope::Scope;
use common::*;
use serde_json::json;

fn network_test(name: &str, tool: &str) -> bool {
    let Ok(mode) = std::env::var("CLAUDEMESH_SERVICES_NETWORK") else {
        eprintln!("skipped {name}: set CLAUDEMESH_SERVICES_NETWORK=1 (or =required) to deploy real packages");
        return false;
    };
    let found =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        assert!(
            mode != "required",
            "{name}: `{tool}` is not on PATH and CLAUDEMESH_SERVICES_NETWORK=required"
        );
        eprintln!("skipped {name}: `{tool}` is not on PATH");
    }
    found
}

async fn deploy_and_call(
    source: ServiceSource,
    name: &str,
    tool: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    let h = Harness::start_with(|c| {
        c.services.runner_command = vec![env!("CARGO_BIN_EXE_claudemesh-broker").into(), "runner".into()];
    })
    .await;
    let mut m = mesh_with(&h, "net", 1).await;
    let (deployer, _) = &mut m.members[0];
    deployer.timeout = Duration::from_secs(600);
    let req = deployer.next_req();
    let f = ClientFrame::McpDeploy(McpDeploy {
        req,
        name: name.into(),
        source,
        description: String::new(),
        args: vec![],
        entry: None,
        env: Default::default(),
        secrets: vec![],
        scope: Scope::Mesh,
        admin_token: None,
    });
    let r = deployer.request(&f).await.unwrap();
    let ServerFrame::McpDeployResult { status, tools, error, log_tail, .. } = &r else { panic!("{r:?}") };
    assert_eq!(*status, ServiceStatus::Running, "{error:?}\n{}", log_tail.join("\n"));
    assert!(tools.iter().any(|t| t.name == tool), "{tools:?}");
    let req = m.admin_conn.next_req();
    let call = ClientFrame::McpCall {
        req,
        service: name.into(),
        tool: tool.into(),
        arguments: args,
        timeout_ms: Some(60_000),
    };
    m.admin_conn.timeout = Duration::from_secs(90);
    match m.admin_conn.request(&call).await.unwrap() {
        ServerFrame::McpCallResult { result, .. } => result,
        other => panic!("call failed: {other:?}"),
    }
}

#[tokio::test]
async fn npm_server_everything_deployed_with_npx_answers_echo() {
    if !network_test("server-everything", "npm") {
        return;
    }
    let source =
        ServiceSource::Npx { package: "@modelcontextprotocol/server-everything".into(), version: None };
    let result = deploy_and_call(source, "everything", "echo", json!({"message": "hi from the mesh"})).await;
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("hi from the mesh"), "{result}");
}

#[tokio::test]
async fn pypi_mcp_server_time_deployed_with_uvx_answers_get_current_time() {
    if !network_test("mcp-server-time", "uv") {
        return;
    }
    let source = ServiceSource::Uvx { package: "mcp-server-time".into(), version: None };
    let result = deploy_and_call(source, "time", "get_current_time", json!({"timezone": "UTC"})).await;
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("UTC") && text.contains("datetime"), "{result}");
}
