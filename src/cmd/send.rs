//! `claudemesh send <to> <message>`: hand a message to the agent, which encrypts and delivers it.

use std::process::ExitCode;

use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::{AgentCall, SendParams};

use crate::cli::SendArgs;
use crate::out::outln;

pub async fn run(a: SendArgs) -> anyhow::Result<ExitCode> {
    let priority = match a.priority.as_str() {
        "now" => Priority::Now,
        "low" => Priority::Low,
        _ => Priority::Next,
    };
    let mut c = super::agent().await?;
    let r = c
        .call(AgentCall::Send(SendParams {
            to: a.to,
            message: a.message,
            priority,
            mesh: a.mesh,
            from_session: None,
            reply_to: None,
        }))
        .await?;
    if a.json {
        outln!("{r}")?;
    } else {
        outln!(
            "queued {} for {} in {} ({} recipient member(s)); `claudemesh` delivers it even if the broker is down now",
            r["id"].as_str().unwrap_or("?"),
            r["target"].as_str().unwrap_or("?"),
            r["mesh"].as_str().unwrap_or("?"),
            r["recipients"]
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
