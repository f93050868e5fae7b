//! Python with uv, shared by `uvx` sources and detected Python projects: a venv in the service
//! directory, `uv pip install` into it, and what the installed distributions declare
//! (`METADATA` version, `entry_points.txt` console scripts).

use std::path::{Path, PathBuf};

use super::PrepareError;
use super::step::{Step, StepCtx};

/// Creates the venv at `venv` (afresh: an old one is removed first) with uv.
pub(crate) async fn make_venv(ctx: &StepCtx, venv: &Path) -> Result<PathBuf, PrepareError> {
    let uv = require_uv(ctx, "uv venv")?;
    super::remove_dir(ctx, "uv venv", venv).await?;
    let step = uv_step(ctx, "uv venv", &uv, &ctx.dir).args(["venv".as_ref(), venv.as_os_str()]);
    ctx.run(&step).await?;
    Ok(uv)
}

/// `uv pip install --python <venv>/bin/python <args…>` in `cwd`.
pub(crate) async fn pip_install(
    ctx: &StepCtx,
    uv: &Path,
    venv: &Path,
    cwd: &Path,
    args: &[&str],
) -> Result<(), PrepareError> {
    let python = venv.join("bin").join("python");
    let step = uv_step(ctx, "uv pip install", uv, cwd)
        .args(["pip".as_ref(), "install".as_ref(), "--python".as_ref(), python.as_os_str()])
        .args(args.iter().copied());
    ctx.run(&step).await.map(drop)
}

fn require_uv(ctx: &StepCtx, step: &str) -> Result<PathBuf, PrepareError> {
    ctx.require_tool("uv", step, "uv (`pip install uv`, or see https://docs.astral.sh/uv/)")
}

fn uv_step(ctx: &StepCtx, name: &str, uv: &Path, cwd: &Path) -> Step {
    Step::new(name, uv, cwd)
        .env("UV_CACHE_DIR", ctx.dir.join(".uv-cache"))
        .env("UV_NO_PROGRESS", "1")
        .env("UV_PYTHON_INSTALL_DIR", ctx.dir.join(".uv-python"))
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` as one `-`.
pub(crate) fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The `*.dist-info` directory of distribution `name` in the venv's site-packages.
pub(crate) fn dist_info(venv: &Path, name: &str) -> Option<PathBuf> {
    let want = normalize(name);
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for py in lib.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("python")) {
        let Ok(entries) = std::fs::read_dir(py.path().join("site-packages")) else { continue };
        for e in entries.flatten() {
            let file = e.file_name();
            let file = file.to_string_lossy();
            let Some(stem) = file.strip_suffix(".dist-info") else { continue };
            let dist = stem.rsplit_once('-').map_or(stem, |(n, _)| n);
            if normalize(dist) == want {
                return Some(e.path());
            }
        }
    }
    None
}

/// `Version:` from a dist-info's `METADATA`.
pub(crate) fn version(dist_info: &Path) -> Option<String> {
    let meta = std::fs::read_to_string(dist_info.join("METADATA")).ok()?;
    meta.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
}

/// The names in the `[console_scripts]` section of an `entry_points.txt`.
pub(crate) fn console_scripts(entry_points: &str) -> Vec<String> {
    let mut in_section = false;
    let mut out = Vec::new();
    for line in entry_points.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[console_scripts]";
        } else if in_section
            && !line.starts_with('#')
            && let Some((name, _)) = line.split_once('=')
        {
            out.push(name.trim().to_owned());
        }
    }
    out
}

/// The console script named like the package (normalized), else the only one.
pub(crate) fn select_script(package: &str, scripts: &[String]) -> Option<String> {
    let want = normalize(package);
    scripts
        .iter()
        .find(|s| normalize(s) == want)
        .or(if scripts.len() == 1 { scripts.first() } else { None })
        .cloned()
}

/// The entry script of distribution `package` installed in `venv`: `<venv>/bin/<script>`, and
/// its version.
pub(crate) fn entry_script(
    ctx: &StepCtx,
    step: &str,
    venv: &Path,
    package: &str,
) -> Result<(PathBuf, Option<String>), PrepareError> {
    let info = dist_info(venv, package).ok_or_else(|| {
        ctx.error(step, format_args!("`{package}` is not installed in {}", venv.display()), vec![])
    })?;
    let scripts = std::fs::read_to_string(info.join("entry_points.txt"))
        .map(|s| console_scripts(&s))
        .unwrap_or_default();
    let script = select_script(package, &scripts).ok_or_else(|| {
        ctx.error(
            step,
            format_args!(
                "`{package}` has no console script to run (found: [{}]); give the command with --entry",
                scripts.join(", ")
            ),
            vec![],
        )
    })?;
    let path = venv.join("bin").join(&script);
    if !path.exists() {
        return Err(ctx.error(step, format_args!("console script {} is missing", path.display()), vec![]));
    }
    Ok((path, version(&info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_like_pep_503() {
        assert_eq!(normalize("Mcp_Server..Time"), "mcp-server-time");
        assert_eq!(normalize("mcp-server-time"), "mcp-server-time");
    }

    #[test]
    fn console_scripts_come_from_their_section_only() {
        let ep = "[gui_scripts]\ng = a:b\n\n[console_scripts]\nmcp-server-time = mcp_server_time:main\n# x\nother=o:m\n";
        assert_eq!(console_scripts(ep), vec!["mcp-server-time", "other"]);
        let scripts = console_scripts(ep);
        assert_eq!(select_script("mcp_server_time", &scripts).as_deref(), Some("mcp-server-time"));
        assert_eq!(select_script("pkg", &scripts), None);
        assert_eq!(select_script("pkg", &["only".to_owned()]).as_deref(), Some("only"));
    }
}
