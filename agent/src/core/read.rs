//! A person's read marks (`mark_read`, from the dashboard): a flag on the stored inbox record,
//! written through the turn's batch like every other write. It is not delivery: no session's
//! pushed or seen mark, no lease and no receipt changes, and nothing is published.

use std::collections::BTreeSet;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::local::MarkReadReply;
use serde_json::Value;

use super::Core;
use super::calls::to_value;
use super::state::MsgKey;
use crate::error::{ApiError, internal};
use crate::mesh::resolve_mesh;
use crate::store::{InboxRecord, StoreOp};

impl Core {
    /// `mark_read`: sets `read` on the messages `ids` (in mesh `mesh`, a slug, or in any mesh
    /// with messages). Returns how many changed; unknown ids and messages already read count
    /// nothing.
    pub(crate) fn mark_read(&mut self, ids: &[String], mesh: Option<&str>) -> Result<Value, ApiError> {
        let meshes: Vec<String> = match mesh {
            Some(m) => vec![resolve_mesh(&self.state.meshes, Some(m)).map_err(|e| (ErrorCode::NotFound, e))?],
            // Meshes left since keep their messages: every mesh id the inbox holds, and the joined ones.
            None => {
                let ids: BTreeSet<&String> =
                    self.state.inbox_total.keys().chain(self.state.meshes.keys()).collect();
                ids.into_iter().cloned().collect()
            }
        };
        let wanted: BTreeSet<&String> = ids.iter().collect();
        let mut marked = 0;
        for id in wanted {
            for mesh_id in &meshes {
                let key = (mesh_id.clone(), id.clone());
                let Some(mut rec) = self.inbox_record(&key)? else { continue };
                if rec.message.read {
                    continue;
                }
                rec.message.read = true;
                // The live copy is what later writes start from: it must carry the mark too.
                if let Some(live) = self.state.live.get_mut(&key) {
                    live.message.read = true;
                }
                self.write(StoreOp::Inbox(rec));
                marked += 1;
            }
        }
        to_value(&MarkReadReply { marked })
    }

    /// The inbox record `key` as this turn has it: the live copy, else the last write queued this
    /// turn (not committed yet; none if pruned this turn), else the committed one.
    pub(crate) fn inbox_record(&self, key: &MsgKey) -> Result<Option<InboxRecord>, ApiError> {
        if let Some(rec) = self.state.live.get(key) {
            return Ok(Some(rec.clone()));
        }
        let inbox_key = crate::store::inbox_key(&key.0, &key.1);
        let queued = self.ops.iter().rev().find_map(|op| match op {
            StoreOp::Inbox(r) if r.mesh_id == key.0 && r.message.msg_id == key.1 => Some(Some(r.clone())),
            // Pruned this turn: gone, whatever the store says until the commit.
            StoreOp::Prune { inbox_key: k, .. } if *k == inbox_key => Some(None),
            _ => None,
        });
        if let Some(q) = queued {
            return Ok(q);
        }
        self.store.inbox_get(&key.0, &key.1).map_err(internal)
    }
}
