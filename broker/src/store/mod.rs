//! The broker's durable state in one redb file: tables, typed access inside transactions, and
//! the startup snapshot. All writes go through the group-commit [`writer`].

pub mod db;
pub mod records;
pub mod writer;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use db::{Db, FailureKind, WriteFailure};
pub use records::{IdemRecord, InviteRecord, MemberRecord, MeshRecord, MessageRecord, RecipientState};
pub use writer::{StoreHandle, WriterState};

/// Keys are `a␟b␟c` strings stored as bytes: byte order is the strings' order, and redb
/// compares byte keys without re-validating UTF-8.
pub type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub const MESHES: Table = TableDefinition::new("meshes");
pub const SLUGS: Table = TableDefinition::new("slugs");
pub const MEMBERS: Table = TableDefinition::new("members");
pub const INVITES: Table = TableDefinition::new("invites");
pub const MESSAGES: Table = TableDefinition::new("messages");
pub const QUEUE: Table = TableDefinition::new("queue");
pub const IDEMPOTENCY: Table = TableDefinition::new("idempotency");
pub const SESSION_OWNERS: Table = TableDefinition::new("session_owners");
/// Per-recipient delivery state: `mesh␟msg_id␟member` → `{state, at}`, from the state's first
/// move on (a send to more than 16 members writes a `queued` row for each at once;
/// [`MessageRecord::recipients`]).
pub const RECIPIENTS: Table = TableDefinition::new("recipients");
/// Services deployed on the broker: `mesh␟name` → [`crate::services::ServiceRecord`].
pub const SERVICES: Table = TableDefinition::new("services");
/// Vault entries, opaque to the broker: `mesh␟member␟key` → [`claudemesh_protocol::frames::VaultEntry`].
pub const VAULT: Table = TableDefinition::new("vault");
/// Shared skills: `mesh␟name` → [`claudemesh_protocol::frames::SkillRecord`].
pub const SKILLS: Table = TableDefinition::new("skills");

const ALL_TABLES: [Table; 12] = [
    MESHES,
    SLUGS,
    MEMBERS,
    INVITES,
    MESSAGES,
    QUEUE,
    IDEMPOTENCY,
    SESSION_OWNERS,
    RECIPIENTS,
    SERVICES,
    VAULT,
    SKILLS,
];

/// Key separator; ids and names never contain it.
pub const SEP: char = '\u{1f}';

/// `a␟b␟c`
pub fn key(parts: &[&str]) -> String {
    let mut k = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.push_str(p);
    }
    k
}

/// Storage failures. Each says what failed; the broker answers `storage_full` (disk full),
/// `internal` or `unavailable` ([`StoreError::code`]) and acknowledges nothing that was not
/// committed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {path}: {source}")]
    Open { path: PathBuf, source: Box<redb::DatabaseError> },
    #[error("store transaction failed: {0}")]
    Transaction(#[from] Box<redb::TransactionError>),
    #[error("store table failed: {0}")]
    Table(#[from] Box<redb::TableError>),
    #[error("store I/O failed: {0}")]
    Storage(#[from] Box<redb::StorageError>),
    #[error("store commit failed: {0}")]
    Commit(#[from] Box<redb::CommitError>),
    #[error("corrupt record under {key:?}: {source}")]
    Decode { key: String, source: serde_json::Error },
    #[error("store writer has stopped (broker shutting down)")]
    Closed,
    #[error("store write failed: {0}")]
    Failed(String),
    /// A write batch failed; what kind of failure it was travels with it.
    #[error("store write failed: {0}")]
    Batch(WriteFailure),
    /// The store is being reopened after an I/O failure (or could not be reopened yet).
    #[error("the store is reopening after an I/O failure; try again shortly")]
    Reopening,
    #[error("cannot make store {path} private (0600): {source}")]
    Private { path: PathBuf, source: std::io::Error },
}

impl StoreError {
    /// The redb storage error inside, if this is one.
    fn storage(&self) -> Option<&redb::StorageError> {
        match self {
            StoreError::Storage(s) => Some(s),
            StoreError::Transaction(e) => match &**e {
                redb::TransactionError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Table(e) => match &**e {
                redb::TableError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Commit(e) => match &**e {
                redb::CommitError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Open { source, .. } => match &**source {
                redb::DatabaseError::Storage(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the disk (or quota) is full.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Batch(f) => f.kind == FailureKind::Full,
            StoreError::Private { source, .. } => db::is_full_io(source),
            _ => matches!(self.storage(), Some(redb::StorageError::Io(e)) if db::is_full_io(e)),
        }
    }

    /// Whether redb's handle is unusable after this error and must be reopened.
    pub fn needs_reopen(&self) -> bool {
        matches!(self.storage(), Some(redb::StorageError::Io(_) | redb::StorageError::PreviousIo))
    }

    /// The error code a client gets for this failure.
    pub fn code(&self) -> claudemesh_protocol::frames::ErrorCode {
        use claudemesh_protocol::frames::ErrorCode;
        match self {
            StoreError::Batch(f) => f.code(),
            _ if self.is_full() => ErrorCode::StorageFull,
            StoreError::Closed | StoreError::Reopening => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

macro_rules! boxed_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { Box::new(e).into() }
        }
    )*};
}
boxed_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A table as opened inside a write transaction.
type RawTable<'a> = redb::Table<'a, &'static [u8], &'static [u8]>;

/// Typed access to tables inside one write transaction. Each table is opened on first use
/// and kept open until the `Tx` is dropped (before the commit), so a batch of jobs opens every
/// table at most once instead of once per access.
pub struct Tx<'a> {
    txn: &'a WriteTransaction,
    open: [RefCell<Option<RawTable<'a>>>; ALL_TABLES.len()],
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

impl<'a> Tx<'a> {
    pub fn new(txn: &'a WriteTransaction) -> Self {
        Self { txn, open: Default::default() }
    }

    /// Runs `f` on the open table, opening it first if this transaction has not yet.
    fn with<R>(
        &self,
        table: Table,
        f: impl FnOnce(&mut RawTable<'a>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let i = table_index(table)?;
        let mut slot = self.open[i].borrow_mut();
        let t = match &mut *slot {
            Some(t) => t,
            None => slot.insert(self.txn.open_table(table)?),
        };
        f(t)
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, k: &str) -> Result<Option<T>, StoreError> {
        self.with(table, |t| {
            let Some(v) = t.get(k.as_bytes())? else { return Ok(None) };
            decode(k, v.value()).map(Some)
        })
    }

    pub fn exists(&self, table: Table, k: &str) -> Result<bool, StoreError> {
        self.with(table, |t| Ok(t.get(k.as_bytes())?.is_some()))
    }

    pub fn put<T: Serialize>(&self, table: Table, k: &str, v: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).map_err(|source| StoreError::Decode { key: k.into(), source })?;
        self.put_raw(table, k, &bytes)
    }

    pub fn put_raw(&self, table: Table, k: &str, v: &[u8]) -> Result<(), StoreError> {
        self.with(table, |t| {
            t.insert(k.as_bytes(), v)?;
            Ok(())
        })
    }

    pub fn remove(&self, table: Table, k: &str) -> Result<bool, StoreError> {
        self.with(table, |t| Ok(t.remove(k.as_bytes())?.is_some()))
    }

    /// Every key of a table, in key order; the values are not copied.
    pub fn keys_all(&self, table: Table) -> Result<Vec<String>, StoreError> {
        self.with(table, |t| {
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, _) = item?;
                out.push(key_string(k.value()));
            }
            Ok(out)
        })
    }

    /// Keys and values under `prefix␟` that sort before `prefix␟below`, in key order: with
    /// time-ordered ids, the records older than an id floor, without reading the newer ones.
    pub fn scan_below(
        &self,
        table: Table,
        prefix: &str,
        below: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (lo, _) = prefix_range(prefix);
        let mut hi = lo.clone();
        hi.extend_from_slice(below.as_bytes());
        self.with(table, |t| {
            let mut out = Vec::new();
            for item in t.range(lo.as_slice()..hi.as_slice())? {
                let (k, v) = item?;
                out.push((key_string(k.value()), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Keys and values under `prefix␟`, in key order.
    pub fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.with(table, |t| scan_table(t, prefix))
    }
}

/// Position of `table` in [`ALL_TABLES`] (tables are told apart by name).
fn table_index(table: Table) -> Result<usize, StoreError> {
    let name = table.name();
    ALL_TABLES
        .iter()
        .position(|t| t.name() == name)
        .ok_or_else(|| StoreError::Failed(format!("table {name} is not in ALL_TABLES")))
}

/// Keys are written from `&str`, so they are UTF-8.
fn key_string(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    // SEP is one byte (0x1f) in UTF-8; keys under `prefix␟` sort between `prefix␟` and `prefix\x20`.
    let mut lo = Vec::with_capacity(prefix.len() + 1);
    lo.extend_from_slice(prefix.as_bytes());
    lo.push(SEP as u8);
    let mut hi = Vec::with_capacity(prefix.len() + 1);
    hi.extend_from_slice(prefix.as_bytes());
    hi.push(SEP as u8 + 1);
    (lo, hi)
}

fn scan_table(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let (lo, hi) = prefix_range(prefix);
    let mut out = Vec::new();
    for item in t.range(lo.as_slice()..hi.as_slice())? {
        let (k, v) = item?;
        out.push((key_string(k.value()), v.value().to_vec()));
    }
    Ok(out)
}

/// Everything loaded at startup: meshes with their members, and queue depths.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub meshes: Vec<MeshRecord>,
    pub members: Vec<MemberRecord>,
    pub queue_depth: HashMap<(String, String), u32>,
    pub session_owners: Vec<(String, String, String)>,
    pub services: Vec<crate::services::ServiceRecord>,
}

/// Creates the store file 0600 if it is missing, and makes an existing one 0600 (older brokers
/// left it to the umask): it holds every member's key, the invites and the queued messages.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| StoreError::Private { path: path.to_path_buf(), source };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)
}

/// Page cache of the store unless configured otherwise. redb's own default is 1 GiB, which a
/// busy broker fills as its file grows with the messages it keeps for the queue TTL: resident
/// memory then climbs for hours. The hot pages (queue heads, recent messages, members) fit in
/// far less.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Opens (creating if needed, 0600) the store and every table, caching at most `cache_bytes`
/// of its pages in memory.
pub fn open(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    make_private(path)?;
    let db = redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| StoreError::Open { path: path.to_path_buf(), source: Box::new(e) })?;
    let txn = db.begin_write()?;
    for t in ALL_TABLES {
        txn.open_table(t)?;
    }
    txn.commit()?;
    Ok(db)
}

fn decode<T: DeserializeOwned>(k: &str, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|source| StoreError::Decode { key: k.into(), source })
}

/// Reads the startup snapshot.
pub fn load(db: &Database) -> Result<Snapshot, StoreError> {
    let r = db.begin_read()?;
    let mut snap = Snapshot::default();
    for item in r.open_table(MESHES)?.iter()? {
        let (k, v) = item?;
        snap.meshes.push(decode(&key_string(k.value()), v.value())?);
    }
    for item in r.open_table(MEMBERS)?.iter()? {
        let (k, v) = item?;
        snap.members.push(decode(&key_string(k.value()), v.value())?);
    }
    for item in r.open_table(QUEUE)?.iter()? {
        let (k, _) = item?;
        let k = key_string(k.value());
        let mut parts = k.split(SEP);
        if let (Some(m), Some(mem)) = (parts.next(), parts.next()) {
            *snap.queue_depth.entry((m.to_string(), mem.to_string())).or_default() += 1;
        }
    }
    for item in r.open_table(SERVICES)?.iter()? {
        let (k, v) = item?;
        snap.services.push(decode(&key_string(k.value()), v.value())?);
    }
    for item in r.open_table(SESSION_OWNERS)?.iter()? {
        let (k, v) = item?;
        if let Some((mesh, session)) = key_string(k.value()).split_once(SEP) {
            snap.session_owners.push((
                mesh.into(),
                session.into(),
                String::from_utf8_lossy(v.value()).into(),
            ));
        }
    }
    Ok(snap)
}

/// Read-only helpers used outside the writer (queue replay, status, lists).
pub fn read_scan(db: &Database, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(table)?;
    scan_table(&t, prefix)
}

pub fn read_get<T: DeserializeOwned>(db: &Database, table: Table, k: &str) -> Result<Option<T>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(table)?;
    let Some(v) = t.get(k.as_bytes())? else { return Ok(None) };
    decode(k, v.value()).map(Some)
}
