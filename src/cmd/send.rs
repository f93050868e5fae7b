//! `claudemesh send <to> <message|-> [--file PATH]`: hand a message to the agent, which encrypts
//! and delivers it; prints the id `claudemesh message-status` takes. Each invocation sends under
//! its own idempotency key, so the one retry after a lost agent connection cannot send twice.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use claudemesh_agent::ClientError;
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::limits::MAX_BODY_BYTES;
use claudemesh_protocol::local::{AgentCall, SendParams, SendReply};

use crate::cli::SendArgs;
use crate::out::outln;

/// Bytes a body may have on input: the limit plus a trailing CRLF, which is dropped.
const MAX_INPUT_BYTES: usize = MAX_BODY_BYTES + 2;

/// The body from the argument, stdin (`-`) or `--file`, checked.
fn body(a: &SendArgs) -> anyhow::Result<String> {
    let (bytes, from) = match (&a.message, &a.file) {
        (_, Some(path)) => (read_file(path)?, format!("--file {}", path.display())),
        (Some(m), None) if m == "-" => {
            let mut b = Vec::new();
            // One byte past the limit is enough to know it is too long.
            let limit = u64::try_from(MAX_INPUT_BYTES + 1).unwrap_or(u64::MAX);
            std::io::stdin()
                .lock()
                .take(limit)
                .read_to_end(&mut b)
                .context("cannot read the message from stdin")?;
            if b.len() > MAX_INPUT_BYTES {
                anyhow::bail!(
                    "stdin holds more than {} KiB; a message holds at most that: nothing was sent",
                    kib()
                );
            }
            (b, "stdin".to_string())
        }
        (Some(m), None) => (m.clone().into_bytes(), "the message".to_string()),
        (None, None) => anyhow::bail!("give the message: as an argument, `-` to read stdin, or --file PATH"),
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{from} is not UTF-8 text; nothing was sent"))?;
    check(text, &from)
}

/// A file's bytes; one past the limit is refused by its size before it is read.
fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let cannot = || format!("cannot read --file {}", path.display());
    let len = std::fs::metadata(path).with_context(cannot)?.len();
    if len > u64::try_from(MAX_INPUT_BYTES).unwrap_or(u64::MAX) {
        anyhow::bail!(
            "--file {} is {len} bytes; a message holds at most {} KiB ({MAX_BODY_BYTES} bytes): nothing was sent",
            path.display(),
            kib()
        );
    }
    std::fs::read(path).with_context(cannot)
}

fn kib() -> usize {
    MAX_BODY_BYTES / 1024
}

/// `text` without its trailing line break (what `echo` and editors add); refused if empty or over
/// the limit, naming where it came from (`from`).
fn check(mut text: String, from: &str) -> anyhow::Result<String> {
    for end in ["\r\n", "\n"] {
        if text.ends_with(end) {
            text.truncate(text.len() - end.len());
            break;
        }
    }
    if text.trim().is_empty() {
        anyhow::bail!("{from} is empty; nothing was sent");
    }
    if text.len() > MAX_BODY_BYTES {
        anyhow::bail!(
            "{from} is {} bytes; a message holds at most {} KiB ({MAX_BODY_BYTES} bytes): nothing was sent",
            text.len(),
            kib()
        );
    }
    Ok(text)
}

pub async fn run(a: SendArgs) -> anyhow::Result<ExitCode> {
    let message = body(&a)?;
    let priority = match a.priority.as_str() {
        "now" => Priority::Now,
        "low" => Priority::Low,
        _ => Priority::Next,
    };
    let params = SendParams {
        to: a.to,
        message,
        priority,
        mesh: a.mesh,
        from_session: None,
        reply_to: None,
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
    };
    let r = send_once_or_retry(params).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (target, mesh) = (&r.target, &r.mesh);
    match &r.id {
        Some(id) => outln!(
            "queued message {id} for {target} in {mesh} ({} recipient member(s)); the agent delivers it even \
             if the broker is down now; `claudemesh message-status {id}` shows where it stands",
            r.recipients
        )?,
        // Only this machine's other sessions were addressed: nothing goes to the broker.
        None => outln!("delivered to {} local session(s) for {target} in {mesh}", r.local)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends `params`; if the connection to the agent is lost before its reply (the agent may or may
/// not have stored the message), connects again (starting an agent if it went away) and sends
/// once more with the same idempotency key: an agent that stored it answers with the first
/// reply (`duplicate`) and sends nothing.
async fn send_once_or_retry(params: SendParams) -> anyhow::Result<SendReply> {
    let mut c = super::agent().await?;
    match c.request(AgentCall::Send(params.clone())).await {
        Err(ClientError::Io(e)) => {
            eprintln!("note: lost the connection to the agent ({e}); asking again");
            drop(c);
            let mut c = super::agent().await?;
            Ok(c.request(AgentCall::Send(params)).await?)
        }
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_line_break_is_dropped() {
        assert_eq!(check("hi\n".into(), "stdin").unwrap(), "hi");
        assert_eq!(check("hi\r\n".into(), "stdin").unwrap(), "hi");
        assert_eq!(check("two\nlines\n\n".into(), "stdin").unwrap(), "two\nlines\n");
        assert_eq!(check("  indented".into(), "x").unwrap(), "  indented");
    }

    #[test]
    fn empty_and_oversized_bodies_are_refused_naming_the_source() {
        for empty in ["", "\n", "  \n\t"] {
            let e = check(empty.into(), "stdin").unwrap_err().to_string();
            assert_eq!(e, "stdin is empty; nothing was sent");
        }
        assert!(check("x".repeat(MAX_BODY_BYTES), "x").is_ok());
        let e = check("x".repeat(MAX_BODY_BYTES + 1), "--file a.txt").unwrap_err().to_string();
        assert!(e.starts_with("--file a.txt is 65537 bytes; a message holds at most 64 KiB"), "{e}");
    }
}
