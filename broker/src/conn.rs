//! Per-connection state the handlers work on: the connection's identity once it has
//! authenticated ([`Authed`]), its outgoing handle, and binding to / unbinding from a mesh
//! (replacing an older connection of the same member and replaying its queue). The socket
//! loops that drive a connection live in [`crate::socket`]; this module imports no handler.

use std::sync::Arc;

use claudemesh_protocol::frames::{AgentInstance, ErrorCode, Event, ServerFrame, encode};
use claudemesh_protocol::limits::{CLOSE_POLICY, CLOSE_REPLACED};

use crate::hub::{ConnHandle, Hub, Mesh, Outgoing};
use crate::keyuse::{Verdict, key_in_use_message};
use crate::store::{QUEUE, key};

/// The authenticated identity of a connection.
#[derive(Debug, Clone)]
pub struct Authed {
    pub mesh: Arc<Mesh>,
    pub member_id: String,
}

/// Per-connection context handed to handlers.
#[derive(Debug)]
pub struct Conn {
    pub hub: Arc<Hub>,
    pub out: ConnHandle,
    pub challenge: String,
    pub auth: Option<Authed>,
    /// Bundle uploads in progress or waiting for their deploy (removed when it closes).
    pub uploads: crate::services::upload::Uploads,
}

impl Conn {
    /// Sends a frame to this connection.
    pub fn reply(&self, frame: &ServerFrame) {
        if let ServerFrame::Error(e) = frame {
            self.hub.metrics.error(e.code);
        }
        self.out.send(Outgoing::Frame(encode(frame), frame.type_name()));
    }

    pub fn error(&self, req: Option<u64>, code: ErrorCode, message: impl Into<String>) {
        self.reply(&ServerFrame::error(req, code, message));
    }

    /// The connection is about to be answered a whole list (`list_members`, first-page
    /// `list_peers`): presence it missed over its budget is in that answer, so it gets
    /// presence events again. Called before the mesh state is read.
    pub fn presence_listed(&self) {
        self.out.presence_stale.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Takes one token of `budget` for this connection's member. When none is left, answers
    /// `req` with `rate_limited` (and `retry_after_ms`) and returns true: the frame is dropped.
    pub fn rate_limited(&self, budget: crate::rate::Budget, req: Option<u64>) -> bool {
        let Some(a) = &self.auth else { return false };
        let Err(wait) = a.mesh.lock().take(&a.member_id, budget, &self.hub.config) else { return false };
        self.reply(&ServerFrame::Error(claudemesh_protocol::frames::ErrorFrame {
            req,
            code: ErrorCode::RateLimited,
            message: format!("{} too fast; retry in {wait} ms", budget.doing()),
            retry_after_ms: Some(wait),
        }));
        true
    }

    /// Sends an error, then closes with 1008 (failed hello or enroll).
    pub fn refuse(&self, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        self.error(None, code, message.clone());
        self.out.send(Outgoing::Close(CLOSE_POLICY, truncate_reason(&message)));
    }

    /// Binds this connection to a member: registers it with the mesh (replacing an older
    /// connection of the same member, closed with 4000) and replays its queue. `instance` is
    /// the agent process connecting, when it said; two different instances replacing each
    /// other again and again are two agents with one key, and the one that started later is
    /// stopped with `key_in_use` (see [`crate::keyuse`]).
    pub fn bind(
        &mut self,
        mesh: Arc<Mesh>,
        member_id: String,
        instance: Option<AgentInstance>,
    ) -> Result<(), (ErrorCode, String)> {
        self.out.instance = instance;
        let online_event = {
            let mut guard = mesh.lock();
            let st = &mut *guard;
            // Removed while its hello was being checked: do not register it again.
            let Some(name) =
                st.members.get(&member_id).filter(|m| !m.removed).map(|m| m.display_name.clone())
            else {
                return Err((
                    ErrorCode::Revoked,
                    format!("member {member_id} was removed from mesh {}", mesh.slug),
                ));
            };
            let replacing = st.conns.contains_key(&member_id);
            let current = st.conns.get(&member_id).and_then(|c| c.instance.clone());
            let verdict = if replacing {
                let rule = self.hub.config.key_use_rule();
                let tracker = st.key_use.entry(member_id.clone()).or_default();
                tracker.judge(current.as_ref(), self.out.instance.as_ref(), std::time::Instant::now(), rule)
            } else {
                Verdict::Replace
            };
            if verdict == Verdict::RefuseNewcomer
                && let Some(other) = &current
            {
                tracing::warn!(mesh = %mesh.slug, member = %member_id, "two agents use one member key; refused the one that started later");
                return Err((ErrorCode::KeyInUse, key_in_use_message(&name, &member_id, &mesh.slug, other)));
            }
            if !replacing && st.conns.len() >= self.hub.config.max_connections_per_mesh {
                return Err((
                    ErrorCode::Limit,
                    format!(
                        "mesh {} has its maximum of {} connections",
                        mesh.slug, self.hub.config.max_connections_per_mesh
                    ),
                ));
            }
            match st.conns.insert(member_id.clone(), self.out.clone()) {
                Some(old) if verdict == Verdict::CloseCurrent => {
                    tracing::warn!(mesh = %mesh.slug, member = %member_id, "two agents use one member key; closed the one that started later");
                    let other = self.out.instance.as_ref().map_or_else(
                        || format!("the key of member {name} ({member_id}) is in use by another agent"),
                        |i| key_in_use_message(&name, &member_id, &mesh.slug, i),
                    );
                    self.hub.metrics.error(ErrorCode::KeyInUse);
                    old.send(Outgoing::Frame(
                        encode(&ServerFrame::error(None, ErrorCode::KeyInUse, other)),
                        "error",
                    ));
                    old.send(Outgoing::Close(CLOSE_POLICY, "key in use by another agent".into()));
                }
                Some(old) => {
                    old.send(Outgoing::Close(
                        CLOSE_REPLACED,
                        "replaced by a newer connection of this member".into(),
                    ));
                }
                None => {
                    self.hub.metrics.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            (!replacing && st.members.contains_key(&member_id))
                .then(|| Event::MemberOnline { member_id: member_id.clone(), online: true })
        };
        if let Some(ev) = online_event {
            mesh.lock().presence(&ev);
        }
        self.auth = Some(Authed { mesh: mesh.clone(), member_id: member_id.clone() });
        self.spawn_replay(mesh, member_id);
        Ok(())
    }

    /// Re-pushes every queued message of the member, in send order, with backpressure.
    fn spawn_replay(&self, mesh: Arc<Mesh>, member_id: String) {
        let db = self.hub.store.db.clone();
        let out = self.out.clone();
        let kill = self.out.kill.clone();
        tokio::spawn(async move {
            let prefix = key(&[&mesh.id, &member_id]);
            let rows = match tokio::task::spawn_blocking(move || db.read_scan(QUEUE, &prefix)).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::error!(mesh = %mesh.slug, member = %member_id, error = %e, "cannot read queue for replay; dropping connection so the agent retries");
                    kill.cancel();
                    return;
                }
                Err(_) => return,
            };
            for (_, v) in rows {
                let text = String::from_utf8_lossy(&v).into_owned();
                tokio::select! {
                    _ = kill.cancelled() => return,
                    sent = out.send_waiting(Outgoing::Frame(text, "push")) => if !sent { return },
                }
            }
        });
    }

    /// Unregisters this connection from its mesh, if it is still the member's current one:
    /// its sessions start their reconnect grace and, unless it was removed, the member is
    /// announced offline.
    pub(crate) fn unbind(&mut self) {
        let Some(a) = self.auth.take() else { return };
        if let Some(tx) = self.hub.services.existing(&a.mesh.id) {
            let gone =
                crate::services::Cmd::ConnGone { conn_id: self.out.id, member_id: a.member_id.clone() };
            if tx.try_send(gone).is_err() {
                tracing::warn!(mesh = %a.mesh.slug, "services queue full; a closed connection's calls end at their timeout");
            }
        }
        let mut st = a.mesh.lock();
        if st.conns.get(&a.member_id).is_some_and(|c| c.id == self.out.id) {
            st.conns.remove(&a.member_id);
            self.hub.metrics.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let now = std::time::Instant::now();
            for s in st.sessions.values_mut().filter(|s| s.member_id == a.member_id) {
                s.offline_since.get_or_insert(now);
            }
            // A member that just left or was removed is gone: `member_removed` said so already.
            if st.members.get(&a.member_id).is_some_and(|m| !m.removed) {
                st.presence(&Event::MemberOnline { member_id: a.member_id.clone(), online: false });
            }
        }
    }
}

/// Whether the connection's member is still an active member of its mesh: `None` when it
/// is, else why not (for a `revoked` error). One lookup in the mesh's member cache, done for
/// every frame, so a member removed while its frames are queued gets nothing more done.
pub fn still_member(a: &Authed) -> Option<String> {
    let st = a.mesh.lock();
    match st.members.get(&a.member_id) {
        Some(m) if !m.removed => None,
        Some(m) => Some(format!(
            "member {} {}",
            a.member_id,
            m.removed_reason.unwrap_or_default().phrase().replacen(
                "the mesh",
                &format!("mesh {}", a.mesh.slug),
                1
            )
        )),
        None => Some(format!("member {} is not in mesh {}", a.member_id, a.mesh.slug)),
    }
}

/// `s` cut to a WebSocket close reason's limit (123 bytes), at a character boundary.
pub(crate) fn truncate_reason(s: &str) -> String {
    // Close reasons are limited to 123 bytes.
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
