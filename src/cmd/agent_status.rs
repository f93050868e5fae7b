//! `claudemesh agent status`: the agent and, per mesh, its broker link, sessions, inbox and
//! outbox. Does not start an agent.

use std::process::ExitCode;

use crate::out::outln;
use claudemesh_agent::{AgentClient, ClientError};
use claudemesh_protocol::local::AgentCall;

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let mut c = match AgentClient::connect(&paths, "cli").await {
        Ok(c) => c,
        Err(ClientError::NotRunning(_)) => {
            if json {
                outln!("{}", serde_json::json!({ "running": false }))?;
            } else {
                outln!("agent: not running (any claudemesh command starts it; or `claudemesh agent start`)")?;
            }
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    let st = c.call(AgentCall::Status).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&st)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "agent: running (pid {}, version {}, up {}s), {} local session(s)",
        st["pid"],
        st["agent_version"].as_str().unwrap_or("?"),
        st["uptime_secs"],
        st["sessions"]
    )?;
    for s in st["local_sessions"].as_array().into_iter().flatten() {
        let waiting = if s["stop_hook_waiting"] == true { "; Stop hook waiting to wake it" } else { "" };
        let pid = s["claude_pid"].as_u64().map(|p| format!(", claude pid {p}")).unwrap_or_default();
        outln!(
            "  session {} ({}): {}{pid}{waiting}",
            s["display_name"].as_str().unwrap_or("?"),
            s["session_id"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
        )?;
    }
    let meshes = st["meshes"].as_array().cloned().unwrap_or_default();
    if meshes.is_empty() {
        outln!("no mesh joined yet: `claudemesh join <invite>`")?;
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
        outln!(
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
        )?;
    }
    print_local_broker(&paths, &st["local_broker"])?;
    Ok(ExitCode::SUCCESS)
}

/// The broker `claudemesh up` runs on this machine, if it configured one.
fn print_local_broker(paths: &claudemesh_agent::Paths, b: &serde_json::Value) -> anyhow::Result<()> {
    let configured = claudemesh_agent::Config::load(paths).ok().and_then(|c| c.local_broker);
    let Some(cfg) = configured else { return Ok(()) };
    if !cfg.enabled {
        outln!("  broker on this machine: stopped by `claudemesh down`; `claudemesh up` starts it")?;
        return Ok(());
    }
    let state = b["state"].as_str().unwrap_or("starting");
    let pid = b["pid"].as_u64().map(|p| format!(", pid {p}")).unwrap_or_default();
    let restarts =
        b["restarts"].as_u64().filter(|n| *n > 0).map(|n| format!(", {n} restart(s)")).unwrap_or_default();
    let last = b["last_exit"].as_str().map(|e| format!("; last exit: {e}")).unwrap_or_default();
    let public = cfg.public_url.as_deref().map(|u| format!(", public URL {u}")).unwrap_or_default();
    outln!(
        "  broker on this machine: {state} on {}{public}{pid}{restarts}{last} (log {})",
        cfg.listen,
        claudemesh_agent::local_broker::log_path(paths).display()
    )?;
    Ok(())
}
