//! `claudemesh uninstall`: remove the MCP server entry that `claudemesh install` added to `~/.claude.json`.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::install::{HOOKS_NOTE, SERVER_NAME};
use crate::claude_settings;

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let path = claude_settings::claude_json()?;
    let missing = !path.exists();
    let outcome = if missing {
        None
    } else {
        Some(claude_settings::edit(&path, |root| match root.get_mut("mcpServers") {
            // `shift_remove` keeps the order of the other servers.
            Some(Value::Object(servers)) => Ok(match servers.shift_remove(SERVER_NAME) {
                Some(_) => (true, "removed"),
                None => (false, "absent"),
            }),
            _ => Ok((false, "absent")),
        })?)
    };
    let (changed, backup, action) = match outcome {
        Some(o) => (o.changed, o.backup, o.value),
        None => (false, None, "absent"),
    };
    if json {
        println!(
            "{}",
            json!({"changed": changed, "path": path, "backup": backup, "action": action, "hooks": "not installed"})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if changed {
        println!("removed MCP server \"{SERVER_NAME}\" from {}", path.display());
        if let Some(b) = &backup {
            println!("backup of the previous file: {}", b.display());
        }
    } else {
        println!("nothing to remove: no MCP server \"{SERVER_NAME}\" in {}", path.display());
    }
    println!("{HOOKS_NOTE}");
    Ok(ExitCode::SUCCESS)
}
