//! `claudemesh scope NAME [SCOPE]`: show who may use a service, or set it (its deployer or an
//! admin): peer, mesh, group:NAME, groups:a,b, role:admin|member, members:alice,bob, or JSON.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, ScopeReply};
use claudemesh_protocol::text;

use super::service_args::parse_scope;
use crate::cli::ScopeArgs;
use crate::out::outln;

pub async fn run(a: ScopeArgs) -> anyhow::Result<ExitCode> {
    let scope = a.scope.as_deref().map(parse_scope).transpose()?;
    let set = scope.is_some();
    let mut c = super::agent().await?;
    let r: ScopeReply = c.request(AgentCall::ServiceScope { name: a.name, scope, mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        let verb = if set { "is now" } else { "is" };
        outln!(
            "{} on {}: scope {verb} {}",
            text::name(&r.name),
            text::name(&r.mesh),
            text::terminal(&r.scope.to_string())
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
