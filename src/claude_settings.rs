//! Safe edits of Claude Code's JSON files (`~/.claude.json`, `~/.claude/settings.json`): lock, read,
//! modify, back up, atomic replace; and the read-only check that a file would be editable.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// How long to wait for another writer to release the lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Mode of a file we create when none existed (it holds tokens, so owner-only).
const NEW_FILE_MODE: u32 = 0o600;

/// `~/.claude.json`, from `$HOME`.
pub fn claude_json() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".claude.json"))
}

/// `~/.claude/settings.json` (Claude Code's user-scope settings, where hooks live), from `$HOME`.
pub fn settings_json() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".claude").join("settings.json"))
}

/// Creates `dir` (Claude Code's `~/.claude/`) owner-only if it does not exist; an existing one is left as is.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions of {}", dir.display())),
        // A concurrent install may have created it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

/// `<file>.claudemesh-backup`: the file as it was before our latest write.
pub fn backup_path(path: &Path) -> PathBuf {
    sibling(path, ".claudemesh-backup")
}

fn lock_path(path: &Path) -> PathBuf {
    sibling(path, ".claudemesh-lock")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What [`edit`] did.
#[derive(Debug)]
pub struct Outcome<T> {
    /// Whatever the edit closure returned.
    pub value: T,
    /// Whether the file was rewritten.
    pub changed: bool,
    /// Where the previous content was copied (None if unchanged or the file did not exist).
    pub backup: Option<PathBuf>,
}

/// Under an exclusive lock, reads `path` as a JSON object (empty if the file is missing), lets `f`
/// modify it (`f` returns whether it changed anything), and if so backs up the old file and
/// atomically replaces it with 2-space pretty JSON, keeping key order, permissions and the trailing
/// newline. A file that is not a JSON object is an error and nothing is written.
pub fn edit<T>(
    path: &Path,
    f: impl FnOnce(&mut Map<String, Value>) -> anyhow::Result<(bool, T)>,
) -> anyhow::Result<Outcome<T>> {
    let _lock = lock(path)?;
    let old = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut map = match &old {
        None => Map::new(),
        Some(bytes) => parse(path, bytes)?,
    };
    let (changed, value) = f(&mut map)?;
    if !changed {
        return Ok(Outcome { value, changed, backup: None });
    }
    let mode = match std::fs::metadata(path) {
        Ok(m) if old.is_some() => m.permissions().mode() & 0o7777,
        _ => NEW_FILE_MODE,
    };
    let backup = match &old {
        Some(bytes) => {
            let b = backup_path(path);
            claudemesh_agent::paths::write_atomic(&b, bytes, mode)
                .with_context(|| format!("cannot write backup {}", b.display()))?;
            Some(b)
        }
        None => None,
    };
    let mut text = serde_json::to_string_pretty(&Value::Object(map))?;
    if old.as_ref().is_none_or(|b| b.ends_with(b"\n")) {
        text.push('\n');
    }
    claudemesh_agent::paths::write_atomic(path, text.as_bytes(), mode)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Outcome { value, changed, backup })
}

/// Reads `path` as a JSON object without locking or writing anything: `None` if the file is missing,
/// the same error as [`edit`] if it is not a JSON object. Used to check a file before editing another.
pub fn read_object(path: &Path) -> anyhow::Result<Option<Map<String, Value>>> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `bytes` (the content of `path`) as a JSON object, or an error naming `path` and what to do.
fn parse(path: &Path, bytes: &[u8]) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(malformed(path, "is not a JSON object")),
        Err(e) => Err(malformed(path, &format!("is not valid JSON ({e})"))),
    }
}

/// The error for a file we will not edit: names it, says what is wrong and what to do.
pub fn malformed(path: &Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!("{} {what}; fix or move it and run again (nothing was changed)", path.display())
}

/// Takes an exclusive lock on `<path>.claudemesh-lock`, waiting up to [`LOCK_WAIT`].
fn lock(path: &Path) -> anyhow::Result<File> {
    let lp = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(NEW_FILE_MODE)
        .open(&lp)
        .with_context(|| format!("cannot open lock file {}", lp.display()))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "could not lock {} within {} s: another process is editing {}; try again",
                lp.display(),
                LOCK_WAIT.as_secs(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lp.display()));
            }
        }
    }
}
