//! `claudemesh install`: register claudemesh's MCP server in `~/.claude.json` (Claude Code user scope).

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use crate::claude_settings;

/// Name of our entry under `mcpServers`.
pub const SERVER_NAME: &str = "claudemesh";

/// The note printed by both verbs until the `claudemesh hook` verb exists.
pub const HOOKS_NOTE: &str = "hooks: not installed by this version";

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let path = claude_settings::claude_json()?;
    let exe = claudemesh_agent::service_unit::running_exe()?;
    let entry = json!({"type": "stdio", "command": exe, "args": ["mcp"], "env": {}});
    let outcome = claude_settings::edit(&path, |root| {
        let servers = root.entry("mcpServers").or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(servers) = servers else {
            anyhow::bail!("{}: \"mcpServers\" is not a JSON object; nothing was changed", path.display());
        };
        match servers.get(SERVER_NAME) {
            Some(old) if *old == entry => Ok((false, ("unchanged", None))),
            Some(old) => {
                let old = old.clone();
                servers.insert(SERVER_NAME.to_owned(), entry.clone());
                Ok((true, ("replaced", Some(old))))
            }
            None => {
                servers.insert(SERVER_NAME.to_owned(), entry.clone());
                Ok((true, ("added", None)))
            }
        }
    })?;
    let (action, old) = outcome.value;
    if json {
        println!(
            "{}",
            json!({"changed": outcome.changed, "path": path, "backup": outcome.backup, "action": action, "hooks": "not installed"})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let path_s = path.display();
    match action {
        "unchanged" => {
            println!("already installed: MCP server \"{SERVER_NAME}\" in {path_s} (nothing changed)")
        }
        "replaced" => {
            let was = old.map(|o| o.to_string()).unwrap_or_default();
            println!("replaced MCP server \"{SERVER_NAME}\" in {path_s}");
            println!("  was: {was}");
            println!("  now: {entry}");
        }
        _ => println!("added MCP server \"{SERVER_NAME}\" to {path_s}: {entry}"),
    }
    if let Some(b) = &outcome.backup {
        println!("backup of the previous file: {}", b.display());
    } else if outcome.changed {
        println!("created {path_s} (no previous file to back up)");
    }
    if outcome.changed {
        println!("restart Claude Code sessions to pick it up");
    }
    println!("{HOOKS_NOTE}");
    Ok(ExitCode::SUCCESS)
}
