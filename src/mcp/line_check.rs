//! What `claudemesh mcp` does with one line of stdin before rmcp sees it (pure functions, see
//! [`super::stdio`]). rmcp drops a line that is not JSON without a word, and answers JSON that
//! is not a JSON-RPC message with an error carrying no id: either way the client waits forever
//! for its request. Here every request whose id can be read gets an error reply with that id:
//! `-32700` for a line that is not JSON, `-32600` for JSON that is not a valid request, `null`
//! as the id only when no id can be recovered, even from a broken line.
//!
//! A string escape of a lone UTF-16 surrogate (`"\ud800"`, which JavaScript's
//! `JSON.stringify` writes for a broken string) is read as U+FFFD and the line passes on: the
//! request is served, with the replacement character where the broken one was.

use std::borrow::Cow;

use rmcp::model::ClientJsonRpcMessage;
use serde_json::{Map, Value, json};

/// JSON-RPC: the line is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the JSON is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;

/// What to do with one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Give this line to rmcp (it may differ from the input: lone surrogates replaced).
    Pass(String),
    /// Write this JSON-RPC error reply (one line, no newline) to stdout; rmcp never sees it.
    Reply(String),
    /// Nothing to do (an empty line).
    Skip,
}

/// Decides what to do with `line` (without its `\n`).
pub fn check(line: &[u8]) -> Verdict {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.is_empty() {
        return Verdict::Skip;
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(_) => {
            let lossy = String::from_utf8_lossy(line);
            return reply(PARSE_ERROR, "Parse error: the line is not UTF-8", recover_id(&lossy));
        }
    };
    let text = replace_lone_surrogates(text);
    if serde_json::from_str::<ClientJsonRpcMessage>(&text).is_ok() {
        return Verdict::Pass(text.into_owned());
    }
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return reply(PARSE_ERROR, &format!("Parse error: {e}"), recover_id(&text)),
    };
    let Value::Object(obj) = value else {
        return reply(INVALID_REQUEST, "Invalid Request: expected one JSON-RPC object", Value::Null);
    };
    let id = match obj.get("id") {
        // A notification: there is nobody to answer; rmcp decides (it ignores unknown ones).
        None => return Verdict::Pass(text.into_owned()),
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        Some(_) => {
            return reply(
                INVALID_REQUEST,
                "Invalid Request: \"id\" must be a string or a number",
                Value::Null,
            );
        }
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return reply(INVALID_REQUEST, "Invalid Request: \"jsonrpc\" must be \"2.0\"", id);
    }
    reply(INVALID_REQUEST, &invalid_why(&obj), id)
}

/// Why a JSON-RPC object with a good envelope is still not a message this server reads.
fn invalid_why(obj: &Map<String, Value>) -> String {
    match obj.get("method") {
        Some(Value::String(m)) => format!("Invalid Request: the params of {m:?} do not fit the method"),
        Some(_) => "Invalid Request: \"method\" must be a string".into(),
        None => "Invalid Request: neither a request nor a response".into(),
    }
}

fn reply(code: i64, message: &str, id: Value) -> Verdict {
    let v = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    Verdict::Reply(v.to_string())
}

/// `text` with every `\uXXXX` escape of a lone surrogate replaced by `\ufffd`; escaped pairs and
/// all other text stay as they are.
pub fn replace_lone_surrogates(text: &str) -> Cow<'_, str> {
    if !text.contains("\\u") && !text.contains("\\U") {
        return Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let hex = |at: usize| -> Option<u16> {
        let s = text.get(at..at + 4)?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u16::from_str_radix(s, 16).ok()
    };
    let escape_at = |at: usize| -> Option<u16> {
        if b.get(at) == Some(&b'\\') && b.get(at + 1) == Some(&b'u') { hex(at + 2) } else { None }
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        if b[i] != b'\\' {
            // Copy up to the next backslash (char boundaries hold: '\\' is ASCII).
            let next = text[i..].find('\\').map_or(b.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        match escape_at(i) {
            Some(0xD800..=0xDBFF) => {
                if matches!(escape_at(i + 6), Some(0xDC00..=0xDFFF)) {
                    out.push_str(&text[i..i + 12]);
                    i += 12;
                } else {
                    out.push_str("\\ufffd");
                    changed = true;
                    i += 6;
                }
            }
            Some(0xDC00..=0xDFFF) => {
                out.push_str("\\ufffd");
                changed = true;
                i += 6;
            }
            Some(_) => {
                out.push_str(&text[i..i + 6]);
                i += 6;
            }
            None => {
                // Any other escape: the backslash and the character it escapes.
                let len = text[i + 1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&text[i..i + 1 + len]);
                i += 1 + len;
            }
        }
    }
    if changed { Cow::Owned(out) } else { Cow::Borrowed(text) }
}

/// The top-level `"id"` of a line that may be broken JSON, when it is a string or a number
/// (read leniently: a scan of keys at nesting depth 1); `null` otherwise.
pub fn recover_id(text: &str) -> Value {
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    // The last character outside strings that was not whitespace: a string is a key only
    // right after `{` or `,`.
    let mut last = ' ';
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                let Some((s, end)) = string_at(&chars, i) else { return Value::Null };
                let key = matches!(last, '{' | ',');
                i = end;
                last = '"';
                if key && depth == 1 && s == "id" {
                    let mut j = skip_ws(&chars, i);
                    if chars.get(j) == Some(&':') {
                        j = skip_ws(&chars, j + 1);
                        if let Some(v) = scalar_at(&chars, j) {
                            return v;
                        }
                    }
                }
                continue;
            }
            c @ ('{' | '[') => {
                depth += 1;
                last = c;
            }
            c @ ('}' | ']') => {
                depth = depth.saturating_sub(1);
                last = c;
            }
            c if c.is_whitespace() => {}
            c => last = c,
        }
        i += 1;
    }
    Value::Null
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// The JSON string starting at `chars[at] == '"'`, decoded (lone surrogates as U+FFFD), and the
/// index past its closing quote; `None` when it never closes.
fn string_at(chars: &[char], at: usize) -> Option<(String, usize)> {
    let mut i = at + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => {
                let raw: String = chars[at..=i].iter().collect();
                let fixed = replace_lone_surrogates(&raw);
                let s =
                    serde_json::from_str::<String>(&fixed).unwrap_or_else(|_| raw[1..raw.len() - 1].into());
                return Some((s, i + 1));
            }
            _ => i += 1,
        }
    }
    None
}

/// A string or number value at `at`.
fn scalar_at(chars: &[char], at: usize) -> Option<Value> {
    match chars.get(at)? {
        '"' => string_at(chars, at).map(|(s, _)| Value::String(s)),
        c if *c == '-' || c.is_ascii_digit() => {
            let end = (at..chars.len())
                .find(|&j| !(chars[j].is_ascii_digit() || matches!(chars[j], '-' | '+' | '.' | 'e' | 'E')))
                .unwrap_or(chars.len());
            let num: String = chars[at..end].iter().collect();
            serde_json::from_str::<serde_json::Number>(&num).ok().map(Value::Number)
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
}
