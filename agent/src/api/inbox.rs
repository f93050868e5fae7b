//! `inbox` reads that take nothing (`claudemesh inbox`, a session's waiting messages, one message
//! by id): served from the committed store on a blocking thread, never by the core, so a large
//! inbox costs the reader and nobody else. Takes (`take: true`) go to the core.

use claudemesh_protocol::limits::CHECK_MESSAGES_DEFAULT_LIMIT;
use claudemesh_protocol::local::{AgentCall, InboxParams, InboxReply};
use serde_json::Value;

use super::{ApiError, internal};
use crate::core::calls::to_value;
use crate::shared::Agent;

/// A take that also wants history (`include_seen`, or one message by id): the core takes the
/// unseen ones under a lease; what the session saw already (the newest `limit`) is read from
/// the store here, off the core, and comes first.
pub async fn take_with_history(agent: &Agent, conn: u64, p: InboxParams) -> Result<Value, ApiError> {
    let taken = agent.core.call(conn, AgentCall::Inbox(InboxParams { all: false, ..p.clone() })).await?;
    let mut taken: InboxReply = serde_json::from_value(taken).map_err(internal)?;
    let limit = p.limit.unwrap_or(CHECK_MESSAGES_DEFAULT_LIMIT) as usize;
    let history: InboxReply =
        serde_json::from_value(read(agent, InboxParams { take: false, all: true, limit: None, ..p }).await?)
            .map_err(internal)?;
    let mut seen: Vec<_> = history.messages.into_iter().filter(|m| m.seen).collect();
    let skip = seen.len().saturating_sub(limit);
    seen.drain(..skip);
    seen.append(&mut taken.messages);
    taken.messages = seen;
    to_value(&taken)
}

/// The messages `p` selects (newest `limit` of them), marking nothing.
pub async fn read(agent: &Agent, p: InboxParams) -> Result<Value, ApiError> {
    let mesh = match &p.mesh {
        Some(m) => Some(agent.view().resolve_mesh(Some(m))?),
        None => None,
    };
    let store = agent.store.clone();
    let records =
        tokio::task::spawn_blocking(move || store.inbox_all()).await.map_err(internal)?.map_err(internal)?;
    let mut out = Vec::new();
    for rec in records {
        if mesh.as_ref().is_some_and(|m| m != &rec.mesh_id)
            || p.msg_id.as_ref().is_some_and(|id| id != &rec.message.msg_id)
        {
            continue;
        }
        let seen = match &p.session {
            Some(s) => match rec.deliveries.get(s) {
                Some(d) => d.seen,
                None => continue,
            },
            None => rec.message.seen || rec.deliveries.values().any(|d| d.seen),
        };
        if seen && !p.all && p.msg_id.is_none() {
            continue;
        }
        let mut m = rec.message;
        m.seen = seen;
        out.push(m);
    }
    let more = match p.limit {
        Some(limit) => {
            let skip = out.len().saturating_sub(limit as usize);
            out.drain(..skip);
            skip
        }
        None => 0,
    };
    to_value(&InboxReply { messages: out, lease: None, more })
}
