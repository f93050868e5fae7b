//! `npx` sources: an npm package installed with `npm install --prefix <dir>/app` and run as
//! `node <its bin file>` (no npx at run time: nothing is fetched when the child starts).

use std::path::Path;

use serde_json::Value;

use super::step::{Step, StepCtx};
use super::{Entry, PrepareError};

const STEP: &str = "npm install";

/// Installs `package@version` (default `latest`) and settles its bin as the entry.
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
    let npm = ctx.require_tool("npm", STEP, "Node.js and npm")?;
    let node = ctx.require_tool("node", STEP, "Node.js")?;
    let app = ctx.dir.join("app");
    tokio::fs::create_dir_all(&app)
        .await
        .map_err(|e| ctx.error(STEP, format_args!("creating {}: {e}", app.display()), vec![]))?;
    let spec = format!("{package}@{}", version.unwrap_or("latest"));
    let mut step = Step::new(STEP, npm, &app)
        .args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
        .args([app.as_os_str(), spec.as_ref()])
        .env("npm_config_cache", ctx.dir.join(".npm"))
        .env("npm_config_update_notifier", "false");
    // `--prefix` also moves npm's global config (`<prefix>/etc/npmrc`), where the operator's
    // registry and CA settings live: point npm back at the installation's own.
    if let Some(global) = global_npmrc(&node) {
        step = step.env("npm_config_globalconfig", global);
    }
    ctx.run(&step).await?;

    let pkg_dir = app.join("node_modules").join(package);
    let manifest = read_manifest(ctx, &pkg_dir)?;
    let version = manifest.get("version").and_then(Value::as_str).map(str::to_owned);
    let bin = manifest
        .get("bin")
        .and_then(|b| select_bin(package, b))
        .ok_or_else(|| ctx.error(STEP, format_args!("package `{package}` has no `bin` to run"), vec![]))?;
    let bin_path = super::inside(&pkg_dir, &bin).ok_or_else(|| {
        ctx.error(
            STEP,
            format_args!("the bin `{bin}` of `{package}` is missing or outside the package"),
            vec![],
        )
    })?;
    Ok(Entry {
        argv: vec![super::path_string(ctx, STEP, &node)?, super::path_string(ctx, STEP, &bin_path)?],
        version,
        ..Entry::default()
    })
}

/// The npm installation's global config, `<node's prefix>/etc/npmrc`, unless the runner's
/// environment names one.
fn global_npmrc(node: &Path) -> Option<std::path::PathBuf> {
    if std::env::var_os("npm_config_globalconfig").is_some()
        || std::env::var_os("NPM_CONFIG_GLOBALCONFIG").is_some()
    {
        return None;
    }
    let prefix = node.canonicalize().ok()?.parent()?.parent()?.to_owned();
    Some(prefix.join("etc").join("npmrc")).filter(|p| p.is_file())
}

/// `package.json` of an installed package.
pub(crate) fn read_manifest(ctx: &StepCtx, pkg_dir: &Path) -> Result<Value, PrepareError> {
    let path = pkg_dir.join("package.json");
    let bytes =
        std::fs::read(&path).map_err(|e| ctx.error(STEP, format_args!("{}: {e}", path.display()), vec![]))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ctx.error(STEP, format_args!("{}: {e}", path.display()), vec![]))
}

/// The bin to run: a string `bin`, else the entry named like the package (without its scope),
/// else the first one.
pub(crate) fn select_bin(package: &str, bin: &Value) -> Option<String> {
    match bin {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => {
            let short = package.rsplit('/').next().unwrap_or(package);
            map.get(short).or_else(|| map.values().next()).and_then(Value::as_str).map(str::to_owned)
        }
        _ => None,
    }
}

/// npm's rules for new names: at most 214 characters, lowercase, optional `@scope/`, URL-safe
/// characters, not starting with `.`, `_` or `-`.
pub(crate) fn validate_package(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 214 {
        return Err("must be 1 to 214 characters");
    }
    let bare = match name.strip_prefix('@') {
        Some(scoped) => {
            let (scope, bare) = scoped.split_once('/').ok_or("a scoped name is `@scope/name`")?;
            validate_part(scope)?;
            bare
        }
        None => name,
    };
    validate_part(bare)
}

fn validate_part(part: &str) -> Result<(), &'static str> {
    if part.is_empty() {
        return Err("has an empty part");
    }
    if part.starts_with(['.', '_', '-']) {
        return Err("must not start with `.`, `_` or `-`");
    }
    if !part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b)) {
        return Err("only lowercase letters, digits, `-`, `.`, `_` and `~` are allowed");
    }
    Ok(())
}

/// A version, range or dist-tag without shell metacharacters or a leading `-`.
pub(crate) fn validate_version(v: &str) -> Result<(), &'static str> {
    if v.is_empty() || v.len() > 128 {
        return Err("must be 1 to 128 characters");
    }
    if v.starts_with('-') {
        return Err("must not start with `-`");
    }
    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+~^*".contains(&b)) {
        return Err("only letters, digits and `.`, `-`, `+`, `~`, `^`, `*`, `_` are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn package_names_follow_npm_rules() {
        for ok in ["left-pad", "@modelcontextprotocol/server-everything", "a.b_c~d", "x1"] {
            assert!(validate_package(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "Upper", "-flag", ".hidden", "_x", "a b", "@scope", "@/x", "@s/", "a;rm", "a/b", "../x"]
        {
            assert!(validate_package(bad).is_err(), "{bad}");
        }
        assert!(validate_package(&"a".repeat(215)).is_err());
    }

    #[test]
    fn versions_refuse_metacharacters_and_flags() {
        for ok in ["1.2.3", "^1.2.0", "latest", "1.0.0-beta.1+build", "~2", "*"] {
            assert!(validate_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "--prefix=/", "1;rm -rf", "$(x)", "1 || 2", "`x`", "a>b"] {
            assert!(validate_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bin_is_the_string_the_named_one_or_the_first() {
        assert_eq!(select_bin("p", &json!("cli.js")).as_deref(), Some("cli.js"));
        let named = json!({"other": "o.js", "server-x": "s.js"});
        assert_eq!(select_bin("@scope/server-x", &named).as_deref(), Some("s.js"));
        assert_eq!(select_bin("p", &json!({"a": "a.js", "b": "b.js"})).as_deref(), Some("a.js"));
        assert_eq!(select_bin("p", &json!({"only": "x.js"})).as_deref(), Some("x.js"));
        assert_eq!(select_bin("p", &json!(3)), None);
        assert_eq!(select_bin("p", &json!({})), None);
    }
}
