//! Reading one line a local client wrote to the agent's socket: raw bytes in (they may be any
//! bytes at all, not only UTF-8), a [`ClientLine`] or a typed [`LineError`] out, with the
//! request's id when one could be read so the error reply reaches the request that caused it.

use crate::frames::ErrorCode;
use crate::limits::MAX_AGENT_LINE_BYTES;

use super::ClientLine;

/// Why a client line could not be read. None of them ends the connection except
/// [`LineError::TooLong`], whose rest was never read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Only whitespace: nothing to answer.
    #[error("empty line")]
    Empty,
    /// Longer than [`MAX_AGENT_LINE_BYTES`] without its newline.
    #[error("line is {size} bytes or more, at most {max} allowed")]
    TooLong { size: usize, max: usize },
    /// Bytes that are not UTF-8 text, the first bad one at `offset`.
    #[error("line is not UTF-8 text (bad byte at offset {offset})")]
    NotUtf8 { id: Option<u64>, offset: usize },
    /// Not one JSON value.
    #[error("line is not valid JSON: {message}")]
    NotJson { message: String },
    /// JSON, but no line a client may send.
    #[error("{message}")]
    Invalid { id: Option<u64>, message: String },
}

impl LineError {
    /// The id of the request the line carried, when one could be read.
    pub fn id(&self) -> Option<u64> {
        match self {
            LineError::NotUtf8 { id, .. } | LineError::Invalid { id, .. } => *id,
            LineError::Empty | LineError::TooLong { .. } | LineError::NotJson { .. } => None,
        }
    }

    /// The stable error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            LineError::TooLong { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::Invalid,
        }
    }
}

/// The line without its end: one `\n` and then one `\r`, if there.
fn strip_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The numeric `id` of a line that is a JSON object, if it has one.
fn probe_id(text: &str) -> Option<u64> {
    let v = serde_json::from_str::<serde_json::Value>(text).ok()?;
    v.get("id").and_then(serde_json::Value::as_u64)
}

/// Reads one client line, with or without its newline. A method without params also takes
/// `"params": {}` (what hand-written clients send).
pub fn parse_client_line(line: &[u8]) -> Result<ClientLine, LineError> {
    let line = strip_end(line);
    if line.len() > MAX_AGENT_LINE_BYTES {
        return Err(LineError::TooLong { size: line.len(), max: MAX_AGENT_LINE_BYTES });
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            let id = probe_id(&String::from_utf8_lossy(line));
            return Err(LineError::NotUtf8 { id, offset: e.valid_up_to() });
        }
    };
    if text.trim().is_empty() {
        return Err(LineError::Empty);
    }
    let first = match serde_json::from_str::<ClientLine>(text) {
        // Only an object is a line: serde would also take `["hello",1,"cli"]` for one.
        Ok(m) if text.trim_start().starts_with('{') => return Ok(m),
        Ok(_) => None,
        Err(e) => Some(e),
    };
    let mut v = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v,
        Err(e) => return Err(LineError::NotJson { message: e.to_string() }),
    };
    let Some(first) = first else {
        return Err(LineError::Invalid { id: None, message: "a line must be a JSON object".into() });
    };
    let id = v.get("id").and_then(serde_json::Value::as_u64);
    let empty = v.get("params").is_some_and(|p| p.as_object().is_some_and(serde_json::Map::is_empty));
    if let (true, Some(o)) = (empty, v.as_object_mut()) {
        o.remove("params");
        if let Ok(m) = serde_json::from_value::<ClientLine>(v) {
            return Ok(m);
        }
    }
    Err(LineError::Invalid { id, message: first.to_string() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::local::AgentCall;

    #[test]
    fn empty_params_are_no_params_and_bad_lines_keep_their_id() {
        let l = parse_client_line(br#"{"type":"request","id":3,"method":"status","params":{}}"#).unwrap();
        assert_eq!(l, ClientLine::Request { id: 3, call: AgentCall::Status });
        let l = parse_client_line(b"{\"type\":\"request\",\"id\":4,\"method\":\"status\"}\r\n").unwrap();
        assert_eq!(l, ClientLine::Request { id: 4, call: AgentCall::Status });
        let e = parse_client_line(br#"{"type":"request","id":5,"method":"nope","params":{}}"#).unwrap_err();
        assert!(matches!(e, LineError::Invalid { id: Some(5), .. }), "{e:?}");
        assert!(matches!(parse_client_line(b"not json"), Err(LineError::NotJson { .. })));
        assert_eq!(parse_client_line(b" \t\n"), Err(LineError::Empty));
        let e = parse_client_line(br#"["hello",1,"cli"]"#).unwrap_err();
        assert!(matches!(e, LineError::Invalid { id: None, .. }), "not an object: {e:?}");
    }

    #[test]
    fn bytes_that_are_not_text_are_refused_with_the_id_when_readable() {
        let e = parse_client_line(b"{\"type\":\"request\",\"id\":6,\"method\":\"x\xff\"}\n").unwrap_err();
        assert_eq!(e, LineError::NotUtf8 { id: Some(6), offset: 36 });
        assert_eq!(e.code(), ErrorCode::Invalid);
        assert_eq!(parse_client_line(b"\xc3"), Err(LineError::NotUtf8 { id: None, offset: 0 }));
    }

    #[test]
    fn a_line_over_the_limit_is_too_long() {
        let mut big = vec![b' '; MAX_AGENT_LINE_BYTES + 1];
        let e = parse_client_line(&big).unwrap_err();
        assert_eq!(e, LineError::TooLong { size: MAX_AGENT_LINE_BYTES + 1, max: MAX_AGENT_LINE_BYTES });
        assert_eq!(e.code(), ErrorCode::TooLarge);
        big.truncate(MAX_AGENT_LINE_BYTES);
        big.push(b'\n');
        assert_eq!(parse_client_line(&big), Err(LineError::Empty), "the newline does not count");
    }
}
