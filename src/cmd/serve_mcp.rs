//! `claudemesh serve-mcp NAME [--mesh M] [--scope S] [--env K=V]… -- CMD ARGS…`: expose an MCP
//! server on this machine to a mesh. The agent runs it (argv, no shell), registers its tools,
//! answers the calls the broker forwards, restarts it if it dies and hosts it again after a
//! restart; this returns once it is registered. `--foreground` stays until Ctrl-C and stops
//! hosting it then; `--stop` stops hosting it.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, HostParams, HostReply};
use claudemesh_protocol::text;

use super::service_args::{parse_env, parse_scope};
use crate::cli::ServeMcpArgs;
use crate::out::outln;

pub async fn run(a: ServeMcpArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    if a.stop {
        let r: serde_json::Value =
            c.call(AgentCall::ServiceUnhost { name: a.name.clone(), mesh: a.mesh }).await?;
        if a.json {
            outln!("{}", serde_json::to_string(&r)?)?;
        } else {
            outln!("stopped hosting {}", text::name(&a.name))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let p = HostParams {
        mesh: a.mesh.clone(),
        name: a.name.clone(),
        command: a.argv.clone(),
        env: parse_env(&a.env)?,
        description: a.description.clone().unwrap_or_default(),
        scope: a.scope.as_deref().map(parse_scope).transpose()?,
    };
    let r: HostReply = c.request(AgentCall::ServiceHost(p)).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        let tools: Vec<String> = r.tools.iter().map(|t| text::name(&t.name)).collect();
        outln!(
            "hosting {} on {} ({} tools: {}); the agent keeps it running — stop it with `claudemesh serve-mcp {} --stop`",
            text::name(&r.name),
            text::name(&r.mesh),
            tools.len(),
            tools.join(", "),
            text::name(&r.name)
        )?;
    }
    if !a.foreground {
        return Ok(ExitCode::SUCCESS);
    }
    let _ = tokio::signal::ctrl_c().await;
    let _: serde_json::Value =
        c.call(AgentCall::ServiceUnhost { name: r.name.clone(), mesh: Some(r.mesh) }).await?;
    eprintln!("stopped hosting {}", text::name(&r.name));
    Ok(ExitCode::SUCCESS)
}
