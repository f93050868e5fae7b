//! Bundle uploads on one connection (`upload_begin` → `upload_chunk`… → `upload_end`): written
//! to a private temp file under `<data>/uploads/`, checked for size and sha256, then for its zip
//! entries, and handed to a deploy of the same connection. Files of unfinished or unused
//! uploads are removed when the connection closes.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Uploads at once per connection.
const MAX_OPEN: usize = 4;

/// Why an upload step was refused; `code()` gives the protocol error code.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("bundle of {size} bytes is over the {max}-byte limit")]
    TooLarge { size: u64, max: u64 },
    #[error("no upload {0} on this connection (uploads belong to the connection that began them)")]
    Unknown(String),
    #[error("upload {id}: {why}")]
    Bad { id: String, why: String },
    #[error("at most {MAX_OPEN} uploads at once per connection")]
    TooMany,
    #[error("cannot write upload {id}: {source}")]
    Io { id: String, source: std::io::Error },
}

impl UploadError {
    pub fn code(&self) -> claudemesh_protocol::frames::ErrorCode {
        use claudemesh_protocol::frames::ErrorCode;
        match self {
            UploadError::TooLarge { .. } => ErrorCode::TooLarge,
            UploadError::Unknown(_) => ErrorCode::NotFound,
            UploadError::Bad { .. } => ErrorCode::Invalid,
            UploadError::TooMany => ErrorCode::Limit,
            UploadError::Io { .. } => ErrorCode::Internal,
        }
    }
}

#[derive(Debug)]
struct Upload {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
    sha256: String,
    written: u64,
    hasher: Sha256,
    failed: Option<String>,
    done: bool,
}

/// A connection's uploads. Dropping it removes every file not taken by a deploy.
#[derive(Debug, Default)]
pub struct Uploads {
    open: HashMap<String, Upload>,
}

impl Uploads {
    /// `upload_begin`: returns the upload id.
    pub fn begin(&mut self, dir: &Path, size: u64, sha256: &str, max: u64) -> Result<String, UploadError> {
        if size > max {
            return Err(UploadError::TooLarge { size, max });
        }
        if self.open.len() >= MAX_OPEN {
            return Err(UploadError::TooMany);
        }
        let id = claudemesh_protocol::codec::to_hex(&claudemesh_protocol::crypto::random_bytes::<12>());
        let err = |source| UploadError::Io { id: id.clone(), source };
        crate::config::create_private_dir(dir).map_err(err)?;
        let path = dir.join(format!("{id}.zip"));
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(err)?
        };
        self.open.insert(
            id.clone(),
            Upload {
                path,
                file: Some(file),
                size,
                sha256: sha256.to_ascii_lowercase(),
                written: 0,
                hasher: Sha256::new(),
                failed: None,
                done: false,
            },
        );
        Ok(id)
    }

    /// `upload_chunk`: appends; a bad chunk marks the upload failed (reported at `upload_end`).
    pub fn chunk(&mut self, id: &str, offset: u64, data: &str) {
        let Some(u) = self.open.get_mut(id) else { return };
        if u.failed.is_some() || u.done {
            return;
        }
        let bytes = match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(b) => b,
            Err(e) => return u.failed = Some(format!("chunk at {offset} is not base64: {e}")),
        };
        if offset != u.written {
            return u.failed = Some(format!("chunk at {offset}, expected {}", u.written));
        }
        if u.written + bytes.len() as u64 > u.size {
            return u.failed = Some(format!("more than the {} bytes announced", u.size));
        }
        u.hasher.update(&bytes);
        u.written += bytes.len() as u64;
        if let Some(f) = u.file.as_mut()
            && let Err(e) = f.write_all(&bytes)
        {
            u.failed = Some(format!("cannot write: {e}"));
        }
    }

    /// `upload_end`: checks size and sha256; the file is then ready for a deploy. Returns
    /// `(size, sha256)`.
    pub fn end(&mut self, id: &str) -> Result<(u64, String), UploadError> {
        let u = self.open.get_mut(id).ok_or_else(|| UploadError::Unknown(id.to_string()))?;
        let bad = |why: String| UploadError::Bad { id: id.to_string(), why };
        if let Some(f) = u.failed.clone() {
            self.discard(id);
            return Err(bad(f));
        }
        if let Some(f) = u.file.take()
            && let Err(e) = f.sync_all()
        {
            return Err(UploadError::Io { id: id.to_string(), source: e });
        }
        if u.written != u.size {
            let why = format!("{} bytes received, {} announced", u.written, u.size);
            self.discard(id);
            return Err(bad(why));
        }
        let got = hex::encode(std::mem::take(&mut u.hasher).finalize());
        if got != u.sha256 {
            let why = format!("sha256 {got} does not match the announced {}", u.sha256);
            self.discard(id);
            return Err(bad(why));
        }
        u.done = true;
        Ok((u.size, got))
    }

    /// Takes a finished upload's file for a deploy (the caller now owns it).
    pub fn take(&mut self, id: &str) -> Result<PathBuf, UploadError> {
        match self.open.get(id) {
            Some(u) if u.done => Ok(self.open.remove(id).map(|u| u.path).unwrap_or_default()),
            Some(_) => {
                Err(UploadError::Bad { id: id.into(), why: "not finished: send upload_end first".into() })
            }
            None => Err(UploadError::Unknown(id.into())),
        }
    }

    fn discard(&mut self, id: &str) {
        if let Some(u) = self.open.remove(id) {
            let _ = std::fs::remove_file(&u.path);
        }
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        for (_, u) in self.open.drain() {
            let _ = std::fs::remove_file(&u.path);
        }
    }
}
