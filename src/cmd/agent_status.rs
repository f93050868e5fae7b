//! `claudemesh agent status`: the agent and, per mesh, its broker link, sessions, inbox and
//! outbox; per local session its status, groups and unseen messages. Does not start an agent.

use std::process::ExitCode;

use crate::out::outln;
use claudemesh_agent::{AgentClient, ClientError};
use claudemesh_protocol::local::{
    AgentCall, LinkState, LocalBrokerStatus, LocalSessionStatus, MeshStatus, StatusReply,
};
use claudemesh_protocol::text;

use super::word;

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
    let st: StatusReply = c.request(AgentCall::Status).await?;
    if json {
        crate::out::json(&st)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "agent: running (pid {}, version {}, up {}s), {} local session(s)",
        st.pid,
        st.agent_version,
        st.uptime_secs,
        st.sessions
    )?;
    for s in &st.local_sessions {
        outln!("{}", session_line(s))?;
    }
    if st.meshes.is_empty() {
        outln!("no mesh joined yet: `claudemesh join <invite>`")?;
    }
    for m in &st.meshes {
        outln!("{}", mesh_lines(m))?;
    }
    print_local_broker(&paths, st.local_broker.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

/// One local session: name, id, status, then what is worth knowing about it — messages it has
/// not seen, its groups, its `claude` process, a Stop hook keeping it awake.
fn session_line(s: &LocalSessionStatus) -> String {
    let unseen = if s.unseen > 0 { format!(", {} unseen", s.unseen) } else { String::new() };
    let groups = if s.groups.is_empty() {
        String::new()
    } else {
        format!(", groups {}", s.groups.iter().map(|g| format!("@{g}")).collect::<Vec<_>>().join(" "))
    };
    let pid = s.claude_pid.map(|p| format!(", claude pid {p}")).unwrap_or_default();
    let waiting = if s.stop_hook_waiting { "; Stop hook waiting to wake it" } else { "" };
    format!(
        "  session {} ({}): {}{unseen}{groups}{pid}{waiting}",
        text::name(&s.display_name),
        text::name(&s.session_id),
        word(&s.status)
    )
}

/// One mesh: its link (and whether it keeps trying on its own), then its counts.
fn mesh_lines(m: &MeshStatus) -> String {
    // The detail can quote the broker's words: one line, like every name here.
    let detail = m.detail.as_deref().map(|d| format!(" ({})", text::one_line(d))).unwrap_or_default();
    // Whether it keeps trying on its own: everything but a removal or a key in use does.
    let retry = match (m.link, m.retrying, m.retry_in_secs) {
        (LinkState::Connected, ..) => String::new(),
        (_, true, Some(n)) => format!(" [retrying, next in {n}s]"),
        (_, true, None) => " [retrying]".to_string(),
        (_, false, _) => " [not retrying]".to_string(),
    };
    let warnings: String =
        m.trust_warnings.iter().map(|w| format!("\n    ! {}", text::one_line(w))).collect();
    format!(
        "  {:<16} {:<12}{}{} {}\n    you are {} ({})  sessions {}  peers {}  inbox {} ({} unread)  outbox {}{}",
        m.slug,
        word(&m.link),
        retry,
        detail,
        m.broker_url,
        text::name(&m.display_name),
        m.role.as_str(),
        m.sessions,
        m.peers,
        m.inbox,
        m.unread,
        m.outbox,
        warnings
    )
}

/// The broker `claudemesh up` runs on this machine, if it configured one.
fn print_local_broker(paths: &claudemesh_agent::Paths, b: Option<&LocalBrokerStatus>) -> anyhow::Result<()> {
    let configured = claudemesh_agent::Config::load(paths).ok().and_then(|c| c.local_broker);
    let Some(cfg) = configured else { return Ok(()) };
    if !cfg.enabled {
        outln!("  broker on this machine: stopped by `claudemesh down`; `claudemesh up` starts it")?;
        return Ok(());
    }
    let state = b.map_or("starting", |b| b.state.as_str());
    let pid = b.and_then(|b| b.pid).map(|p| format!(", pid {p}")).unwrap_or_default();
    let restarts =
        b.map(|b| b.restarts).filter(|n| *n > 0).map(|n| format!(", {n} restart(s)")).unwrap_or_default();
    let last =
        b.and_then(|b| b.last_exit.as_deref()).map(|e| format!("; last exit: {e}")).unwrap_or_default();
    let public = cfg.public_url.as_deref().map(|u| format!(", public URL {u}")).unwrap_or_default();
    outln!(
        "  broker on this machine: {state} on {}{public}{pid}{restarts}{last} (log {})",
        cfg.listen,
        claudemesh_agent::local_broker::log_path(paths).display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_shows_its_unseen_messages_and_groups() {
        let s = LocalSessionStatus {
            session_id: "s1".into(),
            display_name: "api".into(),
            groups: vec!["backend".into(), "ops".into()],
            unseen: 2,
            claude_pid: Some(42),
            ..Default::default()
        };
        assert_eq!(
            session_line(&s),
            "  session api (s1): idle, 2 unseen, groups @backend @ops, claude pid 42"
        );
        let quiet =
            LocalSessionStatus { session_id: "s2".into(), display_name: "web".into(), ..Default::default() };
        assert_eq!(session_line(&quiet), "  session web (s2): idle");
    }

    #[test]
    fn a_link_says_whether_it_retries() {
        let mut m = MeshStatus {
            slug: "team".into(),
            link: LinkState::Disconnected,
            retrying: true,
            ..Default::default()
        };
        m.retry_in_secs = Some(4);
        assert!(mesh_lines(&m).contains("disconnected [retrying, next in 4s]"), "{}", mesh_lines(&m));
        m.link = LinkState::Refused;
        m.retrying = false;
        assert!(mesh_lines(&m).contains("refused      [not retrying]"), "{}", mesh_lines(&m));
        m.link = LinkState::Connected;
        assert!(!mesh_lines(&m).contains("retrying"), "{}", mesh_lines(&m));
    }
}
