//! The socket API's methods (DESIGN §10): what each `request` does. Errors carry the broker's
//! stable codes and a message that says what to do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use claudemesh_protocol::crypto::{MessagePlaintext, fan_out};
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, PeerSession, ServerFrame, SessionPatch, Target};
use claudemesh_protocol::limits::MAX_BODY_BYTES;
use claudemesh_protocol::local::{AgentCall, InboxMessage, InboxParams, SendParams, SessionRegister};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::inbox::{adopt_pending, now_ms, push_deliverable, touch};
use crate::resolve::{ResolveError, recipients, resolve_target};
use crate::state::{Agent, LocalSession};
use crate::store::{InboxRecord, OutboxRecord, SendState};
use crate::uplink::UplinkCmd;

pub type ApiError = (ErrorCode, String);

fn internal(e: impl std::fmt::Display) -> ApiError {
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
        AgentCall::Status => Ok(status(agent)),
        AgentCall::Meshes => Ok(meshes(agent)),
        AgentCall::Peers { mesh } => peers(agent, mesh.as_deref()),
        AgentCall::Members { mesh } => members(agent, mesh.as_deref()),
        AgentCall::Send(p) => send(agent, p),
        AgentCall::Inbox(p) => inbox(agent, p),
        AgentCall::MarkSeen { msg_ids, session } => {
            mark_seen(agent, &msg_ids, session.as_deref()).map(|n| json!({ "marked": n }))
        }
        AgentCall::MessageStatus { msg_id } => message_status(agent, &msg_id).await,
        AgentCall::SessionRegister(r) => register(agent, r, registered),
        AgentCall::SessionUpdate { session_id, patch } => update(agent, &session_id, patch),
        AgentCall::SessionClose { session_id } => {
            registered.retain(|s| s != &session_id);
            close_session(agent, &session_id);
            Ok(json!({ "closed": session_id }))
        }
        AgentCall::InviteCreate(p) => crate::admin::invite_create(agent, p).await,
        AgentCall::InviteList { mesh } => crate::admin::invite_list(agent, mesh.as_deref()).await,
        AgentCall::InviteRevoke { invite_id, mesh } => {
            crate::admin::invite_revoke(agent, mesh.as_deref(), invite_id).await
        }
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

fn status(agent: &Agent) -> Value {
    let outbox = agent.store.outbox_count().unwrap_or_default();
    let inbox = agent.store.inbox_all().unwrap_or_default();
    let sessions = agent.sessions();
    let meshes = agent.meshes();
    let mut list: Vec<Value> = meshes
        .values()
        .map(|m| {
            let id = &m.config.id;
            let mine: Vec<&InboxMessage> =
                inbox.iter().filter(|r| &r.mesh_id == id).map(|r| &r.message).collect();
            json!({
                "slug": m.config.slug,
                "id": id,
                "broker_url": m.config.broker_url,
                "member_id": m.config.member_id,
                "link": m.link,
                "detail": m.link_detail,
                "connected_secs": m.connected_since.map(|t| t.elapsed().as_secs()),
                "sessions": sessions.values().filter(|s| s.meshes.contains(id)).count(),
                "peers": m.peers.len(),
                "inbox": mine.len(),
                "unread": mine.iter().filter(|x| !x.seen).count(),
                "outbox": outbox.get(id).copied().unwrap_or(0),
            })
        })
        .collect();
    list.sort_by(|a, b| a["slug"].as_str().cmp(&b["slug"].as_str()));
    let mut local: Vec<Value> = sessions
        .values()
        .map(|s| {
            json!({
                "session_id": s.info.session_id,
                "display_name": s.info.display_name,
                "status": s.info.status,
                "claude_pid": s.claude_pid,
                "claude_session": s.claude_session,
                "stop_hook_waiting": s.waiting,
                "idle_secs": s.last_active.elapsed().as_secs(),
            })
        })
        .collect();
    local.sort_by(|a, b| a["display_name"].as_str().cmp(&b["display_name"].as_str()));
    json!({
        "agent_version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_secs": agent.started.elapsed().as_secs(),
        "config_dir": agent.paths.dir,
        "sessions": sessions.len(),
        "local_sessions": local,
        "meshes": list,
    })
}

fn meshes(agent: &Agent) -> Value {
    let m = agent.meshes();
    let mut v: Vec<Value> = m
        .values()
        .map(|m| json!({"slug": m.config.slug, "id": m.config.id, "broker_url": m.config.broker_url, "member_id": m.config.member_id, "role": m.config.role, "display_name": m.config.display_name, "link": m.link}))
        .collect();
    v.sort_by(|a, b| a["slug"].as_str().cmp(&b["slug"].as_str()));
    Value::Array(v)
}

fn selected(agent: &Agent, mesh: Option<&str>) -> Result<Vec<String>, ApiError> {
    match mesh {
        Some(_) => agent.resolve_mesh(mesh).map(|m| vec![m]).map_err(|e| (ErrorCode::NotFound, e)),
        None => Ok(agent.meshes().keys().cloned().collect()),
    }
}

fn peers(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let ids = selected(agent, mesh)?;
    let local: Vec<LocalSession> = agent.sessions().values().cloned().collect();
    let meshes = agent.meshes();
    let mut out = Vec::new();
    for id in ids {
        let Some(v) = meshes.get(&id) else { continue };
        // This agent's own sessions are listed at once, before the broker's batched presence
        // echoes them back.
        let unechoed = local
            .iter()
            .filter(|s| s.meshes.contains(&id) && !v.peers.contains_key(&s.info.session_id))
            .map(|s| PeerSession {
                member_id: v.config.member_id.clone(),
                session: s.info.clone(),
                connected_since: 0,
            })
            .collect::<Vec<_>>();
        for p in v.peers.values().chain(unechoed.iter()) {
            let mut j = serde_json::to_value(p).map_err(internal)?;
            j["mesh"] = json!(v.config.slug);
            j["member_name"] = json!(v.members.get(&p.member_id).map(|m| m.display_name.clone()));
            j["me"] = json!(p.member_id == v.config.member_id);
            out.push(j);
        }
    }
    out.sort_by(|a, b| {
        (a["mesh"].as_str(), a["display_name"].as_str())
            .cmp(&(b["mesh"].as_str(), b["display_name"].as_str()))
    });
    Ok(Value::Array(out))
}

fn members(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let ids = selected(agent, mesh)?;
    let meshes = agent.meshes();
    let mut out = Vec::new();
    for id in ids {
        let Some(v) = meshes.get(&id) else { continue };
        for m in v.members.values() {
            let mut j = serde_json::to_value(m).map_err(internal)?;
            j["mesh"] = json!(v.config.slug);
            j["me"] = json!(m.member_id == v.config.member_id);
            out.push(j);
        }
    }
    out.sort_by(|a, b| {
        (a["mesh"].as_str(), a["display_name"].as_str())
            .cmp(&(b["mesh"].as_str(), b["display_name"].as_str()))
    });
    Ok(Value::Array(out))
}

fn resolve_err(e: ResolveError) -> ApiError {
    match e {
        ResolveError::Ambiguous { .. } => (ErrorCode::Conflict, e.to_string()),
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
    let _held = p.mark_seen.then(|| agent.delivery_lock());
    let mut out = Vec::new();
    let mut shown = Vec::new();
    for rec in agent.store.inbox_all().map_err(internal)? {
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
    if p.mark_seen {
        mark_records_seen(agent, shown.into_iter().flatten().collect(), p.session.as_deref())?;
    }
    serde_json::to_value(out).map_err(internal)
}

/// Marks messages seen (by `session`, or by the user at the CLI), and reports receipts.
pub fn mark_seen(agent: &Agent, ids: &[String], session: Option<&str>) -> Result<usize, ApiError> {
    mark_seen_where(agent, session, |r| ids.contains(&r.message.msg_id)).map(|m| m.len())
}

/// Under the delivery lock, marks the inbox records `pick` selects seen (by `session`, or by
/// the user) and returns their messages.
pub fn mark_seen_where(
    agent: &Agent,
    session: Option<&str>,
    pick: impl Fn(&InboxRecord) -> bool,
) -> Result<Vec<InboxMessage>, ApiError> {
    let _held = agent.delivery_lock();
    let recs: Vec<InboxRecord> =
        agent.store.inbox_all().map_err(internal)?.into_iter().filter(|r| pick(r)).collect();
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

fn register(agent: &Agent, r: SessionRegister, registered: &mut Vec<String>) -> Result<Value, ApiError> {
    if r.session.session_id.is_empty() {
        return Err((ErrorCode::Invalid, "session_id is required".into()));
    }
    let mut mesh_ids = Vec::new();
    for m in &r.meshes {
        mesh_ids.push(agent.resolve_mesh(Some(m)).map_err(|e| (ErrorCode::NotFound, e))?);
    }
    if mesh_ids.is_empty() {
        mesh_ids = agent.meshes().keys().cloned().collect();
    }
    let sid = r.session.session_id.clone();
    {
        let mut sessions = agent.sessions();
        let old = sessions.get(&sid);
        let holders = old.map_or(0, |s| s.holders);
        let claude_session = old.and_then(|s| s.claude_session.clone());
        let waiter = old.map_or(0, |s| s.waiter);
        let waiting = old.is_some_and(|s| s.waiting);
        sessions.insert(
            sid.clone(),
            LocalSession {
                info: r.session.clone(),
                meshes: mesh_ids.clone(),
                claude_pid: r.claude_pid,
                claude_session,
                waiter,
                waiting,
                last_active: Instant::now(),
                holders: holders + 1,
            },
        );
    }
    registered.push(sid.clone());
    let meshes = agent.meshes();
    let mut slugs = Vec::new();
    for id in &mesh_ids {
        if let Some(v) = meshes.get(id) {
            let _ = v.uplink.try_send(UplinkCmd::SessionOpen(r.session.clone()));
            slugs.push(v.config.slug.clone());
        }
    }
    drop(meshes);
    let adopted = adopt_pending(agent, &sid).map_err(internal)?;
    agent.bump();
    Ok(json!({ "session_id": sid, "meshes": slugs, "waiting": adopted }))
}

pub(crate) fn update(agent: &Agent, sid: &str, patch: SessionPatch) -> Result<Value, ApiError> {
    let mesh_ids = {
        let mut sessions = agent.sessions();
        let s = sessions
            .get_mut(sid)
            .ok_or_else(|| (ErrorCode::NotFound, format!("no session {sid} registered with this agent")))?;
        patch.apply(&mut s.info);
        s.last_active = Instant::now();
        s.meshes.clone()
    };
    let meshes = agent.meshes();
    for id in &mesh_ids {
        if let Some(v) = meshes.get(id) {
            let _ = v.uplink.try_send(UplinkCmd::SessionUpdate(sid.to_string(), patch.clone()));
        }
    }
    drop(meshes);
    // A session turning idle may now take `next` messages.
    let pushed = push_deliverable(agent, sid).map_err(internal)?;
    agent.bump();
    Ok(json!({ "session_id": sid, "pushed": pushed }))
}

/// Drops one holder of a session; the last one closes it on every mesh.
pub fn close_session(agent: &Agent, sid: &str) {
    let gone = {
        let mut sessions = agent.sessions();
        match sessions.get_mut(sid) {
            Some(s) if s.holders > 1 => {
                s.holders -= 1;
                None
            }
            Some(_) => sessions.remove(sid),
            None => None,
        }
    };
    if let Some(s) = gone {
        agent.bump();
        let meshes = agent.meshes();
        for id in &s.meshes {
            if let Some(v) = meshes.get(id) {
                let _ = v.uplink.try_send(UplinkCmd::SessionClose(sid.to_string()));
            }
        }
    }
}
