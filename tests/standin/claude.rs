//! A stand-in for Claude Code's `claude`, for the launch tests only (tests/launch.rs puts it on
//! PATH as `claude`). It appends JSON lines to `$STANDIN_RECORD`: at start its argv, pid and
//! parent, the environment launch is expected to set (`MCP_TIMEOUT`, `MAX_MCP_OUTPUT_TOKENS`,
//! `CLAUDEMESH_*`), `~/.claude.json` as it finds it, and the terminal size (`stty size`, null
//! without a terminal); in `wait` mode also each resize it is told of (SIGWINCH). Then, as
//! `$STANDIN_MODE` says: `exit:N` exits with N (the default is 0), `segv` and `kill` crash it
//! with that signal, `wait` runs until a signal ends it — SIGUSR1 first leaves the terminal raw
//! without echo and then crashes (SIGSEGV), as a crashing Claude Code would; SIGUSR2 makes it
//! stop itself (SIGTSTP), as Claude Code does on its own Ctrl-Z in raw mode, and record `cont`
//! once it is continued.

use std::io::Write;

use anyhow::Context;
use nix::sys::signal::{Signal, raise};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

/// Appends one record to `$STANDIN_RECORD` (nothing when it is unset).
fn record(v: &Value) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os("STANDIN_RECORD") else { return Ok(()) };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).context("record file")?;
    writeln!(f, "{v}")?;
    Ok(())
}

/// `rows cols` of the terminal on stdin, from `stty size` (argv, stdin inherited).
fn size() -> Option<String> {
    let out =
        std::process::Command::new("stty").arg("size").stdin(std::process::Stdio::inherit()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `~/.claude.json` as it is now (null if missing or not JSON).
fn claude_json() -> Value {
    let home = std::env::var_os("HOME").unwrap_or_default();
    std::fs::read(std::path::Path::new(&home).join(".claude.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Dies of SIGSEGV. Rust's runtime catches the first one (its stack-overflow guard), finds no
/// guard page hit, and puts the default action back: the second one kills.
fn segv() -> anyhow::Result<()> {
    raise(Signal::SIGSEGV)?;
    raise(Signal::SIGSEGV)?;
    anyhow::bail!("still alive after SIGSEGV")
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mode = std::env::var("STANDIN_MODE").unwrap_or_else(|_| "exit:0".into());
    // Handlers first, so that a test that saw the start record may signal at once.
    let mut winch = signal(SignalKind::window_change())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let env: serde_json::Map<String, Value> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CLAUDEMESH_") || k == "MCP_TIMEOUT" || k == "MAX_MCP_OUTPUT_TOKENS")
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    record(&json!({
        "event": "start",
        "pid": std::process::id(),
        "ppid": std::os::unix::process::parent_id(),
        "argv": std::env::args().skip(1).collect::<Vec<_>>(),
        "env": env,
        "claude_json": claude_json(),
        "size": size(),
    }))?;
    match mode.as_str() {
        "segv" => segv()?,
        "kill" => raise(Signal::SIGKILL)?,
        "wait" => loop {
            tokio::select! {
                _ = winch.recv() => record(&json!({"event": "winch", "size": size()}))?,
                _ = usr1.recv() => {
                    let raw = std::process::Command::new("stty").args(["raw", "-echo"]).status()?;
                    record(&json!({"event": "raw", "ok": raw.success()}))?;
                    segv()?;
                }
                _ = usr2.recv() => {
                    raise(Signal::SIGTSTP)?;
                    record(&json!({"event": "cont"}))?;
                }
            }
        },
        m => {
            let code: i32 = m.strip_prefix("exit:").unwrap_or("0").parse().context("STANDIN_MODE exit:N")?;
            std::process::exit(code);
        }
    }
    Ok(())
}
