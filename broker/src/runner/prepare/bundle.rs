//! `bundle` sources: an uploaded zip, checked ([`check_zip`], also by the broker at upload
//! time) and extracted into a fresh `<dir>/src` ([`extract_zip`], checking everything again
//! while writing), then built as [`detect`](super::detect) finds it.
//!
//! Nothing can be written outside the target: absolute names, `..` components, backslashes,
//! NUL and non-regular entries (symlinks, devices) are refused, files are created with
//! `O_EXCL` (never through an existing path) and no symlink is ever created, so none can be
//! followed. Two entries for one path (by name or once normalized), a file where another entry
//! needs a directory, compression other than stored and deflate, and data that does not match
//! its declared size or checksum are refused too.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use super::step::StepCtx;
use super::{Entry, PrepareError, detect};
use crate::runner::wire::ServiceSpec;

const STEP: &str = "unzip";

/// Caps on an uploaded bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Size of the zip file itself (default 50 MiB).
    pub max_archive_bytes: u64,
    /// Entries, directories included (default 10,000).
    pub max_entries: usize,
    /// Sum of the entries' uncompressed sizes (default 500 MiB).
    pub max_uncompressed_bytes: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        Self { max_archive_bytes: 50 << 20, max_entries: 10_000, max_uncompressed_bytes: 500 << 20 }
    }
}

/// What a checked bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipSummary {
    /// Entries, directories included.
    pub entries: usize,
    /// Files (not directories).
    pub files: usize,
    /// Sum of the declared uncompressed sizes.
    pub uncompressed_bytes: u64,
}

/// Why a bundle is refused; names the entry where there is one.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("not a readable zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the zip is {size} bytes, more than the {max} allowed")]
    ArchiveTooLarge { size: u64, max: u64 },
    #[error("the zip has {count} entries, more than the {max} allowed")]
    TooManyEntries { count: usize, max: usize },
    #[error("the zip unpacks to more than {max} bytes")]
    TooLargeUncompressed { max: u64 },
    #[error("entry #{index} has a name that is not valid text")]
    BadName { index: usize },
    #[error("entry `{entry}` has an absolute path")]
    AbsolutePath { entry: String },
    #[error("entry `{entry}` has a `..` component")]
    ParentDir { entry: String },
    #[error("entry `{entry}` has a backslash in its name")]
    Backslash { entry: String },
    #[error("entry `{entry}` has a NUL byte in its name")]
    Nul { entry: String },
    #[error("entry `{entry}` has an empty name")]
    EmptyName { entry: String },
    #[error("entry `{entry}` is a symbolic link")]
    Symlink { entry: String },
    #[error("entry `{entry}` is not a regular file or directory (mode {mode:o})")]
    Special { entry: String, mode: u32 },
    #[error("entry `{entry}` is encrypted")]
    Encrypted { entry: String },
    #[error("entry `{entry}` holds more or less data than its declared size")]
    SizeMismatch { entry: String },
    #[error("entry `{entry}` appears twice or collides with another entry")]
    Duplicate { entry: String },
    #[error("the zip names one entry twice")]
    DuplicateNames,
    #[error("entry `{entry}` is compressed with {method}; only stored and deflate are supported")]
    UnsupportedCompression { entry: String, method: String },
    #[error("entry `{entry}` cannot be read: {source}")]
    Corrupt { entry: String, source: io::Error },
}

/// Checks the zip at `path` against `limits` and the path rules without extracting it.
pub fn check_zip(path: &Path, limits: &ZipLimits) -> Result<ZipSummary, BundleError> {
    let mut archive = open(path, limits)?;
    let mut summary = ZipSummary { entries: archive.len(), files: 0, uncompressed_bytes: 0 };
    let mut layout = Layout::default();
    for index in 0..archive.len() {
        let file = archive.by_index_raw(index)?;
        let checked = check_entry(index, &file)?;
        match file.compression() {
            zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated => {}
            other => {
                return Err(BundleError::UnsupportedCompression {
                    entry: checked.name,
                    method: format!("{other:?}"),
                });
            }
        }
        layout.add(&checked)?;
        if !checked.dir {
            summary.files += 1;
        }
        summary.uncompressed_bytes = add_size(summary.uncompressed_bytes, file.size(), limits)?;
    }
    Ok(summary)
}

/// The paths a bundle's entries take once extracted: a file may not be written twice, nor be
/// a directory another entry needs (`a` and `a/b`, `a` and `a/`, `a/b` and `./a//b`).
#[derive(Default)]
struct Layout {
    files: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
}

impl Layout {
    fn add(&mut self, checked: &Checked) -> Result<(), BundleError> {
        let clash = || BundleError::Duplicate { entry: checked.name.clone() };
        let path = &checked.relative;
        let parents = path.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty());
        for parent in parents {
            if self.files.contains(parent) {
                return Err(clash());
            }
            self.dirs.insert(parent.to_owned());
        }
        if self.files.contains(path) || (!checked.dir && self.dirs.contains(path)) {
            return Err(clash());
        }
        if checked.dir {
            self.dirs.insert(path.clone());
        } else {
            self.files.insert(path.clone());
        }
        Ok(())
    }
}

/// Extracts the zip at `path` into `dest` (an empty directory), checking every entry again and
/// every file's real size while writing. Returns what it extracted.
pub fn extract_zip(path: &Path, dest: &Path, limits: &ZipLimits) -> Result<ZipSummary, BundleError> {
    let summary = check_zip(path, limits)?;
    let mut archive = open(path, limits)?;
    let mut written = 0u64;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index)?;
        let checked = check_entry(index, &file)?;
        let target = dest.join(&checked.relative);
        let io_err = |source| BundleError::Io { path: target.clone(), source };
        if checked.dir {
            std::fs::create_dir_all(&target).map_err(io_err)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let exec = file.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if exec { 0o755 } else { 0o644 })
            .open(&target)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => BundleError::Duplicate { entry: checked.name.clone() },
                _ => io_err(e),
            })?;
        let n = copy_entry(&mut file, &mut out, &checked.name, &target)?;
        written = add_size(written, n, limits)?;
    }
    Ok(summary)
}

/// The zip named by a bundle source: relative paths are inside the service directory.
pub(crate) fn zip_path(dir: &Path, zip: &Path) -> PathBuf {
    if zip.is_absolute() { zip.to_owned() } else { dir.join(zip) }
}

/// Size and modification time of the zip: a new upload at the same path is a new source.
pub(crate) fn fingerprint(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!("{}:{}", meta.len(), mtime.as_nanos()))
}

/// Extracts the bundle into a fresh `<dir>/src` and builds it.
pub(crate) async fn prepare(ctx: &StepCtx, spec: &ServiceSpec, zip: &Path) -> Result<Entry, PrepareError> {
    let path = zip_path(&ctx.dir, zip);
    let src = ctx.dir.join("src");
    super::remove_dir(ctx, STEP, &src).await?;
    tokio::fs::create_dir_all(&src)
        .await
        .map_err(|e| ctx.error(STEP, format_args!("creating {}: {e}", src.display()), vec![]))?;
    ctx.log.line(format!("==> {STEP} {}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let dest = src.clone();
    let done = tokio::task::spawn_blocking(move || extract_zip(&path, &dest, &ZipLimits::default()))
        .await
        .map_err(|e| ctx.error(STEP, format_args!("extraction stopped: {e}"), vec![]))?;
    let summary = done.map_err(|e| ctx.error(STEP, e, vec![]))?;
    ctx.log.line(format!("extracted {} files ({} bytes)", summary.files, summary.uncompressed_bytes));
    detect::prepare(ctx, spec, &src).await
}

fn open(path: &Path, limits: &ZipLimits) -> Result<ZipArchive<File>, BundleError> {
    let io_err = |source| BundleError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    if size > limits.max_archive_bytes {
        return Err(BundleError::ArchiveTooLarge { size, max: limits.max_archive_bytes });
    }
    let archive = ZipArchive::new(file)?;
    if archive.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries { count: archive.len(), max: limits.max_entries });
    }
    // The reader keeps one of two entries of the same name: refuse rather than pick.
    if archive.has_duplicate_names() {
        return Err(BundleError::DuplicateNames);
    }
    Ok(archive)
}

/// Copies an entry's data to `out`, never more than its declared size: reading errors (bad
/// compressed data, a wrong checksum) are the bundle's, writing errors the disk's.
fn copy_entry<R: Read>(
    file: &mut zip::read::ZipFile<'_, R>,
    out: &mut File,
    entry: &str,
    target: &Path,
) -> Result<u64, BundleError> {
    let declared = file.size();
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let k = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(BundleError::Corrupt { entry: entry.to_owned(), source }),
        };
        n += k as u64;
        if n > declared {
            return Err(BundleError::SizeMismatch { entry: entry.to_owned() });
        }
        out.write_all(&buf[..k]).map_err(|source| BundleError::Io { path: target.to_owned(), source })?;
    }
    if n != declared {
        return Err(BundleError::SizeMismatch { entry: entry.to_owned() });
    }
    Ok(n)
}

fn add_size(total: u64, more: u64, limits: &ZipLimits) -> Result<u64, BundleError> {
    total
        .checked_add(more)
        .filter(|t| *t <= limits.max_uncompressed_bytes)
        .ok_or(BundleError::TooLargeUncompressed { max: limits.max_uncompressed_bytes })
}

struct Checked {
    name: String,
    relative: PathBuf,
    dir: bool,
}

fn check_entry<R: Read>(index: usize, file: &zip::read::ZipFile<'_, R>) -> Result<Checked, BundleError> {
    let raw = file.name_raw();
    let name = file.name().map_err(|_| BundleError::BadName { index })?.into_owned();
    let entry = name.clone();
    if raw.contains(&0) || name.contains('\0') {
        return Err(BundleError::Nul { entry });
    }
    if name.contains('\\') {
        return Err(BundleError::Backslash { entry });
    }
    let drive = name.len() >= 2 && name.as_bytes()[1] == b':' && name.as_bytes()[0].is_ascii_alphabetic();
    if name.starts_with('/') || drive {
        return Err(BundleError::AbsolutePath { entry });
    }
    if file.encrypted() {
        return Err(BundleError::Encrypted { entry });
    }
    let dir = name.ends_with('/');
    if let Some(mode) = file.unix_mode() {
        match mode & 0o170000 {
            0o120000 => return Err(BundleError::Symlink { entry }),
            0 | 0o100000 | 0o040000 => {}
            _ => return Err(BundleError::Special { entry, mode }),
        }
    }
    let mut relative = PathBuf::new();
    for part in name.split('/') {
        match part {
            ".." => return Err(BundleError::ParentDir { entry }),
            "" | "." => {}
            part => relative.push(part),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(BundleError::EmptyName { entry });
    }
    Ok(Checked { name, relative, dir: dir || file.is_dir() })
}
