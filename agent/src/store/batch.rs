//! Batched writes: the delivery core collects what one turn of its loop changed and commits it
//! in one redb transaction (one fsync) before it answers anyone, so nothing is acknowledged that
//! is not committed, and a burst of calls costs one commit, not one each. Also the idempotency
//! keys of local sends, and the startup scan of the live inbox.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::{
    IDEMPOTENCY, INBOX, InboxRecord, OUTBOX, OutboxRecord, SENT, SendState, SentRecord, Store, StoreError,
    db_err, index_unseen, key,
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
            let mut inbox = w.open_table(INBOX).map_err(db_err)?;
            let mut outbox = w.open_table(OUTBOX).map_err(db_err)?;
            let mut sent = w.open_table(SENT).map_err(db_err)?;
            let mut idem = w.open_table(IDEMPOTENCY).map_err(db_err)?;
            let mut pins = w.open_table(super::trust::PINS).map_err(db_err)?;
            let mut replay = w.open_table(super::trust::REPLAY).map_err(db_err)?;
            for op in ops {
                match op {
                    StoreOp::Inbox(rec) => {
                        let k = key(&rec.mesh_id, &rec.message.msg_id);
                        let bytes = serde_json::to_vec(rec).map_err(db_err)?;
                        inbox.insert(k.as_str(), bytes.as_slice()).map_err(db_err)?;
                        if let Some((from, client)) = &rec.replay {
                            let rk = super::trust::replay_key(&rec.mesh_id, from, client);
                            replay.insert(rk.as_str(), rec.message.msg_id.as_bytes()).map_err(db_err)?;
                        }
                    }
                    StoreOp::Unpin { mesh_id, member_id } => {
                        pins.remove(key(mesh_id, member_id).as_str()).map_err(db_err)?;
                    }
                    StoreOp::Pin { mesh_id, member_id, pin } => {
                        let b = serde_json::to_vec(pin).map_err(db_err)?;
                        pins.insert(key(mesh_id, member_id).as_str(), b.as_slice()).map_err(db_err)?;
                    }
                    StoreOp::Outbox(rec) => {
                        let ob = serde_json::to_vec(rec).map_err(db_err)?;
                        outbox.insert(rec.client_msg_id.as_str(), ob.as_slice()).map_err(db_err)?;
                        let sb = serde_json::to_vec(&rec.sent_record()).map_err(db_err)?;
                        sent.insert(rec.client_msg_id.as_str(), sb.as_slice()).map_err(db_err)?;
                    }
                    StoreOp::OutboxFinish { client_msg_id, state } => {
                        outbox.remove(client_msg_id.as_str()).map_err(db_err)?;
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
        for op in ops {
            if let StoreOp::Inbox(rec) = op {
                index_unseen(&w, rec)?;
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

    /// At agent start: every inbox record a session has not seen, or that waits for one, and
    /// the number of records per mesh id. One scan of the inbox.
    pub fn inbox_live(&self) -> Result<(Vec<InboxRecord>, HashMap<String, usize>), StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(INBOX).map_err(db_err)?;
        let mut live = Vec::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for item in t.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let rec: InboxRecord = match serde_json::from_slice(v.value()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(key = k.value(), error = %e, "skipping corrupt agent record");
                    continue;
                }
            };
            *counts.entry(rec.mesh_id.clone()).or_default() += 1;
            if rec.pending || rec.deliveries.values().any(|d| !d.seen) {
                live.push(rec);
            }
        }
        Ok((live, counts))
    }
}
