//! `claudemesh uninstall`: remove exactly what `claudemesh install` added — the MCP server entry in
//! `~/.claude.json` and our hooks in `~/.claude/settings.json` — leaving everything else as it was.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::install::{FileChange, SERVER_NAME, check_settings, edit_hooks, outcome_json, print_backup};
use crate::claude_hooks::{self, Action};
use crate::claude_settings;
use crate::out::outln;

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let claude_json = claude_settings::claude_json()?;
    let settings = claude_settings::settings_json()?;
    // Refuse before changing anything, so a settings.json we cannot edit leaves both files as they were.
    check_settings(&settings)?;
    let mcp = uninstall_mcp(&claude_json)?;
    let (hooks, events) = uninstall_hooks(&settings)?;
    if json {
        outln!("{}", outcome_json(&mcp, &hooks, &events))?;
        return Ok(ExitCode::SUCCESS);
    }
    if mcp.changed {
        outln!("removed MCP server \"{SERVER_NAME}\" from {}", mcp.path.display())?;
    } else {
        outln!("nothing to remove: no MCP server \"{SERVER_NAME}\" in {}", mcp.path.display())?;
    }
    print_backup(&mcp)?;
    let removed: Vec<&str> = events.iter().filter(|(_, a)| *a == Action::Removed).map(|(e, _)| *e).collect();
    if hooks.changed {
        outln!("removed hooks {} from {}", removed.join(", "), hooks.path.display())?;
    } else {
        outln!("nothing to remove: no claudemesh hooks in {}", hooks.path.display())?;
    }
    print_backup(&hooks)?;
    if mcp.changed || hooks.changed {
        outln!("restart Claude Code sessions to drop them")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes our entry under `mcpServers`; a missing file is left missing.
fn uninstall_mcp(path: &Path) -> anyhow::Result<FileChange> {
    if !path.exists() {
        return Ok(FileChange { path: path.to_owned(), action: "absent", changed: false, backup: None });
    }
    let outcome = claude_settings::edit(path, |root| match root.get_mut("mcpServers") {
        // `shift_remove` keeps the order of the other servers.
        Some(Value::Object(servers)) => Ok(match servers.shift_remove(SERVER_NAME) {
            Some(_) => (true, "removed"),
            None => (false, "absent"),
        }),
        _ => Ok((false, "absent")),
    })?;
    Ok(FileChange {
        path: path.to_owned(),
        action: outcome.value,
        changed: outcome.changed,
        backup: outcome.backup,
    })
}

/// Removes our hooks from `settings.json`; a missing file is left missing.
fn uninstall_hooks(path: &Path) -> anyhow::Result<(FileChange, Vec<(&'static str, Action)>)> {
    if !path.exists() {
        let events = claude_hooks::EVENTS.into_iter().map(|e| (e, Action::Absent)).collect();
        return Ok((
            FileChange { path: path.to_owned(), action: "absent", changed: false, backup: None },
            events,
        ));
    }
    edit_hooks(path, claude_hooks::uninstall, "absent")
}
