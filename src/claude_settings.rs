//! Safe edits of Claude Code's JSON files (`~/.claude.json`, `~/.claude/settings.json`): lock, read,
//! modify, compare, back up once, atomic replace through symlinks; and the read-only check that a
//! file would be editable.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// How long to wait for another writer to release the lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How often [`edit`] starts over when another writer changed the file underneath it.
const MAX_TRIES: u32 = 20;

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

/// `<file>.claudemesh-backup`: the file as it was before claudemesh first changed it. Made once,
/// never overwritten; beside the path the user knows (a symlink's backup stays out of its target's
/// repository).
pub fn backup_path(path: &Path) -> PathBuf {
    sibling(path, ".claudemesh-backup")
}

/// The lock file older versions left beside the file; removed when we next edit it.
fn legacy_lock_path(path: &Path) -> PathBuf {
    sibling(path, ".claudemesh-lock")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The file an edit of `path` lands in: `path` itself, or where its symlinks lead, so that a link
/// into a dotfiles repository stays a link and the repository's file gets the change.
pub fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to =
                    std::fs::read_link(&p).with_context(|| format!("cannot read symlink {}", p.display()))?;
                // A relative target is relative to the link's directory; `join` keeps an absolute one.
                p = p.parent().map_or_else(|| to.clone(), |dir| dir.join(&to));
            }
            _ => return Ok(p),
        }
    }
    bail!("{} is a loop of symlinks; point it at a file and run again (nothing was changed)", path.display())
}

/// What [`edit`] did.
#[derive(Debug)]
pub struct Outcome<T> {
    /// Whatever the edit closure returned.
    pub value: T,
    /// Whether the file was rewritten.
    pub changed: bool,
    /// The backup of the file from before claudemesh first changed it (None if unchanged or the file
    /// did not exist before the first change).
    pub backup: Option<PathBuf>,
}

/// Which file a path held when read, to notice another writer replacing it (Claude Code writes
/// `~/.claude.json` with a temp file and a rename, without our lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> Self {
        Self { dev: m.dev(), ino: m.ino(), len: m.len(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec() }
    }

    /// The file at `path` now (None if there is none).
    fn current(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Self::of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// A file's content and identity as read (both None if it did not exist).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    bytes: Option<Vec<u8>>,
    id: Option<FileId>,
}

impl Snapshot {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let cannot = || format!("cannot read {}", path.display());
        match File::open(path) {
            Ok(mut f) => {
                let id = FileId::of(&f.metadata().with_context(cannot)?);
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).with_context(cannot)?;
                Ok(Self { bytes: Some(bytes), id: Some(id) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self { bytes: None, id: None }),
            Err(e) => Err(e).with_context(cannot),
        }
    }
}

/// Reads `path` (through its symlinks) as a JSON object (empty if the file is missing), lets `f`
/// modify it (`f` returns whether it changed anything), and if so atomically replaces the file with
/// 2-space pretty JSON, keeping key order, permissions and the trailing newline; the first time,
/// the old file is backed up. A file that is not a JSON object is an error and nothing is written.
///
/// Other claudemesh processes wait on a lock on the file's directory (nothing is created for it).
/// Other writers do not take it, so right before the rename the file is read again and compared,
/// and if it changed underneath, `f` runs again on the new content: their update is kept.
pub fn edit<T>(
    path: &Path,
    mut f: impl FnMut(&mut Map<String, Value>) -> anyhow::Result<(bool, T)>,
) -> anyhow::Result<Outcome<T>> {
    let target = resolve(path)?;
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let _lock = lock(dir, path)?;
    let _ = std::fs::remove_file(legacy_lock_path(path));
    // Whether this edit wrote the backup (then a retry rewrites it from the newer file).
    let mut backup_made = false;
    // Right after another writer's rename is the best moment to try again: no pause between tries.
    for _ in 0..MAX_TRIES {
        let old = Snapshot::read(&target)?;
        let mut map = match &old.bytes {
            None => Map::new(),
            Some(bytes) => parse(path, bytes)?,
        };
        let (changed, value) = f(&mut map)?;
        if !changed {
            return Ok(Outcome { value, changed, backup: None });
        }
        let mode = match &old.bytes {
            Some(_) => std::fs::metadata(&target).map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777),
            None => NEW_FILE_MODE,
        };
        let mut text = serde_json::to_string_pretty(&Value::Object(map))?;
        if old.bytes.as_ref().is_none_or(|b| b.ends_with(b"\n")) {
            text.push('\n');
        }
        let tmp = write_temp(dir, &target, text.as_bytes(), mode)?;
        // Before the compare: nothing slow may come between it and the rename.
        let backup = match &old.bytes {
            Some(bytes) => Some(first_backup(path, bytes, mode, &mut backup_made)?),
            None => None,
        };
        // The content check catches a writer that rewrote the file in place; the identity check,
        // the last thing before the rename, one that replaced it since.
        if Snapshot::read(&target)?.bytes != old.bytes || FileId::current(&target)? != old.id {
            continue;
        }
        tmp.persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", target.display()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
        return Ok(Outcome { value, changed, backup });
    }
    if backup_made {
        // It holds a version nobody edited with claudemesh after all.
        let _ = std::fs::remove_file(backup_path(path));
    }
    bail!(
        "{} kept changing while claudemesh edited it ({MAX_TRIES} tries); another program writes it \
         constantly: close Claude Code sessions and run again (nothing was changed)",
        path.display()
    )
}

/// `bytes` in a new temp file beside `target` with exactly `mode`, fsynced; removed when dropped
/// unless persisted.
fn write_temp(dir: &Path, target: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<tempfile::NamedTempFile> {
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.claudemesh-"))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write(tmp.as_file_mut()).with_context(|| format!("cannot write a temp file in {}", dir.display()))?;
    Ok(tmp)
}

/// The backup of `path` as it was before claudemesh first changed it: written from `bytes` if
/// there is none yet (or this edit wrote it, on a retry), otherwise left as it is.
fn first_backup(path: &Path, bytes: &[u8], mode: u32, made: &mut bool) -> anyhow::Result<PathBuf> {
    let b = backup_path(path);
    if *made || std::fs::symlink_metadata(&b).is_err() {
        claudemesh_agent::paths::write_atomic(&b, bytes, mode)
            .with_context(|| format!("cannot write backup {}", b.display()))?;
        *made = true;
    }
    Ok(b)
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
        Err(e) => Err(malformed(path, &invalid_json(&e))),
    }
}

/// `is not valid JSON: … at line L, column C`, for a file that does not parse.
pub fn invalid_json(e: &serde_json::Error) -> String {
    let what = e.to_string();
    // serde_json's message ends with its own " at line L column C"; say it once, our way.
    let what = what.split(" at line ").next().unwrap_or(&what);
    format!("is not valid JSON: {what} at line {}, column {}", e.line(), e.column())
}

/// The error for a file we will not edit: names it, says what is wrong and what to do.
pub fn malformed(path: &Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!("{} {what}; fix or move it and run again (nothing was changed)", path.display())
}

/// Takes an exclusive lock on `dir` (the edited file's directory), waiting up to [`LOCK_WAIT`]. A
/// file system that cannot lock a directory gets no lock: the compare before the rename still
/// keeps concurrent updates.
fn lock(dir: &Path, path: &Path) -> anyhow::Result<Option<File>> {
    let Ok(file) = File::open(dir) else { return Ok(None) };
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another claudemesh process has been editing {} for {} s; try again when it is done",
                path.display(),
                LOCK_WAIT.as_secs()
            ),
            Err(std::fs::TryLockError::Error(_)) => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Replaces `path` the way Claude Code does: a temp file renamed over it.
    fn replace(path: &Path, v: &Value) {
        let tmp = path.with_extension("other-writer");
        std::fs::write(&tmp, v.to_string()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_change_made_underneath_is_kept_and_the_edit_redone() {
        for in_place in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("settings.json");
            std::fs::write(&path, r#"{"a": 1}"#).unwrap();
            let mut calls = 0;
            let out = edit(&path, |root| {
                calls += 1;
                if calls == 1 {
                    // Another writer, between our read and our rename.
                    let theirs = serde_json::json!({"a": 2, "theirs": true});
                    if in_place {
                        std::fs::write(&path, theirs.to_string()).unwrap()
                    } else {
                        replace(&path, &theirs)
                    }
                }
                root.insert("ours".into(), Value::Bool(true));
                Ok((true, calls))
            })
            .unwrap();
            assert_eq!(out.value, 2, "in place: {in_place}");
            assert_eq!(read(&path), serde_json::json!({"a": 2, "theirs": true, "ours": true}));
            // The backup is the file our edit was based on, not the one we first read.
            assert_eq!(read(&backup_path(&path)), serde_json::json!({"a": 2, "theirs": true}));
        }
    }

    #[test]
    fn a_file_that_never_stops_changing_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".claude.json");
        std::fs::write(&path, "{}").unwrap();
        let mut n = 0;
        let e = edit(&path, |root| {
            n += 1;
            replace(&path, &serde_json::json!({ "n": n }));
            root.insert("ours".into(), Value::Bool(true));
            Ok((true, ()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("kept changing"), "{e}");
        assert_eq!(read(&path), serde_json::json!({ "n": MAX_TRIES }), "the other writer's file stays");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [".claude.json"], "no temp file, no backup, no lock left");
    }

    #[test]
    fn symlinks_resolve_relative_to_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dotfiles/claude")).unwrap();
        std::os::unix::fs::symlink("dotfiles/claude/json", dir.path().join(".claude.json")).unwrap();
        std::os::unix::fs::symlink("claude/json", dir.path().join("dotfiles/link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("dotfiles/link"), dir.path().join("abs")).unwrap();
        let want = dir.path().join("dotfiles/claude/json");
        assert_eq!(resolve(&dir.path().join(".claude.json")).unwrap(), want);
        assert_eq!(resolve(&dir.path().join("abs")).unwrap(), dir.path().join("dotfiles/claude/json"));
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert!(resolve(&dir.path().join("loop")).unwrap_err().to_string().contains("loop of symlinks"));
    }

    #[test]
    fn invalid_json_names_line_and_column_once() {
        let e = serde_json::from_str::<Value>("{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!(invalid_json(&e), "is not valid JSON: trailing comma at line 3, column 1");
    }
}
