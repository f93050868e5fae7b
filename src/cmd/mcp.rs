//! `claudemesh mcp`: serve MCP over stdio for Claude Code until stdin closes (see `crate::mcp`).

use std::process::ExitCode;

/// Builds a runtime and serves stdio; stdout carries only MCP frames.
pub fn run() -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(crate::mcp::serve())?;
    // Do not wait for a stdin read blocked in a runtime thread.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(ExitCode::SUCCESS)
}
