//! `claudemesh tui`: the dashboard (the `claudemesh-tui` crate), over the agent it starts when
//! none runs; `claudemesh up` opens it too.

use std::process::ExitCode;

/// Runs the dashboard on a multi-threaded runtime (input, the agent subscription and calls
/// run beside the drawing loop).
pub fn run() -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(open())?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the dashboard until the person quits.
pub async fn open() -> anyhow::Result<()> {
    let opts = claudemesh_tui::Options { paths: super::paths(), exe: std::env::current_exe()? };
    claudemesh_tui::run(opts).await?;
    Ok(())
}
