//! The core's side of the socket: which calls it serves (the rest are answered by `api` from
//! the snapshot and the links), subscriptions with their snapshot and sequence number, and a
//! connection going away.

use std::time::Instant;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::local::{AgentCall, AgentLine, CloseReply, SubscribeReply, Topic};
use serde_json::Value;

use super::state::Subscription;
use super::{Core, Effect};
use crate::error::{ApiError, internal};
use crate::mesh::resolve_mesh;

/// JSON of a reply struct (serializing plain data cannot fail; if it ever did, say so).
pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(internal)
}

impl Core {
    /// Serves one call of connection `conn`.
    pub(crate) fn call(&mut self, conn: u64, call: AgentCall, now: Instant) -> Result<Value, ApiError> {
        match call {
            AgentCall::Send(p) => self.send(p, now),
            AgentCall::Inbox(p) => self.inbox(p, now),
            AgentCall::Confirm { lease, msg_ids } => self.confirm(lease, msg_ids.as_deref(), now),
            AgentCall::MarkSeen { msg_ids, session } => self.mark_seen(&msg_ids, session.as_deref(), now),
            AgentCall::MarkRead { msg_ids, mesh } => self.mark_read(&msg_ids, mesh.as_deref()),
            AgentCall::SessionRegister(r) => self.register(conn, r, now),
            AgentCall::SessionUpdate { session_id, patch } => self.update(&session_id, patch, now),
            AgentCall::SessionClose { session_id } => {
                self.release_holder(conn, &session_id, now);
                to_value(&CloseReply { closed: session_id })
            }
            AgentCall::Hook(h) => self.hook(&h, now),
            other => Err((ErrorCode::Internal, format!("the delivery core does not serve {other:?}"))),
        }
    }

    // The fields of one `Input::Subscribe`, as they came.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn subscribe(
        &mut self,
        conn: u64,
        id: u64,
        topics: Vec<Topic>,
        session: Option<String>,
        mesh: Option<String>,
        service: Option<String>,
        now: Instant,
    ) {
        let mesh = match mesh.map(|m| resolve_mesh(&self.state.meshes, Some(&m))) {
            Some(Err(e)) => {
                self.effect(Effect::Line(conn, AgentLine::err(id, ErrorCode::NotFound, e)));
                return;
            }
            Some(Ok(m)) => Some(m),
            None => None,
        };
        // Following a log needs its mesh: the only one, when none was named.
        let (mesh, service) = match (mesh, service) {
            (m, Some(s)) if topics.contains(&Topic::Services) => match m {
                Some(m) => (Some(m), Some(s)),
                None => match resolve_mesh(&self.state.meshes, None) {
                    Ok(m) => (Some(m), Some(s)),
                    Err(e) => {
                        self.effect(Effect::Line(conn, AgentLine::err(id, ErrorCode::NotFound, e)));
                        return;
                    }
                },
            },
            (m, _) => (m, None),
        };
        let wants_messages = topics.contains(&Topic::Messages);
        let sub = Subscription { conn, id, topics, session: session.clone(), mesh, service };
        self.state.subs.push(sub);
        // The snapshot as of this input: the view published after the last turn, brought up to
        // date, so that events numbered after `seq` are exactly what follows it.
        let snapshot = super::snapshot::build(self).snapshot(None);
        let seq = self.state.conns.get(&conn).map_or(0, |c| c.seq);
        let reply = SubscribeReply { subscribed: id, seq, snapshot };
        let line = match to_value(&reply) {
            Ok(v) => AgentLine::ok(id, v),
            Err((code, m)) => AgentLine::err(id, code, m),
        };
        self.effect(Effect::Line(conn, line));
        if let (true, Some(s)) = (wants_messages, session) {
            self.push_session(&s, now);
        }
    }

    /// A connection went away: its subscriptions end and it stops holding its sessions.
    pub(crate) fn conn_closed(&mut self, conn: u64, now: Instant) {
        self.state.subs.retain(|s| s.conn != conn);
        self.state.conns.remove(&conn);
        let held: Vec<String> = self
            .state
            .sessions
            .values()
            .filter(|s| s.holders.contains(&conn))
            .map(|s| s.info.session_id.clone())
            .collect();
        for sid in held {
            while self.state.sessions.get(&sid).is_some_and(|s| s.holders.contains(&conn)) {
                self.release_holder(conn, &sid, now);
            }
        }
    }
}
