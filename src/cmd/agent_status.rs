//! `claudemesh agent status`: the agent and, per mesh, its broker link, sessions, inbox and
//! outbox. Does not start an agent.

use std::process::ExitCode;

use claudemesh_agent::{AgentClient, ClientError};
use claudemesh_protocol::local::AgentCall;

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let mut c = match AgentClient::connect(&paths, "cli").await {
        Ok(c) => c,
        Err(ClientError::NotRunning(_)) => {
            if json {
                println!("{}", serde_json::json!({ "running": false }));
            } else {
                println!(
                    "agent: not running (any claudemesh command starts it; or `claudemesh agent start`)"
                );
            }
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    let st = c.call(AgentCall::Status).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "agent: running (pid {}, version {}, up {}s), {} local session(s)",
        st["pid"],
        st["agent_version"].as_str().unwrap_or("?"),
        st["uptime_secs"],
        st["sessions"]
    );
    for s in st["local_sessions"].as_array().into_iter().flatten() {
        let waiting = if s["stop_hook_waiting"] == true { "; Stop hook waiting to wake it" } else { "" };
        let pid = s["claude_pid"].as_u64().map(|p| format!(", claude pid {p}")).unwrap_or_default();
        println!(
            "  session {} ({}): {}{pid}{waiting}",
            s["display_name"].as_str().unwrap_or("?"),
            s["session_id"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
        );
    }
    let meshes = st["meshes"].as_array().cloned().unwrap_or_default();
    if meshes.is_empty() {
        println!("no mesh joined yet: `claudemesh join <invite>`");
    }
    for m in meshes {
        let detail = m["detail"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
        let link = m["link"].as_str().unwrap_or("?");
        // Whether it keeps trying on its own: everything but a removal or a key in use does.
        let retry = match (m["retrying"].as_bool(), m["retry_in_secs"].as_u64()) {
            (Some(true), Some(n)) if link != "connected" => format!(" [retrying, next in {n}s]"),
            (Some(true), _) if link != "connected" => " [retrying]".to_string(),
            (Some(false), _) if link != "connected" => " [not retrying]".to_string(),
            _ => String::new(),
        };
        println!(
            "  {:<16} {:<12}{}{} {}\n    sessions {}  peers {}  inbox {} ({} unread)  outbox {}",
            m["slug"].as_str().unwrap_or("?"),
            link,
            retry,
            detail,
            m["broker_url"].as_str().unwrap_or("?"),
            m["sessions"],
            m["peers"],
            m["inbox"],
            m["unread"],
            m["outbox"]
        );
    }
    Ok(ExitCode::SUCCESS)
}
