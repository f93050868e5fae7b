//! `claudemesh mcp [--service NAME]`: serve MCP over stdio for Claude Code until stdin closes
//! (see `crate::mcp`), or until the one service served leaves.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::McpArgs;
use crate::mcp::ProxyArgs;

/// Builds a runtime and serves stdio; stdout carries only MCP frames. With `--service`, the
/// exit code is 0 when the service left (undeployed, access withdrawn) and 1 when it cannot be
/// served; the reason is on stderr.
pub fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.service {
        claudemesh_protocol::names::validate_service_name(name)
            .with_context(|| format!("--service {name:?} is not a service name"))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let code = match args.service {
        Some(service) => {
            let proxy = ProxyArgs { service, mesh: args.mesh, launch_pid: args.launch_pid };
            if rt.block_on(crate::mcp::serve_service(proxy))? { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        None => {
            if let Some(pid) = args.launch_pid {
                crate::mcp::debug(&format!("written by claudemesh launch pid {pid}"));
            }
            rt.block_on(crate::mcp::serve())?;
            ExitCode::SUCCESS
        }
    };
    // Do not wait for a stdin read blocked in a runtime thread.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(code)
}
