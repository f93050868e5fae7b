//! What the agent remembers for end-to-end trust: the key pinned for each member on first
//! sight (and whether it was verifiably removed), and the replay index of received messages
//! by (mesh, sender member, client message id).

use std::collections::HashMap;

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, db_err, key};

/// `mesh_id␟member_id` → [`Pin`].
pub(super) const PINS: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("pins");
/// `mesh_id␟from_member␟client_msg_id` → the msg_id it first arrived as, then `␟` and the
/// nonce of its box (records from before nonces were kept: the msg_id alone).
pub(super) const REPLAY: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("replay");

/// A member's key as first seen (trust on first use), and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// ed25519 public key, hex, lowercase.
    pub pubkey: String,
    /// The name it had when pinned.
    pub display_name: String,
    /// Unix ms.
    pub pinned_at: u64,
    /// A verified removal or leave was seen: the key never comes back.
    #[serde(default)]
    pub removed: bool,
}

/// How a message first arrived, from the replay index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstArrival {
    pub msg_id: String,
    /// The nonce of its box; `None` for records stored before nonces were kept.
    pub nonce: Option<String>,
}

impl FirstArrival {
    /// The replay-index value: `msg_id`, or `msg_id␟nonce`.
    pub(super) fn encode(msg_id: &str, nonce: Option<&str>) -> String {
        match nonce {
            Some(n) => key(msg_id, n),
            None => msg_id.to_string(),
        }
    }

    fn decode(v: &[u8]) -> Self {
        let v = String::from_utf8_lossy(v);
        // The nonce is base64 (no separator); the msg_id came from the broker and might hold one.
        match v.rsplit_once(super::index::SEP) {
            Some((id, n)) => Self { msg_id: id.to_string(), nonce: Some(n.to_string()) },
            None => Self { msg_id: v.into_owned(), nonce: None },
        }
    }

    /// Whether a box with `nonce` is a replay of this arrival (the same box) rather than its
    /// sender's retry sealed again. Without a stored nonce, every second box counts as a replay.
    pub fn same_box(&self, nonce: &str) -> bool {
        self.nonce.as_deref().is_none_or(|n| n == nonce)
    }
}

/// The replay-index key of a message.
pub(super) fn replay_key(mesh_id: &str, from_member: &str, client_msg_id: &str) -> String {
    key(mesh_id, &key(from_member, client_msg_id))
}

impl Store {
    /// Every pin of `mesh_id`, by member id.
    pub fn pins(&self, mesh_id: &str) -> Result<HashMap<String, Pin>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(PINS).map_err(db_err)?;
        let prefix = key(mesh_id, "");
        let mut out = HashMap::new();
        for item in t.range(prefix.as_str()..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let Some(member) = k.value().strip_prefix(prefix.as_str()) else { break };
            match serde_json::from_slice::<Pin>(v.value()) {
                Ok(p) => {
                    out.insert(member.to_string(), p);
                }
                Err(e) => tracing::warn!(key = k.value(), error = %e, "skipping corrupt pin"),
            }
        }
        Ok(out)
    }

    /// Forgets the pin of one member, so its current key is pinned on next sight (`member
    /// repin`, after comparing safety codes).
    pub fn unpin(&self, mesh_id: &str, member_id: &str) -> Result<(), StoreError> {
        self.remove(PINS, &key(mesh_id, member_id))
    }

    /// How a message with this (sender, client message id) first arrived, if it did.
    pub fn replayed(
        &self,
        mesh_id: &str,
        from_member: &str,
        client_msg_id: &str,
    ) -> Result<Option<FirstArrival>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(REPLAY).map_err(db_err)?;
        let k = replay_key(mesh_id, from_member, client_msg_id);
        Ok(t.get(k.as_str()).map_err(db_err)?.map(|v| FirstArrival::decode(v.value())))
    }
}
