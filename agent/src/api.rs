//! The socket API (DESIGN §10): dispatch of each `request` to its handler, and the messaging
//! methods themselves (send, inbox, mark seen, message status). Errors carry the broker's stable
//! codes and a message that says what to do.

use std::collections::BTreeMap;
use std::sync::Arc;

use claudemesh_protocol::crypto::{MessagePlaintext, fan_out};
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ServerFrame, Target};
use claudemesh_protocol::limits::MAX_BODY_BYTES;
use claudemesh_protocol::local::{AgentCall, InboxMessage, InboxParams, SendParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::inbox::{now_ms, touch};
use crate::resolve::{ResolveError, recipients, resolve_target};
use crate::state::{Agent, LocalSession};
use crate::store::{InboxRecord, OutboxRecord, SendState};
use crate::uplink::UplinkCmd;
use crate::{sessions, views};

pub type ApiError = (ErrorCode, String);

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    (ErrorCode::Internal, e.to_string())
}

/// Handles one request of socket connection `conn`. `registered` collects the sessions this
/// connection registered, so they close when it goes away.
pub async fn handle(
    agent: &Arc<Agent>,
    call: AgentCall,
    registered: &mut Vec<String>,
) -> Result<Value, ApiError> {
    match call {
        AgentCall::Status => Ok(views::status(agent)),
        AgentCall::Meshes => Ok(views::meshes(agent)),
        AgentCall::Peers { mesh } => views::peers(agent, mesh.as_deref()),
        AgentCall::Members { mesh } => {
            crate::members::refresh_directories(agent, mesh.as_deref()).await;
            views::members(agent, mesh.as_deref())
        }
        AgentCall::Send(p) => match send(agent, p.clone()) {
            // The name may belong to someone who joined (or rejoined) a moment ago, before the
            // broker's batched presence said so: ask the broker, then try once more.
            Err((ErrorCode::NotFound, _)) => {
                crate::members::refresh_directories(agent, p.mesh.as_deref()).await;
                send(agent, p)
            }
            r => r,
        },
        AgentCall::Inbox(p) => inbox(agent, p).map(|messages| {
            json!(claudemesh_protocol::local::InboxReply { messages: serde_json::from_value(messages).unwrap_or_default(), lease: None, more: 0 })
        }),
        AgentCall::Confirm { .. } => Ok(json!({ "confirmed": 0 })),
        AgentCall::MarkSeen { msg_ids, session } => {
            mark_seen(agent, &msg_ids, session.as_deref()).map(|n| json!({ "marked": n }))
        }
        AgentCall::MessageStatus { msg_id } => message_status(agent, &msg_id).await,
        AgentCall::SessionRegister(r) => sessions::register(agent, r, registered),
        AgentCall::SessionUpdate { session_id, patch } => sessions::update(agent, &session_id, patch),
        AgentCall::SessionClose { session_id } => {
            registered.retain(|s| s != &session_id);
            sessions::close_session(agent, &session_id);
            Ok(json!({ "closed": session_id }))
        }
        AgentCall::InviteCreate(p) => crate::admin::invite_create(agent, p).await,
        AgentCall::InviteList { mesh } => crate::admin::invite_list(agent, mesh.as_deref()).await,
        AgentCall::InviteRevoke { invite_id, mesh } => {
            crate::admin::invite_revoke(agent, mesh.as_deref(), invite_id).await
        }
        AgentCall::MemberRemove { member, mesh } => {
            crate::members::remove(agent, mesh.as_deref(), &member).await
        }
        AgentCall::MemberSet { member, mesh, role, groups } => {
            crate::members::set(agent, mesh.as_deref(), &member, role, groups).await
        }
        AgentCall::Leave { mesh, local_only } => crate::members::leave(agent, &mesh, local_only).await,
        AgentCall::Hook(call) => crate::hooks::hook(agent, &call),
        AgentCall::HookWait { session_id, timeout_ms } => {
            crate::hooks::wait(agent, &session_id, timeout_ms).await
        }
        AgentCall::Shutdown => {
            agent.shutdown.cancel();
            Ok(json!({ "stopping": true }))
        }
    }
}

fn resolve_err(e: ResolveError) -> ApiError {
    match e {
        ResolveError::Ambiguous { .. } => (ErrorCode::Conflict, e.to_string()),
        ResolveError::LinkDown { .. } => (ErrorCode::Unavailable, e.to_string()),
        _ => (ErrorCode::NotFound, e.to_string()),
    }
}

/// Resolves, encrypts per recipient, stores in the outbox, and returns at once.
fn send(agent: &Agent, p: SendParams) -> Result<Value, ApiError> {
    if p.message.len() > MAX_BODY_BYTES {
        return Err((
            ErrorCode::TooLarge,
            format!("message is {} bytes; at most {MAX_BODY_BYTES}", p.message.len()),
        ));
    }
    if p.message.trim().is_empty() {
        return Err((ErrorCode::Invalid, "message is empty".into()));
    }
    let mesh_id = match &p.mesh {
        Some(m) => agent.resolve_mesh(Some(m)).map_err(|e| (ErrorCode::NotFound, e))?,
        None => {
            let meshes = agent.meshes();
            let hits: Vec<&String> =
                meshes.iter().filter(|(_, v)| resolve_target(v, &p.to).is_ok()).map(|(id, _)| id).collect();
            match hits[..] {
                [one] => one.clone(),
                [] => {
                    drop(meshes);
                    agent.resolve_mesh(None).map_err(|e| (ErrorCode::NotFound, e))?
                }
                _ => {
                    let mut s: Vec<String> =
                        hits.iter().filter_map(|id| meshes.get(*id).map(|v| v.config.slug.clone())).collect();
                    s.sort();
                    return Err((
                        ErrorCode::Conflict,
                        format!(
                            "{:?} exists in several meshes ({}); say which with --mesh",
                            p.to,
                            s.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let from_session = p.from_session.clone().unwrap_or_default();
    let session_name = agent.sessions().get(&from_session).map(|s| s.info.display_name.clone());
    let (target, to, key, from_name, uplink, own_member) = {
        let meshes = agent.meshes();
        let v = meshes.get(&mesh_id).ok_or_else(|| (ErrorCode::NotFound, "mesh disappeared".to_string()))?;
        let target = resolve_target(v, &p.to).map_err(resolve_err)?;
        // The broker never sends `@g`/`*` back to the sending member; its other local sessions
        // get the message here, so "nobody else in the mesh" is fine when a sibling takes it.
        let siblings = !local_siblings(agent, &mesh_id, &from_session, &target).is_empty();
        let to = match recipients(v, &target) {
            Ok(to) => to,
            Err(ResolveError::Empty(_)) if siblings => Vec::new(),
            Err(e) => return Err(resolve_err(e)),
        };
        let name = session_name.unwrap_or_else(|| {
            if v.config.display_name.is_empty() {
                v.config.member_id.clone()
            } else {
                v.config.display_name.clone()
            }
        });
        (target, to, v.key.clone(), name, v.uplink.clone(), v.config.member_id.clone())
    };
    let mut plaintext = MessagePlaintext::new(from_session.clone(), from_name, p.message);
    plaintext.reply_to = p.reply_to;
    let local = deliver_to_siblings(agent, &mesh_id, &own_member, &target, p.priority, &plaintext)?;
    let slug = agent.meshes().get(&mesh_id).map(|v| v.config.slug.clone()).unwrap_or_default();
    if to.is_empty() {
        return Ok(
            json!({ "id": Value::Null, "mesh": slug, "target": target.to_string(), "recipients": 0, "local": local }),
        );
    }
    let envelopes = fan_out(&plaintext, &to, &key).map_err(|e| (ErrorCode::Invalid, e.to_string()))?;
    let rec = OutboxRecord {
        client_msg_id: uuid::Uuid::new_v4().to_string(),
        mesh_id: mesh_id.clone(),
        to: p.to,
        target: target.to_string(),
        priority: p.priority,
        plaintext,
        envelopes,
        created_at: now_ms(),
        attempts: 0,
    };
    agent.store.outbox_put(&rec).map_err(internal)?;
    let _ = uplink.try_send(UplinkCmd::Kick);
    if !from_session.is_empty() {
        touch(agent, &from_session);
    }
    Ok(
        json!({ "id": rec.client_msg_id, "mesh": slug, "target": rec.target, "recipients": to.len(), "local": local }),
    )
}

/// This agent's other sessions that a `@g` or `*` send reaches.
fn local_siblings(agent: &Agent, mesh_id: &str, from_session: &str, target: &Target) -> Vec<String> {
    let wants = |s: &LocalSession| match target {
        Target::Broadcast => true,
        Target::Group(g) => s.info.groups.iter().any(|x| &x.name == g),
        Target::Member(_) | Target::Session(_) => false,
    };
    agent
        .sessions()
        .values()
        .filter(|s| s.info.session_id != from_session && s.meshes.iter().any(|m| m == mesh_id) && wants(s))
        .map(|s| s.info.session_id.clone())
        .collect()
}

/// Puts a `@g`/`*` message straight into the inbox of this agent's other matching sessions.
fn deliver_to_siblings(
    agent: &Agent,
    mesh_id: &str,
    own_member: &str,
    target: &Target,
    priority: claudemesh_protocol::frames::Priority,
    plaintext: &MessagePlaintext,
) -> Result<usize, ApiError> {
    let siblings = local_siblings(agent, mesh_id, &plaintext.from_session, target);
    if siblings.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let slug = agent.meshes().get(mesh_id).map(|v| v.config.slug.clone()).unwrap_or_default();
    let rec = InboxRecord {
        message: InboxMessage {
            msg_id: format!("local-{}", uuid::Uuid::new_v4()),
            mesh: slug,
            from_member: own_member.to_string(),
            from_session: plaintext.from_session.clone(),
            from_name: plaintext.from_name.clone(),
            target: target.to_string(),
            priority,
            body: plaintext.body.clone(),
            reply_to: plaintext.reply_to.clone(),
            meta: plaintext.meta.clone(),
            sent_at: now,
            received_at: now,
            seen: false,
            error: None,
        },
        mesh_id: mesh_id.to_string(),
        deliveries: siblings.iter().map(|s| (s.clone(), Default::default())).collect(),
        pending: false,
    };
    agent.store.inbox_insert(&rec).map_err(internal)?;
    crate::inbox::push_new(agent, rec).map_err(internal)?;
    Ok(siblings.len())
}

fn inbox(agent: &Agent, p: InboxParams) -> Result<Value, ApiError> {
    let mesh = match &p.mesh {
        Some(m) => Some(agent.resolve_mesh(Some(m)).map_err(|e| (ErrorCode::NotFound, e))?),
        None => None,
    };
    // Reading and marking happen under one lock, so a hook cannot show the same message too.
    let _held = p.take.then(|| agent.delivery_lock());
    let mut out = Vec::new();
    let mut shown = Vec::new();
    let records = match (&p.session, p.all) {
        (Some(s), false) => agent.store.inbox_unseen(s),
        _ => agent.store.inbox_all(),
    };
    for rec in records.map_err(internal)? {
        if mesh.as_ref().is_some_and(|m| m != &rec.mesh_id) {
            continue;
        }
        let seen = match &p.session {
            Some(s) => match rec.deliveries.get(s) {
                Some(d) => d.seen,
                None => continue,
            },
            None => rec.message.seen || rec.deliveries.values().any(|d| d.seen),
        };
        if seen && !p.all {
            continue;
        }
        let mut m = rec.message.clone();
        m.seen = seen;
        out.push(m);
        shown.push((!seen).then_some(rec));
    }
    if let Some(limit) = p.limit {
        let skip = out.len().saturating_sub(limit as usize);
        out.drain(..skip);
        shown.drain(..skip);
    }
    if p.take {
        mark_records_seen(agent, shown.into_iter().flatten().collect(), p.session.as_deref())?;
    }
    serde_json::to_value(out).map_err(internal)
}

/// Marks messages seen (by `session`, or by the user at the CLI), and reports receipts.
pub fn mark_seen(agent: &Agent, ids: &[String], session: Option<&str>) -> Result<usize, ApiError> {
    mark_seen_where(agent, session, |r| ids.contains(&r.message.msg_id)).map(|m| m.len())
}

/// Under the delivery lock, marks the inbox records `pick` selects seen (by `session`, or by
/// the user) and returns their messages. With a session, only what it has not seen is looked
/// at (through the store's index).
pub fn mark_seen_where(
    agent: &Agent,
    session: Option<&str>,
    pick: impl Fn(&InboxRecord) -> bool,
) -> Result<Vec<InboxMessage>, ApiError> {
    let _held = agent.delivery_lock();
    let candidates = match session {
        Some(s) => agent.store.inbox_unseen(s),
        None => agent.store.inbox_all(),
    };
    let recs: Vec<InboxRecord> = candidates.map_err(internal)?.into_iter().filter(|r| pick(r)).collect();
    let messages = recs.iter().map(|r| r.message.clone()).collect();
    mark_records_seen(agent, recs, session)?;
    Ok(messages)
}

/// Records that `recs` were shown (to `session`, or to the user), and sends the receipts.
/// Callers hold [`Agent::delivery_lock`].
pub fn mark_records_seen(
    agent: &Agent,
    recs: Vec<InboxRecord>,
    session: Option<&str>,
) -> Result<usize, ApiError> {
    let mut receipts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    for mut rec in recs {
        let was_seen = rec.message.seen;
        match session {
            Some(s) => rec.deliveries.entry(s.to_string()).or_default().seen = true,
            None => rec.deliveries.values_mut().for_each(|d| d.seen = true),
        }
        rec.message.seen = true;
        rec.pending = false;
        agent.store.inbox_update(&rec).map_err(internal)?;
        n += 1;
        if !was_seen && rec.message.error.is_none() {
            receipts.entry(rec.mesh_id.clone()).or_default().push(rec.message.msg_id.clone());
        }
    }
    let meshes = agent.meshes();
    for (mesh, ids) in receipts {
        if let Some(v) = meshes.get(&mesh) {
            let _ = v.uplink.try_send(UplinkCmd::Receipt(ids));
        }
    }
    Ok(n)
}

async fn message_status(agent: &Agent, id: &str) -> Result<Value, ApiError> {
    let sent = agent
        .store
        .sent(id)
        .map_err(internal)?
        .ok_or_else(|| (ErrorCode::NotFound, format!("no message {id} sent from this machine")))?;
    let mut out = serde_json::to_value(&sent).map_err(internal)?;
    if let SendState::Accepted { msg_id, .. } = &sent.state {
        let uplink = agent.meshes().get(&sent.mesh_id).map(|v| v.uplink.clone());
        if let Some(uplink) = uplink {
            let (tx, rx) = oneshot::channel();
            let msg_id = msg_id.clone();
            let build = Box::new(move |req| ClientFrame::MessageStatus { req, msg_id });
            if uplink.send(UplinkCmd::Request { build, reply: tx }).await.is_ok() {
                match tokio::time::timeout(std::time::Duration::from_secs(10), rx).await {
                    Ok(Ok(ServerFrame::MessageStatus { recipients, .. })) => {
                        out["recipients"] = json!(recipients)
                    }
                    Ok(Ok(ServerFrame::Error(e))) => out["broker_error"] = json!(e.message),
                    _ => out["broker_error"] = json!("the broker is not reachable right now; try again"),
                }
            }
        }
    }
    Ok(out)
}
