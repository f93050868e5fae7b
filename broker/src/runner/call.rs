//! One tool call: sent to the service's current child, answered by exactly one `result` or
//! `call_error` (timeout, crash, cancel or a JSON-RPC error), with big results cut to
//! [`MAX_RESULT_BYTES`].

use std::time::Duration;

use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::service::Conn;
use super::wire::{CallErrorCode, FromRunner, MAX_RESULT_BYTES};

/// Runs call `id` of `tool` on the service behind `conn`; ends by `timeout_ms` at the latest.
/// Dropping the rmcp request on timeout or cancel sends MCP `notifications/cancelled`.
pub async fn call(
    conn: watch::Receiver<Conn>,
    service: &str,
    id: u64,
    tool: String,
    arguments: Value,
    timeout_ms: u64,
    cancel: CancellationToken,
) -> FromRunner {
    let error = |code, message: String| FromRunner::CallError { id, code, message };
    let current = conn.borrow().clone();
    let Conn::Up { peer, exited } = current else {
        return error(CallErrorCode::NotRunning, format!("service {service} is not running"));
    };
    let mut params = CallToolRequestParams::new(tool.clone());
    match arguments {
        Value::Object(map) => params.arguments = Some(map),
        Value::Null => {}
        _ => return error(CallErrorCode::Tool, format!("{service}/{tool}: arguments must be an object")),
    }
    tokio::select! {
        r = peer.call_tool(params) => match r {
            Ok(result) => match serde_json::to_value(&result) {
                Ok(v) => FromRunner::Result { id, result: cut(v) },
                Err(e) => error(CallErrorCode::Tool, format!("{service}/{tool}: unreadable result: {e}")),
            },
            Err(ServiceError::McpError(e)) => error(CallErrorCode::Tool, format!("{service}/{tool}: {}", e.message)),
            Err(ServiceError::Timeout { .. }) => error(CallErrorCode::Timeout, format!("{service}/{tool}: timed out")),
            Err(ServiceError::Cancelled { .. }) => error(CallErrorCode::Cancelled, format!("{service}/{tool}: cancelled")),
            Err(ServiceError::TransportClosed | ServiceError::TransportSend(_)) => {
                error(CallErrorCode::Crashed, format!("service {service} exited during the call to {tool}"))
            }
            Err(e) => error(CallErrorCode::Tool, format!("{service}/{tool}: {e}")),
        },
        _ = tokio::time::sleep(Duration::from_millis(timeout_ms)) => {
            error(CallErrorCode::Timeout, format!("{service}/{tool}: no result within {timeout_ms} ms"))
        }
        _ = exited.cancelled() => {
            error(CallErrorCode::Crashed, format!("service {service} exited during the call to {tool}"))
        }
        _ = cancel.cancelled() => error(CallErrorCode::Cancelled, format!("{service}/{tool}: cancelled")),
    }
}

/// A `CallToolResult` (as JSON) no bigger than about [`MAX_RESULT_BYTES`]: if it is bigger,
/// its text contents are kept up to the limit and a text content saying it was cut is added.
pub fn cut(result: Value) -> Value {
    let size = serde_json::to_vec(&result).map(|v| v.len()).unwrap_or(0);
    if size <= MAX_RESULT_BYTES {
        return result;
    }
    let budget = MAX_RESULT_BYTES.saturating_sub(1024);
    let mut used = 0usize;
    let mut content = Vec::new();
    let items = result.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    for item in items {
        if used >= budget {
            break;
        }
        let Some(text) = item.get("text").and_then(Value::as_str) else {
            continue;
        };
        let room = budget - used;
        let kept = if text.len() <= room { text } else { &text[..floor_char_boundary(text, room)] };
        used += kept.len();
        content.push(json!({"type": "text", "text": kept}));
    }
    content.push(json!({
        "type": "text",
        "text": format!("[result truncated from {size} bytes to the {MAX_RESULT_BYTES}-byte limit]"),
    }));
    let mut out = json!({ "content": content });
    if let Some(e) = result.get("isError") {
        out["isError"] = e.clone();
    }
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_results_pass_and_big_ones_are_cut_with_a_notice() {
        let small = json!({"content": [{"type": "text", "text": "hi"}]});
        assert_eq!(cut(small.clone()), small);
        let big =
            json!({"content": [{"type": "text", "text": "é".repeat(MAX_RESULT_BYTES)}], "isError": false});
        let c = cut(big);
        assert!(serde_json::to_vec(&c).map(|v| v.len()).unwrap_or(usize::MAX) <= MAX_RESULT_BYTES);
        let content = c["content"].as_array().cloned().unwrap_or_default();
        assert_eq!(content.len(), 2);
        assert!(content[1]["text"].as_str().unwrap_or("").contains("truncated"));
    }
}
