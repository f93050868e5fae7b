//! `inbox` reads that take nothing (`claudemesh inbox`, a session's waiting messages, one message
//! by id): served from the committed store on a blocking thread, never by the core, so a large
//! inbox costs the reader and nobody else. Each is one page walked through an index of the
//! store, decoding only the messages returned: the newest `limit`, or oldest first after a
//! cursor (`after`), at most [`INBOX_PAGE_MAX`] messages and [`INBOX_PAGE_MAX_BYTES`] of bodies.
//! Takes (`take: true`) go to the core.

use claudemesh_protocol::limits::{CHECK_MESSAGES_DEFAULT_LIMIT, INBOX_PAGE_MAX, INBOX_PAGE_MAX_BYTES};
use claudemesh_protocol::local::{AgentCall, InboxMessage, InboxParams, InboxReply};
use serde_json::Value;

use super::{ApiError, internal};
use crate::core::calls::to_value;
use crate::shared::Agent;
use crate::store::{InboxPage, InboxQuery};

/// A take that also wants history (`include_seen`, or one message by id): the core takes the
/// unseen ones under a lease; what the session saw already (the newest `limit`) is read from
/// the store here, off the core, and comes first.
pub async fn take_with_history(agent: &Agent, conn: u64, p: InboxParams) -> Result<Value, ApiError> {
    let taken = agent.core.call(conn, AgentCall::Inbox(InboxParams { all: false, ..p.clone() })).await?;
    let mut taken: InboxReply = serde_json::from_value(taken).map_err(internal)?;
    let limit = p.limit.unwrap_or(CHECK_MESSAGES_DEFAULT_LIMIT);
    let history = InboxParams { take: false, all: true, limit: Some(limit), after: None, ..p };
    let mut seen = page(agent, &history, true).await?.messages;
    seen.append(&mut taken.messages);
    taken.messages = seen;
    to_value(&taken)
}

/// The messages `p` selects (the newest `limit`, or a page forward from `after`), marking
/// nothing.
pub async fn read(agent: &Agent, p: InboxParams) -> Result<Value, ApiError> {
    to_value(&page(agent, &p, false).await?)
}

/// One page of what `p` selects; `only_seen` keeps the ones already seen.
async fn page(agent: &Agent, p: &InboxParams, only_seen: bool) -> Result<InboxReply, ApiError> {
    let mesh_id = match &p.mesh {
        Some(m) => Some(agent.view().resolve_mesh(Some(m))?),
        None => None,
    };
    let store = agent.store.clone();
    let limit = p.limit.unwrap_or(INBOX_PAGE_MAX).min(INBOX_PAGE_MAX) as usize;
    if let Some(id) = p.msg_id.clone() {
        // One message, seen or not: a lookup per mesh the inbox holds, no walk.
        let (session, meshes) = (p.session.clone(), mesh_id.map(|m| vec![m]));
        let found =
            tokio::task::spawn_blocking(move || one(&store, &id, session.as_deref(), meshes, only_seen))
                .await
                .map_err(internal)?
                .map_err(internal)?;
        return Ok(InboxReply { messages: found.into_iter().collect(), ..Default::default() });
    }
    let q = InboxQuery {
        session: p.session.clone(),
        mesh_id,
        include_seen: p.all || only_seen,
        only_seen,
        after: p.after.clone(),
        limit,
        max_bytes: INBOX_PAGE_MAX_BYTES,
    };
    let InboxPage { records, more, next } = tokio::task::spawn_blocking(move || store.inbox_page(&q))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let messages = records.into_iter().map(|r| r.message).collect();
    Ok(InboxReply { messages, lease: None, more, next })
}

/// Message `id` in one of `meshes` (or of any mesh the inbox holds), with `seen` for `session`
/// (or for anyone); none if it is not routed to `session`, or (`only_seen`) not seen yet.
fn one(
    store: &crate::store::Store,
    id: &str,
    session: Option<&str>,
    meshes: Option<Vec<String>>,
    only_seen: bool,
) -> Result<Option<InboxMessage>, crate::store::StoreError> {
    let meshes = match meshes {
        Some(m) => m,
        None => store.counts()?.0.into_keys().collect(),
    };
    for mesh in meshes {
        let Some(rec) = store.inbox_get(&mesh, id)? else { continue };
        let seen = match session {
            Some(s) => match rec.deliveries.get(s) {
                Some(d) => d.seen,
                None => continue,
            },
            None => rec.message.seen || rec.deliveries.values().any(|d| d.seen),
        };
        if only_seen && !seen {
            continue;
        }
        let mut m = rec.message;
        m.seen = seen;
        return Ok(Some(m));
    }
    Ok(None)
}
