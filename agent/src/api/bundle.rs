//! Bundle deploys: a directory is zipped (deflate; `.git`, `target` and `node_modules`
//! skipped; a symlink pointing outside the directory refused), a `.zip` is taken as it is; at
//! most [`MAX_BUNDLE_BYTES`]. The zip is uploaded over the mesh's link (`upload_begin` →
//! `upload_ready` → `upload_chunk`… → `upload_end` → `upload_done`) and its upload id returned
//! for `mcp_deploy{source: bundle}`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use sha2::{Digest, Sha256};

use super::admin::REQUEST_TIMEOUT;
use super::services::Mesh;
use crate::api::ApiError;
use crate::mesh::UplinkCmd;
use crate::shared::Agent;

/// The largest bundle a broker takes (DESIGN §7).
pub const MAX_BUNDLE_BYTES: u64 = 50 * 1024 * 1024;

/// Directories never put in a bundle.
const SKIPPED: &[&str] = &[".git", "target", "node_modules"];

/// Why a bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is a symlink to {target}, outside the bundle directory; copy the file in instead")]
    SymlinkOutside { path: PathBuf, target: PathBuf },
    #[error("the bundle is over {} MiB ({size} bytes); leave out build output and dependencies", MAX_BUNDLE_BYTES / 1024 / 1024)]
    TooBig { size: u64 },
    #[error("{0} is neither a directory nor a .zip file")]
    NotABundle(PathBuf),
    #[error("cannot zip {path}: {reason}")]
    Zip { path: PathBuf, reason: String },
}

/// The zip bytes of `path`: a directory zipped, or a `.zip` file read.
pub fn bundle_bytes(path: &Path) -> Result<Vec<u8>, BundleError> {
    let meta = std::fs::metadata(path).map_err(|source| BundleError::Read { path: path.into(), source })?;
    if meta.is_dir() {
        return zip_dir(path);
    }
    let is_zip = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if !meta.is_file() || !is_zip {
        return Err(BundleError::NotABundle(path.into()));
    }
    if meta.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooBig { size: meta.len() });
    }
    std::fs::read(path).map_err(|source| BundleError::Read { path: path.into(), source })
}

/// Zips the directory `root` in memory (deflate), entries relative to it, sorted.
pub fn zip_dir(root: &Path) -> Result<Vec<u8>, BundleError> {
    let root = root.canonicalize().map_err(|source| BundleError::Read { path: root.into(), source })?;
    let zerr = |path: &Path, e: &dyn std::fmt::Display| BundleError::Zip {
        path: path.into(),
        reason: e.to_string(),
    };
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut total: u64 = 0;
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let read =
            std::fs::read_dir(&dir).map_err(|source| BundleError::Read { path: dir.clone(), source })?;
        let mut entries: Vec<PathBuf> = Vec::new();
        for e in read {
            entries.push(e.map_err(|source| BundleError::Read { path: dir.clone(), source })?.path());
        }
        entries.sort();
        for path in entries {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let lmeta = std::fs::symlink_metadata(&path)
                .map_err(|source| BundleError::Read { path: path.clone(), source })?;
            let real = if lmeta.file_type().is_symlink() {
                let target =
                    path.canonicalize().map_err(|source| BundleError::Read { path: path.clone(), source })?;
                if !target.starts_with(&root) {
                    return Err(BundleError::SymlinkOutside { path, target });
                }
                target
            } else {
                path.clone()
            };
            let rel = path.strip_prefix(&root).map_err(|e| zerr(&path, &e))?;
            let rel_name =
                rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            if real.is_dir() {
                if SKIPPED.contains(&name.as_str()) {
                    continue;
                }
                // A link to a directory inside the bundle is zipped as its own copy (not walked
                // twice when it points above itself: that would loop).
                if lmeta.file_type().is_symlink() && path.starts_with(&real) {
                    continue;
                }
                out.add_directory(format!("{rel_name}/"), options).map_err(|e| zerr(&path, &e))?;
                stack.push(path);
                continue;
            }
            let bytes =
                std::fs::read(&real).map_err(|source| BundleError::Read { path: path.clone(), source })?;
            total += bytes.len() as u64;
            if total > MAX_BUNDLE_BYTES {
                return Err(BundleError::TooBig { size: total });
            }
            let opts = options.unix_permissions(unix_mode(&real));
            out.start_file(rel_name, opts).map_err(|e| zerr(&path, &e))?;
            out.write_all(&bytes).map_err(|e| zerr(&path, &e))?;
        }
    }
    let bytes = out.finish().map_err(|e| zerr(&root, &e))?.into_inner();
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooBig { size: bytes.len() as u64 });
    }
    Ok(bytes)
}

fn unix_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o644)
}

/// Makes the bundle of `path` and uploads it to mesh `m` for service `name`; returns the
/// upload id.
pub(crate) async fn upload(agent: &Agent, m: &Mesh, name: &str, path: &Path) -> Result<String, ApiError> {
    let p = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || bundle_bytes(&p))
        .await
        .map_err(crate::api::internal)?
        .map_err(|e| {
            let code =
                if matches!(e, BundleError::TooBig { .. }) { ErrorCode::Limit } else { ErrorCode::Invalid };
            (code, format!("bundle for {name}: {e}"))
        })?;
    let sha256 = hex_lower(&Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    let (n, sha) = (name.to_string(), sha256.clone());
    let build = Box::new(move |req| ClientFrame::UploadBegin { req, name: n, size, sha256: sha });
    let (upload_id, chunk_size) = match m.ask(agent, name, build, REQUEST_TIMEOUT).await? {
        ServerFrame::UploadReady { upload_id, chunk_size, .. } => (upload_id, chunk_size.max(1) as usize),
        other => {
            return Err((
                ErrorCode::Internal,
                format!("unexpected reply {} to upload_begin", other.type_name()),
            ));
        }
    };
    let uplink = agent
        .view()
        .meshes
        .get(&m.id)
        .map(|v| v.uplink.clone())
        .ok_or((ErrorCode::NotFound, format!("mesh {} is no longer joined", m.slug)))?;
    let mut offset = 0usize;
    for chunk in bytes.chunks(chunk_size) {
        let data = base64::engine::general_purpose::STANDARD.encode(chunk);
        let frame = ClientFrame::UploadChunk { upload_id: upload_id.clone(), offset: offset as u64, data };
        uplink
            .send(UplinkCmd::Frame(Box::new(frame)))
            .await
            .map_err(|_| (ErrorCode::Unavailable, format!("mesh {}: the link is shutting down", m.slug)))?;
        offset += chunk.len();
    }
    let id = upload_id.clone();
    let build = Box::new(move |req| ClientFrame::UploadEnd { req, upload_id: id });
    match m.ask(agent, name, build, REQUEST_TIMEOUT).await? {
        ServerFrame::UploadDone { sha256: got, size: got_size, .. } if got == sha256 && got_size == size => {
            Ok(upload_id)
        }
        ServerFrame::UploadDone { .. } => Err((
            ErrorCode::Invalid,
            format!("bundle for {name}: the broker received different bytes than were sent; deploy again"),
        )),
        other => Err((ErrorCode::Internal, format!("unexpected reply {} to upload_end", other.type_name()))),
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(zip: &[u8]) -> Vec<String> {
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        (0..a.len()).map(|i| a.by_index(i).unwrap().name().unwrap().to_string()).collect()
    }

    #[test]
    fn a_directory_is_zipped_without_vcs_build_or_dependency_dirs() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::write(r.join("package.json"), "{}").unwrap();
        std::fs::create_dir_all(r.join("src")).unwrap();
        std::fs::write(r.join("src/index.js"), "console.log(1)").unwrap();
        for skip in [".git", "target", "node_modules"] {
            std::fs::create_dir_all(r.join(skip)).unwrap();
            std::fs::write(r.join(skip).join("x"), "x").unwrap();
        }
        std::os::unix::fs::symlink(r.join("package.json"), r.join("link.json")).unwrap();
        let z = zip_dir(r).unwrap();
        let mut n = names(&z);
        n.sort();
        assert_eq!(n, ["link.json", "package.json", "src/", "src/index.js"]);
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(&z)).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut a.by_name("src/index.js").unwrap(), &mut s).unwrap();
        assert_eq!(s, "console.log(1)");
    }

    #[test]
    fn a_symlink_out_of_the_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("s")).unwrap();
        assert!(matches!(zip_dir(d.path()), Err(BundleError::SymlinkOutside { .. })));
    }

    #[test]
    fn only_directories_and_zips_are_bundles() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "x").unwrap();
        assert!(matches!(bundle_bytes(&d.path().join("a.txt")), Err(BundleError::NotABundle(_))));
        std::fs::write(d.path().join("b.zip"), "PK").unwrap();
        assert_eq!(bundle_bytes(&d.path().join("b.zip")).unwrap(), b"PK");
        assert!(matches!(bundle_bytes(&d.path().join("none")), Err(BundleError::Read { .. })));
    }

    #[test]
    fn a_big_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(d.path().join("big")).unwrap();
        f.set_len(MAX_BUNDLE_BYTES + 1).unwrap();
        assert!(matches!(zip_dir(d.path()), Err(BundleError::TooBig { .. })));
    }
}
