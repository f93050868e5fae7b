//! `claudemesh undeploy NAME`: stop and remove a deployed service (its deployer or an admin).

use std::process::ExitCode;

use claudemesh_protocol::local::AgentCall;
use claudemesh_protocol::text;

use crate::cli::ServiceNameArgs;
use crate::out::outln;

pub async fn run(a: ServiceNameArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let r: serde_json::Value =
        c.call(AgentCall::ServiceUndeploy { name: a.name.clone(), mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        let mesh = r.get("mesh").and_then(serde_json::Value::as_str).unwrap_or("");
        outln!("undeployed {} from {}", text::name(&a.name), text::name(mesh))?;
    }
    Ok(ExitCode::SUCCESS)
}
