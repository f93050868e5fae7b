//! The open redb file behind the store, replaceable: after an I/O failure redb refuses every
//! later transaction on that handle ("previous I/O error"), so the writer closes it and opens
//! the file again ([`Db::reopen`]), which lets writes succeed once the cause (a full disk) is
//! gone, without a broker restart. Also what a failed write was, for the error code a client
//! gets ([`WriteFailure`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::ErrorCode;
use redb::Database;
use serde::de::DeserializeOwned;

use super::{StoreError, Table};

/// The store's database handle, shared by the writer thread and readers.
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    /// The page cache a reopen asks for again ([`super::open`]).
    cache_bytes: usize,
    /// `None` while the writer reopens the file (or after a reopen failed).
    slot: RwLock<Option<Arc<Database>>>,
}

/// How long a reopen waits for readers still holding the old handle.
const READERS_GONE: Duration = Duration::from_secs(5);

impl Db {
    /// Wraps `db`, opened from `path` with a `cache_bytes` page cache.
    pub fn new(path: &Path, db: Database, cache_bytes: usize) -> Self {
        Self { path: path.to_path_buf(), cache_bytes, slot: RwLock::new(Some(Arc::new(db))) }
    }

    /// The current handle, or [`StoreError::Reopening`] while there is none.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        let slot = self.slot.read().map_err(|_| StoreError::Reopening)?;
        slot.clone().ok_or(StoreError::Reopening)
    }

    /// Whether a handle is open.
    pub fn is_open(&self) -> bool {
        self.slot.read().is_ok_and(|s| s.is_some())
    }

    /// Closes the current handle (waiting up to [`READERS_GONE`] for readers to let go of it)
    /// and opens the file again; redb checks and repairs it on open.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let old = self.slot.write().map_err(|_| StoreError::Reopening)?.take();
        if let Some(mut old) = old {
            let deadline = Instant::now() + READERS_GONE;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(still) => {
                        // Put it back: a later failure tries again.
                        *self.slot.write().map_err(|_| StoreError::Reopening)? = Some(still);
                        return Err(StoreError::Reopening);
                    }
                }
            }
        }
        let db = super::open(&self.path, self.cache_bytes)?;
        *self.slot.write().map_err(|_| StoreError::Reopening)? = Some(Arc::new(db));
        Ok(())
    }

    /// [`super::read_scan`] on the current handle.
    pub fn read_scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        super::read_scan(&*self.get()?, table, prefix)
    }

    /// [`super::read_get`] on the current handle.
    pub fn read_get<T: DeserializeOwned>(&self, table: Table, k: &str) -> Result<Option<T>, StoreError> {
        super::read_get(&*self.get()?, table, k)
    }
}

/// What kind of failure failed a write batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The disk (or quota) is full.
    Full,
    /// The writer has stopped: the broker is shutting down.
    Closed,
    /// Anything else (an I/O error, a corrupt record, a bug).
    Other,
}

/// Why a job's batch was not committed, as each job's completion gets it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct WriteFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl WriteFailure {
    /// The failure `e`; `full` also when the disk filled up earlier and the store could not
    /// be reopened since.
    pub fn from_error(e: &StoreError, full: bool) -> Self {
        let kind = if full || e.is_full() {
            FailureKind::Full
        } else if matches!(e, StoreError::Closed) {
            FailureKind::Closed
        } else {
            FailureKind::Other
        };
        let message = match kind {
            FailureKind::Full => format!(
                "the broker's disk is full ({e}); nothing was stored — the broker operator must free space, \
                 then retry"
            ),
            _ => e.to_string(),
        };
        Self { kind, message }
    }

    /// The error code a client gets for it.
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            FailureKind::Full => ErrorCode::StorageFull,
            FailureKind::Closed => ErrorCode::Unavailable,
            FailureKind::Other => ErrorCode::Internal,
        }
    }
}

/// Whether `e` says the disk or the user's quota is full.
pub fn is_full_io(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}
