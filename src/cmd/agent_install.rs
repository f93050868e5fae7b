//! `claudemesh agent install`: write and enable a systemd user unit (Linux) or launchd agent
//! (macOS) that keeps the agent running; explains the auto-start fallback where neither runs.

use std::process::ExitCode;

use crate::out::outln;
use claudemesh_agent::service_unit::{Platform, SystemRunner, install, plan_install, running_exe};

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    let plan = plan_install(Platform::current(), &home, &running_exe()?, &paths.dir, &paths.log());
    let report = install(&plan, &SystemRunner)?;
    if json {
        outln!(
            "{}",
            serde_json::json!({"unit": report.unit_path, "written": report.unit_written, "activated": report.activated, "note": report.note})
        )?;
    } else {
        outln!("wrote {}", report.unit_path.display())?;
        if report.activated {
            outln!("enabled and started: the agent now runs at login and restarts if it fails")?;
        }
        if !report.note.is_empty() {
            outln!("{}", report.note)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
