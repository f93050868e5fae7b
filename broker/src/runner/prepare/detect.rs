//! Runtime detection for git and bundle sources: what the checked-out code is (`package.json` →
//! node, `pyproject.toml`/`requirements.txt` → python with uv, `Cargo.toml` → cargo build), its
//! dependencies installed and its entry command settled. An explicit `spec.entry` wins over the
//! detected entry (dependencies are still installed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::step::{Step, StepCtx, is_executable};
use super::{Entry, PrepareError, inside, npx, path_string, python};
use crate::runner::wire::ServiceSpec;

const LOOKED_FOR: &str = "package.json, pyproject.toml, requirements.txt or Cargo.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Node,
    Python { pyproject: bool },
    Cargo,
    Unknown,
}

fn detect(src: &Path) -> Runtime {
    if src.join("package.json").is_file() {
        Runtime::Node
    } else if src.join("pyproject.toml").is_file() {
        Runtime::Python { pyproject: true }
    } else if src.join("requirements.txt").is_file() {
        Runtime::Python { pyproject: false }
    } else if src.join("Cargo.toml").is_file() {
        Runtime::Cargo
    } else {
        Runtime::Unknown
    }
}

/// Installs or builds what `src` needs and settles its entry.
pub(crate) async fn prepare(ctx: &StepCtx, spec: &ServiceSpec, src: &Path) -> Result<Entry, PrepareError> {
    let runtime = detect(src);
    ctx.log.line(format!("==> detected runtime: {runtime:?}"));
    let venv = ctx.dir.join("venv");
    let detected = match runtime {
        Runtime::Node => node(ctx, src).await?,
        Runtime::Python { pyproject } => python_project(ctx, src, &venv, pyproject).await?,
        Runtime::Cargo => cargo(ctx, src).await?,
        Runtime::Unknown => None,
    };
    match (&spec.entry, detected) {
        (Some(entry), _) => {
            let mut env = BTreeMap::new();
            if matches!(runtime, Runtime::Python { .. }) {
                env.insert("PYTHONPATH".to_owned(), path_string(ctx, "entry", src)?);
            }
            let argv = explicit_entry(ctx, entry, src, &venv)?;
            Ok(Entry { argv, env, ..Entry::default() })
        }
        (None, Some(argv)) => Ok(Entry { argv, ..Entry::default() }),
        (None, None) if runtime == Runtime::Unknown => Err(ctx.error(
            "detect runtime",
            format_args!("found none of {LOOKED_FOR} in the code: give the command with --entry"),
            vec![],
        )),
        (None, None) => Err(ctx.error(
            "detect runtime",
            format_args!(
                "found a {runtime:?} project but no command to start it: give the command with --entry"
            ),
            vec![],
        )),
    }
}

/// `npm install` when the package has dependencies; entry `node <bin or main or index.js>`.
async fn node(ctx: &StepCtx, src: &Path) -> Result<Option<Vec<String>>, PrepareError> {
    const STEP: &str = "npm install";
    let manifest = npx::read_manifest(ctx, src)?;
    let has_deps = manifest.get("dependencies").and_then(Value::as_object).is_some_and(|d| !d.is_empty());
    if has_deps {
        let npm = ctx.require_tool("npm", STEP, "Node.js and npm")?;
        let step = Step::new(STEP, npm, src)
            .args(["install", "--no-audit", "--no-fund"])
            .env("npm_config_cache", ctx.dir.join(".npm"))
            .env("npm_config_update_notifier", "false");
        ctx.run(&step).await?;
    }
    let name = manifest.get("name").and_then(Value::as_str).unwrap_or("");
    let file = manifest
        .get("bin")
        .and_then(|b| npx::select_bin(name, b))
        .or_else(|| manifest.get("main").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "index.js".to_owned());
    let path = inside(src, &file).ok_or_else(|| {
        ctx.error(
            "detect runtime",
            format_args!("package.json names `{file}`, which is missing or outside the code"),
            vec![],
        )
    })?;
    let node = ctx.require_tool("node", "detect runtime", "Node.js")?;
    Ok(Some(vec![path_string(ctx, STEP, &node)?, path_string(ctx, STEP, &path)?]))
}

/// A venv with the project (`uv pip install .`) or its requirements; entry: the project's
/// console script.
async fn python_project(
    ctx: &StepCtx,
    src: &Path,
    venv: &Path,
    pyproject: bool,
) -> Result<Option<Vec<String>>, PrepareError> {
    const STEP: &str = "uv pip install";
    let uv = python::make_venv(ctx, venv).await?;
    if !pyproject {
        python::pip_install(ctx, &uv, venv, src, &["-r", "requirements.txt"]).await?;
        return Ok(None);
    }
    python::pip_install(ctx, &uv, venv, src, &["."]).await?;
    let text = std::fs::read_to_string(src.join("pyproject.toml")).unwrap_or_default();
    let Some(name) = toml_string(&text, "project", "name") else { return Ok(None) };
    let (script, _) = python::entry_script(ctx, STEP, venv, &name)?;
    Ok(Some(vec![path_string(ctx, STEP, &script)?]))
}

/// `cargo build --release`; entry: the single binary in `target/release` (or the one named
/// like the package).
async fn cargo(ctx: &StepCtx, src: &Path) -> Result<Option<Vec<String>>, PrepareError> {
    const STEP: &str = "cargo build";
    let cargo = ctx.require_tool("cargo", STEP, "a Rust toolchain (rustup)")?;
    let target = src.join("target");
    let mut step = Step::new(STEP, cargo, src)
        .args(["build", "--release"])
        .env("CARGO_HOME", ctx.dir.join(".cargo"))
        .env("CARGO_TARGET_DIR", &target);
    // rustup's proxies find their toolchains through RUSTUP_HOME, which HOME no longer gives.
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
        .filter(|p| p.is_dir());
    if let Some(home) = rustup_home {
        step = step.env("RUSTUP_HOME", home);
    }
    ctx.run(&step).await?;
    let release = target.join("release");
    let mut bins: Vec<PathBuf> =
        std::fs::read_dir(&release).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    bins.retain(|p| is_executable(p) && p.file_name().is_some_and(|n| !n.to_string_lossy().contains('.')));
    let text = std::fs::read_to_string(src.join("Cargo.toml")).unwrap_or_default();
    let package = toml_string(&text, "package", "name");
    let chosen = match bins.as_slice() {
        [one] => Some(one.clone()),
        many => many.iter().find(|p| package.as_deref().is_some_and(|n| p.ends_with(n))).cloned(),
    };
    let bin = chosen.ok_or_else(|| {
        ctx.error(
            STEP,
            format_args!(
                "expected one binary in {}, found {}: give the command with --entry",
                release.display(),
                bins.len()
            ),
            vec![],
        )
    })?;
    Ok(Some(vec![path_string(ctx, STEP, &bin)?]))
}

/// `spec.entry` made runnable: `node`/`python` as the prepared runtime's, a relative path inside
/// the code, a bare name from the venv, `node_modules/.bin` or PATH; later arguments naming a
/// file of the code made absolute (the child runs in the service directory, not the code's).
fn explicit_entry(
    ctx: &StepCtx,
    entry: &[String],
    src: &Path,
    venv: &Path,
) -> Result<Vec<String>, PrepareError> {
    const STEP: &str = "entry";
    let first = entry.first().ok_or_else(|| ctx.error(STEP, "the entry command is empty", vec![]))?;
    let venv_bin = venv.join("bin");
    let program: PathBuf = if first == "python" || first == "python3" {
        Some(venv_bin.join("python")).filter(|p| p.exists()).or_else(|| ctx.which("python3"))
    } else if first.starts_with('/') {
        return Err(ctx.error(
            STEP,
            format_args!("`{first}` must be relative to the code, not absolute"),
            vec![],
        ));
    } else if first.contains('/') || src.join(first).is_file() {
        inside(src, first)
    } else {
        Some(venv_bin.join(first))
            .filter(|p| is_executable(p))
            .or_else(|| inside(src, &format!("node_modules/.bin/{first}")))
            .or_else(|| ctx.which(first))
    }
    .ok_or_else(|| {
        ctx.error(STEP, format_args!("`{first}` was not found (in the code, its venv or on PATH)"), vec![])
    })?;
    let mut argv = vec![path_string(ctx, STEP, &program)?];
    for arg in &entry[1..] {
        let as_file = (!arg.starts_with('-') && !arg.starts_with('/') && src.join(arg).is_file())
            .then(|| inside(src, arg))
            .flatten();
        argv.push(match as_file {
            Some(p) => path_string(ctx, STEP, &p)?,
            None => arg.clone(),
        });
    }
    Ok(argv)
}

/// A string value `key = "…"` of table `[table]` in a TOML text (enough for `name`).
fn toml_string(text: &str, table: &str, key: &str) -> Option<String> {
    let header = format!("[{table}]");
    let mut in_table = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == header;
        } else if in_table
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            let v = v.trim();
            return v.strip_prefix('"').and_then(|v| v.split('"').next()).map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_names_come_from_their_table() {
        let text = "[tool.x]\nname = \"no\"\n[project]\nversion = \"1\"\nname = \"my-server\" # c\n";
        assert_eq!(toml_string(text, "project", "name").as_deref(), Some("my-server"));
        assert_eq!(toml_string(text, "package", "name"), None);
    }

    #[test]
    fn detection_prefers_node_then_python_then_cargo() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path()), Runtime::Unknown);
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(detect(dir.path()), Runtime::Cargo);
        std::fs::write(dir.path().join("requirements.txt"), "").unwrap();
        assert_eq!(detect(dir.path()), Runtime::Python { pyproject: false });
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        assert_eq!(detect(dir.path()), Runtime::Node);
    }
}
