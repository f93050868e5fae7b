//! The Services view as state transitions: the catalog and the `services` events filling the
//! state, scope and filter, the log follow moving with the selection (the effects it emits),
//! the schema-generated call form, the confirmations and forms and the calls they make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_protocol::frames::{ErrorCode, Event as Wire, ServiceStatus};
use claudemesh_protocol::local::{AgentCall, LocalEvent, LocalSource};
use claudemesh_tui::effect::Effect;
use claudemesh_tui::event::{AgentEvent, CallError, Event};
use claudemesh_tui::fixture::{self, NOW, standard};
use claudemesh_tui::rows;
use claudemesh_tui::state::form::{Input, arguments, call_fields, scope_json};
use claudemesh_tui::state::{Follow, Modal, State, View};
use claudemesh_tui::update::update;
use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use serde_json::json;

fn calls(fx: &[Effect]) -> Vec<&AgentCall> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Call { call, .. } => Some(call),
            _ => None,
        })
        .collect()
}

fn follows(fx: &[Effect]) -> Vec<Option<Follow>> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Follow(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

fn service_event(s: &mut State, mesh: &str, e: Wire) -> Vec<Effect> {
    let seq = s.seq + 1;
    let event = Box::new(LocalEvent::Services { mesh: mesh.into(), event: e });
    update(s, Event::Agent(AgentEvent::Event { seq, event }))
}

fn follow(mesh: &str, name: &str) -> Option<Follow> {
    Some(Follow { mesh: mesh.into(), name: name.into() })
}

fn names(s: &State) -> Vec<String> {
    rows::services(s).iter().map(|x| x.entry.name.clone()).collect()
}

/// The Services view with `search` (the last row) selected.
fn on_search() -> State {
    let mut s = standard((120, 30));
    typed(&mut s, "6G");
    s
}

#[test]
fn the_catalog_is_asked_at_the_snapshot_and_fills_the_view() {
    let s = standard((120, 30));
    assert_eq!(names(&s), ["notes", "db-ops", "search"]);
    // A reconnect asks again, and the follow starts again.
    let mut s = on_search();
    let fx = update(&mut s, Event::Agent(AgentEvent::Gone { error: "gone".into(), retry_in_ms: 500 }));
    assert_eq!(follows(&fx), [None], "no follow while the agent is gone");
    let snapshot = claudemesh_protocol::local::Snapshot {
        status: claudemesh_protocol::local::StatusReply { meshes: s.meshes.clone(), ..Default::default() },
        peers: vec![],
    };
    let reply = claudemesh_protocol::local::SubscribeReply { subscribed: 1, seq: 40, snapshot };
    let fx = update(&mut s, Event::Agent(AgentEvent::Subscribed(Box::new(reply))));
    assert!(calls(&fx).iter().any(|c| matches!(c, AgentCall::ServiceCatalog { mesh: None })));
    assert_eq!(follows(&fx), [follow("team", "search")]);
}

#[test]
fn service_events_keep_the_catalog_current() {
    let mut s = standard((120, 30));
    let mut e = fixture::services().remove(0).entry;
    e.name = "weather".into();
    service_event(&mut s, "team", Wire::McpDeployed(e.clone()));
    assert_eq!(names(&s), ["notes", "db-ops", "search", "weather"]);
    e.description = "changed".into();
    service_event(&mut s, "team", Wire::McpUpdated(e));
    assert_eq!(s.services.get("team", "weather").unwrap().entry.description, "changed");
    assert_eq!(s.services.list.len(), 4, "replaced, not added");

    service_event(&mut s, "team", Wire::McpCrashed { name: "search".into(), error: "oom".into() });
    let x = &s.services.get("team", "search").unwrap().entry;
    assert_eq!((x.status, x.error.as_deref(), x.started_at), (ServiceStatus::Crashed, Some("oom"), None));
    service_event(
        &mut s,
        "team",
        Wire::McpStatus { name: "search".into(), status: ServiceStatus::Running, error: None },
    );
    let x = &s.services.get("team", "search").unwrap().entry;
    assert_eq!((x.status, x.error.as_deref(), x.started_at), (ServiceStatus::Running, None, Some(NOW)));

    let tools = vec![fixture::tool("only", "the one tool", json!({}))];
    service_event(&mut s, "team", Wire::McpToolsChanged { name: "search".into(), tools });
    assert_eq!(s.services.get("team", "search").unwrap().entry.tools.len(), 1);

    service_event(&mut s, "team", Wire::McpUndeployed { name: "weather".into() });
    assert_eq!(names(&s), ["notes", "db-ops", "search"]);
    assert!(s.events.iter().any(|l| l.kind == "service" && l.text == "weather undeployed"));
}

#[test]
fn scope_and_filter_narrow_the_rows() {
    let mut s = standard((120, 30));
    typed(&mut s, "6]");
    assert_eq!(s.scope.as_deref(), Some("team"));
    assert_eq!(names(&s), ["db-ops", "search"]);
    typed(&mut s, "[/crash");
    key(&mut s, KeyCode::Enter);
    assert_eq!(names(&s), ["db-ops"]);
}

#[test]
fn the_log_follows_the_selection_and_ends_with_the_view() {
    let mut s = standard((120, 30));
    let fx = typed(&mut s, "6");
    assert_eq!(follows(&fx), [follow("oss", "notes")]);
    assert!(matches!(
        calls(&fx)[..],
        [AgentCall::ServiceLogs { name, lines: Some(200), mesh: Some(m) }] if name == "notes" && m == "oss"
    ));
    let fx = key(&mut s, KeyCode::Char('j'));
    assert_eq!(follows(&fx), [follow("team", "db-ops")]);
    answer(&mut s, &fx, Ok(json!({"mesh": "team", "name": "db-ops", "lines": ["one", "two\u{1b}[2J"]})));
    assert_eq!(s.services.log, ["one", "two"]);
    // Lines of the followed service append; another's are ignored; at most 1,000 are kept.
    let line = |name: &str, lines: Vec<String>| {
        Event::Agent(AgentEvent::ServiceLog { mesh: "team".into(), name: name.into(), lines })
    };
    update(&mut s, line("search", vec!["not ours".into()]));
    update(&mut s, line("db-ops", (0..1_200).map(|i| format!("l{i}")).collect()));
    assert_eq!(s.services.log.len(), 1_000);
    assert_eq!(s.services.log.back().map(String::as_str), Some("l1199"));
    // A tick changes nothing; leaving the view ends the follow.
    assert!(update(&mut s, Event::Tick(NOW + 1_000)).is_empty());
    assert_eq!(follows(&typed(&mut s, "1")), [None]);
    assert!(s.services.log.is_empty());
    assert_eq!(follows(&typed(&mut s, "6")), [follow("team", "db-ops")], "the selection was kept");
}

#[test]
fn a_click_selects_a_service() {
    let mut s = standard((120, 30));
    typed(&mut s, "6");
    let first = claudemesh_tui::ui::layout::areas(&s).first_row_y();
    let fx = update(
        &mut s,
        Event::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 5,
            row: first + 2,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(s.cursor(View::Services).selected, 2);
    assert_eq!(follows(&fx), [follow("team", "search")]);
}

#[test]
fn a_form_is_built_from_a_schema_and_validated() {
    let schema = json!({
        "type": "object",
        "properties": {
            "q": {"type": "string", "description": "query"},
            "n": {"type": "integer"},
            "ratio": {"type": ["number", "null"]},
            "on": {"type": "boolean"},
            "mode": {"enum": ["a", "b", 3]},
            "opts": {"type": "object"},
        },
        "required": ["q", "on"],
    });
    let mut f = call_fields(&schema);
    let kinds: Vec<(&str, &Input, bool)> =
        f.iter().map(|x| (x.name.as_str(), &x.input, x.required)).collect();
    assert_eq!(
        kinds,
        [
            ("q", &Input::Text, true),
            ("n", &Input::Integer, false),
            ("ratio", &Input::Number, false),
            ("on", &Input::Bool, true),
            ("mode", &Input::Choice(vec![json!("a"), json!("b"), json!(3)]), false),
            ("opts", &Input::Json, false),
        ]
    );
    assert_eq!(arguments(&f), Err("q is required".into()));
    f[0].field.paste("hello", false);
    assert_eq!(arguments(&f), Ok(json!({"q": "hello", "on": false})), "a required boolean starts false");
    f[1].field.paste("2.5", false);
    assert_eq!(arguments(&f), Err("n: \"2.5\" is not an integer".into()));
    f[1].field = Default::default();
    f[1].field.paste("7", false);
    f[2].field.paste("0.5", false);
    f[3].cycle(1);
    f[4].cycle(-1);
    f[5].field.paste("{\"k\": [1]}", false);
    assert_eq!(
        arguments(&f),
        Ok(json!({"q": "hello", "n": 7, "ratio": 0.5, "on": true, "mode": 3, "opts": {"k": [1]}}))
    );
    f[2].field.paste("x", false);
    assert_eq!(arguments(&f), Err("ratio: \"0.5x\" is not a number".into()));
}

#[test]
fn a_tool_call_goes_through_the_form_and_its_result_shows() {
    let mut s = on_search();
    key(&mut s, KeyCode::Right);
    key(&mut s, KeyCode::Enter);
    let Some(Modal::Form(f)) = &s.modal else { panic!("no form: {:?}", s.modal) };
    assert_eq!(f.title, "Call fetch_page of search");
    assert!(calls(&key(&mut s, KeyCode::Enter)).is_empty(), "url is required");
    typed(&mut s, "https://example.com");
    let fx = key(&mut s, KeyCode::Enter);
    let [AgentCall::ServiceCall(p)] = &calls(&fx)[..] else { panic!("{fx:?}") };
    assert_eq!(
        (p.service.as_str(), p.tool.as_str(), p.mesh.as_deref()),
        ("search", "fetch_page", Some("team"))
    );
    assert_eq!(p.arguments, json!({"url": "https://example.com"}));
    let result = json!({"isError": true, "content": [{"type": "text", "text": "404\u{1b}[31m not found"}]});
    answer(
        &mut s,
        &fx,
        Ok(json!({"mesh": "team", "service": "search", "tool": "fetch_page", "result": result})),
    );
    assert_eq!(
        s.modal,
        Some(Modal::Output {
            title: "fetch_page of search: error".into(),
            lines: vec!["404 not found".into()],
            error: true
        })
    );
}

#[test]
fn a_refused_call_says_what_the_code_means() {
    let mut s = on_search();
    key(&mut s, KeyCode::Enter);
    typed(&mut s, "x");
    let fx = key(&mut s, KeyCode::Enter);
    let e = CallError { code: Some(ErrorCode::Forbidden), message: "scope".into() };
    answer(&mut s, &fx, Err(e));
    let toast = s.toast.clone().expect("a toast");
    assert!(toast.error && toast.text.starts_with("not allowed"), "{toast:?}");
    let Some(Modal::Form(f)) = &s.modal else { panic!("the form stays") };
    assert!(!f.busy && f.error.as_deref().is_some_and(|e| e.contains("not allowed")));
}

#[test]
fn confirmations_make_the_right_calls() {
    let mut s = on_search();
    typed(&mut s, "X");
    let Some(Modal::Confirm(c)) = &s.modal else { panic!() };
    assert!(c.text.contains("search") && c.text.contains("team"), "{}", c.text);
    let fx = typed(&mut s, "y");
    assert!(
        matches!(calls(&fx)[..], [AgentCall::ServiceUndeploy { name, mesh: Some(m) }] if name == "search" && m == "team")
    );
    answer(&mut s, &fx, Ok(json!({})));
    assert!(s.services.get("team", "search").is_none());

    let mut s = on_search();
    typed(&mut s, "U");
    assert!(calls(&typed(&mut s, "n")).is_empty());
    typed(&mut s, "U");
    let fx = typed(&mut s, "y");
    assert!(
        matches!(calls(&fx)[..], [AgentCall::ServiceUpdate(p)] if p.name == "search" && p.source.is_none())
    );
}

#[test]
fn a_scope_change_sends_the_json_form() {
    let mut s = on_search();
    key(&mut s, KeyCode::Up);
    typed(&mut s, "S");
    let Some(Modal::Prompt(p)) = &s.modal else { panic!() };
    assert_eq!(p.field.text, "group:ops");
    update(&mut s, Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)));
    typed(&mut s, "role:boss");
    assert!(calls(&key(&mut s, KeyCode::Enter)).is_empty());
    update(&mut s, Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)));
    typed(&mut s, "members:alice,bob");
    let fx = key(&mut s, KeyCode::Enter);
    let [AgentCall::ServiceScope { name, scope: Some(sc), mesh: Some(m) }] = &calls(&fx)[..] else {
        panic!()
    };
    assert_eq!((name.as_str(), m.as_str(), sc), ("db-ops", "team", &json!({"members": ["alice", "bob"]})));
    assert_eq!(scope_json("groups:a, b"), Ok(json!({"groups": ["a", "b"]})));
    assert_eq!(scope_json("mesh"), Ok(json!("mesh")));
    assert!(scope_json("everyone").is_err());
}

#[test]
fn the_deploy_form_sends_service_deploy_and_shows_how_it_ended() {
    let mut s = on_search();
    typed(&mut s, "D");
    typed(&mut s, "weather");
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char(' '));
    key(&mut s, KeyCode::Char(' '));
    key(&mut s, KeyCode::Tab);
    typed(&mut s, "https://example.com/weather.git");
    key(&mut s, KeyCode::Tab);
    update(&mut s, Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)));
    typed(&mut s, "group:ops");
    key(&mut s, KeyCode::Tab);
    typed(&mut s, "NOEQUALS");
    assert!(calls(&key(&mut s, KeyCode::Enter)).is_empty(), "env needs K=V");
    let Some(Modal::Form(f)) = &s.modal else { panic!() };
    assert_eq!(f.error.as_deref(), Some("env: \"NOEQUALS\" is not K=V"));
    update(&mut s, Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)));
    typed(&mut s, "API_KEY=s3cret REGION=eu");
    let fx = key(&mut s, KeyCode::Enter);
    let [AgentCall::ServiceDeploy(p)] = &calls(&fx)[..] else { panic!("{fx:?}") };
    assert_eq!(p.name, "weather");
    assert_eq!(p.mesh.as_deref(), Some("team"));
    assert_eq!(p.source, LocalSource::Git { url: "https://example.com/weather.git".into(), rev: None });
    assert_eq!(p.scope, Some(json!({"group": "ops"})));
    assert_eq!(p.env.get("API_KEY").map(String::as_str), Some("s3cret"));
    let failed = json!({"mesh": "team", "name": "weather", "status": "failed", "error": "npm ERR! 404",
        "log_tail": ["fetching", "npm ERR! 404 \u{1b}]0;title\u{7}"]});
    answer(&mut s, &fx, Ok(failed));
    let Some(Modal::Output { lines, error: true, .. }) = &s.modal else { panic!("{:?}", s.modal) };
    assert_eq!(lines.last().map(String::as_str), Some("npm ERR! 404 "));

    let mut s = on_search();
    typed(&mut s, "D");
    typed(&mut s, "weather");
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Tab);
    typed(&mut s, "mcp-weather");
    let fx = key(&mut s, KeyCode::Enter);
    let tools = [json!({"name": "forecast"}), json!({"name": "alerts"})];
    answer(&mut s, &fx, Ok(json!({"mesh": "team", "name": "weather", "status": "running", "tools": tools})));
    assert!(s.modal.is_none());
    assert_eq!(s.toast.unwrap().text, "weather deployed on team: running with 2 tool(s)");
}

#[test]
fn a_service_rescoped_into_view_refetches_that_meshs_catalog_only() {
    let mut s = standard((120, 30));
    let scope = claudemesh_protocol::scope::Scope::Mesh;
    let fx = service_event(&mut s, "team", Wire::McpScopeChanged { name: "new-one".into(), scope });
    assert!(matches!(calls(&fx)[..], [AgentCall::ServiceCatalog { mesh: Some(m) }] if m == "team"));
    let mut e = fixture::services().remove(0);
    e.entry.name = "new-one".into();
    answer(&mut s, &fx, Ok(json!({"services": [e]})));
    assert_eq!(names(&s), ["notes", "new-one"], "oss's services stay; team's are the reply's");
    // A known service's scope is patched in place, no call.
    let scope = claudemesh_protocol::scope::Scope::Peer;
    let fx = service_event(&mut s, "team", Wire::McpScopeChanged { name: "new-one".into(), scope });
    assert!(calls(&fx).is_empty());
    assert_eq!(s.services.get("team", "new-one").unwrap().entry.scope.to_string(), "peer");
}

#[test]
fn a_log_that_cannot_be_fetched_says_so_in_its_pane() {
    let mut s = standard((120, 30));
    let fx = typed(&mut s, "6");
    let e = CallError { code: Some(ErrorCode::Unavailable), message: "broker away".into() };
    answer(&mut s, &fx, Err(e));
    assert!(s.toast.is_none());
    assert_eq!(s.services.log.len(), 1);
    assert!(
        s.services.log[0].starts_with("(the log could not be fetched: unavailable"),
        "{:?}",
        s.services.log
    );
}
