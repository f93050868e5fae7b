//! `claudemesh schema NAME [TOOL]`: a service's tools, their descriptions and input schemas.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, SchemaReply};
use claudemesh_protocol::text;

use crate::cli::SchemaArgs;
use crate::out::outln;

pub async fn run(a: SchemaArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let r: SchemaReply =
        c.request(AgentCall::ServiceSchema { name: a.name, tool: a.tool, mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for t in &r.tools {
        outln!("{}", text::name(&t.name))?;
        if let Some(d) = &t.description {
            outln!("  {}", text::one_line(d))?;
        }
        let schema = serde_json::to_string_pretty(&t.input_schema)?;
        outln!("{}", text::indent(&text::terminal(&schema), "  "))?;
    }
    Ok(ExitCode::SUCCESS)
}
