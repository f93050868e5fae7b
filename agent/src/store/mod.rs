//! The agent's durable state in `agent.redb`: the inbox (deduplicated by msg_id, with per-session
//! pushed/seen marks), the outbox (sends accepted locally, kept until the broker acks), and a
//! record of every send, with its body, for `message_status` and `sent`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use claudemesh_protocol::crypto::MessagePlaintext;
use claudemesh_protocol::frames::{Envelope, Priority};
use claudemesh_protocol::local::InboxMessage;
mod batch;
mod trust;
pub use batch::StoreOp;
pub use trust::Pin;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;
const INBOX: Table = TableDefinition::new("inbox");
const OUTBOX: Table = TableDefinition::new("outbox");
const SENT: Table = TableDefinition::new("sent");
/// `session␟mesh_id␟msg_id` → nothing, for every delivery not yet seen by its session: what a
/// hook, a push or `check_messages` of one session reads, without scanning the whole inbox.
const UNSEEN: Table = TableDefinition::new("unseen");
const META: Table = TableDefinition::new("meta");
/// Idempotency key of a local `send` → its reply and when it was made.
const IDEMPOTENCY: Table = TableDefinition::new("idempotency");
/// Set once UNSEEN covers the whole inbox (stores older than the index get it built at open).
const UNSEEN_BUILT: &str = "unseen_index_v1";

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

/// Keeps UNSEEN in step with `rec`'s deliveries inside write transaction `w`. Deliveries are
/// only ever added or marked, never removed, so each one decides its own key.
fn index_unseen(w: &redb::WriteTransaction, rec: &InboxRecord) -> Result<(), StoreError> {
    let mut t = w.open_table(UNSEEN).map_err(db_err)?;
    for (session, d) in &rec.deliveries {
        let k = key(session, &key(&rec.mesh_id, &rec.message.msg_id));
        if d.seen {
            t.remove(k.as_str()).map_err(db_err)?;
        } else {
            t.insert(k.as_str(), &[][..]).map_err(db_err)?;
        }
    }
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), message: e.to_string() })?;
        let w = db.begin_write().map_err(db_err)?;
        for t in [INBOX, OUTBOX, SENT, UNSEEN, META, IDEMPOTENCY, trust::PINS, trust::REPLAY] {
            w.open_table(t).map_err(db_err)?;
        }
        let built = w.open_table(META).map_err(db_err)?.get(UNSEEN_BUILT).map_err(db_err)?.is_some();
        if !built {
            let recs: Vec<InboxRecord> = {
                let t = w.open_table(INBOX).map_err(db_err)?;
                let mut v = Vec::new();
                for item in t.iter().map_err(db_err)? {
                    let (_, bytes) = item.map_err(db_err)?;
                    if let Ok(r) = serde_json::from_slice(bytes.value()) {
                        v.push(r);
                    }
                }
                v
            };
            for r in &recs {
                index_unseen(&w, r)?;
            }
            w.open_table(META).map_err(db_err)?.insert(UNSEEN_BUILT, &b"1"[..]).map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
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
        if new {
            index_unseen(&w, rec)?;
        }
        w.commit().map_err(db_err)?;
        Ok(new)
    }

    pub fn inbox_get(&self, mesh_id: &str, msg_id: &str) -> Result<Option<InboxRecord>, StoreError> {
        self.get(INBOX, &key(mesh_id, msg_id))
    }

    pub fn inbox_update(&self, rec: &InboxRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(rec).map_err(db_err)?;
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let k = key(&rec.mesh_id, &rec.message.msg_id);
            w.open_table(INBOX).map_err(db_err)?.insert(k.as_str(), bytes.as_slice()).map_err(db_err)?;
            index_unseen(&w, rec)?;
        }
        w.commit().map_err(db_err)
    }

    /// A session closed (or, with `None`, every session: the agent starts with none): the
    /// messages routed to it that it never saw go back to waiting (`pending`), for the next
    /// matching session to take. Returns the records released, as now stored.
    pub fn inbox_release(&self, session: Option<&str>) -> Result<Vec<InboxRecord>, StoreError> {
        let (from, to) = match session {
            Some(s) => (format!("{s}\u{1f}"), format!("{s}\u{20}")),
            None => (String::new(), "\u{10ffff}".to_string()),
        };
        let w = self.db.begin_write().map_err(db_err)?;
        let mut released: BTreeMap<String, InboxRecord> = BTreeMap::new();
        {
            let mut index = w.open_table(UNSEEN).map_err(db_err)?;
            let mut inbox = w.open_table(INBOX).map_err(db_err)?;
            let keys: Vec<String> = index
                .range(from.as_str()..to.as_str())
                .map_err(db_err)?
                .map(|item| item.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            for k in keys {
                index.remove(k.as_str()).map_err(db_err)?;
                // `session␟mesh␟msg`: the session is everything before the first separator.
                let Some((owner, inbox_key)) = k.split_once('\u{1f}') else { continue };
                let Some(bytes) = inbox.get(inbox_key).map_err(db_err)?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let Ok(mut rec) = serde_json::from_slice::<InboxRecord>(&bytes) else { continue };
                rec.deliveries.remove(owner);
                rec.pending = true;
                let bytes = serde_json::to_vec(&rec).map_err(db_err)?;
                inbox.insert(inbox_key, bytes.as_slice()).map_err(db_err)?;
                released.insert(inbox_key.to_string(), rec);
            }
        }
        w.commit().map_err(db_err)?;
        Ok(released.into_values().collect())
    }

    /// The inbox records routed to `session` that it has not seen, oldest first: read through
    /// the UNSEEN index, so the cost follows what is waiting, not the inbox's size.
    pub fn inbox_unseen(&self, session: &str) -> Result<Vec<InboxRecord>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let index = r.open_table(UNSEEN).map_err(db_err)?;
        let inbox = r.open_table(INBOX).map_err(db_err)?;
        // Keys of this session run from `session␟` up to (not including) `session` + U+0020.
        let (from, to) = (format!("{session}\u{1f}"), format!("{session}\u{20}"));
        let mut out = Vec::new();
        for item in index.range(from.as_str()..to.as_str()).map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            let inbox_key = &k.value()[from.len()..];
            let Some(v) = inbox.get(inbox_key).map_err(db_err)? else { continue };
            match serde_json::from_slice::<InboxRecord>(v.value()) {
                Ok(rec) => out.push(rec),
                Err(e) => tracing::warn!(key = inbox_key, error = %e, "skipping corrupt agent record"),
            }
        }
        out.sort_by(|a, b| {
            (a.message.received_at, &a.message.msg_id).cmp(&(b.message.received_at, &b.message.msg_id))
        });
        Ok(out)
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
            let sb = serde_json::to_vec(&rec.sent_record()).map_err(db_err)?;
            w.open_table(SENT)
                .map_err(db_err)?
                .insert(rec.client_msg_id.as_str(), sb.as_slice())
                .map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// Replaces a send waiting in the outbox (sealed again, or one more attempt), and the
    /// recipients its record lists, in one transaction.
    pub fn outbox_update(&self, rec: &OutboxRecord) -> Result<(), StoreError> {
        let ob = serde_json::to_vec(rec).map_err(db_err)?;
        let id = rec.client_msg_id.as_str();
        let w = self.db.begin_write().map_err(db_err)?;
        {
            w.open_table(OUTBOX).map_err(db_err)?.insert(id, ob.as_slice()).map_err(db_err)?;
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
mod tests;
