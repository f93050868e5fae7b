//! Preparation of a service before the runner starts it (DESIGN §7 "Sources"): fetch and build
//! its code in the service directory and settle the command that starts it over stdio.
//!
//! Every step is a process run by argv ([`step`]), with a timeout, in a cleared environment,
//! its output going to the service's [`LogSink`]. What a preparation settled on is recorded in
//! `<dir>/prepared.json`; [`PrepareMode::Reuse`] starts from that record when it still matches
//! the source, [`PrepareMode::Fresh`] fetches and resolves again.

pub mod bundle;
mod command;
mod detect;
pub mod git;
mod npx;
mod python;
pub mod step;
mod uvx;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use bundle::{BundleError, ZipLimits, ZipSummary, check_zip};
pub use git::GitPolicy;

use self::step::StepCtx;
use super::log::LogSink;
use super::wire::{PrepareMode, PrepareSource, Resolved, ServiceSpec};

/// The record of the last preparation, in the service directory.
pub const RECORD_FILE: &str = "prepared.json";

/// What the runner starts: `argv` (entry + `spec.args`) with `env` added to the child's base
/// environment (before `spec.env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The absolute program and its arguments: the entry, then `spec.args`.
    pub argv: Vec<String>,
    /// What the runtime needs besides the base environment (never secrets).
    pub env: BTreeMap<String, String>,
    /// Version (npx, uvx), commit sha (git) and `argv`, for the broker's records.
    pub resolved: Resolved,
}

/// A preparation failed: `step` is the command that failed (`npm install`, `git clone`,
/// `unzip`, …), `message` why (naming the service), `log_tail` the end of that step's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} failed: {message}")]
pub struct PrepareError {
    /// The command or stage that failed (`npm install`, `git clone`, `unzip`, `entry`).
    pub step: String,
    /// Why (exit code, timeout, refused input), naming the service.
    pub message: String,
    /// The last lines (at most [`step::TAIL_LINES`]) of that step's output.
    pub log_tail: Vec<String>,
}

/// Choices the runner does not make per service.
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// Which git URLs are accepted.
    pub git: GitPolicy,
    /// `PATH` for the steps and for finding tools; the runner's own when `None`.
    pub path: Option<OsString>,
}

/// Prepares `spec` with the default options (no local git repositories).
pub async fn prepare(
    spec: &ServiceSpec,
    log: &LogSink,
    cancel: &CancellationToken,
) -> Result<Prepared, PrepareError> {
    prepare_with(spec, log, cancel, &PrepareOptions::default()).await
}

/// Prepares `spec` with `options`.
pub async fn prepare_with(
    spec: &ServiceSpec,
    log: &LogSink,
    cancel: &CancellationToken,
    options: &PrepareOptions,
) -> Result<Prepared, PrepareError> {
    let mut ctx = StepCtx::new(
        &spec.name,
        &spec.dir,
        Duration::from_millis(spec.limits.prepare_timeout_ms),
        log,
        cancel,
    );
    if let Some(path) = &options.path {
        ctx.path = path.clone();
    }
    if let PrepareSource::Command { argv } = &spec.source {
        let entry = command::prepare(&ctx, argv)?;
        return Ok(finish(spec, entry));
    }
    let previous = read_record(&spec.dir);
    if spec.prepare == PrepareMode::Reuse
        && let Some(record) = &previous
        && record.matches(spec)
    {
        log.line(format!("==> reusing the preparation recorded in {RECORD_FILE}"));
        return Ok(finish(spec, record.entry.clone()));
    }
    // A preparation that fails halfway leaves no record behind that a later reuse could trust.
    match tokio::fs::remove_file(spec.dir.join(RECORD_FILE)).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ctx.error("record preparation", format_args!("removing {RECORD_FILE}: {e}"), vec![]));
        }
    }
    let entry = match &spec.source {
        PrepareSource::Npx { package, version } => npx::prepare(&ctx, package, version.as_deref()).await?,
        PrepareSource::Uvx { package, version } => uvx::prepare(&ctx, package, version.as_deref()).await?,
        PrepareSource::Git { url, rev } => {
            // A clone of the same repository is fetched into rather than cloned again.
            let reusable = previous.as_ref().is_some_and(|r| same_git_url(&r.source, url));
            git::prepare(&ctx, spec, url, rev.as_deref(), &options.git, reusable).await?
        }
        PrepareSource::Bundle { zip } => bundle::prepare(&ctx, spec, zip).await?,
        PrepareSource::Command { .. } => unreachable_command(&ctx)?,
    };
    let record = Record {
        source: spec.source.clone(),
        entry_override: spec.entry.clone(),
        fingerprint: fingerprint(spec),
        entry,
    };
    write_record(&ctx, &record).await?;
    Ok(finish(spec, record.entry))
}

/// The entry a source settled on, before `spec.args`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub sha: Option<String>,
}

/// `prepared.json`: what was prepared from which source.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    source: PrepareSource,
    #[serde(default)]
    entry_override: Option<Vec<String>>,
    /// What identifies the source's content beyond `source` (a bundle's size and mtime).
    #[serde(default)]
    fingerprint: Option<String>,
    entry: Entry,
}

impl Record {
    /// Still what `spec` asks for, and its command still there.
    fn matches(&self, spec: &ServiceSpec) -> bool {
        self.source == spec.source
            && self.entry_override == spec.entry
            && self.fingerprint == fingerprint(spec)
            && self.entry.argv.first().is_some_and(|p| Path::new(p).is_absolute() && Path::new(p).exists())
    }
}

fn same_git_url(previous: &PrepareSource, url: &str) -> bool {
    matches!(previous, PrepareSource::Git { url: u, .. } if u == url)
}

fn fingerprint(spec: &ServiceSpec) -> Option<String> {
    match &spec.source {
        PrepareSource::Bundle { zip } => bundle::fingerprint(&bundle::zip_path(&spec.dir, zip)),
        _ => None,
    }
}

fn finish(spec: &ServiceSpec, entry: Entry) -> Prepared {
    let mut argv = entry.argv;
    argv.extend(spec.args.iter().cloned());
    Prepared {
        resolved: Resolved { version: entry.version, sha: entry.sha, command: argv.clone() },
        argv,
        env: entry.env,
    }
}

fn unreachable_command(ctx: &StepCtx) -> Result<Entry, PrepareError> {
    // Command sources return before any record is read (see `prepare_with`).
    Err(ctx.error("prepare", "internal error: command source reached the record path", Vec::new()))
}

fn read_record(dir: &Path) -> Option<Record> {
    let bytes = std::fs::read(dir.join(RECORD_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn write_record(ctx: &StepCtx, record: &Record) -> Result<(), PrepareError> {
    let step = "record preparation";
    let json = serde_json::to_vec_pretty(record).map_err(|e| ctx.error(step, e, Vec::new()))?;
    let tmp = ctx.dir.join(format!("{RECORD_FILE}.tmp"));
    tokio::fs::write(&tmp, json)
        .await
        .map_err(|e| ctx.error(step, format_args!("{}: {e}", tmp.display()), vec![]))?;
    tokio::fs::rename(&tmp, ctx.dir.join(RECORD_FILE))
        .await
        .map_err(|e| ctx.error(step, format_args!("{RECORD_FILE}: {e}"), Vec::new()))
}

/// `path` as a UTF-8 string for an argv, or an error of `step`.
pub(crate) fn path_string(ctx: &StepCtx, step: &str, path: &Path) -> Result<String, PrepareError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| ctx.error(step, format_args!("path is not UTF-8: {}", path.display()), Vec::new()))
}

/// `rel` joined to `base` and canonicalized, provided it exists and stays inside `base`.
pub(crate) fn inside(base: &Path, rel: &str) -> Option<PathBuf> {
    let base = base.canonicalize().ok()?;
    let full = base.join(rel).canonicalize().ok()?;
    full.starts_with(&base).then_some(full)
}

/// Removes `dir` if it exists (a fresh start for a build or extraction directory).
pub(crate) async fn remove_dir(ctx: &StepCtx, step: &str, dir: &Path) -> Result<(), PrepareError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ctx.error(step, format_args!("removing {}: {e}", dir.display()), Vec::new())),
    }
}
