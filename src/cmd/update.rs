//! `claudemesh update NAME`: fetch and restart a service (git: the new commit; npx/uvx: the
//! version resolved again), waiting until it runs again.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, DeployReply, UpdateParams};

use crate::cli::ServiceNameArgs;

pub async fn run(a: ServiceNameArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let p = UpdateParams { mesh: a.mesh, name: a.name, source: None, args: None, env: None };
    let r: DeployReply = c.request(AgentCall::ServiceUpdate(p)).await?;
    super::deploy::print(&r, a.json)
}
