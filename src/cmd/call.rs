//! `claudemesh call SERVICE TOOL [--arg k=v]… [--json-args '{…}']`: call a service's tool and
//! print the text of its result (the whole MCP result with `--json`). A result marked
//! `isError` goes to stderr with exit 1.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, CallParams, CallReply};
use claudemesh_protocol::text;

use super::service_args::{call_arguments, result_text};
use crate::cli::CallArgs;
use crate::out::outln;

pub async fn run(a: CallArgs) -> anyhow::Result<ExitCode> {
    let arguments = call_arguments(a.json_args.as_deref(), &a.args)?;
    let p =
        CallParams { mesh: a.mesh, service: a.service, tool: a.tool, arguments, timeout_ms: a.timeout_ms };
    let mut c = super::agent().await?;
    let r: CallReply = c.request(AgentCall::ServiceCall(p)).await?;
    let (parts, is_error) = result_text(&r.result);
    if a.json {
        outln!("{}", serde_json::to_string(&r.result)?)?;
    } else if is_error {
        eprintln!("error: {}.{} returned an error:", text::name(&r.service), text::name(&r.tool));
        for p in &parts {
            eprintln!("{}", text::terminal(p));
        }
    } else {
        for p in &parts {
            outln!("{}", text::terminal(p))?;
        }
    }
    Ok(if is_error { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
