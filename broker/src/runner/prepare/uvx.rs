//! `uvx` sources: a PyPI package installed with uv into `<dir>/venv` and run as its console
//! script (no uvx at run time: nothing is fetched when the child starts).

use super::python;
use super::step::StepCtx;
use super::{Entry, PrepareError};

const STEP: &str = "uv pip install";

/// Installs `package[==version]` into a fresh venv and settles its console script as the entry.
pub(crate) async fn prepare(
    ctx: &StepCtx,
    package: &str,
    version: Option<&str>,
) -> Result<Entry, PrepareError> {
    validate_package(package)
        .map_err(|why| ctx.error(STEP, format_args!("bad package name `{package}`: {why}"), vec![]))?;
    if let Some(v) = version {
        validate_version(v)
            .map_err(|why| ctx.error(STEP, format_args!("bad version `{v}`: {why}"), vec![]))?;
    }
    let venv = ctx.dir.join("venv");
    let uv = python::make_venv(ctx, &venv).await?;
    let requirement = match version {
        Some(v) => format!("{package}=={v}"),
        None => package.to_owned(),
    };
    python::pip_install(ctx, &uv, &venv, &ctx.dir, &[&requirement]).await?;
    let (script, version) = python::entry_script(ctx, STEP, &venv, package)?;
    Ok(Entry { argv: vec![super::path_string(ctx, STEP, &script)?], version, ..Entry::default() })
}

/// A PEP 508 name: ASCII letters, digits, `-`, `_`, `.`, starting and ending with a letter or
/// digit.
pub(crate) fn validate_package(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 200 {
        return Err("must be 1 to 200 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err("only letters, digits, `-`, `_` and `.` are allowed");
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge_ok(name.bytes().next()) || !edge_ok(name.bytes().last()) {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// A PEP 440 version (`1.2.3`, `1.0rc1`, `2!1.0+local`, `1.*`), not starting with `-`.
pub(crate) fn validate_version(v: &str) -> Result<(), &'static str> {
    if v.is_empty() || v.len() > 128 {
        return Err("must be 1 to 128 characters");
    }
    if !v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit");
    }
    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b".!+*_-".contains(&b)) {
        return Err("only letters, digits and `.`, `!`, `+`, `*`, `_`, `-` are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_names_follow_pep_508() {
        for ok in ["mcp-server-time", "Django", "zope.interface", "a", "x_1"] {
            assert!(validate_package(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-e", ".x", "x-", "a b", "a[extra]", "a==1", "a;b", "/abs", "git+https://x"] {
            assert!(validate_package(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_are_pep_440_characters_only() {
        for ok in ["1.2.3", "2024.1", "1.0rc1", "1!2.0+local.1", "1.*"] {
            assert!(validate_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "--index-url=x", "1;x", "1 2", ">=1", "$(x)"] {
            assert!(validate_version(bad).is_err(), "{bad}");
        }
    }
}
