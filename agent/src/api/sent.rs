//! `sent`: this machine's sends with their bodies (the dashboard's history), read from the
//! committed store on a blocking thread, never by the core, like the `inbox` reads.

use claudemesh_protocol::limits::{SENT_DEFAULT_LIMIT, SENT_MAX_LIMIT};
use claudemesh_protocol::local::SentReply;
use serde_json::Value;

use super::{ApiError, internal};
use crate::core::calls::to_value;
use crate::shared::Agent;

/// The newest `limit` sends (default [`SENT_DEFAULT_LIMIT`], at most [`SENT_MAX_LIMIT`]) of
/// mesh `mesh` (a slug; `not_found` when no joined mesh has it) or of all, oldest first; `more`
/// counts the older ones left out.
pub async fn list(agent: &Agent, mesh: Option<&str>, limit: Option<u32>) -> Result<Value, ApiError> {
    let mesh_id = match mesh {
        Some(m) => Some(agent.view().resolve_mesh(Some(m))?),
        None => None,
    };
    let store = agent.store.clone();
    let mut sent = tokio::task::spawn_blocking(move || store.sent_list(mesh_id.as_deref()))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let limit = limit.unwrap_or(SENT_DEFAULT_LIMIT).min(SENT_MAX_LIMIT) as usize;
    let more = sent.len().saturating_sub(limit);
    sent.drain(..more);
    to_value(&SentReply { sent, more })
}
