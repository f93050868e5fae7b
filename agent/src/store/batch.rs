//! Batched writes: the delivery core collects what one turn of its loop changed and commits it
//! in one redb transaction (one fsync) before it answers anyone, so nothing is acknowledged that
//! is not committed, and a burst of calls costs one commit, not one each. Also the idempotency
//! keys of local sends.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::index::Indexes;
use super::{
    IDEMPOTENCY, InboxRecord, OUTBOX, OutboxRecord, SENT, SendState, SentRecord, Store, StoreError, db_err,
    key,
};

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum StoreOp {
    /// Insert or replace an inbox record (keeping the unseen index in step).
    Inbox(InboxRecord),
    /// A new send: into the outbox, and recorded as pending for `message_status`.
    Outbox(OutboxRecord),
    /// A send ended: out of the outbox, its final state kept for `message_status`.
    OutboxFinish { client_msg_id: String, state: SendState },
    /// The reply a send with this idempotency key got, made at `at` (Unix ms).
    Idempotency { key: String, reply: serde_json::Value, at: u64 },
    /// A member's key pinned (or its pin marked removed).
    Pin { mesh_id: String, member_id: String, pin: super::Pin },
    /// A member's pin forgotten (`member_repin`); a `Pin` later in the batch sets the new one.
    Unpin { mesh_id: String, member_id: String },
    /// A seen message past its TTL deleted (`mesh_id␟msg_id`), its msg_id and replay key kept
    /// for `window_ms` more (see [`claudemesh_protocol::limits::REPLAY_WINDOW_SECS`]). A record
    /// that is live again stays.
    Prune { inbox_key: String, window_ms: u64 },
    /// A pruned message's dedupe keys forgotten (their time key).
    Forget { time_key: String },
}

#[derive(Serialize, Deserialize)]
struct IdemRecord {
    reply: serde_json::Value,
    at: u64,
}

impl Store {
    /// Commits `ops` in one transaction, in order. Nothing of it is stored if it fails.
    pub fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut ix = Indexes::open(&w)?;
            let mut outbox = w.open_table(OUTBOX).map_err(db_err)?;
            let mut sent = w.open_table(SENT).map_err(db_err)?;
            let mut idem = w.open_table(IDEMPOTENCY).map_err(db_err)?;
            let mut pins = w.open_table(super::trust::PINS).map_err(db_err)?;
            for op in ops {
                match op {
                    StoreOp::Inbox(rec) => {
                        ix.put(rec)?;
                    }
                    StoreOp::Prune { inbox_key, window_ms } => {
                        ix.prune(inbox_key, *window_ms)?;
                    }
                    StoreOp::Forget { time_key } => ix.forget(time_key)?,
                    StoreOp::Unpin { mesh_id, member_id } => {
                        pins.remove(key(mesh_id, member_id).as_str()).map_err(db_err)?;
                    }
                    StoreOp::Pin { mesh_id, member_id, pin } => {
                        let b = serde_json::to_vec(pin).map_err(db_err)?;
                        pins.insert(key(mesh_id, member_id).as_str(), b.as_slice()).map_err(db_err)?;
                    }
                    StoreOp::Outbox(rec) => {
                        let ob = serde_json::to_vec(rec).map_err(db_err)?;
                        let old = outbox.insert(rec.client_msg_id.as_str(), ob.as_slice()).map_err(db_err)?;
                        if old.is_none() {
                            ix.bump("outbox", &rec.mesh_id, 1)?;
                        }
                        let sb = serde_json::to_vec(&rec.sent_record()).map_err(db_err)?;
                        sent.insert(rec.client_msg_id.as_str(), sb.as_slice()).map_err(db_err)?;
                    }
                    StoreOp::OutboxFinish { client_msg_id, state } => {
                        let old = outbox
                            .remove(client_msg_id.as_str())
                            .map_err(db_err)?
                            .map(|v| v.value().to_vec());
                        if let Some(old) = old.and_then(|b| serde_json::from_slice::<OutboxRecord>(&b).ok()) {
                            ix.bump("outbox", &old.mesh_id, -1)?;
                        }
                        let old =
                            sent.get(client_msg_id.as_str()).map_err(db_err)?.map(|v| v.value().to_vec());
                        if let Some(bytes) = old
                            && let Ok(mut record) = serde_json::from_slice::<SentRecord>(&bytes)
                        {
                            record.state = state.clone();
                            let sb = serde_json::to_vec(&record).map_err(db_err)?;
                            sent.insert(client_msg_id.as_str(), sb.as_slice()).map_err(db_err)?;
                        }
                    }
                    StoreOp::Idempotency { key, reply, at } => {
                        let b = serde_json::to_vec(&IdemRecord { reply: reply.clone(), at: *at })
                            .map_err(db_err)?;
                        idem.insert(key.as_str(), b.as_slice()).map_err(db_err)?;
                    }
                }
            }
        }
        w.commit().map_err(db_err)
    }

    /// The reply an earlier send with idempotency key `k` got, if it is remembered.
    pub fn idempotency_get(&self, k: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self.get::<IdemRecord>(IDEMPOTENCY, k)?.map(|r| r.reply))
    }

    /// Forgets idempotency keys made before `before` (Unix ms). Returns how many went.
    pub fn idempotency_prune(&self, before: u64) -> Result<usize, StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        let n = {
            let mut t = w.open_table(IDEMPOTENCY).map_err(db_err)?;
            let old: Vec<String> = t
                .iter()
                .map_err(db_err)?
                .filter_map(|item| {
                    let (k, v) = item.ok()?;
                    let r: IdemRecord = serde_json::from_slice(v.value()).ok()?;
                    (r.at < before).then(|| k.value().to_string())
                })
                .collect();
            for k in &old {
                t.remove(k.as_str()).map_err(db_err)?;
            }
            old.len()
        };
        w.commit().map_err(db_err)?;
        Ok(n)
    }
}
