//! Broken and hostile JSON-RPC lines: each gets a reply with its id when one can be read.

use super::*;

fn replied(line: &str) -> Value {
    match check(line.as_bytes()) {
        Verdict::Reply(r) => serde_json::from_str(&r).unwrap_or_else(|e| panic!("{e}: {r}")),
        other => panic!("{line}: expected a reply, got {other:?}"),
    }
}

#[test]
fn good_lines_pass_unchanged_and_empty_ones_are_skipped() {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(check(ping.as_bytes()), Verdict::Pass(ping.into()));
    let crlf = format!("\u{feff}{ping}\r");
    assert_eq!(check(crlf.as_bytes()), Verdict::Pass(ping.into()));
    assert_eq!(check(b""), Verdict::Skip);
    // A notification with nothing to answer goes to rmcp, which decides.
    let n = r#"{"jsonrpc":"2.0","method":"notifications/whatever"}"#;
    assert_eq!(check(n.as_bytes()), Verdict::Pass(n.into()));
}

#[test]
fn a_request_rmcp_cannot_read_gets_an_error_with_its_id() {
    let r = replied(r#"{"id":1,"method":"ping"}"#);
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!(1), json!(INVALID_REQUEST)), "{r}");
    assert_eq!(r["jsonrpc"], "2.0");
    let r = replied(r#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#);
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!("a"), json!(INVALID_REQUEST)));
    let r = replied(r#"{"jsonrpc":"2.0","id":7,"method":7}"#);
    assert_eq!(r["id"], 7);
    let r = replied(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#);
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (Value::Null, json!(INVALID_REQUEST)));
    let r = replied("[1,2]");
    assert_eq!(r["id"], Value::Null);
}

#[test]
fn broken_json_gets_a_parse_error_with_the_id_found_in_it() {
    let r = replied(r#"{"jsonrpc":"2.0","id":"abc","method":"#);
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!("abc"), json!(PARSE_ERROR)), "{r}");
    assert_eq!(replied(r#"{"params":{"id":5},"id" : -3, oops}"#)["id"], -3);
    assert_eq!(replied(r#"{"method":"id","x":"id": 9,}"#)["id"], Value::Null, "a value \"id\" is no key");
    assert_eq!(replied("not json")["id"], Value::Null);
    assert_eq!(replied(r#"{"id":"\"q\"", bad"#)["id"], "\"q\"");
    let bytes = b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}";
    let Verdict::Reply(r) = check(bytes) else { panic!() };
    let r: Value = serde_json::from_str(&r).unwrap();
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!(8), json!(PARSE_ERROR)));
}

#[test]
fn lone_surrogates_become_replacement_characters() {
    let line = r#"{"jsonrpc":"2.0","id":2,"method":"ping","params":{"_meta":{"x":"a\ud800b\udc00c"}}}"#;
    let Verdict::Pass(fixed) = check(line.as_bytes()) else { panic!("{:?}", check(line.as_bytes())) };
    let v: Value = serde_json::from_str(&fixed).unwrap();
    assert_eq!(v["params"]["_meta"]["x"], "a\u{fffd}b\u{fffd}c");
    // Pairs, escaped backslashes and other escapes are kept.
    for keep in [r#""\ud83e\udd80""#, r#""\\ud800""#, r#""\n\u00e9""#, r#""\u12""#] {
        assert_eq!(replace_lone_surrogates(keep), keep);
    }
    assert_eq!(replace_lone_surrogates(r#""\udfff\ud800""#), r#""\ufffd\ufffd""#);
    assert_eq!(replace_lone_surrogates(r#""é\ud800"#), r#""é\ufffd"#);
}
