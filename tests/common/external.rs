//! Real clients that are not written in Rust, for the tests that use them: Claude Code's CLI
//! (npm `@anthropic-ai/claude-code`) and a Python with the official MCP SDK (PyPI `mcp`), as
//! `.ci/install-external-clients` installs them under `.ci/tools/`, or from
//! `CLAUDEMESH_TEST_CLAUDE` / `CLAUDEMESH_TEST_PYTHON`, or on PATH. With
//! `CLAUDEMESH_EXTERNAL_CLIENTS=required` (set by `.ci/run`) a missing tool fails the test;
//! otherwise the test says why it is skipped and passes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

/// Whether a missing tool fails the test (CI) or skips it (a developer's machine).
pub fn required() -> bool {
    std::env::var("CLAUDEMESH_EXTERNAL_CLIENTS").is_ok_and(|v| v == "required")
}

/// The tool, or `None` after saying why the test is skipped; panics instead when required.
pub fn tool_or_skip(test: &str, found: Result<PathBuf, String>) -> Option<PathBuf> {
    match found {
        Ok(p) => Some(p),
        Err(why) if required() => panic!(
            "{test}: {why}. CLAUDEMESH_EXTERNAL_CLIENTS=required, so this is a failure: run \
             `bash .ci/install-external-clients` (what .ci/run does) or set the path"
        ),
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: {why}. Run `bash .ci/install-external-clients` to test against it; \
                 CI sets CLAUDEMESH_EXTERNAL_CLIENTS=required so that it never skips."
            );
            None
        }
    }
}

/// `env_var` if set, else `.ci/tools/<rel>` if present, else `name` on PATH.
pub fn locate(env_var: &str, rel: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("{env_var}={} is not a file", p.display())) };
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/tools").join(rel);
    if local.is_file() {
        return Ok(local);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        format!("no {name}: {env_var} is unset, {} does not exist, and PATH has none", local.display())
    })
}

/// Runs `cmd` (argv, no shell) with stdin closed; kills it and fails clearly after `limit`.
pub async fn run(what: &str, cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => panic!("{what}: no exit within {limit:?} (killed)"),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The claude CLI, checked to run.
pub async fn claude(test: &str) -> Option<PathBuf> {
    let found = match locate("CLAUDEMESH_TEST_CLAUDE", "npm/node_modules/.bin/claude", "claude") {
        Ok(p) => {
            let out = run(
                "claude --version",
                tokio::process::Command::new(&p).arg("--version"),
                Duration::from_secs(60),
            )
            .await;
            if out.status.success() {
                eprintln!("{test}: using {} ({})", p.display(), stdout(&out).trim());
                Ok(p)
            } else {
                Err(format!("{} --version failed: {}", p.display(), stderr(&out)))
            }
        }
        Err(e) => Err(e),
    };
    tool_or_skip(test, found)
}

/// A Python that can import the MCP SDK.
pub async fn python_with_mcp(test: &str) -> Option<PathBuf> {
    let found = match locate("CLAUDEMESH_TEST_PYTHON", "venv/bin/python", "python3") {
        Ok(p) => {
            let probe = "import importlib.metadata as m, mcp.client.stdio; print(m.version('mcp'))";
            let out = run(
                "python -c 'import mcp'",
                tokio::process::Command::new(&p).args(["-c", probe]),
                Duration::from_secs(60),
            )
            .await;
            if out.status.success() {
                eprintln!("{test}: using {} (mcp {})", p.display(), stdout(&out).trim());
                Ok(p)
            } else {
                Err(format!(
                    "{} cannot import the MCP SDK (pip install mcp): {}",
                    p.display(),
                    stderr(&out).trim().lines().last().unwrap_or("")
                ))
            }
        }
        Err(e) => Err(e),
    };
    tool_or_skip(test, found)
}
