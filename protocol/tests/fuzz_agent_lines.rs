//! Fuzzing how the agent reads a client's line (`local::parse_client_line`) inside `cargo
//! test`: arbitrary bytes (not only UTF-8), byte-level and structural mutations of the seed
//! corpus in `tests/corpus/agent_lines/`, huge lines and deep nesting never panic, always get
//! the typed error their input deserves (with the request id when one is readable), and every
//! line accepted re-encodes to itself. `CLAUDEMESH_FUZZ_CASES=N` runs longer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzzing;

use std::sync::{Arc, LazyLock};

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::limits::MAX_AGENT_LINE_BYTES;
use claudemesh_protocol::local::{ClientLine, LineError, parse_client_line};
use fuzzing::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

static SEEDS: LazyLock<Arc<Vec<Seed>>> = LazyLock::new(|| Arc::new(corpus("agent_lines")));

/// The JSON seeds, parsed, and every key they use.
static DOCS: LazyLock<Docs> = LazyLock::new(|| {
    let docs: Vec<Value> = SEEDS.iter().filter_map(|s| serde_json::from_slice(&s.bytes).ok()).collect();
    let mut keys = vec!["params".to_string(), "method".to_string()];
    docs.iter().for_each(|d| keys_of(d, &mut keys));
    keys.sort();
    keys.dedup();
    (Arc::new(docs), Arc::new(keys))
});

/// Parses `bytes` and checks the outcome against what the bytes are. Returns whether the line
/// was accepted.
fn check(bytes: &[u8]) -> bool {
    let result = parse_client_line(bytes);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if body.len() > MAX_AGENT_LINE_BYTES {
        assert!(matches!(result, Err(LineError::TooLong { .. })), "{result:?}");
        return false;
    }
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            let Err(LineError::NotUtf8 { offset, id }) = result else { panic!("{bytes:?}: {result:?}") };
            assert_eq!(offset, e.valid_up_to(), "{bytes:?}");
            let lossy: Option<Value> = serde_json::from_str(&String::from_utf8_lossy(body)).ok();
            assert_eq!(id, lossy.and_then(|v| v.get("id").and_then(Value::as_u64)), "{bytes:?}");
            return false;
        }
    };
    let doc = serde_json::from_str::<Value>(text);
    match result {
        Ok(line) => {
            assert!(
                doc.as_ref().is_ok_and(Value::is_object),
                "a line that is no JSON object was accepted: {text:?}"
            );
            let again = serde_json::to_string(&line).unwrap();
            let back = parse_client_line(again.as_bytes());
            if has_float(text) {
                assert!(back.is_ok(), "{text:?} re-encoded as {again:?}: {back:?}");
            } else {
                assert_eq!(back, Ok(line), "{text:?} re-encoded as {again:?}");
            }
            return true;
        }
        Err(LineError::Empty) => assert!(text.trim().is_empty(), "{text:?}"),
        Err(LineError::NotJson { .. }) => assert!(doc.is_err(), "{text:?} is JSON"),
        Err(LineError::Invalid { id, .. }) => {
            let doc = doc.unwrap_or_else(|e| panic!("{text:?} is not JSON ({e}) yet got Invalid"));
            assert_eq!(id, doc.get("id").and_then(Value::as_u64), "{text:?}");
        }
        Err(e) => panic!("{text:?}: {e:?}"),
    }
    if let Err(e) = parse_client_line(bytes) {
        assert_eq!(e.code(), ErrorCode::Invalid, "{e:?}");
        assert!(!e.to_string().is_empty());
    }
    false
}

#[test]
fn the_corpus_replays() {
    for s in SEEDS.iter() {
        let accepted = check(&s.bytes);
        assert!(
            !s.valid() || accepted,
            "agent_lines/{} was refused: {:?}",
            s.name,
            parse_client_line(&s.bytes)
        );
        assert!(!s.invalid() || !accepted, "agent_lines/{} was accepted", s.name);
    }
}

#[test]
fn huge_lines_are_too_long_and_a_line_at_the_limit_is_read() {
    let status = br#"{"type":"request","id":1,"method":"status"}"#;
    let mut at_limit = status.to_vec();
    at_limit.resize(MAX_AGENT_LINE_BYTES, b' ');
    at_limit.extend_from_slice(b"\r\n");
    assert!(matches!(parse_client_line(&at_limit), Ok(ClientLine::Request { id: 1, .. })));
    for extra in [1, 4096] {
        let mut over = status.to_vec();
        over.resize(MAX_AGENT_LINE_BYTES + extra, b' ');
        let e = parse_client_line(&over).unwrap_err();
        assert!(matches!(e, LineError::TooLong { max: MAX_AGENT_LINE_BYTES, .. }), "{e:?}");
        assert_eq!(e.code(), ErrorCode::TooLarge);
        // Bytes that are not text: still too long first (the rest was never read).
        over[10] = 0xff;
        assert!(matches!(parse_client_line(&over), Err(LineError::TooLong { .. })));
    }
}

#[test]
fn nesting_far_past_the_limit_is_an_error_not_a_stack_overflow() {
    for depth in [200, 100_000] {
        let scope = nest("1", depth, false);
        let line = format!(
            r#"{{"type":"request","id":9,"method":"service_scope","params":{{"name":"t","scope":{scope}}}}}"#
        );
        assert!(matches!(parse_client_line(line.as_bytes()), Err(LineError::NotJson { .. })), "{depth}");
        assert!(matches!(
            parse_client_line(nest("1", depth, true).as_bytes()),
            Err(LineError::NotJson { .. })
        ));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value(DOCS.1.clone())) {
        check(v.to_string().as_bytes());
    }

    #[test]
    fn mutated_lines(bytes in mutated(SEEDS.clone(), JSON_TOKENS)) {
        check(&bytes);
    }

    #[test]
    fn edited_lines(i in any::<Index>(), e in edits(DOCS.1.clone())) {
        let docs = &DOCS.0;
        check(apply_edits(docs[i.index(docs.len())].clone(), &e).to_string().as_bytes());
    }

    #[test]
    fn nested_lines_never_panic(i in any::<Index>(), depth in 0..300usize, objects in any::<bool>()) {
        let seed = String::from_utf8_lossy(&SEEDS[i.index(SEEDS.len())].bytes).trim_end().to_string();
        check(nest(&seed, depth, objects).as_bytes());
    }
}
