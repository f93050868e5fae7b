//! The broker's durable state in one redb file: tables, typed access inside transactions, and
//! the startup snapshot. All writes go through the group-commit [`writer`].

pub mod records;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use records::{IdemRecord, InviteRecord, MemberRecord, MeshRecord, MessageRecord, RecipientState};
pub use writer::{StoreHandle, WriterState};

pub type Table = TableDefinition<'static, &'static str, &'static [u8]>;

pub const MESHES: Table = TableDefinition::new("meshes");
pub const SLUGS: Table = TableDefinition::new("slugs");
pub const MEMBERS: Table = TableDefinition::new("members");
pub const INVITES: Table = TableDefinition::new("invites");
pub const MESSAGES: Table = TableDefinition::new("messages");
pub const QUEUE: Table = TableDefinition::new("queue");
pub const IDEMPOTENCY: Table = TableDefinition::new("idempotency");
pub const SESSION_OWNERS: Table = TableDefinition::new("session_owners");
/// Per-recipient delivery state: `mesh␟msg_id␟member` → `{state, at}`.
pub const RECIPIENTS: Table = TableDefinition::new("recipients");

const ALL_TABLES: [Table; 9] =
    [MESHES, SLUGS, MEMBERS, INVITES, MESSAGES, QUEUE, IDEMPOTENCY, SESSION_OWNERS, RECIPIENTS];

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

/// Storage failures. Each says what failed; the broker answers `internal`/`unavailable` and
/// acknowledges nothing that was not committed.
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
}

macro_rules! boxed_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { Box::new(e).into() }
        }
    )*};
}
boxed_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Typed access to tables inside one write transaction.
pub struct Tx<'a> {
    pub(crate) txn: &'a WriteTransaction,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

impl<'a> Tx<'a> {
    pub fn get<T: DeserializeOwned>(&self, table: Table, k: &str) -> Result<Option<T>, StoreError> {
        let t = self.txn.open_table(table)?;
        let Some(v) = t.get(k)? else { return Ok(None) };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|source| StoreError::Decode { key: k.into(), source })
    }

    pub fn exists(&self, table: Table, k: &str) -> Result<bool, StoreError> {
        Ok(self.txn.open_table(table)?.get(k)?.is_some())
    }

    pub fn put<T: Serialize>(&self, table: Table, k: &str, v: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).map_err(|source| StoreError::Decode { key: k.into(), source })?;
        self.put_raw(table, k, &bytes)
    }

    pub fn put_raw(&self, table: Table, k: &str, v: &[u8]) -> Result<(), StoreError> {
        self.txn.open_table(table)?.insert(k, v)?;
        Ok(())
    }

    pub fn remove(&self, table: Table, k: &str) -> Result<bool, StoreError> {
        Ok(self.txn.open_table(table)?.remove(k)?.is_some())
    }

    /// Every key and value of a table, in key order.
    pub fn scan_all(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.txn.open_table(table)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Keys and values under `prefix␟`, in key order.
    pub fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.txn.open_table(table)?;
        scan_table(&t, prefix)
    }
}

fn prefix_range(prefix: &str) -> (String, String) {
    let mut lo = prefix.to_string();
    lo.push(SEP);
    let mut hi = prefix.to_string();
    hi.push(char::from_u32(SEP as u32 + 1).unwrap_or(SEP));
    (lo, hi)
}

fn scan_table(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let (lo, hi) = prefix_range(prefix);
    let mut out = Vec::new();
    for item in t.range(lo.as_str()..hi.as_str())? {
        let (k, v) = item?;
        out.push((k.value().to_string(), v.value().to_vec()));
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
}

/// Opens (creating if needed) the store and every table.
pub fn open(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path)
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
        snap.meshes.push(decode(k.value(), v.value())?);
    }
    for item in r.open_table(MEMBERS)?.iter()? {
        let (k, v) = item?;
        snap.members.push(decode(k.value(), v.value())?);
    }
    for item in r.open_table(QUEUE)?.iter()? {
        let (k, _) = item?;
        let mut parts = k.value().split(SEP);
        if let (Some(m), Some(mem)) = (parts.next(), parts.next()) {
            *snap.queue_depth.entry((m.to_string(), mem.to_string())).or_default() += 1;
        }
    }
    for item in r.open_table(SESSION_OWNERS)?.iter()? {
        let (k, v) = item?;
        if let Some((mesh, session)) = k.value().split_once(SEP) {
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
    let Some(v) = t.get(k)? else { return Ok(None) };
    decode(k, v.value()).map(Some)
}
