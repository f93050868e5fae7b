//! Safe edits of Claude Code's JSON files (`~/.claude.json`): lock, read, modify, back up, atomic replace.

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
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => bail!(
                "{} is not a JSON object; fix or move it and run again (nothing was changed)",
                path.display()
            ),
            Err(e) => {
                bail!(
                    "{} is not valid JSON ({e}); fix or move it and run again (nothing was changed)",
                    path.display()
                )
            }
        },
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
