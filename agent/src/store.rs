//! The agent's durable state in `agent.redb`: the inbox (deduplicated by msg_id, with per-session
//! pushed/seen marks), the outbox (sends accepted locally, kept until the broker acks), and a
//! record of every send for `message_status`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use claudemesh_protocol::crypto::MessagePlaintext;
use claudemesh_protocol::frames::{Envelope, Priority};
use claudemesh_protocol::local::InboxMessage;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;
const INBOX: Table = TableDefinition::new("inbox");
const OUTBOX: Table = TableDefinition::new("outbox");
const SENT: Table = TableDefinition::new("sent");

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

/// Where a send stands, kept for `message_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SendState {
    /// Stored locally, waiting for the broker.
    Pending,
    /// The broker acknowledged it durably.
    Accepted { msg_id: String, recipients: u32 },
    /// The broker refused it; it will not be retried.
    Failed { error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub client_msg_id: String,
    pub mesh_id: String,
    pub to: String,
    pub created_at: u64,
    #[serde(flatten)]
    pub state: SendState,
}

/// Handle to the agent store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
}

fn key(a: &str, b: &str) -> String {
    format!("{a}\u{1f}{b}")
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), message: e.to_string() })?;
        let w = db.begin_write().map_err(db_err)?;
        for t in [INBOX, OUTBOX, SENT] {
            w.open_table(t).map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
        Ok(Self { db: Arc::new(db) })
    }

    fn put<T: Serialize>(&self, table: Table, k: &str, v: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).map_err(db_err)?;
        let w = self.db.begin_write().map_err(db_err)?;
        w.open_table(table).map_err(db_err)?.insert(k, bytes.as_slice()).map_err(db_err)?;
        w.commit().map_err(db_err)
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
        let bytes = serde_json::to_vec(rec).map_err(db_err)?;
        let w = self.db.begin_write().map_err(db_err)?;
        let new = {
            let mut t = w.open_table(INBOX).map_err(db_err)?;
            let exists = t.get(k.as_str()).map_err(db_err)?.is_some();
            if !exists {
                t.insert(k.as_str(), bytes.as_slice()).map_err(db_err)?;
            }
            !exists
        };
        w.commit().map_err(db_err)?;
        Ok(new)
    }

    pub fn inbox_get(&self, mesh_id: &str, msg_id: &str) -> Result<Option<InboxRecord>, StoreError> {
        self.get(INBOX, &key(mesh_id, msg_id))
    }

    pub fn inbox_update(&self, rec: &InboxRecord) -> Result<(), StoreError> {
        self.put(INBOX, &key(&rec.mesh_id, &rec.message.msg_id), rec)
    }

    /// Every inbox record, oldest first by receive time.
    pub fn inbox_all(&self) -> Result<Vec<InboxRecord>, StoreError> {
        let mut v: Vec<InboxRecord> = self.all(INBOX)?;
        v.sort_by(|a, b| {
            (a.message.received_at, &a.message.msg_id).cmp(&(b.message.received_at, &b.message.msg_id))
        });
        Ok(v)
    }

    pub fn outbox_put(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let ob = serde_json::to_vec(rec).map_err(db_err)?;
            w.open_table(OUTBOX)
                .map_err(db_err)?
                .insert(rec.client_msg_id.as_str(), ob.as_slice())
                .map_err(db_err)?;
            let sent = SentRecord {
                client_msg_id: rec.client_msg_id.clone(),
                mesh_id: rec.mesh_id.clone(),
                to: rec.to.clone(),
                created_at: rec.created_at,
                state: SendState::Pending,
            };
            let sb = serde_json::to_vec(&sent).map_err(db_err)?;
            w.open_table(SENT)
                .map_err(db_err)?
                .insert(rec.client_msg_id.as_str(), sb.as_slice())
                .map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    pub fn outbox_update(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        self.put(OUTBOX, &rec.client_msg_id, rec)
    }

    /// Pending sends of a mesh, oldest first.
    pub fn outbox_for(&self, mesh_id: &str) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut v: Vec<OutboxRecord> =
            self.all::<OutboxRecord>(OUTBOX)?.into_iter().filter(|r| r.mesh_id == mesh_id).collect();
        v.sort_by(|a, b| (a.created_at, &a.client_msg_id).cmp(&(b.created_at, &b.client_msg_id)));
        Ok(v)
    }

    pub fn outbox_count(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        let mut m = BTreeMap::new();
        for r in self.all::<OutboxRecord>(OUTBOX)? {
            *m.entry(r.mesh_id).or_default() += 1;
        }
        Ok(m)
    }

    /// Ends a send: out of the outbox, its final state recorded.
    pub fn outbox_finish(&self, client_msg_id: &str, state: SendState) -> Result<(), StoreError> {
        let Some(mut sent) = self.get::<SentRecord>(SENT, client_msg_id)? else {
            return self.remove(OUTBOX, client_msg_id);
        };
        sent.state = state;
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let sb = serde_json::to_vec(&sent).map_err(db_err)?;
            w.open_table(SENT).map_err(db_err)?.insert(client_msg_id, sb.as_slice()).map_err(db_err)?;
            w.open_table(OUTBOX).map_err(db_err)?.remove(client_msg_id).map_err(db_err)?;
        }
        w.commit().map_err(db_err)
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
mod tests {
    use super::*;
    use claudemesh_protocol::frames::Priority;

    fn rec(id: &str) -> InboxRecord {
        InboxRecord {
            message: InboxMessage {
                msg_id: id.into(),
                mesh: "team".into(),
                from_member: "m".into(),
                from_session: "s".into(),
                from_name: "n".into(),
                target: "*".into(),
                priority: Priority::Next,
                body: "b".into(),
                reply_to: None,
                meta: Default::default(),
                sent_at: 1,
                received_at: 2,
                seen: false,
                error: None,
            },
            mesh_id: "mesh".into(),
            deliveries: Default::default(),
            pending: true,
        }
    }

    #[test]
    fn inbox_dedupes_by_msg_id_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.redb")).unwrap();
        assert!(s.inbox_insert(&rec("x")).unwrap());
        assert!(!s.inbox_insert(&rec("x")).unwrap(), "a redelivered push is not stored twice");
        drop(s);
        let s = Store::open(&dir.path().join("a.redb")).unwrap();
        assert_eq!(s.inbox_all().unwrap().len(), 1);
    }
}
