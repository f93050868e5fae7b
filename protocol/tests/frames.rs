//! Serde round-trips of every broker frame, decode errors, and golden wire fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use claudemesh_protocol::frames::*;
use claudemesh_protocol::limits::MAX_FRAME_BYTES;
use common::*;
use serde_json::{Value, json};

#[test]
fn every_client_frame_round_trips() {
    let frames = all_client();
    let names: BTreeSet<&str> = frames.iter().map(ClientFrame::type_name).collect();
    let known: BTreeSet<&str> = CLIENT_TYPES.iter().copied().collect();
    assert_eq!(names, known, "samples must cover every client frame type exactly");
    for f in frames {
        let text = encode(&f);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], f.type_name(), "tag of {text}");
        assert_eq!(f.req(), v.get("req").and_then(Value::as_u64), "req() of {text}");
        assert_eq!(decode_client(&text).unwrap(), f, "round trip of {text}");
    }
}

#[test]
fn every_server_frame_round_trips() {
    let frames = all_server();
    let names: BTreeSet<&str> = frames.iter().map(ServerFrame::type_name).collect();
    let known: BTreeSet<&str> = SERVER_TYPES.iter().copied().collect();
    assert_eq!(names, known, "samples must cover every server frame type exactly");
    for f in frames {
        let text = encode(&f);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], f.type_name(), "tag of {text}");
        if let Some(req) = f.req() {
            assert_eq!(v["req"], req, "req of {text}");
        }
        assert_eq!(decode_server(&text).unwrap(), f, "round trip of {text}");
    }
}

#[test]
fn every_event_round_trips_alone() {
    for e in all_events() {
        let f = ServerFrame::Event(e);
        let text = encode(&f);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["kind"].is_string() && v.get("data").is_some(), "{text}");
        assert_eq!(decode_server(&text).unwrap(), f);
    }
}

#[test]
fn receipt_states_are_stable_strings() {
    assert_eq!(serde_json::to_value(ReceiptState::Seen).unwrap(), json!("seen"));
    assert_eq!(serde_json::to_value(ReceiptState::Delivered).unwrap(), json!("delivered"));
}

#[test]
fn error_codes_are_stable_strings() {
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let text = r#"{"type":"list_peers","req":3,"future_field":{"x":1}}"#;
    assert_eq!(decode_client(text).unwrap(), ClientFrame::ListPeers { req: 3, cursor: None, limit: None });
    let text = r#"{"type":"ok","req":3,"extra":true}"#;
    assert_eq!(decode_server(text).unwrap(), ServerFrame::Ok { req: 3 });
}

#[test]
fn unknown_type_is_a_typed_error_with_req() {
    let e = decode_client(r#"{"type":"teleport","req":9}"#).unwrap_err();
    assert_eq!(e, DecodeError::UnknownType { ty: "teleport".into(), req: Some(9) });
    match e.to_error_frame() {
        ServerFrame::Error(ErrorFrame { req, code, .. }) => {
            assert_eq!(req, Some(9));
            assert_eq!(code, ErrorCode::Invalid);
        }
        other => panic!("expected error frame, got {other:?}"),
    }
}

#[test]
fn malformed_frames_are_typed_errors() {
    assert!(matches!(decode_client("{not json"), Err(DecodeError::NotJson(_))));
    assert!(matches!(decode_client(""), Err(DecodeError::NotJson(_))));
    assert_eq!(decode_client("[1,2]"), Err(DecodeError::MissingType));
    assert_eq!(decode_client("42"), Err(DecodeError::MissingType));
    assert_eq!(decode_client(r#"{"req":1}"#), Err(DecodeError::MissingType));
    assert_eq!(decode_client(r#"{"type":5}"#), Err(DecodeError::MissingType));
    // Known type, wrong field types / missing fields.
    let e = decode_client(r#"{"type":"send","req":4,"client_msg_id":1}"#).unwrap_err();
    assert!(matches!(&e, DecodeError::Invalid { ty, req: Some(4), .. } if ty == "send"), "{e:?}");
    let e = decode_client(r#"{"type":"list_peers","req":"x"}"#).unwrap_err();
    assert!(matches!(&e, DecodeError::Invalid { req: None, .. }), "{e:?}");
    // Bad target string.
    let mut v = serde_json::to_value(ClientFrame::Send(send())).unwrap();
    v["target"] = json!("nobody");
    let e = decode_client(&v.to_string()).unwrap_err();
    assert!(e.to_string().contains("invalid target"), "{e}");
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let big = format!(r#"{{"type":"list_peers","req":1,"pad":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
    let e = decode_client(&big).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { req: Some(1), .. }));
    assert_eq!(e.code(), ErrorCode::TooLarge);
}

#[test]
fn secrets_in_frames_are_not_debug_printed() {
    let f = ClientFrame::MeshCreate {
        req: 1,
        slug: "team".into(),
        admin_token: Secret("super-secret-admin-token".into()),
        pubkey: "ab".repeat(32),
        display_name: "a".into(),
    };
    assert!(!format!("{f:?}").contains("super-secret"));
    // ...but are on the wire, where they belong.
    assert!(encode(&f).contains("super-secret-admin-token"));
}

fn golden(name: &str) -> Value {
    let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The wire format of the most important frames is pinned: a change here is a protocol change.
#[test]
fn golden_hello() {
    let ClientFrame::Hello(h) = &all_client()[0] else { panic!() };
    let f = ClientFrame::Hello(h.clone());
    assert_eq!(serde_json::to_value(&f).unwrap(), golden("hello"));
    assert_eq!(decode_client(&golden("hello").to_string()).unwrap(), f);
    // Agents from before `instance` existed still say hello.
    let mut old = golden("hello");
    old.as_object_mut().unwrap().remove("instance");
    let ClientFrame::Hello(h) = decode_client(&old.to_string()).unwrap() else { panic!() };
    assert_eq!(h.instance, None);
    // A hello without `protocol` is protocol 1, which a protocol-2 broker refuses.
    old.as_object_mut().unwrap().remove("protocol");
    let ClientFrame::Hello(h) = decode_client(&old.to_string()).unwrap() else { panic!() };
    assert_eq!(h.protocol, 1);
}

#[test]
fn golden_send() {
    let f = ClientFrame::Send(send());
    assert_eq!(serde_json::to_value(&f).unwrap(), golden("send"));
    assert_eq!(decode_client(&golden("send").to_string()).unwrap(), f);
}

#[test]
fn golden_push() {
    let f = ServerFrame::Push(push());
    assert_eq!(serde_json::to_value(&f).unwrap(), golden("push"));
    assert_eq!(decode_server(&golden("push").to_string()).unwrap(), f);
}

#[test]
fn golden_mcp_deploy() {
    let f = ClientFrame::McpDeploy(deploy());
    assert_eq!(serde_json::to_value(&f).unwrap(), golden("mcp_deploy"));
    assert_eq!(decode_client(&golden("mcp_deploy").to_string()).unwrap(), f);
}
