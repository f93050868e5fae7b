//! `claudemesh install`: register claudemesh in Claude Code's user scope — the MCP server in
//! `~/.claude.json`, the hooks in `~/.claude/settings.json` — each file edited safely and idempotently.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::claude_hooks::{self, Action};
use crate::claude_settings;
use crate::out::outln;

/// Name of our entry under `mcpServers`.
pub const SERVER_NAME: &str = "claudemesh";

/// What one verb did to one file.
#[derive(Debug)]
pub struct FileChange {
    pub path: PathBuf,
    /// `added`, `replaced`, `unchanged`, `removed`, `absent`, or `updated` (hooks: a mix).
    pub action: &'static str,
    pub changed: bool,
    pub backup: Option<PathBuf>,
}

impl FileChange {
    pub fn to_json(&self) -> Value {
        json!({"path": self.path, "action": self.action, "backup": self.backup, "changed": self.changed})
    }
}

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let claude_json = claude_settings::claude_json()?;
    let settings = claude_settings::settings_json()?;
    let exe = claudemesh_agent::service_unit::running_exe()?;
    let exe_s = exe.to_str().with_context(|| {
        format!("the path of this program, {}, is not valid UTF-8; hooks cannot name it", exe.display())
    })?;
    // Refuse before changing anything, so a settings.json we cannot edit leaves both files as they were.
    check_settings(&settings)?;
    let entry = json!({"type": "stdio", "command": exe, "args": ["mcp"], "env": {}});
    let (mcp, old) = install_mcp(&claude_json, &entry)?;
    let (hooks, events) = install_hooks(&settings, exe_s)?;
    if json {
        outln!("{}", outcome_json(&mcp, &hooks, &events))?;
        return Ok(ExitCode::SUCCESS);
    }
    let path_s = mcp.path.display();
    match mcp.action {
        "unchanged" => {
            outln!("already installed: MCP server \"{SERVER_NAME}\" in {path_s} (nothing changed)")?
        }
        "replaced" => {
            let was = old.map(|o| o.to_string()).unwrap_or_default();
            outln!("replaced MCP server \"{SERVER_NAME}\" in {path_s}")?;
            outln!("  was: {was}")?;
            outln!("  now: {entry}")?;
        }
        _ => outln!("added MCP server \"{SERVER_NAME}\" to {path_s}: {entry}")?,
    }
    print_backup(&mcp)?;
    let path_s = hooks.path.display();
    let named =
        |want: Action| -> Vec<&str> { events.iter().filter(|(_, a)| *a == want).map(|(e, _)| *e).collect() };
    let (added, replaced, unchanged) =
        (named(Action::Added), named(Action::Replaced), named(Action::Unchanged));
    if !hooks.changed {
        outln!("already installed: hooks {} in {path_s} (nothing changed)", unchanged.join(", "))?;
    } else {
        if !added.is_empty() {
            outln!("added hooks {} to {path_s}", added.join(", "))?;
        }
        if !replaced.is_empty() {
            outln!("replaced hooks {} in {path_s} (an older or edited entry)", replaced.join(", "))?;
        }
        if !unchanged.is_empty() {
            outln!("hooks {} already in {path_s}", unchanged.join(", "))?;
        }
        outln!("  each runs: {}", claude_hooks::command(exe_s, "<Event>"))?;
    }
    print_backup(&hooks)?;
    if mcp.changed || hooks.changed {
        outln!("restart Claude Code sessions to pick it up")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Fails, naming the file, if `settings.json` exists but is not something we can edit. Reads only.
pub fn check_settings(path: &Path) -> anyhow::Result<()> {
    match claude_settings::read_object(path)? {
        Some(root) => claude_hooks::validate(&root).map_err(|e| claude_settings::malformed(path, &e)),
        None => Ok(()),
    }
}

/// Adds or refreshes our entry under `mcpServers`; also returns the entry it replaced.
fn install_mcp(path: &Path, entry: &Value) -> anyhow::Result<(FileChange, Option<Value>)> {
    let outcome = claude_settings::edit(path, |root| {
        let servers = root.entry("mcpServers").or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(servers) = servers else {
            anyhow::bail!("{}: \"mcpServers\" is not a JSON object; nothing was changed", path.display());
        };
        match servers.get(SERVER_NAME) {
            Some(old) if old == entry => Ok((false, ("unchanged", None))),
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
    let change =
        FileChange { path: path.to_owned(), action, changed: outcome.changed, backup: outcome.backup };
    Ok((change, old))
}

/// Makes `settings.json` hold exactly our hooks, creating `~/.claude/` (0700) if needed.
fn install_hooks(path: &Path, exe: &str) -> anyhow::Result<(FileChange, Vec<(&'static str, Action)>)> {
    if let Some(dir) = path.parent() {
        claude_settings::ensure_private_dir(dir)?;
    }
    edit_hooks(path, |root| claude_hooks::install(root, exe), "unchanged")
}

/// Applies `op` (install or uninstall of our hooks) to `settings.json` with the safe edit; `none`
/// names the outcome when no event changed.
pub fn edit_hooks(
    path: &Path,
    mut op: impl FnMut(&mut Map<String, Value>) -> Result<Vec<(&'static str, Action)>, String>,
    none: &'static str,
) -> anyhow::Result<(FileChange, Vec<(&'static str, Action)>)> {
    let outcome = claude_settings::edit(path, |root| {
        let events = op(root).map_err(|e| claude_settings::malformed(path, &e))?;
        let changed = events.iter().any(|(_, a)| !matches!(a, Action::Unchanged | Action::Absent));
        Ok((changed, events))
    })?;
    let change = FileChange {
        path: path.to_owned(),
        action: overall(&outcome.value, none),
        changed: outcome.changed,
        backup: outcome.backup,
    };
    Ok((change, outcome.value))
}

/// One word for what happened to all events: `none` if nothing changed, the common action, or `updated`.
pub fn overall(events: &[(&'static str, Action)], none: &'static str) -> &'static str {
    let mut acted =
        events.iter().map(|(_, a)| *a).filter(|a| !matches!(a, Action::Unchanged | Action::Absent));
    match acted.next() {
        None => none,
        Some(first) if acted.all(|a| a == first) => first.as_str(),
        Some(_) => "updated",
    }
}

/// `--json` output of install and uninstall: the MCP entry's change at the top level (as before
/// hooks existed), and both files' changes under `mcp` and `hooks`.
pub fn outcome_json(mcp: &FileChange, hooks: &FileChange, events: &[(&'static str, Action)]) -> Value {
    json!({
        "changed": mcp.changed || hooks.changed, "path": mcp.path, "backup": mcp.backup,
        "action": mcp.action, "mcp": mcp.to_json(), "hooks": hooks_json(hooks, events),
    })
}

/// The `hooks` part of `--json` output.
pub fn hooks_json(change: &FileChange, events: &[(&'static str, Action)]) -> Value {
    let mut v = change.to_json();
    if let Value::Object(o) = &mut v {
        o.insert(
            "events".into(),
            events.iter().map(|(e, a)| json!({"event": e, "action": a.as_str()})).collect(),
        );
    }
    v
}

/// Where the file as it was before claudemesh first changed it is kept, or that there was none.
pub fn print_backup(change: &FileChange) -> anyhow::Result<()> {
    if let Some(b) = &change.backup {
        outln!("  the file as it was before claudemesh first changed it: {}", b.display())?;
    } else if change.changed {
        outln!("  created {} (no previous file to back up)", change.path.display())?;
    }
    Ok(())
}
