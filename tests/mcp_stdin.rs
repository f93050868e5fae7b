//! `claudemesh mcp` driven over stdio with raw lines, as a broken or hostile client would: every
//! request whose id can be read gets a reply carrying that id (security.md, "Malformed input"),
//! a lone surrogate never leaves a request unanswered, and the server keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Reads stdout lines until every id in `want` has a reply (10 s at most); returns them by id.
async fn replies(
    out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    want: &[Value],
) -> HashMap<String, Value> {
    let mut got = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while want.iter().any(|id| !got.contains_key(&id.to_string())) {
        let line = tokio::time::timeout_at(deadline, out.next_line())
            .await
            .unwrap_or_else(|_| panic!("no reply for some of {want:?} within 10 s; got {got:?}"))
            .unwrap()
            .expect("stdout closed");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v.get("method").is_some() {
            continue; // a notification or a request of the server's own
        }
        got.insert(v["id"].to_string(), v);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_a_reply_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let paths = claudemesh_agent::Paths::new(dir.path().join("cm"));
    let mut child = tokio::process::Command::new(EXE)
        .arg("mcp")
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("CLAUDEMESH_SESSION_ID", "0000005a-5e55-4000-8000-00000000005a")
        .env("CLAUDEMESH_NAME", "raw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = async |line: &[u8]| {
        stdin.write_all(line).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    };

    // Before initialize: a request without "jsonrpc" is answered with its id, and does not end
    // the server.
    send(br#"{"id":1,"method":"ping"}"#).await;
    let r = replies(&mut out, &[json!(1)]).await;
    assert_eq!(r["1"]["error"]["code"], -32600, "{:?}", r["1"]);

    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    send(init.to_string().as_bytes()).await;
    let r = replies(&mut out, &[json!(0)]).await;
    assert!(r["0"]["result"]["serverInfo"].is_object(), "{:?}", r["0"]);
    send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;

    let lines: Vec<(&[u8], Value, Option<i64>)> = vec![
        // A lone surrogate: read as U+FFFD, and the call is served.
        (
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"no_such_tool\ud800","arguments":{}}}"#,
            json!(2),
            None,
        ),
        (br#"{"jsonrpc":"2.0","id":"abc","method":"#, json!("abc"), Some(-32700)),
        (b"not json at all", Value::Null, Some(-32700)),
        (br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#, Value::Null, Some(-32600)),
        (br#"{"jsonrpc":"2.0","id":7,"method":7}"#, json!(7), Some(-32600)),
        (b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}", json!(8), Some(-32700)),
        (br#"{"jsonrpc":"1.0","id":"v","method":"tools/list"}"#, json!("v"), Some(-32600)),
    ];
    for (line, id, code) in &lines {
        send(line).await;
        let r = replies(&mut out, std::slice::from_ref(id)).await;
        let reply = &r[&id.to_string()];
        match code {
            Some(c) => assert_eq!(reply["error"]["code"], *c, "{} -> {reply}", String::from_utf8_lossy(line)),
            None => assert!(reply.get("result").is_some() || reply.get("error").is_some(), "{reply}"),
        }
    }
    // The lone surrogate reached the server as U+FFFD.
    send(br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x\udc00","arguments":{}}}"#)
        .await;
    let r = replies(&mut out, &[json!(9)]).await;
    assert!(r["9"].to_string().contains('\u{fffd}') || r["9"].get("result").is_some(), "{:?}", r["9"]);

    // Still serving.
    send(br#"{"jsonrpc":"2.0","id":10,"method":"tools/list"}"#).await;
    let r = replies(&mut out, &[json!(10)]).await;
    assert!(r["10"]["result"]["tools"].is_array(), "{:?}", r["10"]);

    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    let _ = cli(&paths, &["agent", "stop"]);
}
