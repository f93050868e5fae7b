//! The Vault and Skills views as state transitions: what entering them, their events and the
//! `/` query ask the agent; the add form's checks and the call it makes (typed value or a file
//! the runner reads); the delete and remove confirmations; the share form; the reader's
//! scroll; and the agent's errors shown where they belong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use claudemesh_protocol::frames::{ErrorCode, SkillAction, VaultKind};
use claudemesh_protocol::local::{AgentCall, LocalEvent, SkillEvent, VaultAction};
use claudemesh_tui::effect::{Effect, FileCall};
use claudemesh_tui::event::{AgentEvent, CallError, Event};
use claudemesh_tui::fixture::{self, standard};
use claudemesh_tui::rows;
use claudemesh_tui::state::{ConfirmAction, Modal, State, View};
use claudemesh_tui::update::update;
use common::*;
use crossterm::event::KeyCode;
use serde_json::json;

fn tabs(s: &mut State, n: usize) {
    for _ in 0..n {
        key(s, KeyCode::Tab);
    }
}

fn calls(fx: &[Effect]) -> Vec<&AgentCall> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Call { call, .. } => Some(call),
            _ => None,
        })
        .collect()
}

fn event(s: &mut State, e: LocalEvent) -> Vec<Effect> {
    let seq = s.seq + 1;
    update(s, Event::Agent(AgentEvent::Event { seq, event: Box::new(e) }))
}

fn error(code: ErrorCode, message: &str) -> Result<serde_json::Value, CallError> {
    Err(CallError { code: Some(code), message: message.into() })
}

fn form_error(s: &State) -> Option<String> {
    match &s.modal {
        Some(Modal::Form(f)) => f.error.clone(),
        other => panic!("no form: {other:?}"),
    }
}

fn keys_of(s: &State) -> Vec<String> {
    rows::vault(s).iter().map(|x| format!("{}/{}", x.mesh, x.entry.key)).collect()
}

#[test]
fn entering_the_views_asks_for_their_lists() {
    let mut s = standard((120, 30));
    let fx = typed(&mut s, "7");
    assert_eq!(s.view, View::Vault);
    assert_eq!(calls(&fx), [&AgentCall::VaultList { mesh: None }]);
    assert_eq!(keys_of(&s), ["oss/NPM_TOKEN", "team/GH_TOKEN", "team/OPENAI_KEY", "team/gcp-sa"]);
    let fx = typed(&mut s, "8");
    assert_eq!(calls(&fx), [&AgentCall::SkillList { query: None, mesh: None }]);
    // After a reconnect, the view shown is asked again.
    update(&mut s, Event::Agent(AgentEvent::Gone { error: "gone".into(), retry_in_ms: 500 }));
    let snapshot = claudemesh_protocol::local::Snapshot {
        status: claudemesh_protocol::local::StatusReply { meshes: s.meshes.clone(), ..Default::default() },
        peers: vec![],
    };
    let reply = claudemesh_protocol::local::SubscribeReply { subscribed: 1, seq: 40, snapshot };
    let fx = update(&mut s, Event::Agent(AgentEvent::Subscribed(Box::new(reply))));
    assert!(calls(&fx).contains(&&AgentCall::SkillList { query: None, mesh: None }));
    assert!(!calls(&fx).iter().any(|c| matches!(c, AgentCall::VaultList { .. })));
    // Without the agent, nothing is asked.
    update(&mut s, Event::Agent(AgentEvent::Gone { error: "gone".into(), retry_in_ms: 500 }));
    assert!(calls(&typed(&mut s, "7")).is_empty());
}

#[test]
fn the_skills_filter_is_the_query_once_confirmed() {
    let mut s = standard((120, 30));
    typed(&mut s, "8");
    let fx = typed(&mut s, "/release notes");
    assert!(calls(&fx).is_empty(), "no call per typed key");
    assert!(rows::skills(&s).is_empty(), "every word must match");
    for _ in 0.." notes".len() {
        key(&mut s, KeyCode::Backspace);
    }
    assert_eq!(rows::skills(&s).len(), 1);
    let fx = key(&mut s, KeyCode::Enter);
    assert_eq!(calls(&fx), [&AgentCall::SkillList { query: Some("release".into()), mesh: None }]);
    let fx = key(&mut s, KeyCode::Esc);
    assert_eq!(calls(&fx), [&AgentCall::SkillList { query: None, mesh: None }]);
    assert_eq!(rows::skills(&s).len(), 3);
}

#[test]
fn vault_and_skill_events_refresh_the_lists() {
    let mut s = standard((120, 30));
    let fx =
        event(&mut s, LocalEvent::Vault { mesh: "team".into(), key: "NEW".into(), action: VaultAction::Set });
    assert_eq!(calls(&fx), [&AgentCall::VaultList { mesh: Some("team".into()) }]);
    // The mesh's reply replaces its entries only.
    answer(&mut s, &fx, Ok(json!({"entries": [fixture::vault_entry("team", "NEW", None, None, 0)]})));
    typed(&mut s, "7");
    assert_eq!(keys_of(&s), ["oss/NPM_TOKEN", "team/NEW"]);
    let fx = event(
        &mut s,
        LocalEvent::Vault { mesh: "team".into(), key: "NEW".into(), action: VaultAction::Deleted },
    );
    assert!(calls(&fx).is_empty());
    assert_eq!(keys_of(&s), ["oss/NPM_TOKEN"]);
    assert!(s.events.iter().any(|e| e.kind == "vault" && e.text == "deleted NEW"));

    let shared = SkillEvent { mesh: "oss".into(), name: "new".into(), action: SkillAction::Shared };
    let fx = event(&mut s, LocalEvent::Skills(shared));
    assert_eq!(calls(&fx), [&AgentCall::SkillList { query: None, mesh: Some("oss".into()) }]);
    let removed = SkillEvent { mesh: "team".into(), name: "release".into(), action: SkillAction::Removed };
    event(&mut s, LocalEvent::Skills(removed));
    assert!(s.skills.get("team", "release").is_none() && s.skills.get("team", "code-review").is_some());
}

#[test]
fn the_add_form_checks_before_sending() {
    let mut s = standard((120, 30));
    typed(&mut s, "7a");
    let Some(Modal::Form(f)) = &s.modal else { panic!("no form") };
    assert_eq!(f.title, "Add a secret to your vault on oss", "the selected row's mesh");
    let fx = key(&mut s, KeyCode::Enter);
    assert!(fx.is_empty());
    assert!(form_error(&s).unwrap().contains("vault key"), "{:?}", form_error(&s));
    typed(&mut s, "API_KEY");
    key(&mut s, KeyCode::Enter);
    assert_eq!(form_error(&s).as_deref(), Some("type the value, or name a file that holds it"));
    tabs(&mut s, 1);
    typed(&mut s, "v");
    tabs(&mut s, 1);
    typed(&mut s, "/tmp/x");
    key(&mut s, KeyCode::Enter);
    assert_eq!(form_error(&s).as_deref(), Some("type a value or name a file, not both"));
    // A mount path makes a file entry; an unsafe one is refused.
    tabs(&mut s, 2);
    typed(&mut s, "../up");
    key(&mut s, KeyCode::Enter);
    assert!(form_error(&s).unwrap().contains("mount path"), "{:?}", form_error(&s));
}

#[test]
fn a_typed_value_is_sent_and_a_failure_asks_for_it_again() {
    let mut s = standard((120, 30));
    typed(&mut s, "]7a");
    typed(&mut s, "API_KEY");
    tabs(&mut s, 1);
    typed(&mut s, "hunter2");
    tabs(&mut s, 2);
    key(&mut s, KeyCode::Char(' '));
    tabs(&mut s, 1);
    typed(&mut s, "keys/api");
    let fx = key(&mut s, KeyCode::Enter);
    let [AgentCall::VaultSet(p)] = calls(&fx)[..] else { panic!("{fx:?}") };
    assert_eq!(
        (p.mesh.as_deref(), p.key.as_str(), p.value.as_deref(), p.value_b64.as_deref()),
        (Some("team"), "API_KEY", Some("hunter2"), None)
    );
    assert_eq!((p.kind, p.mount_path.as_deref()), (Some(VaultKind::File), Some("keys/api")));
    let Some(Modal::Form(f)) = &s.modal else { panic!() };
    assert!(f.busy && f.field("value").unwrap().field.text.is_empty());
    assert!(key(&mut s, KeyCode::Enter).is_empty(), "no second send while busy");
    answer(&mut s, &fx, error(ErrorCode::Unavailable, "broker unreachable"));
    let e = form_error(&s).unwrap();
    assert!(e.starts_with("unavailable") && e.ends_with("(type the value again)"), "{e}");
    // Typed again (the focus goes from the mount path round to the value) and stored: the
    // form closes, the list has it.
    tabs(&mut s, 3);
    typed(&mut s, "hunter3");
    let fx = key(&mut s, KeyCode::Enter);
    let item = fixture::vault_entry("team", "API_KEY", Some("keys/api"), None, 0);
    answer(&mut s, &fx, Ok(json!(item)));
    assert!(s.modal.is_none());
    assert!(s.toast.as_ref().unwrap().text.contains("use it as $vault:API_KEY"));
    assert!(keys_of(&s).contains(&"team/API_KEY".to_string()));
}

#[test]
fn a_value_from_a_file_is_read_by_the_runner() {
    let mut s = standard((120, 30));
    typed(&mut s, "7a");
    typed(&mut s, "sa.json");
    tabs(&mut s, 2);
    typed(&mut s, "~/keys/sa.json");
    let fx = key(&mut s, KeyCode::Enter);
    let [Effect::CallWithFile { call: FileCall::VaultSet { params, path }, .. }] = &fx[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(path, &PathBuf::from("~/keys/sa.json"));
    assert_eq!((params.value.as_ref(), params.kind), (None, Some(VaultKind::Env)));
    // The file could not be read: said in the form, the path kept.
    answer(
        &mut s,
        &fx,
        Err(CallError { code: None, message: "cannot read ~/keys/sa.json: no such file".into() }),
    );
    assert_eq!(form_error(&s).as_deref(), Some("cannot read ~/keys/sa.json: no such file"));
}

#[test]
fn vault_delete_asks_first_then_deletes() {
    let mut s = standard((120, 30));
    typed(&mut s, "7j");
    assert!(typed(&mut s, "d").is_empty());
    let Some(Modal::Confirm(c)) = &s.modal else { panic!("no confirmation") };
    assert_eq!(c.action, ConfirmAction::VaultDelete { mesh: "team".into(), key: "GH_TOKEN".into() });
    assert!(typed(&mut s, "n").is_empty() && s.modal.is_none());
    key(&mut s, KeyCode::Delete);
    let fx = typed(&mut s, "y");
    assert_eq!(calls(&fx), [&AgentCall::VaultDelete { key: "GH_TOKEN".into(), mesh: Some("team".into()) }]);
    answer(&mut s, &fx, Ok(json!({"mesh": "team", "key": "GH_TOKEN"})));
    assert!(!keys_of(&s).contains(&"team/GH_TOKEN".to_string()));
    assert_eq!(s.toast.as_ref().unwrap().text, "deleted GH_TOKEN from your vault on team");
    // Gone already: the agent's not_found said plainly.
    typed(&mut s, "d");
    let fx = typed(&mut s, "y");
    answer(&mut s, &fx, error(ErrorCode::NotFound, "vault entry OPENAI_KEY: not found"));
    let t = s.toast.as_ref().unwrap();
    assert!(t.error && t.text.starts_with("no such entry"), "{t:?}");
}

#[test]
fn skills_read_share_and_remove() {
    let mut s = standard((120, 30));
    // Rows are by mesh then name: triage (oss), code-review, release (team).
    typed(&mut s, "8j");
    let fx = key(&mut s, KeyCode::Enter);
    assert_eq!(calls(&fx), [&AgentCall::SkillGet { name: "code-review".into(), mesh: Some("team".into()) }]);
    answer(&mut s, &fx, Ok(json!(fixture::skills().remove(0))));
    assert!(matches!(&s.modal, Some(Modal::Skill(r)) if r.scroll == 0));
    key(&mut s, KeyCode::Esc);

    // Share: the path is needed; a bad name is refused here; the rest goes to the runner.
    typed(&mut s, "s");
    assert!(key(&mut s, KeyCode::Enter).is_empty());
    assert!(form_error(&s).unwrap().starts_with("path is required"));
    typed(&mut s, "./skills/deploy");
    tabs(&mut s, 1);
    typed(&mut s, "Bad Name");
    assert!(key(&mut s, KeyCode::Enter).is_empty());
    for _ in 0.."Bad Name".len() {
        key(&mut s, KeyCode::Backspace);
    }
    tabs(&mut s, 2);
    typed(&mut s, "ops  deploy");
    let fx = key(&mut s, KeyCode::Enter);
    let [Effect::CallWithFile { call: FileCall::SkillShare { mesh, path, name, description, tags }, .. }] =
        &fx[..]
    else {
        panic!("{fx:?}")
    };
    assert_eq!(
        (mesh.as_str(), path, name.as_str(), description.as_str()),
        ("team", &PathBuf::from("./skills/deploy"), "", "")
    );
    assert_eq!(tags, &["ops", "deploy"]);
    let shared = fixture::skill("team", "deploy", "Deploying", &["ops"], 0, 0);
    answer(&mut s, &fx, Ok(json!(shared)));
    assert!(s.modal.is_none() && s.skills.get("team", "deploy").is_some());
    assert!(s.toast.as_ref().unwrap().text.starts_with("shared deploy with 1 file(s) with team"));

    // Remove: asks first; a member who may not is told why.
    typed(&mut s, "G");
    let sel = rows::skills(&s)[s.cursor(View::Skills).selected].skill.name.clone();
    assert_eq!(sel, "release");
    typed(&mut s, "d");
    let Some(Modal::Confirm(c)) = &s.modal else { panic!("no confirmation") };
    assert!(c.text.contains("Remove the skill release from team?"), "{}", c.text);
    let fx = typed(&mut s, "y");
    assert_eq!(calls(&fx), [&AgentCall::SkillRemove { name: "release".into(), mesh: Some("team".into()) }]);
    answer(
        &mut s,
        &fx,
        error(ErrorCode::Forbidden, "skill release: only its author or an admin may remove it"),
    );
    let t = s.toast.as_ref().unwrap();
    assert!(t.error && t.text.starts_with("not allowed: only its author or an admin"), "{t:?}");
    assert!(s.skills.get("team", "release").is_some());
    typed(&mut s, "d");
    let fx = typed(&mut s, "y");
    answer(&mut s, &fx, Ok(json!({"mesh": "team", "name": "release"})));
    assert!(s.skills.get("team", "release").is_none());
}

#[test]
fn the_reader_scrolls_within_its_text() {
    let mut s = standard((80, 24));
    typed(&mut s, "8");
    let fx = key(&mut s, KeyCode::Enter);
    let mut item = fixture::skills().remove(0);
    item.skill.skill.instructions = (1..=100).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
    answer(&mut s, &fx, Ok(json!(item)));
    let scroll = |s: &State| match &s.modal {
        Some(Modal::Skill(r)) => r.scroll,
        _ => panic!("the reader closed"),
    };
    typed(&mut s, "jjj");
    assert_eq!(scroll(&s), 3);
    key(&mut s, KeyCode::PageUp);
    assert_eq!(scroll(&s), 0);
    typed(&mut s, "G");
    let end = scroll(&s);
    typed(&mut s, "j");
    assert_eq!(scroll(&s), end, "not past the end");
    assert!(end > 90 && end < 120, "{end}");
    typed(&mut s, "g");
    assert_eq!(scroll(&s), 0);
    typed(&mut s, "q");
    assert!(s.modal.is_none());
}

#[test]
fn a_failed_list_is_said_and_shown_in_the_view() {
    let mut s = standard((120, 30));
    let fx = typed(&mut s, "7");
    answer(&mut s, &fx, error(ErrorCode::Unavailable, "the broker does not keep a vault"));
    assert!(s.vault.error.is_some());
    assert!(s.toast.as_ref().unwrap().text.starts_with("unavailable"));
    let fx = typed(&mut s, "7");
    answer(&mut s, &fx, Ok(json!({"entries": []})));
    assert!(s.vault.error.is_none() && s.vault.list.is_empty());
}
