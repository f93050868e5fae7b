//! The inbox's indexes and counters, kept in step with every write inside its transaction, so
//! no read the agent serves often decodes the whole inbox: the order of arrival, what is still
//! live (a session has not seen it, or it waits for one), what nobody has seen, each session's
//! deliveries and unseen ones, the per-mesh message and outbox counts, and the dedupe keys a
//! pruned message leaves behind.

use redb::{ReadableTable, WriteTransaction};

use super::trust::{FirstArrival, REPLAY, replay_key};
use super::{INBOX, InboxRecord, META, StoreError, Table, db_err, key};

/// `{received_at:016x}␟msg_id␟mesh_id` → nothing: every inbox record, oldest first (ties by
/// msg_id).
pub(super) const ORDER: Table = Table::new("inbox_order");
/// Order key → nothing, for records some session has not seen or that wait for a session.
pub(super) const LIVE: Table = Table::new("inbox_live");
/// Order key → nothing, for records no session (and not the user) has seen.
pub(super) const FRESH: Table = Table::new("inbox_fresh");
/// `session␟order key` → nothing: every delivery of a record to a local session.
pub(super) const DELIVERED: Table = Table::new("inbox_delivered");
/// `session␟order key` → nothing: the deliveries a session has not seen yet.
pub(super) const UNSEEN: Table = Table::new("inbox_unseen");
/// `mesh_id␟msg_id` → the replay key of a pruned message (empty when it had none): a push of
/// it again is a duplicate, not a new message.
pub(super) const GONE: Table = Table::new("inbox_gone");
/// `{forget_at:016x}␟mesh_id␟msg_id` → nothing: when each [`GONE`] entry (and its replay key)
/// may go, oldest first.
pub(super) const GONE_BY_TIME: Table = Table::new("inbox_gone_time");

/// The separator of composite keys (a control character: no session id, mesh id or msg_id
/// holds one).
pub(super) const SEP: char = '\u{1f}';

/// A record's place in [`ORDER`].
pub fn order_key(rec: &InboxRecord) -> String {
    format!("{:016x}{SEP}{}{SEP}{}", rec.message.received_at, rec.message.msg_id, rec.mesh_id)
}

/// The inbox key (`mesh_id␟msg_id`) of an order key.
pub(super) fn inbox_key_of(order: &str) -> String {
    let mut parts = order.splitn(3, SEP).skip(1);
    let (msg, mesh) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    key(mesh, msg)
}

/// The mesh id of an order key.
pub(super) fn mesh_of(order: &str) -> &str {
    order.rsplit(SEP).next().unwrap_or("")
}

/// The keys of `session`'s entries run from `session␟` up to, not including, `session` + U+0020.
pub(super) fn session_range(session: &str) -> (String, String) {
    (format!("{session}{SEP}"), format!("{session}\u{20}"))
}

/// The META key of a counter (`kind` is `inbox` or `outbox`).
fn counter_key(kind: &str, mesh_id: &str) -> String {
    format!("count{SEP}{kind}{SEP}{mesh_id}")
}

/// Whether a record is still live: a session has not seen it, or it waits for one.
pub fn is_live(rec: &InboxRecord) -> bool {
    rec.pending || rec.deliveries.values().any(|d| !d.seen)
}

/// Whether nobody has seen it: no session and not the user.
fn is_fresh(rec: &InboxRecord) -> bool {
    !rec.message.seen && !rec.deliveries.values().any(|d| d.seen)
}

/// The tables one write transaction keeps in step, each opened once.
pub(super) struct Indexes<'t> {
    pub inbox: redb::Table<'t, &'static str, &'static [u8]>,
    order: redb::Table<'t, &'static str, &'static [u8]>,
    live: redb::Table<'t, &'static str, &'static [u8]>,
    fresh: redb::Table<'t, &'static str, &'static [u8]>,
    delivered: redb::Table<'t, &'static str, &'static [u8]>,
    unseen: redb::Table<'t, &'static str, &'static [u8]>,
    gone: redb::Table<'t, &'static str, &'static [u8]>,
    gone_time: redb::Table<'t, &'static str, &'static [u8]>,
    pub replay: redb::Table<'t, &'static str, &'static [u8]>,
    pub meta: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Indexes<'t> {
    pub fn open(w: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            inbox: w.open_table(INBOX).map_err(db_err)?,
            order: w.open_table(ORDER).map_err(db_err)?,
            live: w.open_table(LIVE).map_err(db_err)?,
            fresh: w.open_table(FRESH).map_err(db_err)?,
            delivered: w.open_table(DELIVERED).map_err(db_err)?,
            unseen: w.open_table(UNSEEN).map_err(db_err)?,
            gone: w.open_table(GONE).map_err(db_err)?,
            gone_time: w.open_table(GONE_BY_TIME).map_err(db_err)?,
            replay: w.open_table(REPLAY).map_err(db_err)?,
            meta: w.open_table(META).map_err(db_err)?,
        })
    }

    /// Adds `delta` to a counter.
    pub fn bump(&mut self, kind: &str, mesh_id: &str, delta: i64) -> Result<(), StoreError> {
        let k = counter_key(kind, mesh_id);
        let now = read_u64(self.meta.get(k.as_str()).map_err(db_err)?.map(|v| v.value().to_vec()));
        let next = now.saturating_add_signed(delta);
        if next == 0 {
            self.meta.remove(k.as_str()).map_err(db_err)?;
        } else {
            self.meta.insert(k.as_str(), &next.to_le_bytes()[..]).map_err(db_err)?;
        }
        Ok(())
    }

    /// Inserts or replaces `rec`, its index entries following it (a delivery the record lost
    /// loses its entries too). Returns whether it was new.
    pub fn put(&mut self, rec: &InboxRecord) -> Result<bool, StoreError> {
        let k = key(&rec.mesh_id, &rec.message.msg_id);
        let bytes = serde_json::to_vec(rec).map_err(db_err)?;
        let old =
            self.inbox.insert(k.as_str(), bytes.as_slice()).map_err(db_err)?.map(|v| v.value().to_vec());
        let new = old.is_none();
        if let Some(old) = old.and_then(|b| serde_json::from_slice::<InboxRecord>(&b).ok()) {
            self.unindex(&old)?;
        }
        self.index(rec)?;
        if new {
            self.bump("inbox", &rec.mesh_id, 1)?;
        }
        if let Some((from, client)) = &rec.replay {
            let rk = replay_key(&rec.mesh_id, from, client);
            let first = FirstArrival::encode(&rec.message.msg_id, rec.box_nonce.as_deref());
            self.replay.insert(rk.as_str(), first.as_bytes()).map_err(db_err)?;
        }
        Ok(new)
    }

    fn index(&mut self, rec: &InboxRecord) -> Result<(), StoreError> {
        let ok = order_key(rec);
        let none: &[u8] = &[];
        self.order.insert(ok.as_str(), none).map_err(db_err)?;
        if is_live(rec) {
            self.live.insert(ok.as_str(), none).map_err(db_err)?;
        }
        if is_fresh(rec) {
            self.fresh.insert(ok.as_str(), none).map_err(db_err)?;
        }
        for (session, d) in &rec.deliveries {
            let sk = key(session, &ok);
            self.delivered.insert(sk.as_str(), none).map_err(db_err)?;
            if !d.seen {
                self.unseen.insert(sk.as_str(), none).map_err(db_err)?;
            }
        }
        Ok(())
    }

    fn unindex(&mut self, rec: &InboxRecord) -> Result<(), StoreError> {
        let ok = order_key(rec);
        self.order.remove(ok.as_str()).map_err(db_err)?;
        self.live.remove(ok.as_str()).map_err(db_err)?;
        self.fresh.remove(ok.as_str()).map_err(db_err)?;
        for session in rec.deliveries.keys() {
            let sk = key(session, &ok);
            self.delivered.remove(sk.as_str()).map_err(db_err)?;
            self.unseen.remove(sk.as_str()).map_err(db_err)?;
        }
        Ok(())
    }

    /// Deletes a seen record (`mesh_id␟msg_id`) and its index entries, and remembers its msg_id
    /// and replay key until `forget_at` (Unix ms, at least its sent or received time plus the
    /// replay window). A record that is live again, or gone already, stays as it is. Returns
    /// the mesh id of a record pruned.
    pub fn prune(&mut self, inbox_key: &str, window_ms: u64) -> Result<Option<String>, StoreError> {
        let Some(bytes) = self.inbox.get(inbox_key).map_err(db_err)?.map(|v| v.value().to_vec()) else {
            return Ok(None);
        };
        let rec = match serde_json::from_slice::<InboxRecord>(&bytes) {
            Ok(r) if is_live(&r) => return Ok(None),
            Ok(r) => Some(r),
            // A corrupt record is nobody's message any more: it goes, with its order entry.
            Err(_) => None,
        };
        self.inbox.remove(inbox_key).map_err(db_err)?;
        let Some(rec) = rec else { return Ok(None) };
        self.unindex(&rec)?;
        self.bump("inbox", &rec.mesh_id, -1)?;
        let replay = rec.replay.as_ref().map(|(f, c)| replay_key(&rec.mesh_id, f, c)).unwrap_or_default();
        let at = rec.message.received_at.max(rec.message.sent_at).saturating_add(window_ms);
        self.gone.insert(inbox_key, replay.as_bytes()).map_err(db_err)?;
        self.gone_time.insert(format!("{at:016x}{SEP}{inbox_key}").as_str(), &[][..]).map_err(db_err)?;
        Ok(Some(rec.mesh_id))
    }

    /// Forgets a pruned message's dedupe keys (its [`GONE_BY_TIME`] key): past the replay
    /// window, a push of it again is refused by its age.
    pub fn forget(&mut self, time_key: &str) -> Result<(), StoreError> {
        self.gone_time.remove(time_key).map_err(db_err)?;
        let inbox_key = time_key.split_once(SEP).map_or("", |(_, rest)| rest);
        let replay = self.gone.remove(inbox_key).map_err(db_err)?.map(|v| v.value().to_vec());
        if let Some(rk) = replay.filter(|r| !r.is_empty()) {
            self.replay.remove(String::from_utf8_lossy(&rk).as_ref()).map_err(db_err)?;
        }
        Ok(())
    }

    /// Rebuilds every index and counter of the inbox from the records (a store from before
    /// them): one pass, once.
    pub fn rebuild(&mut self) -> Result<usize, StoreError> {
        for t in [&mut self.order, &mut self.live, &mut self.fresh, &mut self.delivered, &mut self.unseen] {
            t.retain(|_, _| false).map_err(db_err)?;
        }
        self.meta.retain(|k, _| !k.starts_with(&format!("count{SEP}inbox{SEP}"))).map_err(db_err)?;
        // In chunks, so a large inbox is never decoded into memory whole.
        let (mut from, mut n) = (String::new(), 0);
        loop {
            let (mut recs, mut visited) = (Vec::new(), 0);
            for item in self.inbox.range(from.as_str()..).map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                if n + visited > 0 && k.value() == from {
                    continue;
                }
                from = k.value().to_string();
                visited += 1;
                if let Ok(r) = serde_json::from_slice::<InboxRecord>(v.value()) {
                    recs.push(r);
                }
                if visited >= 1000 {
                    break;
                }
            }
            if visited == 0 {
                return Ok(n);
            }
            for r in &recs {
                self.index(r)?;
                self.bump("inbox", &r.mesh_id, 1)?;
            }
            n += visited;
        }
    }
}

/// A counter's value (absent is 0).
pub(super) fn read_u64(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map_or(0, u64::from_le_bytes)
}

/// Every counter of `kind` by mesh id, from `meta`.
pub(super) fn counters(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    kind: &str,
) -> Result<std::collections::BTreeMap<String, usize>, StoreError> {
    let prefix = format!("count{SEP}{kind}{SEP}");
    let mut out = std::collections::BTreeMap::new();
    for item in meta.range(prefix.as_str()..).map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let Some(mesh) = k.value().strip_prefix(prefix.as_str()) else { break };
        let n = read_u64(Some(v.value().to_vec()));
        out.insert(mesh.to_string(), usize::try_from(n).unwrap_or(usize::MAX));
    }
    Ok(out)
}
