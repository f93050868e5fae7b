//! The vault end to end (DESIGN §4, §8): real agents encrypt entries, a real broker stores only
//! ciphertext in its redb file, the deployer's agent seals referenced secrets to the mesh
//! runner's key, and a real runner process (`claudemesh broker runner`) opens them for the
//! workspace's fixture MCP server (`claudemesh-mcp-fixture`), which reports the env var and
//! reads the mounted file. Checked: another member cannot list, read or delete the entries; no
//! secret appears in the store, logs, catalog, errors or any process's command line; a broker
//! restart with the deployer offline starts the service with its secrets; `vault set` then
//! `update` hands the service the new value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use claudemesh_agent::AgentClient;
use claudemesh_broker::testkit::Client;
use claudemesh_protocol::codec::to_b64;
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, McpDeploy, Secret, ServerFrame, ServiceSource};
use claudemesh_protocol::local::{
    AgentCall, CallParams, CatalogReply, DeployParams, DeployReply, LocalSource, LogsReply, Topic,
    UpdateParams, VaultListReply, VaultSetParams,
};
use claudemesh_protocol::scope::Scope;
use common::*;
use serde_json::{Value, json};

fn set(key: &str, value: &str) -> AgentCall {
    AgentCall::VaultSet(VaultSetParams {
        mesh: None,
        key: key.into(),
        value: Some(value.into()),
        value_b64: None,
        kind: None,
        mount_path: None,
        description: Some(format!("{key} for tests")),
    })
}

fn deploy(token: &str, env: &[(&str, &str)]) -> AgentCall {
    AgentCall::ServiceDeploy(Box::new(DeployParams {
        mesh: None,
        name: "tools".into(),
        source: LocalSource::Command { argv: vec![fixture_exe().display().to_string()] },
        description: String::new(),
        args: vec![],
        entry: None,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        scope: Some(json!("mesh")),
        admin_token: Some(Secret(token.to_string())),
    }))
}

/// The text of a fixture tool's answer.
async fn call(c: &mut AgentClient, tool: &str, arguments: Value) -> String {
    let p =
        CallParams { mesh: None, service: "tools".into(), tool: tool.into(), arguments, timeout_ms: None };
    let r: Value = c.call(AgentCall::ServiceCall(p)).await.unwrap();
    r["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{r}")).to_string()
}

/// The fixture's `env` tool: the variable's value.
async fn env_of(c: &mut AgentClient, name: &str) -> Option<String> {
    let t = call(c, "env", json!({"name": name})).await;
    let v: Value = serde_json::from_str(&t).unwrap();
    v["value"].as_str().map(String::from)
}

fn api_error(r: Result<Value, claudemesh_agent::ClientError>) -> (ErrorCode, String) {
    match r {
        Err(claudemesh_agent::ClientError::Api(e)) => (e.code, e.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Every process's command line (what `ps` shows).
fn all_cmdlines() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            out.push(String::from_utf8_lossy(&b).replace('\0', " "));
        }
    }
    out
}

/// Every event `c` has received until none comes for half a second, as JSON lines.
async fn drain(c: &mut AgentClient) -> String {
    let mut out = String::new();
    while let Ok(Ok((_, _, ev))) =
        tokio::time::timeout(std::time::Duration::from_millis(500), c.next_event()).await
    {
        out.push_str(&serde_json::to_string(&ev).unwrap());
        out.push('\n');
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_service_and_nowhere_else() {
    let mut w = World::start().await;
    let token = w.broker.as_ref().unwrap().admin_token.clone();
    let secret = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let file_secret = format!("{{\n  \"private_key\": \"pk-{}\"\n}}\n", uuid::Uuid::new_v4().simple());
    let file_line = file_secret.lines().nth(1).unwrap().trim().to_string();
    let alice_paths = w.member("alice").await;
    let (bob, mut b) = connected_agent(&w, "bob").await;
    let alice = RunningAgent::start(&alice_paths).await;
    let mut a = alice.client().await;
    wait_connected(&mut a).await;

    // Set: a text entry and a file entry with a mount path (bytes, as `--file` sends them).
    let r: Value = a.call(set("API_TOKEN", &secret)).await.unwrap();
    assert_eq!((r["key"].as_str(), r["kind"].as_str()), (Some("API_TOKEN"), Some("env")), "{r}");
    let sa = AgentCall::VaultSet(VaultSetParams {
        mesh: None,
        key: "SA".into(),
        value: None,
        value_b64: Some(to_b64(file_secret.as_bytes())),
        kind: None,
        mount_path: Some("gcp/sa.json".into()),
        description: None,
    });
    let r: Value = a.call(sa).await.unwrap();
    assert_eq!((r["kind"].as_str(), r["mount_path"].as_str()), (Some("file"), Some("gcp/sa.json")), "{r}");
    let list: VaultListReply = a.request(AgentCall::VaultList { mesh: None }).await.unwrap();
    let keys: Vec<&str> = list.entries.iter().map(|e| e.entry.key.as_str()).collect();
    assert_eq!(keys, ["API_TOKEN", "SA"]);
    let listed = serde_json::to_string(&list).unwrap();
    assert!(!listed.contains(&secret) && !listed.contains("pk-"), "metadata only: {listed}");

    // Another member sees none of it and cannot delete it; a raw `vault_get` of the same key
    // names its own (absent) entry.
    let none: VaultListReply = b.request(AgentCall::VaultList { mesh: None }).await.unwrap();
    assert!(none.entries.is_empty(), "{none:?}");
    let (code, _) = api_error(b.call(AgentCall::VaultDelete { key: "API_TOKEN".into(), mesh: None }).await);
    assert_eq!(code, ErrorCode::NotFound);
    // (A third member, carol, speaks raw frames: connecting as bob would replace his agent's link.)
    let carol = claudemesh_agent::Config::load(&w.member("carol").await).unwrap().meshes[0].clone();
    let (mut raw, _) = Client::connect_as(
        &w.url(),
        &claudemesh_broker::testkit::Identity {
            mesh_id: w.mesh_id.clone(),
            member_id: carol.member_id.clone(),
            key: carol.keypair().unwrap(),
        },
    )
    .await
    .unwrap();
    let req = raw.next_req();
    let got = raw.request(&ClientFrame::VaultGet { req, key: "API_TOKEN".into() }).await.unwrap();
    assert!(matches!(&got, ServerFrame::Error(e) if e.code == ErrorCode::NotFound), "{got:?}");

    // A deploy naming a key alice has not set fails before anything is sent, naming it.
    let (code, msg) = api_error(a.call(deploy(&token, &[("X", "$vault:NOPE")])).await);
    assert_eq!(code, ErrorCode::NotFound, "{msg}");
    assert!(msg.contains("NOPE"), "{msg}");
    // A raw deploy with a reference but no sealed value is refused by the broker.
    let req = raw.next_req();
    let frame = ClientFrame::McpDeploy(McpDeploy {
        req,
        name: "raw".into(),
        source: ServiceSource::Command { command: fixture_exe().display().to_string() },
        description: String::new(),
        args: vec![],
        entry: None,
        env: BTreeMap::from([("T".into(), "$vault:API_TOKEN".into())]),
        secrets: vec![],
        scope: Scope::Peer,
        admin_token: Some(Secret(token.clone())),
    });
    let got = raw.request(&frame).await.unwrap();
    assert!(
        matches!(&got, ServerFrame::Error(e) if e.code == ErrorCode::Invalid && e.message.contains("API_TOKEN")),
        "{got:?}"
    );

    // Deploy: the service gets the value and the mounted file (0600).
    let env = [("TOKEN", "$vault:API_TOKEN"), ("SA_PATH", "$vault:SA"), ("PLAIN", "plain-value")];
    let r: DeployReply = a.request(deploy(&token, &env)).await.unwrap();
    assert_eq!(r.status, claudemesh_protocol::frames::ServiceStatus::Running, "{r:?}");
    assert_eq!(env_of(&mut b, "TOKEN").await.as_deref(), Some(secret.as_str()));
    assert_eq!(env_of(&mut b, "PLAIN").await.as_deref(), Some("plain-value"));
    let path = env_of(&mut b, "SA_PATH").await.unwrap();
    assert!(path.ends_with("/tools/secrets/gcp/sa.json"), "{path}");
    let read: Value = serde_json::from_str(&call(&mut b, "read_file", json!({"path": path})).await).unwrap();
    assert_eq!((read["text"].as_str(), read["mode"].as_str()), (Some(file_secret.as_str()), Some("600")));

    // The log shows no value: the child printing it is scrubbed.
    call(&mut b, "log_env", json!({"name": "TOKEN"})).await;
    let mut logs = String::new();
    for _ in 0..50 {
        let l: LogsReply = a
            .request(AgentCall::ServiceLogs { name: "tools".into(), lines: Some(100), mesh: None })
            .await
            .unwrap();
        logs = l.lines.join("\n");
        if logs.contains("the value of TOKEN") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(logs.contains("the value of TOKEN is [redacted]"), "{logs}");
    assert!(!logs.contains(&secret), "{logs}");

    // The deployer's catalog names the keys (to seal them again on update); nobody's shows a value.
    let cat: CatalogReply = a.request(AgentCall::ServiceCatalog { mesh: None }).await.unwrap();
    assert_eq!(cat.services[0].entry.vault_keys, ["API_TOKEN", "SA"]);
    let bcat: CatalogReply = b.request(AgentCall::ServiceCatalog { mesh: None }).await.unwrap();
    assert!(bcat.services[0].entry.vault_keys.is_empty());
    for c in [&cat, &bcat] {
        let text = serde_json::to_string(c).unwrap();
        assert!(!text.contains(&secret) && !text.contains(&file_line), "{text}");
    }
    // No process's command line holds a secret.
    for line in all_cmdlines() {
        assert!(!line.contains(&secret) && !line.contains("pk-"), "a command line shows a secret: {line}");
    }

    // Restart the broker with the deployer offline: the service starts again with its secrets.
    alice.stop().await;
    w.stop_broker().await;
    let store = std::fs::read(w.dir.path().join("broker").join("broker.redb")).unwrap();
    assert!(
        !contains(&store, &secret) && !contains(&store, &file_line),
        "the store holds a secret in the clear"
    );
    let key_file = std::fs::read_dir(w.dir.path().join("broker/services")).unwrap().flatten().next().unwrap();
    let mode = std::fs::metadata(key_file.path().join("runner.key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    w.start_broker().await;
    wait_connected(&mut b).await;
    let mut got = None;
    for _ in 0..100 {
        let p = CallParams {
            mesh: None,
            service: "tools".into(),
            tool: "env".into(),
            arguments: json!({"name": "TOKEN"}),
            timeout_ms: None,
        };
        if let Ok(r) = b.call(AgentCall::ServiceCall(p)).await {
            got = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let got = got.expect("the service never came back after the broker restart");
    assert!(got.to_string().contains(&secret), "{got}");

    // A new value, then `update` without env: the service gets it.
    let alice = RunningAgent::start(&alice_paths).await;
    let mut a = alice.client().await;
    wait_connected(&mut a).await;
    // Every event both agents publish from here on is kept, to be scanned for the values.
    let mut events_a = alice.client().await;
    events_a.subscribe(vec![Topic::Services, Topic::Vault], None, None).await.unwrap();
    let mut events_b = bob.client().await;
    events_b.subscribe(vec![Topic::Services, Topic::Vault], None, None).await.unwrap();
    let rotated = format!("rot-{}", uuid::Uuid::new_v4().simple());
    a.call(set("API_TOKEN", &rotated)).await.unwrap();
    let up = UpdateParams { mesh: None, name: "tools".into(), source: None, args: None, env: None };
    let r: DeployReply = a.request(AgentCall::ServiceUpdate(up)).await.unwrap();
    assert_eq!(r.status, claudemesh_protocol::frames::ServiceStatus::Running, "{r:?}");
    assert_eq!(env_of(&mut b, "TOKEN").await.as_deref(), Some(rotated.as_str()));

    // Undeploy removes the secret files with the service.
    a.call(AgentCall::ServiceUndeploy { name: "tools".into(), mesh: None }).await.unwrap();
    assert!(!std::path::Path::new(&path).exists(), "{path} outlived the service");
    // And deleting an entry removes it from the list.
    a.call(AgentCall::VaultDelete { key: "SA".into(), mesh: None }).await.unwrap();
    let list: VaultListReply = a.request(AgentCall::VaultList { mesh: None }).await.unwrap();
    assert_eq!(list.entries.iter().map(|e| e.entry.key.as_str()).collect::<Vec<_>>(), ["API_TOKEN"]);
    let events = format!("{}{}", drain(&mut events_a).await, drain(&mut events_b).await);
    assert!(events.contains("tools"), "the update and undeploy were published: {events}");
    for v in [&secret, &rotated, &file_line] {
        assert!(!events.contains(v.as_str()), "a value is in an event: {events}");
    }
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_vault_input_gets_clear_errors() {
    let w = World::start().await;
    let (agent, mut a) = connected_agent(&w, "alice").await;
    let (code, msg) = api_error(a.call(set("bad key", "v")).await);
    assert_eq!(code, ErrorCode::Invalid, "{msg}");
    let big = "x".repeat(claudemesh_protocol::limits::MAX_VAULT_VALUE_BYTES + 1);
    let (code, msg) = api_error(a.call(set("BIG", &big)).await);
    assert_eq!(code, ErrorCode::TooLarge, "{msg}");
    assert!(!msg.contains("xxxx"), "{msg}");
    let mut p = VaultSetParams {
        mesh: None,
        key: "F".into(),
        value: Some("v".into()),
        value_b64: None,
        kind: None,
        mount_path: Some("../escape".into()),
        description: None,
    };
    let (code, msg) = api_error(a.call(AgentCall::VaultSet(p.clone())).await);
    assert_eq!(code, ErrorCode::Invalid, "{msg}");
    p.mount_path = None;
    p.value_b64 = Some("AAAA".into());
    let (code, _) = api_error(a.call(AgentCall::VaultSet(p)).await);
    assert_eq!(code, ErrorCode::Invalid, "both value and value_b64");
    let list: VaultListReply = a.request(AgentCall::VaultList { mesh: None }).await.unwrap();
    assert!(list.entries.is_empty(), "nothing half-stored: {list:?}");
    agent.stop().await;
}
