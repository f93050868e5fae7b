//! Where the agent keeps its files (DESIGN §11): `$CLAUDEMESH_CONFIG_DIR` or `~/.claudemesh/`,
//! created 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The agent's directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$CLAUDEMESH_CONFIG_DIR`, else `$HOME/.claudemesh`.
    pub fn from_env() -> Self {
        if let Some(d) = std::env::var_os("CLAUDEMESH_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Self::new(d);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        Self::new(home.join(".claudemesh"))
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }
    pub fn db(&self) -> PathBuf {
        self.dir.join("agent.redb")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// Creates the directory if needed and makes it 0700.
    pub fn ensure_dir(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (see [`write_atomic`]).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Writes `bytes` to `path` atomically: a temp file beside it with exactly `mode` (whatever the
/// umask), fsynced, renamed over `path`, then the directory fsynced. A crash leaves either the
/// old file or the new one, never a torn one; a failure removes the temp file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    std::fs::File::open(dir)?.sync_all()
}
