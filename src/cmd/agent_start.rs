//! `claudemesh agent start`: start the agent in the background, or report the running one. An
//! agent of another release is stopped and started again from this one.

use std::process::ExitCode;

use crate::out::outln;
use claudemesh_agent::{AgentClient, ClientError, connect_or_start};
use claudemesh_protocol::local::{AgentCall, StatusReply};

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let was_running = match AgentClient::connect(&paths, "cli").await {
        Ok(_) => true,
        Err(ClientError::NotRunning(_)) => false,
        Err(ClientError::VersionMismatch { agent, agent_protocol, ours, ours_protocol }) => {
            // On stderr, also with --json: a note for the person, not part of the answer.
            eprintln!("{}", mismatch_note(&agent, agent_protocol, &ours, ours_protocol));
            false
        }
        Err(e) => return Err(e.into()),
    };
    let exe = std::env::current_exe()?;
    let mut c = connect_or_start(&paths, "cli", &exe).await?;
    let st: StatusReply = c.request(AgentCall::Status).await?;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "already_running": was_running, "pid": st.pid, "log": paths.log() })
        )?;
    } else if was_running {
        outln!("agent already running (pid {}), config {}", st.pid, paths.dir.display())?;
    } else {
        outln!("agent started (pid {}); log: {}", st.pid, paths.log().display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a running agent is restarted: its release, and its protocol when that differs too.
fn mismatch_note(agent: &str, agent_protocol: u32, ours: &str, ours_protocol: u32) -> String {
    if agent_protocol == ours_protocol {
        format!("the agent is version {agent}, this client {ours}; restarting it")
    } else {
        format!(
            "the agent is version {agent} (protocol {agent_protocol}), this client {ours} (protocol \
             {ours_protocol}); restarting it"
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mismatch_names_both_versions() {
        assert_eq!(
            super::mismatch_note("0.3.0", 4, "0.4.0", 4),
            "the agent is version 0.3.0, this client 0.4.0; restarting it"
        );
        assert_eq!(
            super::mismatch_note("0.3.0", 3, "0.4.0", 4),
            "the agent is version 0.3.0 (protocol 3), this client 0.4.0 (protocol 4); restarting it"
        );
    }
}
