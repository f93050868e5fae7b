//! Reads of the inbox through its indexes ([`super::index`]): a page of messages walked in
//! order of arrival (decoding only the page), the live records the core loads at start, the
//! per-mesh counts, whether a msg_id was stored (or pruned), and what a prune may delete.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable};

use super::index::{
    DELIVERED, FRESH, GONE, GONE_BY_TIME, LIVE, ORDER, SEP, UNSEEN, counters, inbox_key_of, mesh_of,
    session_range,
};
use super::{INBOX, InboxRecord, META, Store, StoreError, db_err, key};

type RoTable = ReadOnlyTable<&'static str, &'static [u8]>;

/// A count per mesh id.
pub type PerMesh = BTreeMap<String, usize>;

/// Which messages a page holds.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    /// Only those routed to this session (seen means seen by it); otherwise the whole inbox
    /// (seen means seen by any session or the user).
    pub session: Option<String>,
    /// Only this mesh id's.
    pub mesh_id: Option<String>,
    /// Seen ones too.
    pub include_seen: bool,
    /// Only seen ones (with `include_seen`).
    pub only_seen: bool,
    /// Forward from this cursor (`""`: from the oldest), oldest first; `None`: the newest.
    pub after: Option<String>,
    /// Most messages.
    pub limit: usize,
    /// Most bytes of bodies (one message always fits).
    pub max_bytes: usize,
}

/// A page of the inbox.
#[derive(Debug, Clone, Default)]
pub struct InboxPage {
    /// Oldest first, each with `seen` as the query means it.
    pub records: Vec<InboxRecord>,
    /// Matching messages beyond the page (older ones when reading the newest, later ones when
    /// paging forward).
    pub more: usize,
    /// Paging forward with more to come: the cursor of the next page.
    pub next: Option<String>,
}

/// What a prune may delete now.
#[derive(Debug, Clone, Default)]
pub struct PruneWork {
    /// Inbox keys (`mesh_id␟msg_id`) of seen records received before the cutoff.
    pub records: Vec<String>,
    /// [`GONE_BY_TIME`] keys whose time came.
    pub forget: Vec<String>,
}

impl Store {
    /// Whether the message `msg_id` of `mesh_id` is in the inbox or was pruned within the replay
    /// window: a push of it again is a duplicate. Reads two keys, decodes nothing.
    pub fn inbox_known(&self, mesh_id: &str, msg_id: &str) -> Result<bool, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let k = key(mesh_id, msg_id);
        if r.open_table(INBOX).map_err(db_err)?.get(k.as_str()).map_err(db_err)?.is_some() {
            return Ok(true);
        }
        Ok(r.open_table(GONE).map_err(db_err)?.get(k.as_str()).map_err(db_err)?.is_some())
    }

    /// Messages in the inbox per mesh id, and sends waiting in the outbox per mesh id: kept
    /// counters, no scan.
    pub fn counts(&self) -> Result<(PerMesh, PerMesh), StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let meta = r.open_table(META).map_err(db_err)?;
        Ok((counters(&meta, "inbox")?, counters(&meta, "outbox")?))
    }

    /// Sends waiting in the outbox per mesh id (a kept counter).
    pub fn outbox_count(&self) -> Result<PerMesh, StoreError> {
        Ok(self.counts()?.1)
    }

    /// At agent start: every inbox record a session has not seen, or that waits for one (read
    /// through the live index), and the number of records per mesh id (the counters).
    pub fn inbox_live(&self) -> Result<(Vec<InboxRecord>, HashMap<String, usize>), StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let live = r.open_table(LIVE).map_err(db_err)?;
        let inbox = r.open_table(INBOX).map_err(db_err)?;
        let mut out = Vec::new();
        for item in live.iter().map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            if let Some(rec) = decode(&inbox, &inbox_key_of(k.value()))? {
                out.push(rec);
            }
        }
        let totals = counters(&r.open_table(META).map_err(db_err)?, "inbox")?;
        Ok((out, totals.into_iter().collect()))
    }

    /// The inbox records routed to `session` that it has not seen, oldest first: read through
    /// its index, so the cost follows what is waiting, not the inbox's size.
    pub fn inbox_unseen(&self, session: &str) -> Result<Vec<InboxRecord>, StoreError> {
        let q = InboxQuery {
            session: Some(session.to_string()),
            after: Some(String::new()),
            limit: usize::MAX,
            max_bytes: usize::MAX,
            ..Default::default()
        };
        Ok(self.inbox_page(&q)?.records)
    }

    /// Every inbox record, oldest first (tests and tools: no hot path reads the whole inbox).
    pub fn inbox_all(&self) -> Result<Vec<InboxRecord>, StoreError> {
        let q = InboxQuery {
            include_seen: true,
            after: Some(String::new()),
            limit: usize::MAX,
            max_bytes: usize::MAX,
            ..Default::default()
        };
        Ok(self.inbox_page(&q)?.records)
    }

    /// One page of the messages `q` selects. Walks one index in order, by key alone; decodes
    /// only the messages it returns (and, for `only_seen`, checks one more key per message).
    pub fn inbox_page(&self, q: &InboxQuery) -> Result<InboxPage, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let inbox = r.open_table(INBOX).map_err(db_err)?;
        // The index to walk, the prefix of its keys, and the index whose keys are unseen ones.
        let (index, unseen, (from, to)) = match &q.session {
            Some(s) if q.include_seen => (DELIVERED, UNSEEN, session_range(s)),
            Some(s) => (UNSEEN, UNSEEN, session_range(s)),
            None if q.include_seen => (ORDER, FRESH, (String::new(), "\u{10ffff}".to_string())),
            None => (FRESH, FRESH, (String::new(), "\u{10ffff}".to_string())),
        };
        let index = r.open_table(index).map_err(db_err)?;
        let unseen = r.open_table(unseen).map_err(db_err)?;
        let prefix = from.len();
        let wanted = |k: &str| -> Result<bool, StoreError> {
            let order = &k[prefix..];
            if q.mesh_id.as_deref().is_some_and(|m| m != mesh_of(order)) {
                return Ok(false);
            }
            if q.only_seen && unseen.get(k).map_err(db_err)?.is_some() {
                return Ok(false);
            }
            Ok(true)
        };
        let start = match &q.after {
            Some(c) if !c.is_empty() => format!("{from}{c}"),
            _ => from.clone(),
        };
        let forward = q.after.is_some();
        let range = index.range(start.as_str()..to.as_str()).map_err(db_err)?;
        let mut keys: Box<dyn Iterator<Item = _>> =
            if forward { Box::new(range) } else { Box::new(range.rev()) };
        let (mut records, mut bytes, mut last) = (Vec::new(), 0usize, None);
        for item in keys.by_ref() {
            let (k, _) = item.map_err(db_err)?;
            let k = k.value();
            if (forward && k == start && q.after.as_deref().is_some_and(|c| !c.is_empty())) || !wanted(k)? {
                continue;
            }
            let Some(mut rec) = decode(&inbox, &inbox_key_of(&k[prefix..]))? else { continue };
            let len = rec.message.body.len();
            if !records.is_empty() && (records.len() >= q.limit || bytes + len > q.max_bytes) {
                // This one is the first beyond the page.
                let mut more = 1;
                for item in keys.by_ref() {
                    let (k, _) = item.map_err(db_err)?;
                    more += usize::from(wanted(k.value())?);
                }
                if !forward {
                    records.reverse();
                }
                let next = if forward { last } else { None };
                return Ok(InboxPage { records, more, next });
            }
            bytes += len;
            last = Some(k[prefix..].to_string());
            rec.message.seen = match &q.session {
                Some(s) => rec.deliveries.get(s).is_some_and(|d| d.seen),
                None => rec.message.seen || rec.deliveries.values().any(|d| d.seen),
            };
            records.push(rec);
        }
        if !forward {
            records.reverse();
        }
        Ok(InboxPage { records, more: 0, next: None })
    }

    /// What a prune may delete now: at most `max` seen records received before `before` (Unix
    /// ms), and the pruned messages' dedupe keys due at `now`. Reads keys only.
    pub fn prune_work(&self, before: u64, now: u64, max: usize) -> Result<PruneWork, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let order = r.open_table(ORDER).map_err(db_err)?;
        let live = r.open_table(LIVE).map_err(db_err)?;
        let cutoff = format!("{before:016x}");
        let mut work = PruneWork::default();
        for item in order.range(..cutoff.as_str()).map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            if live.get(k.value()).map_err(db_err)?.is_some() {
                continue;
            }
            work.records.push(inbox_key_of(k.value()));
            if work.records.len() >= max {
                break;
            }
        }
        let gone = r.open_table(GONE_BY_TIME).map_err(db_err)?;
        let due = format!("{now:016x}{SEP}");
        for item in gone.range(..due.as_str()).map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            work.forget.push(k.value().to_string());
            if work.forget.len() >= max {
                break;
            }
        }
        Ok(work)
    }
}

/// The record at inbox key `k`; a corrupt one is skipped (and said so).
fn decode(inbox: &RoTable, k: &str) -> Result<Option<InboxRecord>, StoreError> {
    let Some(v) = inbox.get(k).map_err(db_err)? else { return Ok(None) };
    match serde_json::from_slice::<InboxRecord>(v.value()) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            tracing::warn!(key = k, error = %e, "skipping corrupt agent record");
            Ok(None)
        }
    }
}
