//! Mesh services as Claude Code sees them (issue 15): `claudemesh mcp --service tools` and the
//! main server's `svc__…` tools, driven by an rmcp client over stdio (and the official Python
//! MCP SDK when one is found, see tests/common/external.rs) against a real broker, real agents,
//! real runner processes (`claudemesh broker runner`) and the workspace's fixture MCP server
//! (`claudemesh-mcp-fixture`, built with `cargo build -p claudemesh-broker --bins`).
//!
//! `--service`: lists exactly the service's tools with their schemas, calls one, follows a
//! tools change and an update with `tools/list_changed`, gives a clear `isError` during a
//! broker outage and works again after it, and exits 0 when the service is undeployed or the
//! member's access is withdrawn. Main server: a service deployed mid-session appears as
//! `svc__tools__<tool>` tools (list_changed, a notice, callable) and goes on undeploy; one
//! running at start gets none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use claudemesh_agent::AgentClient;
use claudemesh_protocol::frames::Secret;
use claudemesh_protocol::local::{
    AgentCall, CatalogReply, DeployParams, DeployReply, LinkState, LocalSource, UpdateParams,
};
use common::external::*;
use common::mcp_client::*;
use common::*;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

/// The fixture deployed as `name` by the admin, for the whole mesh.
async fn deploy(w: &World, admin: &mut AgentClient, name: &str) -> DeployReply {
    assert!(fixture_exe().exists(), "run `cargo build -p claudemesh-broker --bins` first");
    let token = w.broker.as_ref().unwrap().admin_token.clone();
    let p = DeployParams {
        mesh: None,
        name: name.into(),
        source: LocalSource::Command { argv: vec![fixture_exe().display().to_string()] },
        description: "the fixture".into(),
        args: vec![],
        entry: None,
        env: Default::default(),
        scope: Some(json!("mesh")),
        admin_token: Some(Secret(token)),
    };
    let r: DeployReply = admin.request(AgentCall::ServiceDeploy(Box::new(p))).await.unwrap();
    assert_eq!(serde_json::to_value(r.status).unwrap(), "running", "{r:?}");
    r
}

async fn undeploy(admin: &mut AgentClient, name: &str) {
    let _: Value = admin.request(AgentCall::ServiceUndeploy { name: name.into(), mesh: None }).await.unwrap();
}

async fn agents(w: &World) -> (RunningAgent, AgentClient, RunningAgent) {
    // Enrolling bob connects as the admin: before the admin's agent, which it would replace.
    let bob = w.member("bob").await;
    let admin = RunningAgent::start(&w.admin_paths()).await;
    let mut a = admin.client().await;
    wait_connected(&mut a).await;
    let bob = RunningAgent::start(&bob).await;
    wait_connected(&mut bob.client().await).await;
    (admin, a, bob)
}

async fn tool_names(c: &Mcp) -> Vec<String> {
    c.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect()
}

async fn call_named(c: &Mcp, name: &str, args: Value) -> rmcp::model::CallToolResult {
    let Value::Object(args) = args else { panic!("args must be an object") };
    c.call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args)).await.unwrap()
}

/// The service's answer: the attribution header, then its text parts.
fn answer(r: &rmcp::model::CallToolResult, tool: &str) -> Vec<String> {
    let parts: Vec<String> = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    let head = format!(
        "[output of mesh service tools tool {tool} on mesh team; written by the service, not the user"
    );
    assert!(parts.first().is_some_and(|h| h.starts_with(&head)), "{parts:?}");
    parts[1..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_server_lists_calls_follows_rides_out_outages_and_exits() {
    let mut w = World::start().await;
    let (admin, mut a, bob) = agents(&w).await;
    deploy(&w, &mut a, "tools").await;

    let mut s = ServiceMcp::start(&bob.paths, "tools", "team").await;
    let info = s.client.peer_info().unwrap();
    assert_eq!(info.capabilities.tools.as_ref().unwrap().list_changed, Some(true));
    assert!(info.capabilities.prompts.is_none());

    // Exactly the service's tools, as the catalog declares them.
    let cat: CatalogReply = a.request(AgentCall::ServiceCatalog { mesh: None }).await.unwrap();
    let declared = &cat.services[0].entry.tools;
    let listed = s.client.list_all_tools().await.unwrap();
    assert_eq!(listed.len(), declared.len());
    for (l, d) in listed.iter().zip(declared) {
        assert_eq!(l.name, d.name);
        assert_eq!(l.description.as_deref(), d.description.as_deref());
        assert_eq!(Value::Object((*l.input_schema).clone()), d.input_schema, "{}", d.name);
    }
    assert!(listed.iter().any(|t| t.name == "add" && t.input_schema["properties"]["a"]["type"] == "number"));

    // A call goes through the agent; its output is attributed, its text as the service sent it.
    let r = call_named(&s.client, "add", json!({"a": 2, "b": 40})).await;
    assert!(!is_error(&r), "{r:?}");
    assert_eq!(answer(&r, "add"), ["42"]);
    let r = call_named(&s.client, "nope", json!({})).await;
    assert!(is_error(&r), "an unknown tool is the service's error: {r:?}");

    // The service's tools change: told, and listed. (A notice from the start, when the first
    // catalog read raced the handshake, is not this one.)
    while s.tools_changed.try_recv().is_ok() {}
    let r = call_named(&s.client, "add_tool", json!({})).await;
    assert_eq!(answer(&r, "add_tool"), ["added"]);
    assert!(changed(&mut s.tools_changed).await, "no tools/list_changed after the service added a tool");
    assert!(tool_names(&s.client).await.contains(&"extra".to_string()));
    // An update restarts the fixture without the extra tool: told again.
    let up = UpdateParams { mesh: None, name: "tools".into(), source: None, args: None, env: None };
    let _: DeployReply = a.request(AgentCall::ServiceUpdate(up)).await.unwrap();
    assert!(changed(&mut s.tools_changed).await, "no tools/list_changed after an update");
    assert!(!tool_names(&s.client).await.contains(&"extra".to_string()));

    // The broker goes away: a call waits for the link, then says clearly what happened.
    w.stop_broker().await;
    wait_mesh_status(&mut bob.client().await, "a dropped link", |m| m.link != LinkState::Connected).await;
    let t0 = Instant::now();
    let r = call_named(&s.client, "echo", json!({"text": "during"})).await;
    let waited = t0.elapsed();
    assert!(is_error(&r), "{r:?}");
    let t = text(&r);
    assert!(
        t.contains("mesh team") && t.contains("call was not made") && t.contains("claudemesh status"),
        "{t}"
    );
    assert!(waited >= Duration::from_secs(8) && waited < Duration::from_secs(20), "{waited:?}");
    // A server started now lists nothing yet, and is told once the service is reachable.
    let mut late = ServiceMcp::start(&bob.paths, "tools", "team").await;
    assert!(tool_names(&late.client).await.is_empty());
    // Back: a call succeeds again (the agent reconnects on its own backoff).
    w.start_broker().await;
    let mut ok = false;
    for _ in 0..8 {
        let r = call_named(&s.client, "echo", json!({"text": "after"})).await;
        if !is_error(&r) {
            assert_eq!(answer(&r, "echo"), ["after"]);
            ok = true;
            break;
        }
    }
    assert!(ok, "no call succeeded after the broker came back");
    // Alice's agent comes back on its own backoff: after this ~12 s outage its next wait can be
    // 8-16 s (base 16 s, 50-100 % jitter), longer than `wait_connected` waits.
    wait_mesh_status(&mut a, "alice's link back after the outage", |m| m.link == LinkState::Connected).await;
    if !changed(&mut late.tools_changed).await {
        late.child.start_kill().unwrap();
        let (_, err) = late.exited().await;
        panic!("no tools/list_changed once the service was reachable: {err}");
    }
    assert!(tool_names(&late.client).await.contains(&"echo".to_string()));

    // Undeployed: the server says so and exits 0.
    undeploy(&mut a, "tools").await;
    let (code, err) = s.exited().await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("service tools on mesh team is no longer available"), "{err}");
    assert_eq!(late.exited().await.0, Some(0));

    // Access withdrawn (the scope narrowed to the admin): the same.
    deploy(&w, &mut a, "tools").await;
    let s = ServiceMcp::start(&bob.paths, "tools", "team").await;
    assert!(tool_names(&s.client).await.contains(&"echo".to_string()));
    let only_admin = Some(json!({"members": [w.admin.member_id]}));
    let scope = AgentCall::ServiceScope { name: "tools".into(), scope: only_admin, mesh: None };
    let _: Value = a.request(scope).await.unwrap();
    let (code, err) = s.exited().await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("no longer available"), "{err}");

    // A service that is not there cannot be served: exit 1 at once, saying so. (At once means
    // possibly before an MCP client's `initialize` is answered, so no handshake is attempted.)
    let (code, err) = refused_at_start(&bob.paths, "nothing-here", "team");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no service nothing-here that you may use on mesh team"), "{err}");
    // Nor on a mesh this member has not joined.
    let (code, err) = refused_at_start(&bob.paths, "tools", "nosuch");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a member of mesh nosuch; joined: team"), "{err}");

    undeploy(&mut a, "tools").await;
    bob.stop().await;
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_deployed_mid_session_gets_svc_tools_until_it_goes() {
    let w = World::start().await;
    let (admin, mut a, bob) = agents(&w).await;
    // Running before the session: reached through mesh_tool_call (and launch's own entry) only.
    deploy(&w, &mut a, "early").await;

    let (pushed, mut notes, mut tools_changed) =
        mcp_watching_tools(&bob.paths, "000000c1-5e55-4000-8000-000000000000", "bob-push", true).await;
    let (quiet, _, mut quiet_changed) =
        mcp_watching_tools(&bob.paths, "000000c2-5e55-4000-8000-000000000000", "bob-quiet", false).await;
    let mut before = tool_names(&pushed).await;
    before.sort();
    assert_eq!(before, TOOLS, "no svc__ tools for a service running at start");
    assert_eq!(tool_names(&quiet).await.len(), TOOLS.len());

    // Deployed now: both sessions are told, list and can call its tools.
    deploy(&w, &mut a, "tools").await;
    assert!(changed(&mut tools_changed).await, "no tools/list_changed after a deploy");
    assert!(changed(&mut quiet_changed).await, "no tools/list_changed after a deploy (push off)");
    let listed = pushed.list_all_tools().await.unwrap();
    let svc: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).filter(|n| n.starts_with("svc__")).collect();
    assert!(svc.contains(&"svc__tools__echo") && svc.contains(&"svc__tools__add"), "{svc:?}");
    assert!(svc.iter().all(|n| n.starts_with("svc__tools__")), "{svc:?}");
    let add = listed.iter().find(|t| t.name == "svc__tools__add").unwrap();
    assert_eq!(add.input_schema["properties"]["b"]["type"], "number");
    assert!(add.description.as_deref().unwrap().contains("mesh service tools (mesh team, deployed by"));

    // Push on: a channel notice names the new tools.
    let n = tokio::time::timeout(Duration::from_secs(15), notes.recv()).await.unwrap().unwrap();
    let p = n.params.unwrap();
    assert_eq!(p["meta"]["kind"], "service", "{p}");
    assert_eq!(p["meta"]["service"], "tools", "{p}");
    let c = p["content"].as_str().unwrap();
    assert!(
        c.starts_with("Mesh service tools (mesh team, deployed by") && c.contains("svc__tools__echo"),
        "{c}"
    );

    let r = call_named(&pushed, "svc__tools__echo", json!({"text": "via svc"})).await;
    assert!(!is_error(&r), "{r:?}");
    assert_eq!(answer(&r, "echo"), ["via svc"]);
    // Push off: the notice rides on the next result, once.
    let r = call_named(&quiet, "svc__tools__add", json!({"a": 1, "b": 2})).await;
    let parts = answer(&r, "add");
    assert_eq!(parts[0], "3");
    assert!(parts[1].starts_with("[claudemesh notice] Mesh service tools (mesh team"), "{parts:?}");
    let r = call_named(&quiet, "svc__tools__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(answer(&r, "add"), ["3"]);

    // Undeployed: told again, and gone.
    undeploy(&mut a, "tools").await;
    assert!(changed(&mut tools_changed).await, "no tools/list_changed after an undeploy");
    let after = tool_names(&pushed).await;
    assert!(!after.iter().any(|n| n.starts_with("svc__")), "{after:?}");
    let gone = CallToolRequestParams::new("svc__tools__echo").with_arguments(Default::default());
    assert!(pushed.call_tool(gone).await.is_err(), "an unknown tool now");

    pushed.cancel().await.unwrap();
    quiet.cancel().await.unwrap();
    undeploy(&mut a, "early").await;
    bob.stop().await;
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_sdk_lists_a_services_tools() {
    let test = "python_mcp_sdk_lists_a_services_tools";
    let Some(python) = python_with_mcp(test).await else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp_service_tools.py");
    let w = World::start().await;
    let (admin, mut a, bob) = agents(&w).await;
    deploy(&w, &mut a, "tools").await;

    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .args([EXE, "tools", "team"])
        .env("CLAUDEMESH_CONFIG_DIR", &bob.paths.dir)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run("python mcp_service_tools.py", &mut cmd, Duration::from_secs(120)).await;
    let (so, se) = (stdout(&out), stderr(&out));
    eprintln!("python mcp_service_tools.py stdout:\n{so}\nstderr:\n{se}");
    assert!(out.status.success(), "mcp_service_tools.py failed ({}):\n{so}\n{se}", out.status);
    let report: Value =
        serde_json::from_str(so.trim()).unwrap_or_else(|e| panic!("no JSON ({e}):\n{so}\n{se}"));
    assert!(report.get("fatal").is_none(), "{report:#}");
    assert_eq!(report["capabilities"]["tools"]["listChanged"], true, "{report:#}");
    let tools = report["tools"].as_array().unwrap();
    let echo = tools.iter().find(|t| t["name"] == "echo").unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(echo["description"], "Returns text");
    assert_eq!(echo["inputSchema"], json!({"type": "object", "properties": {"text": {"type": "string"}}}));
    assert!(!tools.iter().any(|t| t["name"] == "send_message"), "only the service's tools: {report:#}");
    assert_eq!(report["call"]["isError"], false, "{report:#}");
    assert_eq!(report["call"]["texts"][1], "from python", "{report:#}");

    undeploy(&mut a, "tools").await;
    bob.stop().await;
    admin.stop().await;
}

/// Runs `claudemesh mcp --service NAME --mesh MESH` with nothing on stdin: its exit code and
/// stderr (for a server that should refuse before serving).
fn refused_at_start(paths: &claudemesh_agent::Paths, service: &str, mesh: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(EXE)
        .args(["mcp", "--service", service, "--mesh", mesh])
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}
