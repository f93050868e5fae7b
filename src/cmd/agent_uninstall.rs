//! `claudemesh agent uninstall`: stop and remove exactly the unit `agent install` wrote.

use std::process::ExitCode;

use crate::out::outln;
use claudemesh_agent::service_unit::{Platform, SystemRunner, plan_uninstall, uninstall};

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    let report = uninstall(&plan_uninstall(Platform::current(), &home), &SystemRunner)?;
    if json {
        outln!(
            "{}",
            serde_json::json!({"unit": report.unit_path, "removed": report.removed, "deactivated": report.deactivated, "note": report.note})
        )?;
    } else {
        if report.removed {
            outln!("removed {}", report.unit_path.display())?;
        } else {
            outln!("nothing to remove: {} does not exist", report.unit_path.display())?;
        }
        if !report.note.is_empty() {
            outln!("{}", report.note)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
