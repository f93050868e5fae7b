//! The agent's durable state in `agent.redb`: the inbox (deduplicated by msg_id, with per-session
//! pushed/seen marks, indexed in [`index`], read in pages in [`inbox`], seen messages pruned past
//! their TTL), the outbox (sends accepted locally, kept until the broker acks), and a record of
//! every send, with its body, for `message_status` and `sent`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use claudemesh_protocol::crypto::MessagePlaintext;
use claudemesh_protocol::frames::{Envelope, Priority};
use claudemesh_protocol::local::InboxMessage;
mod batch;
mod inbox;
mod index;
mod trust;
pub use batch::StoreOp;
pub use inbox::{InboxPage, InboxQuery, PruneWork};
pub use index::{is_live, order_key};
pub use trust::{FirstArrival, Pin};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;
const INBOX: Table = TableDefinition::new("inbox");
const OUTBOX: Table = TableDefinition::new("outbox");
const SENT: Table = TableDefinition::new("sent");
/// The first unseen index (`session␟mesh_id␟msg_id`), replaced by [`index::UNSEEN`]: dropped
/// when a store from before it is opened.
const OLD_UNSEEN: Table = TableDefinition::new("unseen");
const META: Table = TableDefinition::new("meta");
/// Idempotency key of a local `send` → its reply and when it was made.
const IDEMPOTENCY: Table = TableDefinition::new("idempotency");
/// Set once the indexes and counters of [`index`] cover the whole store (older stores get
/// them built at open).
const INDEX_BUILT: &str = "inbox_index_v2";
/// redb's page cache: the agent's working set is the live inbox and a few pages of the
/// indexes, so a small cache keeps it small (redb's default is 1 GiB).
const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// A store file larger than this is compacted at open (pruned pages are reused while the
/// agent runs, but the file only shrinks then).
const COMPACT_ABOVE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("agent store {path}: {message}")]
    Open { path: String, message: String },
    #[error("agent store: {0}")]
    Db(String),
    #[error("agent store record {key:?} is corrupt: {message}")]
    Decode { key: String, message: String },
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// How far a message got with one local session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delivery {
    /// Sent as a channel notification (Claude Code confirms nothing).
    pub pushed: bool,
    /// When it was pushed (Unix ms): a push not seen within a grace is shown by a hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<u64>,
    /// Shown to the model in a tool result or hook output.
    pub seen: bool,
}

/// A received message and where it went locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    pub message: InboxMessage,
    pub mesh_id: String,
    /// Local sessions it was routed to.
    #[serde(default)]
    pub deliveries: BTreeMap<String, Delivery>,
    /// No live session could take it yet: offered to the next matching session that opens.
    #[serde(default)]
    pub pending: bool,
    /// (sender member, client message id) from inside the box: indexed so a replay under a new
    /// msg_id is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<(String, String)>,
    /// The nonce of the box it came in (with `replay`): a second box with the same sender and
    /// client message id and the same nonce is the broker replaying this one; another nonce is
    /// the sender's retry, sealed again (see [`FirstArrival`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_nonce: Option<String>,
    /// The msg_ids the broker gave this message's resends, dropped as duplicates: their sender
    /// knows the message by the last of them, so each is reported `seen` with this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resent_as: Vec<String>,
}

/// A send accepted by the agent and not yet acknowledged by the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub client_msg_id: String,
    pub mesh_id: String,
    /// What the user typed, for error messages.
    pub to: String,
    /// The wire target it resolved to.
    pub target: String,
    pub priority: Priority,
    pub plaintext: MessagePlaintext,
    pub envelopes: Vec<Envelope>,
    pub created_at: u64,
    #[serde(default)]
    pub attempts: u32,
}

impl OutboxRecord {
    /// The record of this send as `message_status`, `sent` and the `outbox` topic show it:
    /// pending, with its body, priority, target, sending session and the members it was sealed
    /// for.
    pub fn sent_record(&self) -> SentRecord {
        SentRecord {
            client_msg_id: self.client_msg_id.clone(),
            mesh_id: self.mesh_id.clone(),
            to: self.to.clone(),
            created_at: self.created_at,
            body: self.plaintext.body.clone(),
            priority: self.priority,
            target: self.target.clone(),
            from_session: Some(self.plaintext.from_session.clone()).filter(|s| !s.is_empty()),
            recipient_ids: self.envelopes.iter().map(|e| e.member_id.clone()).collect(),
            state: SendState::Pending,
        }
    }
}

/// Where a send stands, kept for `message_status`.
pub use claudemesh_protocol::local::SendState;

/// A send as recorded for `message_status`.
pub use claudemesh_protocol::local::SentRecord;

/// Handle to the agent store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
}

fn key(a: &str, b: &str) -> String {
    format!("{a}\u{1f}{b}")
}

/// The inbox key of a message: `mesh_id␟msg_id`.
pub fn inbox_key(mesh_id: &str, msg_id: &str) -> String {
    key(mesh_id, msg_id)
}

impl Store {
    /// Opens (or creates) the store, builds the indexes an older store lacks, and compacts a
    /// large file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut db =
            redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| open_err(&e))?;
        let w = db.begin_write().map_err(db_err)?;
        for t in [INBOX, OUTBOX, SENT, META, IDEMPOTENCY, trust::PINS, trust::REPLAY] {
            w.open_table(t).map_err(db_err)?;
        }
        let built = w.open_table(META).map_err(db_err)?.get(INDEX_BUILT).map_err(db_err)?.is_some();
        if !built {
            let n = index::Indexes::open(&w)?.rebuild()?;
            let outbox: Vec<OutboxRecord> = {
                let t = w.open_table(OUTBOX).map_err(db_err)?;
                let mut v = Vec::new();
                for item in t.iter().map_err(db_err)? {
                    let (_, bytes) = item.map_err(db_err)?;
                    if let Ok(r) = serde_json::from_slice(bytes.value()) {
                        v.push(r);
                    }
                }
                v
            };
            let mut ix = index::Indexes::open(&w)?;
            ix.meta.retain(|k, _| !k.starts_with("count\u{1f}outbox\u{1f}")).map_err(db_err)?;
            for r in &outbox {
                ix.bump("outbox", &r.mesh_id, 1)?;
            }
            ix.meta.insert(INDEX_BUILT, &b"1"[..]).map_err(db_err)?;
            drop(ix);
            w.delete_table(OLD_UNSEEN).map_err(db_err)?;
            tracing::info!(messages = n, "agent store: inbox indexes built");
        }
        w.commit().map_err(db_err)?;
        if std::fs::metadata(path).is_ok_and(|m| m.len() > COMPACT_ABOVE_BYTES) {
            let before = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            match db.compact() {
                Ok(_) => tracing::info!(
                    before,
                    after = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
                    "agent store compacted"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot compact the agent store"),
            }
        }
        // It holds decrypted messages: readable by this user only, whatever the umask made it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
                StoreError::Open {
                    path: path.display().to_string(),
                    message: format!("cannot make it private (0600): {e}"),
                }
            })?;
        }
        Ok(Self { db: Arc::new(db) })
    }

    fn get<T: DeserializeOwned>(&self, table: Table, k: &str) -> Result<Option<T>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(table).map_err(db_err)?;
        let Some(v) = t.get(k).map_err(db_err)? else { return Ok(None) };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Decode { key: k.to_string(), message: e.to_string() })
    }

    fn all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(table).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            match serde_json::from_slice(v.value()) {
                Ok(x) => out.push(x),
                Err(e) => tracing::warn!(key = k.value(), error = %e, "skipping corrupt agent record"),
            }
        }
        Ok(out)
    }

    fn remove(&self, table: Table, k: &str) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        w.open_table(table).map_err(db_err)?.remove(k).map_err(db_err)?;
        w.commit().map_err(db_err)
    }

    /// Stores a received message unless its msg_id is already in the inbox. Returns whether it
    /// was new.
    pub fn inbox_insert(&self, rec: &InboxRecord) -> Result<bool, StoreError> {
        let k = key(&rec.mesh_id, &rec.message.msg_id);
        let w = self.db.begin_write().map_err(db_err)?;
        let new = {
            let mut ix = index::Indexes::open(&w)?;
            let exists = ix.inbox.get(k.as_str()).map_err(db_err)?.is_some();
            !exists && ix.put(rec)?
        };
        w.commit().map_err(db_err)?;
        Ok(new)
    }

    pub fn inbox_get(&self, mesh_id: &str, msg_id: &str) -> Result<Option<InboxRecord>, StoreError> {
        self.get(INBOX, &key(mesh_id, msg_id))
    }

    /// Replaces a stored record (its indexes follow).
    pub fn inbox_update(&self, rec: &InboxRecord) -> Result<(), StoreError> {
        self.apply(&[StoreOp::Inbox(rec.clone())])
    }

    /// A new send: into the outbox, and recorded as pending.
    pub fn outbox_put(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        self.apply(&[StoreOp::Outbox(rec.clone())])
    }

    /// Replaces a send waiting in the outbox (sealed again, or one more attempt), and the
    /// recipients its record lists, in one transaction.
    pub fn outbox_update(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        let ob = serde_json::to_vec(rec).map_err(db_err)?;
        let id = rec.client_msg_id.as_str();
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let new =
                w.open_table(OUTBOX).map_err(db_err)?.insert(id, ob.as_slice()).map_err(db_err)?.is_none();
            if new {
                // Finished meanwhile: it is back in the outbox, and counts again.
                index::Indexes::open(&w)?.bump("outbox", &rec.mesh_id, 1)?;
            }
            let mut sent = w.open_table(SENT).map_err(db_err)?;
            let old = sent.get(id).map_err(db_err)?.map(|v| v.value().to_vec());
            if let Some(bytes) = old
                && let Ok(mut record) = serde_json::from_slice::<SentRecord>(&bytes)
            {
                record.recipient_ids = rec.envelopes.iter().map(|e| e.member_id.clone()).collect();
                let sb = serde_json::to_vec(&record).map_err(db_err)?;
                sent.insert(id, sb.as_slice()).map_err(db_err)?;
            }
        }
        w.commit().map_err(db_err)
    }

    /// Pending sends of a mesh, oldest first.
    pub fn outbox_for(&self, mesh_id: &str) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut v: Vec<OutboxRecord> =
            self.all::<OutboxRecord>(OUTBOX)?.into_iter().filter(|r| r.mesh_id == mesh_id).collect();
        v.sort_by(|a, b| (a.created_at, &a.client_msg_id).cmp(&(b.created_at, &b.client_msg_id)));
        Ok(v)
    }

    /// Ends a send: out of the outbox, its final state recorded.
    pub fn outbox_finish(&self, client_msg_id: &str, state: SendState) -> Result<(), StoreError> {
        self.apply(&[StoreOp::OutboxFinish { client_msg_id: client_msg_id.to_string(), state }])
    }

    /// Every send recorded on this machine (of mesh `mesh_id`, when given), oldest first by
    /// creation time.
    pub fn sent_list(&self, mesh_id: Option<&str>) -> Result<Vec<SentRecord>, StoreError> {
        let mut v: Vec<SentRecord> = self.all(SENT)?;
        v.retain(|r| mesh_id.is_none_or(|m| m == r.mesh_id));
        v.sort_by(|a, b| (a.created_at, &a.client_msg_id).cmp(&(b.created_at, &b.client_msg_id)));
        Ok(v)
    }

    /// A send by its client_msg_id or the broker's msg_id.
    pub fn sent(&self, id: &str) -> Result<Option<SentRecord>, StoreError> {
        if let Some(s) = self.get::<SentRecord>(SENT, id)? {
            return Ok(Some(s));
        }
        Ok(self
            .all::<SentRecord>(SENT)?
            .into_iter()
            .find(|s| matches!(&s.state, SendState::Accepted { msg_id, .. } if msg_id == id)))
    }
}

#[cfg(test)]
mod page_tests;
#[cfg(test)]
mod tests;
