//! The runner's X25519 keypair (DESIGN §4 "Runner key"): made at the first start of a mesh's
//! runner and kept in its key file (0600, in a 0700 dir) so that secrets sealed to it open
//! again after restarts and broker reboots. The broker passes the path and reads only the
//! public half from the runner's `ready` line; it never reads the file.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use claudemesh_protocol::crypto::RunnerKeypair;
use zeroize::Zeroizing;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the runner key {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "the runner key {path} is not a 32-byte hex key; move it away to make a new one (secrets sealed to the old key must then be sealed again with `claudemesh update`)"
    )]
    Malformed { path: PathBuf },
}

/// Loads the keypair at `path`, or makes one and stores it there. Two runners starting at once
/// agree on one key: the new key is linked into place only if no file is there yet.
pub fn load_or_create(path: &Path) -> Result<RunnerKeypair, KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    match std::fs::read_to_string(path) {
        Ok(hex) => return parse(path, &Zeroizing::new(hex)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    let key = RunnerKeypair::generate();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(key.secret_hex().as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(key),
        // Another runner made it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let hex = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
            parse(path, &hex)
        }
        Err(e) => Err(io(e)),
    }
}

fn parse(path: &Path, hex: &str) -> Result<RunnerKeypair, KeyError> {
    // An older file left readable by others is made private again.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    RunnerKeypair::from_secret_hex(hex.trim()).map_err(|_| KeyError::Malformed { path: path.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m").join("runner.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        std::fs::write(&path, "nonsense").unwrap();
        assert!(matches!(load_or_create(&path), Err(KeyError::Malformed { .. })));
    }
}
