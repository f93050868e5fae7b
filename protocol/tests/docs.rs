//! docs/protocol.md must describe every frame, event and agent-socket call that exists in
//! the code: this test fails when one is added without its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_protocol::frames::{CLIENT_TYPES, SERVER_TYPES};

fn doc() -> String {
    let path = format!("{}/../docs/protocol.md", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_frame_type_is_documented() {
    let doc = doc();
    let missing: Vec<&str> = CLIENT_TYPES
        .iter()
        .chain(SERVER_TYPES)
        .filter(|t| !doc.contains(&format!("### `{t}`")))
        .copied()
        .collect();
    assert!(missing.is_empty(), "docs/protocol.md lacks a `### `<type>`` section for: {missing:?}");
}

#[test]
fn every_event_kind_is_documented() {
    let doc = doc();
    for e in common::all_events() {
        let v = serde_json::to_value(&e).unwrap();
        let kind = v["kind"].as_str().unwrap();
        assert!(doc.contains(&format!("`{kind}`")), "docs/protocol.md lacks event kind `{kind}`");
    }
}

#[test]
fn every_error_code_is_documented() {
    let doc = doc();
    for code in claudemesh_protocol::frames::ErrorCode::ALL {
        assert!(doc.contains(&format!("`{}`", code.as_str())), "docs/protocol.md lacks error code {code:?}");
    }
}

#[test]
fn every_agent_method_is_documented() {
    let doc = doc();
    for m in claudemesh_protocol::local::AGENT_METHODS {
        assert!(doc.contains(&format!("#### `{m}`")), "docs/protocol.md lacks agent method `{m}`");
    }
}
