//! The Services view drawn on ratatui's `TestBackend` from the fixture: the table at 120×30 and
//! 80×24, the detail with its tools and following log tail, the call form generated from a
//! tool's schema, a call's result (and an error result), and the deploy form with its env
//! values masked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_tui::event::{AgentEvent, Event};
use claudemesh_tui::fixture::standard;
use claudemesh_tui::state::State;
use claudemesh_tui::update::update;
use common::*;
use crossterm::event::KeyCode;
use serde_json::json;

/// The Services view with `search` selected and its log fetched and followed.
fn services_view(size: (u16, u16)) -> State {
    let mut s = standard(size);
    typed(&mut s, "6");
    // Rows are by mesh then name: notes (oss), db-ops, search (team).
    let fx = typed(&mut s, "G");
    let lines: Vec<String> =
        (1..=30).map(|i| format!("[search] request {i} served in {}ms", 10 + i)).collect();
    answer(&mut s, &fx, Ok(json!({"mesh": "team", "name": "search", "lines": lines})));
    update(
        &mut s,
        Event::Agent(AgentEvent::ServiceLog {
            mesh: "team".into(),
            name: "search".into(),
            lines: vec!["[search] a followed line \u{1b}[31mred\u{1b}[0m".into()],
        }),
    );
    s
}

#[test]
fn services_table_and_detail() {
    insta::assert_snapshot!("services_120x30", draw(&services_view((120, 30))));
    insta::assert_snapshot!("services_80x24", draw(&services_view((80, 24))));
    let mut s = services_view((120, 30));
    key(&mut s, KeyCode::Up);
    insta::assert_snapshot!("services_crashed_selected_120x30", draw(&s));
}

#[test]
fn second_tool_selected() {
    let mut s = services_view((120, 30));
    key(&mut s, KeyCode::Right);
    let screen = draw(&s);
    assert!(screen.contains("▶ fetch_page"), "{screen}");
    assert!(screen.contains("url*: string, headers: object"), "{screen}");
}

#[test]
fn call_form_from_schema() {
    let mut s = services_view((120, 30));
    key(&mut s, KeyCode::Enter);
    typed(&mut s, "rust tui");
    key(&mut s, KeyCode::Tab);
    insta::assert_snapshot!("services_call_form_120x30", draw(&s));
    // A bad number shows its error in the form.
    typed(&mut s, "x");
    key(&mut s, KeyCode::Enter);
    insta::assert_snapshot!("services_call_form_error_80x24", {
        s.size = (80, 24);
        draw(&s)
    });
}

#[test]
fn call_result_and_error_result() {
    let mut s = services_view((120, 30));
    key(&mut s, KeyCode::Enter);
    typed(&mut s, "rust tui");
    let fx = key(&mut s, KeyCode::Enter);
    let result = json!({"content": [
        {"type": "text", "text": "1. ratatui: build terminal UIs\n2. crossterm\u{1b}]52;c;ZXZpbA==\u{7}: terminal I/O"},
        {"type": "image", "data": "…", "mimeType": "image/png"},
    ]});
    answer(
        &mut s,
        &fx,
        Ok(json!({"mesh": "team", "service": "search", "tool": "web_search", "result": result})),
    );
    let screen = draw(&s);
    assert!(!screen.contains('\u{1b}') && !screen.contains("52;c"), "{screen}");
    insta::assert_snapshot!("services_call_result_120x30", screen);

    key(&mut s, KeyCode::Esc);
    key(&mut s, KeyCode::Enter);
    typed(&mut s, "x");
    let fx = key(&mut s, KeyCode::Enter);
    let result = json!({"isError": true, "content": [{"type": "text", "text": "rate limit of the search API reached"}]});
    answer(
        &mut s,
        &fx,
        Ok(json!({"mesh": "team", "service": "search", "tool": "web_search", "result": result})),
    );
    insta::assert_snapshot!("services_call_error_result_80x24", {
        s.size = (80, 24);
        draw(&s)
    });
}

#[test]
fn deploy_form_masks_env() {
    let mut s = services_view((120, 30));
    typed(&mut s, "D");
    typed(&mut s, "weather");
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char(' '));
    key(&mut s, KeyCode::Tab);
    typed(&mut s, "mcp-weather");
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Tab);
    typed(&mut s, "API_KEY=supersecret REGION=eu");
    let screen = draw(&s);
    assert!(!screen.contains("supersecret"), "{screen}");
    insta::assert_snapshot!("services_deploy_form_120x30", screen);
}

#[test]
fn service_text_cannot_reach_the_terminal() {
    let mut s = standard((120, 30));
    let evil = "x\u{1b}]52;c;ZXZpbA==\u{7}y\u{1b}[2J\u{202e}z";
    let mut e = claudemesh_tui::fixture::services().remove(0).entry;
    e.name = format!("evil{evil}");
    e.description = evil.into();
    e.source_kind = evil.into();
    e.version = Some(evil.into());
    e.error = Some(evil.into());
    e.tools = vec![claudemesh_tui::fixture::tool(
        &format!("t{evil}"),
        evil,
        json!({"properties": {evil: {"type": evil, "description": evil}}}),
    )];
    let seq = s.seq + 1;
    let event = Box::new(claudemesh_protocol::local::LocalEvent::Services {
        mesh: "team".into(),
        event: claudemesh_protocol::frames::Event::McpDeployed(e.clone()),
    });
    update(&mut s, Event::Agent(AgentEvent::Event { seq, event }));
    typed(&mut s, "6/evil");
    key(&mut s, KeyCode::Enter);
    assert_eq!(s.services.following.as_ref().map(|f| f.name.as_str()), Some(e.name.as_str()));
    update(
        &mut s,
        Event::Agent(AgentEvent::ServiceLog {
            mesh: "team".into(),
            name: e.name.clone(),
            lines: vec![evil.into()],
        }),
    );
    for screen in [draw(&s), {
        key(&mut s, KeyCode::Enter);
        draw(&s)
    }] {
        for c in screen.chars() {
            assert!(
                c == '\n' || (!c.is_control() && !claudemesh_protocol::text::is_bidi_control(c)),
                "{c:?} drawn"
            );
        }
        assert!(!screen.contains("52;c") && screen.contains("evilxy"), "{screen}");
    }
}
