//! `claudemesh doctor`: each check with its result and the fix — config permissions, keys,
//! agent, broker links, `claude` on PATH, the MCP entry and hooks in Claude Code's settings —
//! and the one fix it makes itself: `mesh:*` entries of launches that ended are removed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

use claudemesh_agent::Config;
use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::local::{AgentCall, LinkState, MeshStatus, StatusReply};
use serde_json::{Value, json};

use crate::out::outln;
use crate::{claude_hooks, claude_settings, launch_entries};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Check {
    name: String,
    level: Level,
    detail: String,
    fix: String,
}

fn check(name: impl Into<String>, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), level, detail: detail.into(), fix: fix.into() }
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p).ok().map(|m| m.permissions().mode() & 0o777)
}

pub(super) fn on_path(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(cmd)).find(|p| p.is_file()))
}

/// Claude Code's JSON file at `path` as an object (None if there is none), or the failed check
/// `name` saying what is wrong with it: not readable, not valid JSON (where), not an object.
fn read_settings(name: &str, path: &Path) -> Result<Option<serde_json::Map<String, Value>>, Check> {
    let fix = "fix or move it, then `claudemesh install`";
    let bytes = match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(check(name, Level::Warn, format!("cannot read {}: {e}", path.display()), fix)),
        Ok(bytes) => bytes,
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(root)) => Ok(Some(root)),
        Ok(_) => Err(check(name, Level::Fail, format!("{} is not a JSON object", path.display()), fix)),
        Err(e) => {
            let what = claude_settings::invalid_json(&e);
            Err(check(name, Level::Fail, format!("{} {what}", path.display()), fix))
        }
    }
}

/// Whether `~/.claude.json` registers our MCP server.
fn mcp_check(claude_json: &Path) -> Check {
    let root = match read_settings("MCP entry", claude_json) {
        Ok(root) => root.unwrap_or_default(),
        Err(c) => return c,
    };
    if root.get("mcpServers").and_then(|s| s.get("claudemesh")).is_some_and(Value::is_object) {
        check("MCP entry", Level::Ok, format!("claudemesh in {}", claude_json.display()), "")
    } else {
        check(
            "MCP entry",
            Level::Warn,
            format!("no claudemesh server in {}", claude_json.display()),
            "`claudemesh install` (or: claude mcp add --scope user claudemesh -- claudemesh mcp)",
        )
    }
}

/// Removes the `mesh:*` entries `claudemesh launch` left in `~/.claude.json` when it could not
/// clean up (killed, machine crashed): their launch is gone, so Claude Code would start service
/// servers nobody launched. Says what it removed. A file it cannot read is [`mcp_check`]'s.
fn launch_entries_check(claude_json: &Path) -> Check {
    let name = "launch entries";
    if !claude_settings::read_object(claude_json).is_ok_and(|r| r.is_some()) {
        return check(name, Level::Ok, "none", "");
    }
    let swept = claude_settings::edit(claude_json, |root| {
        let swept = launch_entries::sweep(root, launch_entries::is_live_launch);
        Ok((!swept.is_empty(), swept))
    });
    match swept {
        Ok(o) if o.value.is_empty() => check(name, Level::Ok, "none of an ended launch", ""),
        Ok(o) => {
            let what: Vec<String> =
                o.value.iter().map(|(k, pid)| format!("{k} (launch pid {pid})")).collect();
            let detail = format!(
                "removed {} entries of launches that ended from {}: {}",
                what.len(),
                claude_json.display(),
                what.join(", ")
            );
            check(name, Level::Ok, detail, "")
        }
        Err(e) => check(
            name,
            Level::Warn,
            format!("cannot remove entries of ended launches: {e:#}"),
            "run `claudemesh doctor` again when no Claude Code session is starting",
        ),
    }
}

/// Which of our hooks `settings` holds (recognized as `claudemesh install` and `uninstall` do).
fn hooks_check(settings: &Path) -> Check {
    let fix = "`claudemesh install`";
    let root = match read_settings("hooks", settings) {
        Ok(root) => root.unwrap_or_default(),
        Err(c) => return c,
    };
    if let Err(e) = claude_hooks::validate(&root) {
        return check(
            "hooks",
            Level::Warn,
            format!("{} {e}", settings.display()),
            format!("fix it, then {fix}"),
        );
    }
    let missing = claude_hooks::missing(&root);
    let path = settings.display();
    if missing.is_empty() {
        let all = claude_hooks::EVENTS.join(", ");
        check("hooks", Level::Ok, format!("claudemesh hooks {all} in {path}"), "")
    } else if missing.len() == claude_hooks::EVENTS.len() {
        let detail = format!(
            "no claudemesh hooks in {path}: messages arrive only when the model calls check_messages"
        );
        check("hooks", Level::Warn, detail, fix)
    } else {
        check(
            "hooks",
            Level::Warn,
            format!("claudemesh hooks missing for {} in {path}", missing.join(", ")),
            fix,
        )
    }
}

/// What to do when the broker refused this member with `code` and the link keeps retrying.
fn refusal_fix(code: ErrorCode, slug: &str, url: &str) -> String {
    match code {
        ErrorCode::NotFound | ErrorCode::Unauthorized => format!(
            "the broker at {url} does not know mesh {slug} or this member's key as config.json has \
             them: check that broker_url points at the right broker and that its data was not reset \
             (ask its operator); the agent keeps retrying and reconnects once the broker knows you again"
        ),
        ErrorCode::BadSignature => format!(
            "the key in config.json for {slug} does not sign as the broker expects: check the file was \
             not edited by hand; the agent keeps retrying"
        ),
        _ => format!(
            "the broker at {url} is busy or at a limit; the agent keeps retrying on its own; if this \
             persists, ask the broker's operator to look at its log"
        ),
    }
}

/// One mesh's broker link from `status`: connected, removed, key in use elsewhere, retrying
/// after a refusal, or unreachable — each with its fix.
fn link_check(m: &MeshStatus) -> Check {
    let (slug, url) = (m.slug.as_str(), m.broker_url.as_str());
    let name = format!("broker link {slug}");
    let described =
        format!("{} {url} {}", super::word(&m.link), m.detail.as_deref().unwrap_or("")).trim().to_string();
    match m.link {
        LinkState::Connected => check(name, Level::Ok, described, ""),
        LinkState::Refused => check(
            name,
            Level::Fail,
            described,
            format!(
                "this member was removed from {slug}: `claudemesh leave {slug}` clears it from this \
                 machine; ask an admin for a new invite to come back"
            ),
        ),
        LinkState::KeyInUse => check(
            name,
            Level::Fail,
            described,
            format!(
                "another agent uses this member's key (a copied config dir?), and it started first: give \
                 this machine its own identity with `claudemesh leave {slug} --local-only` and a new \
                 invite (do not have the member removed: that would cut off the other machine too); or, \
                 if the other agent should not run, stop it and run `claudemesh agent stop` here"
            ),
        ),
        LinkState::Connecting | LinkState::Disconnected => match m.refusal.as_ref().map(|r| r.code) {
            Some(code) => check(
                name,
                Level::Fail,
                format!("{described} (retrying after the broker's refusal: {})", code.as_str()),
                refusal_fix(code, slug, url),
            ),
            None => check(
                name,
                Level::Fail,
                described,
                format!(
                    "is the broker at {url} up? try `curl {}`; the agent keeps retrying",
                    url.replace("wss://", "https://").replace("ws://", "http://").replace("/ws", "/health")
                ),
            ),
        },
    }
}

pub async fn run(json_out: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let mut checks = Vec::new();

    match (mode(&paths.dir), mode(&paths.config())) {
        (Some(0o700), Some(0o600)) => checks.push(check(
            "config permissions",
            Level::Ok,
            format!("{} is 0700, config.json 0600", paths.dir.display()),
            "",
        )),
        (None, _) | (_, None) => checks.push(check(
            "config permissions",
            Level::Warn,
            "no config yet",
            "`claudemesh join <invite>`",
        )),
        (d, c) => checks.push(check(
            "config permissions",
            Level::Fail,
            format!(
                "dir {:o}, config.json {:o}: other users may read your keys",
                d.unwrap_or(0),
                c.unwrap_or(0)
            ),
            format!("chmod 700 {} && chmod 600 {}", paths.dir.display(), paths.config().display()),
        )),
    }

    let config = Config::load(&paths);
    match &config {
        Err(e) => checks.push(check(
            "config",
            Level::Fail,
            e.to_string(),
            "fix or move config.json aside, then join again",
        )),
        Ok(c) if c.meshes.is_empty() => {
            checks.push(check("meshes", Level::Warn, "no mesh joined", "`claudemesh join <invite>`"))
        }
        Ok(c) => {
            for m in &c.meshes {
                match m.keypair() {
                    Ok(_) => {
                        checks.push(check(format!("key for {}", m.slug), Level::Ok, "valid ed25519 key", ""))
                    }
                    Err(e) => checks.push(check(
                        format!("key for {}", m.slug),
                        Level::Fail,
                        e.to_string(),
                        format!(
                            "restore config.json from a backup; else this identity is lost: `claudemesh \
                             leave {} --yes --local-only` (an unusable key cannot tell the broker), then \
                             join with a new invite",
                            m.slug
                        ),
                    )),
                }
            }
        }
    }

    match super::agent().await {
        Err(e) => checks.push(check(
            "agent",
            Level::Fail,
            format!("{e:#}"),
            format!("read {}", paths.log().display()),
        )),
        Ok(mut c) => {
            let st: StatusReply = c.request(AgentCall::Status).await?;
            checks.push(check(
                "agent",
                Level::Ok,
                format!("running, pid {}, version {}", st.pid, st.agent_version),
                "",
            ));
            checks.extend(st.meshes.iter().map(link_check));
        }
    }

    match on_path("claude") {
        Some(p) => checks.push(check("claude on PATH", Level::Ok, p.display().to_string(), "")),
        None => checks.push(check(
            "claude on PATH",
            Level::Warn,
            "not found",
            "npm install -g @anthropic-ai/claude-code",
        )),
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    checks.push(mcp_check(&home.join(".claude.json")));
    checks.push(launch_entries_check(&home.join(".claude.json")));
    checks.push(hooks_check(&home.join(".claude").join("settings.json")));

    let failed = checks.iter().any(|c| c.level == Level::Fail);
    if json_out {
        let v: Vec<Value> = checks
            .iter()
            .map(|c| json!({"check": c.name, "status": match c.level { Level::Ok => "ok", Level::Warn => "warn", Level::Fail => "fail" }, "detail": c.detail, "fix": c.fix}))
            .collect();
        crate::out::json(&v)?;
    } else {
        for c in &checks {
            let tag = match c.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            outln!("[{tag}] {}: {}", c.name, c.detail)?;
            if !c.fix.is_empty() && c.level != Level::Ok {
                outln!("       fix: {}", c.fix)?;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
