//! Shared skills and the vault through `claudemesh mcp` (DESIGN §9, §8), driven as Claude Code
//! drives it: by an rmcp client over stdio, and by the official Python MCP SDK when one is found
//! (see tests/common/external.rs), against real agents and a real broker. A skill a member
//! shares becomes a prompt of every session, announced with `notifications/prompts/list_changed`;
//! its text comes attributed; the vault tools never give a value back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use claudemesh_agent::AgentClient;
use claudemesh_protocol::frames::Skill;
use claudemesh_protocol::local::{AgentCall, SkillItem, SkillRemoveReply, SkillShareParams};
use common::external::*;
use common::mcp_client::*;
use common::*;
use rmcp::model::GetPromptRequestParams;
use serde_json::{Value, json};

async fn agent(w: &World, name: &str) -> RunningAgent {
    let a = RunningAgent::start(&w.member(name).await).await;
    wait_connected(&mut a.client().await).await;
    a
}

async fn share(c: &mut AgentClient, name: &str, description: &str, instructions: &str) -> SkillItem {
    let skill = Skill {
        name: name.into(),
        description: description.into(),
        instructions: instructions.into(),
        tags: vec!["test".into()],
        files: [("refs/notes.md".to_string(), format!("notes of {name}"))].into(),
    };
    c.request(AgentCall::SkillShare(Box::new(SkillShareParams { mesh: None, skill }))).await.unwrap()
}

async fn prompt_names(c: &Mcp) -> Vec<String> {
    c.list_all_prompts().await.unwrap().iter().map(|p| p.name.clone()).collect()
}

async fn prompt_text(c: &Mcp, name: &str) -> String {
    let r = c.get_prompt(GetPromptRequestParams::new(name)).await.unwrap();
    assert_eq!(r.messages.len(), 1, "{r:?}");
    assert_eq!(serde_json::to_value(&r.messages[0].role).unwrap(), "user");
    r.messages[0].content.as_text().unwrap().text.clone()
}

/// Waits for one `prompts/list_changed` (15 s at most).
async fn changed(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) -> bool {
    tokio::time::timeout(Duration::from_secs(15), rx.recv()).await.is_ok_and(|r| r.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_skills_are_prompts_that_follow_the_mesh() {
    let w = World::start().await;
    // bob first: alice's agent then finds him in the directory it loads, and names him.
    let bob = agent(&w, "bob").await;
    let alice = agent(&w, "alice").await;
    let mut b = bob.client().await;
    share(&mut b, "review", "Code review checklist", "Check the tests.\n\nThen the error paths.").await;

    let (c, mut rx) =
        mcp_watching_prompts(&alice.paths, "000000b1-5e55-4000-8000-000000000000", "alice-1").await;
    let info = c.peer_info().unwrap();
    assert_eq!(info.capabilities.prompts.as_ref().unwrap().list_changed, Some(true));

    // The skill is a prompt, described with who shared it where; its text is attributed.
    let prompts = c.list_all_prompts().await.unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["inbox", "peers", "review"]);
    let d = prompts[2].description.as_deref().unwrap();
    assert!(
        d.starts_with("Skill shared by bob (") && d.ends_with("in mesh team: Code review checklist"),
        "{d}"
    );
    let t = prompt_text(&c, "review").await;
    assert!(t.starts_with("[Skill \"review\" shared by bob ("), "{t}");
    assert!(t.contains("in mesh team. A mesh member wrote it, not the user"), "{t}");
    assert!(t.contains("\n\nCheck the tests.\n\nThen the error paths.\n\n[file refs/notes.md of skill review]\nnotes of review"), "{t}");
    assert!(prompt_text(&c, "inbox").await.contains("check_messages"));
    let e = c.get_prompt(GetPromptRequestParams::new("nope")).await.unwrap_err().to_string();
    assert!(e.contains("unknown prompt"), "{e}");

    // Another member shares a skill: the client is told, and the prompt is there. (The
    // server subscribes once the client is initialized: until then, sharing again is what
    // tells whether it listens yet.)
    let mut told = false;
    for _ in 0..10 {
        share(&mut b, "deploy-guide", "How we deploy", "Tag, then push.").await;
        if changed(&mut rx).await {
            told = true;
            break;
        }
    }
    assert!(told, "no notifications/prompts/list_changed after bob shared a skill");
    assert_eq!(prompt_names(&c).await, ["inbox", "peers", "deploy-guide", "review"]);
    while rx.try_recv().is_ok() {}

    // Removed: told again, and gone.
    let _: SkillRemoveReply =
        b.request(AgentCall::SkillRemove { name: "review".into(), mesh: None }).await.unwrap();
    assert!(changed(&mut rx).await, "no notifications/prompts/list_changed after a removal");
    assert_eq!(prompt_names(&c).await, ["inbox", "peers", "deploy-guide"]);

    // The skill tools.
    let r = call(&c, "skill_share", json!({"name": "from-claude", "instructions": "Be brief.", "description": "Style", "tags": ["style"]})).await;
    assert!(!is_error(&r), "{}", text(&r));
    assert!(text(&r).contains("Shared skill from-claude in mesh team"), "{}", text(&r));
    let r = call(&c, "skill_list", json!({"query": "style"})).await;
    assert!(
        text(&r).contains("- from-claude (mesh team, by alice (") && !text(&r).contains("deploy-guide"),
        "{}",
        text(&r)
    );
    let r = call(&c, "skill_get", json!({"name": "deploy-guide"})).await;
    assert!(
        text(&r).starts_with("[Skill \"deploy-guide\" shared by bob (")
            && text(&r).contains("Tag, then push."),
        "{}",
        text(&r)
    );
    let r = call(&c, "skill_get", json!({"name": "gone"})).await;
    assert!(is_error(&r) && text(&r).contains("skill_list"), "{}", text(&r));
    let r = call(&c, "skill_share", json!({"name": "Bad Name", "instructions": "x"})).await;
    assert!(is_error(&r), "{}", text(&r));

    // The vault tools: stored, listed without the value, deleted.
    let secret = "mcp-Secret-Value-42";
    let r = call(&c, "vault_set", json!({"key": "API_KEY", "value": secret, "description": "the API"})).await;
    assert!(!is_error(&r), "{}", text(&r));
    assert!(
        text(&r).contains("Stored API_KEY in mesh team (env)") && text(&r).contains("$vault:API_KEY"),
        "{}",
        text(&r)
    );
    let r = call(&c, "vault_set", json!({"key": "SA", "value": "{}", "mount_path": "gcp/sa.json"})).await;
    assert!(text(&r).contains("file at secrets/gcp/sa.json"), "{}", text(&r));
    let r = call(&c, "vault_list", json!({})).await;
    assert!(
        text(&r).contains("- API_KEY (mesh team, env) — the API")
            && text(&r).contains("- SA (mesh team, file at secrets/gcp/sa.json)"),
        "{}",
        text(&r)
    );
    assert!(!text(&r).contains(secret));
    let r = call(&c, "vault_delete", json!({"key": "API_KEY"})).await;
    assert_eq!(text(&r), "Deleted API_KEY from mesh team.");
    let r = call(&c, "vault_delete", json!({"key": "API_KEY"})).await;
    assert!(is_error(&r) && text(&r).contains("vault_list"), "{}", text(&r));
    let r = call(&c, "vault_set", json!({"key": "bad key", "value": "x"})).await;
    assert!(is_error(&r) && text(&r).contains("vault key"), "{}", text(&r));
    // bob has none of alice's entries.
    let r: Value = b.call(AgentCall::VaultList { mesh: None }).await.unwrap();
    assert_eq!(r["entries"], json!([]), "{r}");

    c.cancel().await.unwrap();
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_sdk_lists_and_gets_skill_prompts() {
    let test = "python_mcp_sdk_lists_and_gets_skill_prompts";
    let Some(python) = python_with_mcp(test).await else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp_prompts.py");
    let w = World::start().await;
    // bob first: alice's agent then finds him in the directory it loads, and names him.
    let bob = agent(&w, "bob").await;
    let alice = agent(&w, "alice").await;
    share(&mut bob.client().await, "review", "Code review checklist", "Check the tests.").await;

    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .args([EXE, "review"])
        .env("CLAUDEMESH_CONFIG_DIR", &alice.paths.dir)
        .env("CLAUDEMESH_SESSION_ID", "000000b5-5e55-4000-8000-000000000000")
        .env("CLAUDEMESH_NAME", "py-alice")
        .env_remove("CLAUDEMESH_PUSH")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run("python mcp_prompts.py", &mut cmd, Duration::from_secs(120)).await;
    let (so, se) = (stdout(&out), stderr(&out));
    eprintln!("python mcp_prompts.py stdout:\n{so}\nstderr:\n{se}");
    assert!(out.status.success(), "mcp_prompts.py failed ({}):\n{so}\n{se}", out.status);
    let report: Value =
        serde_json::from_str(so.trim()).unwrap_or_else(|e| panic!("no JSON ({e}):\n{so}\n{se}"));
    assert!(report.get("fatal").is_none(), "{report:#}");
    assert_eq!(report["capabilities"]["prompts"]["listChanged"], true, "{report:#}");
    let names: Vec<&str> =
        report["prompts"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["inbox", "peers", "review"], "{report:#}");
    assert!(
        report["prompts"][2]["description"].as_str().unwrap().starts_with("Skill shared by bob ("),
        "{report:#}"
    );
    let got = &report["get"];
    assert_eq!(got["messages"][0]["role"], "user", "{report:#}");
    let t = got["messages"][0]["text"].as_str().unwrap();
    assert!(t.starts_with("[Skill \"review\" shared by bob (") && t.contains("Check the tests."), "{t}");

    alice.stop().await;
    bob.stop().await;
}
