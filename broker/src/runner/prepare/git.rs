//! `git` sources: a clone in `<dir>/src` checked out (detached) at a branch, tag or commit, the
//! commit's sha recorded, then built as [`detect`](super::detect) finds it. A fresh preparation
//! of an existing clone of the same URL fetches and checks out again.

use std::ffi::OsString;
use std::path::Path;

use super::step::{Step, StepCtx};
use super::{Entry, PrepareError, detect};
use crate::runner::wire::ServiceSpec;

/// Which repository URLs a git source may name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GitPolicy {
    /// Also `file://` URLs and absolute local paths (tests, single-host setups); off by default
    /// so that a deployer cannot clone the broker host's own repositories.
    pub allow_local: bool,
}

/// Why a URL or revision is refused.
pub fn validate_url(url: &str, policy: &GitPolicy) -> Result<(), &'static str> {
    if url.is_empty() || url.len() > 2048 {
        return Err("must be 1 to 2048 characters");
    }
    if url.starts_with('-') {
        return Err("must not start with `-`");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters");
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("ext::") || lower.contains("::") {
        return Err("remote helpers (`ext::`, `…::`) are not allowed");
    }
    if ["https://", "http://", "ssh://"].iter().any(|p| lower.starts_with(p)) {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("git@")
        && let Some((host, path)) = rest.split_once(':')
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        && !path.is_empty()
    {
        return Ok(());
    }
    if lower.starts_with("file://") || url.starts_with('/') {
        return if policy.allow_local { Ok(()) } else { Err("local repositories are not allowed") };
    }
    Err("must be an https://, http://, ssh:// or git@host:path URL")
}

/// A branch, tag or commit: no leading `-`, no `..`, no spaces or control characters.
pub fn validate_rev(rev: &str) -> Result<(), &'static str> {
    if rev.is_empty() || rev.len() > 256 {
        return Err("must be 1 to 256 characters");
    }
    if rev.starts_with('-') {
        return Err("must not start with `-`");
    }
    if rev.contains("..") {
        return Err("must not contain `..`");
    }
    if !rev.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/+".contains(&b)) {
        return Err("only letters, digits and `-`, `.`, `_`, `/`, `+` are allowed");
    }
    Ok(())
}

/// Clones (or, when `reusable`, fetches into the existing clone), checks out, records the sha,
/// and builds.
pub(crate) async fn prepare(
    ctx: &StepCtx,
    spec: &ServiceSpec,
    url: &str,
    rev: Option<&str>,
    policy: &GitPolicy,
    reusable: bool,
) -> Result<Entry, PrepareError> {
    validate_url(url, policy)
        .map_err(|why| ctx.error("git clone", format_args!("refused repository URL: {why}"), vec![]))?;
    if let Some(rev) = rev {
        validate_rev(rev)
            .map_err(|why| ctx.error("git checkout", format_args!("bad rev `{rev}`: {why}"), vec![]))?;
    }
    let git = ctx.require_tool("git", "git clone", "git")?;
    let src = ctx.dir.join("src");
    if reusable && src.join(".git").is_dir() {
        ctx.run(&git_step("git fetch", &git, &src).args(["fetch", "--prune", "--tags", "--force", "origin"]))
            .await?;
    } else {
        super::remove_dir(ctx, "git clone", &src).await?;
        let clone = git_step("git clone", &git, &ctx.dir)
            .args(["clone", "--no-recurse-submodules", "--", url])
            .args([src.as_os_str()]);
        ctx.run(&clone).await?;
    }
    let target = checkout_target(ctx, &git, &src, rev).await?;
    ctx.run(&git_step("git checkout", &git, &src).args(["checkout", "--force", "--detach"]).args([target]))
        .await?;
    let head = ctx.run(&git_step("git rev-parse", &git, &src).args(["rev-parse", "HEAD"])).await?;
    let sha = head
        .stdout
        .first()
        .map(|l| l.trim().to_owned())
        .filter(|s| s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ctx.error("git rev-parse", "no commit sha in its output", head.tail.clone()))?;
    ctx.log.line(format!("checked out {sha}"));
    let mut entry = detect::prepare(ctx, spec, &src).await?;
    entry.sha = Some(sha);
    Ok(entry)
}

/// What to check out: the remote-tracking branch when `rev` names one (so a fetch moves it),
/// else `rev` itself (tag or commit), else the remote's HEAD.
async fn checkout_target(
    ctx: &StepCtx,
    git: &Path,
    src: &Path,
    rev: Option<&str>,
) -> Result<OsString, PrepareError> {
    let Some(rev) = rev else { return Ok("origin/HEAD".into()) };
    let branch = format!("refs/remotes/origin/{rev}");
    let probe = git_step("git rev-parse", git, src)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .args([format!("{branch}^{{commit}}")])
        .allow_failure();
    let found = ctx.run(&probe).await?;
    Ok(if found.success { branch.into() } else { rev.into() })
}

/// A git step: no prompts, no system or global config, no `ext::` transport.
fn git_step(name: &str, git: &Path, cwd: &Path) -> Step {
    Step::new(name, git, cwd)
        .args(["-c", "protocol.ext.allow=never", "-c", "advice.detachedHead=false"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_remote_unless_local_is_allowed() {
        let strict = GitPolicy::default();
        let local = GitPolicy { allow_local: true };
        for ok in ["https://github.com/a/b.git", "http://h/x", "ssh://git@h/x", "git@github.com:a/b.git"] {
            assert!(validate_url(ok, &strict).is_ok(), "{ok}");
        }
        for bad in
            ["-uhttps://x", "ext::sh -c x", "EXT::x", "fd::17", "https://a b", "ftp://h/x", "git@:x", "x"]
        {
            assert!(validate_url(bad, &local).is_err(), "{bad}");
        }
        for l in ["file:///tmp/repo", "/tmp/repo"] {
            assert!(validate_url(l, &strict).is_err(), "{l}");
            assert!(validate_url(l, &local).is_ok(), "{l}");
        }
    }

    #[test]
    fn revs_refuse_options_and_ranges() {
        for ok in ["main", "v1.2.3", "feature/x", "0123abcd"] {
            assert!(validate_rev(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-b", "--upload-pack=x", "a..b", "a b", "a;b", "@{-1}"] {
            assert!(validate_rev(bad).is_err(), "{bad}");
        }
    }
}
