//! Local sessions (DESIGN §6, §10): `session_register` (its name checked, a default name made
//! distinct: `repo`, `repo-2`), `session_update` (status, summary, groups: joining a group takes
//! what waits for it, leaving a granted one stops its messages), and closing when the last
//! connection holding a session lets go. A session opens on its meshes' broker links and takes
//! the messages waiting for it.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use claudemesh_protocol::frames::{ErrorCode, GroupRole, SessionPatch};
use claudemesh_protocol::limits::{MAX_DISPLAY_NAME_CHARS, MAX_SESSION_ID_BYTES};
use claudemesh_protocol::local::{
    LocalEvent, RegisterReply, SessionRegister, Topic, UpdateReply, WaitOutcome,
};
use claudemesh_protocol::names::{
    validate_display_name, validate_session_fields, validate_session_id, validate_session_patch,
};
use serde_json::Value;

use super::calls::to_value;
use super::state::LocalSession;
use super::{Core, Effect};
use crate::error::ApiError;
use crate::mesh::UplinkCmd;
use crate::mesh::resolve_mesh;

impl Core {
    /// `session_register` from connection `conn`.
    pub(crate) fn register(
        &mut self,
        conn: u64,
        r: SessionRegister,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let sid = r.session.session_id.clone();
        if sid.is_empty() {
            return Err((ErrorCode::Invalid, "session_id is required".into()));
        }
        if sid.len() > MAX_SESSION_ID_BYTES || sid.chars().any(char::is_control) {
            return Err((
                ErrorCode::Invalid,
                format!(
                    "session_id must be at most {MAX_SESSION_ID_BYTES} bytes, none of them control characters"
                ),
            ));
        }
        // The broker's rules, checked here so a bad field is the caller's error, not a refusal
        // the link only logs.
        validate_session_id(&sid).map_err(|e| (e.code(), e.to_string()))?;
        if let (Some(old), Some(pid)) = (self.state.sessions.get(&sid), r.claude_pid)
            && old.claude_pid.is_some_and(|p| p != pid)
            && !old.holders.is_empty()
        {
            return Err((
                ErrorCode::Conflict,
                format!(
                    "session {sid} is open for another claude process (pid {}); a nested `claude` must not \
                     reuse its CLAUDEMESH_SESSION_ID",
                    old.claude_pid.unwrap_or_default()
                ),
            ));
        }
        let mut mesh_ids = Vec::new();
        for m in &r.meshes {
            mesh_ids.push(resolve_mesh(&self.state.meshes, Some(m)).map_err(|e| (ErrorCode::NotFound, e))?);
        }
        if mesh_ids.is_empty() {
            mesh_ids = self.state.meshes.keys().cloned().collect();
            mesh_ids.sort();
        }
        let mut info = r.session.clone();
        info.display_name = session_name(&self.state.sessions, &r, &mesh_ids)?;
        validate_session_fields(&info).map_err(|e| (e.code(), e.to_string()))?;
        let old = self.state.sessions.remove(&sid);
        let mut holders = old.as_ref().map(|s| s.holders.clone()).unwrap_or_default();
        holders.push(conn);
        let session = LocalSession {
            info: info.clone(),
            meshes: mesh_ids.clone(),
            claude_pid: r.claude_pid.or(old.as_ref().and_then(|s| s.claude_pid)),
            claude_session: old.as_ref().and_then(|s| s.claude_session.clone()),
            waiter: old.as_ref().map_or(0, |s| s.waiter),
            waiting: old.as_ref().is_some_and(|s| s.waiting),
            last_active: now,
            holders,
            left_groups: old.map(|s| s.left_groups).unwrap_or_default(),
        };
        self.state.sessions.insert(sid.clone(), session);
        let mut slugs = Vec::new();
        for id in &mesh_ids {
            if let Some(v) = self.state.meshes.get(id) {
                slugs.push(v.config.slug.clone());
                self.effect(Effect::Uplink(id.clone(), UplinkCmd::SessionOpen(info.clone())));
            }
        }
        self.route_pending(now);
        let waiting = self.candidates(&sid, |_, _| true).len();
        self.push_session(&sid, now);
        self.session_event(&sid, false);
        self.changed();
        let groups = self.effective_groups(&sid);
        to_value(&RegisterReply {
            session_id: sid,
            display_name: info.display_name,
            meshes: slugs,
            waiting,
            groups,
        })
    }

    /// `session_update`: applies the patch, tells the links, and re-routes: a group joined
    /// takes what waits for it, a session turning idle takes `next` pushes.
    pub(crate) fn update(&mut self, sid: &str, patch: SessionPatch, now: Instant) -> Result<Value, ApiError> {
        if let Some(n) = &patch.display_name {
            check_name(n)?;
        }
        validate_session_patch(&patch).map_err(|e| (e.code(), e.to_string()))?;
        let Some(s) = self.state.sessions.get_mut(sid) else {
            return Err((ErrorCode::NotFound, format!("no session {sid} registered with this agent")));
        };
        if let Some(groups) = &patch.groups {
            // `groups` is the whole set the session is in now: a granted group missing from it
            // was left, and stays left until the session joins it again.
            let granted: HashSet<String> = s
                .meshes
                .iter()
                .filter_map(|m| self.state.meshes.get(m))
                .flat_map(|v| v.granted_groups())
                .collect();
            let after: HashSet<String> = groups.iter().map(|g| g.name.clone()).collect();
            for g in granted.difference(&after) {
                s.left_groups.insert(g.clone());
            }
            for g in &after {
                s.left_groups.remove(g);
            }
        }
        patch.apply(&mut s.info);
        s.last_active = now;
        let meshes = s.meshes.clone();
        for id in meshes {
            self.effect(Effect::Uplink(id, UplinkCmd::SessionUpdate(sid.to_string(), patch.clone())));
        }
        let rerouted = self.route_pending(now);
        let pushed = self.push_session(sid, now);
        self.session_event(sid, false);
        self.changed();
        let groups = self.effective_groups(sid);
        to_value(&UpdateReply { session_id: sid.to_string(), pushed, rerouted, groups })
    }

    /// Connection `conn` lets go of session `sid` (a `session_close`, or the connection went
    /// away); the last holder closes it.
    pub(crate) fn release_holder(&mut self, conn: u64, sid: &str, now: Instant) {
        let Some(s) = self.state.sessions.get_mut(sid) else { return };
        match s.holders.iter().position(|c| *c == conn) {
            Some(i) => {
                s.holders.remove(i);
            }
            // Closed by a connection that did not register it (the CLI): one holder goes.
            None => {
                s.holders.pop();
            }
        }
        if s.holders.is_empty() {
            self.close_session(sid, now);
        }
    }

    /// Closes `sid` on every mesh; what it never saw waits for the next matching session.
    fn close_session(&mut self, sid: &str, now: Instant) {
        let Some(s) = self.state.sessions.remove(sid) else { return };
        let leases: Vec<u64> = self
            .state
            .leases
            .iter()
            .filter(|(_, l)| l.session.as_deref() == Some(sid))
            .map(|(id, _)| *id)
            .collect();
        for id in leases {
            self.release_lease(id, now);
        }
        let mine: Vec<_> = self.state.unseen_of(sid).map(|(k, _)| k.clone()).collect();
        for key in &mine {
            let Some(mut rec) = self.state.live.get(key).cloned() else { continue };
            rec.deliveries.remove(sid);
            if !rec.deliveries.values().any(|d| !d.seen) {
                rec.pending = true;
                self.state.pending_since.insert(key.clone(), now);
            }
            self.put(rec);
        }
        if !mine.is_empty() {
            tracing::info!(
                session = sid,
                messages = mine.len(),
                "closed with unseen messages; routing them again"
            );
        }
        if let Some(w) = self.state.waiters.remove(sid) {
            self.effect(Effect::Woken(w.tx, WaitOutcome::Closed));
        }
        for id in &s.meshes {
            self.effect(Effect::Uplink(id.clone(), UplinkCmd::SessionClose(sid.to_string())));
        }
        let status = self.session_status(&s);
        self.publish(Topic::Sessions, None, None, &LocalEvent::Sessions { session: status, closed: true });
        self.route_pending(now);
        self.changed();
    }

    /// The groups `sid` is in: declared ones with their roles, then granted ones not left.
    pub(crate) fn effective_groups(&self, sid: &str) -> Vec<GroupRole> {
        let Some(s) = self.state.sessions.get(sid) else { return Vec::new() };
        let mut out = s.info.groups.clone();
        for v in s.meshes.iter().filter_map(|m| self.state.meshes.get(m)) {
            if let Some(me) = v.members.get(&v.config.member_id) {
                for g in &me.groups {
                    if !s.left_groups.contains(&g.name) && !out.iter().any(|x| x.name == g.name) {
                        out.push(g.clone());
                    }
                }
            }
        }
        out
    }

    /// Publishes `sid`'s state on the `sessions` topic.
    pub(crate) fn session_event(&mut self, sid: &str, closed: bool) {
        let Some(s) = self.state.sessions.get(sid) else { return };
        let status = self.session_status(s);
        self.publish(Topic::Sessions, None, None, &LocalEvent::Sessions { session: status, closed });
    }
}

/// A session name as people see it: checked like a join name (so a bad chosen name is refused
/// with the rule it breaks).
fn check_name(name: &str) -> Result<(), ApiError> {
    validate_display_name(name).map_err(|e| {
        (
            ErrorCode::Invalid,
            format!("session name {name:?}: {e}; choose another (launch --name, CLAUDEMESH_NAME)"),
        )
    })
}

/// `base` with `-n` appended, shortened so that the whole stays a valid name.
fn with_suffix(base: &str, n: u32) -> String {
    let suffix = format!("-{n}");
    let keep = MAX_DISPLAY_NAME_CHARS.saturating_sub(suffix.chars().count());
    let head: String = base.chars().take(keep).collect();
    format!("{}{suffix}", head.trim_end())
}

/// The name a registering session gets. A chosen name is used as given, if valid. A default
/// one (derived from the directory or the configured name) is made valid and distinct from
/// the names of this member's other open sessions on the same meshes: `repo`, `repo-2`,
/// `repo-3`. The same session registering again (a second client, a reconnect) keeps its name.
fn session_name(
    sessions: &HashMap<String, LocalSession>,
    r: &SessionRegister,
    mesh_ids: &[String],
) -> Result<String, ApiError> {
    let sid = &r.session.session_id;
    if !r.default_name {
        check_name(&r.session.display_name)?;
        return Ok(r.session.display_name.clone());
    }
    if let Some(old) = sessions.get(sid) {
        return Ok(old.info.display_name.clone());
    }
    let cleaned: String = r.session.display_name.chars().filter(|c| !c.is_control()).collect();
    let mut base: String = cleaned.trim().chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    base = base.trim().to_string();
    if validate_display_name(&base).is_err() {
        base = "claude".into();
    }
    let taken: HashSet<String> = sessions
        .values()
        .filter(|s| &s.info.session_id != sid && s.meshes.iter().any(|m| mesh_ids.contains(m)))
        .map(|s| s.info.display_name.to_lowercase())
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name.to_lowercase()) {
        n += 1;
        name = with_suffix(&base, n);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use claudemesh_protocol::frames::SessionInfo;

    use super::*;

    fn reg(sid: &str, name: &str, default_name: bool) -> SessionRegister {
        SessionRegister {
            meshes: vec![],
            session: SessionInfo { session_id: sid.into(), display_name: name.into(), ..Default::default() },
            claude_pid: None,
            default_name,
        }
    }

    fn open(sessions: &mut HashMap<String, LocalSession>, sid: &str, name: &str, mesh: &str) {
        let info = SessionInfo { session_id: sid.into(), display_name: name.into(), ..Default::default() };
        sessions.insert(
            sid.into(),
            LocalSession {
                info,
                meshes: vec![mesh.into()],
                claude_pid: None,
                claude_session: None,
                waiter: 0,
                waiting: false,
                last_active: Instant::now(),
                holders: vec![1],
                left_groups: Default::default(),
            },
        );
    }

    #[test]
    fn default_names_are_made_distinct_per_mesh_and_chosen_ones_are_checked() {
        let mut s = HashMap::new();
        let team = vec!["team".to_string()];
        assert_eq!(session_name(&s, &reg("a", "repo", true), &team).unwrap(), "repo");
        open(&mut s, "a", "repo", "team");
        assert_eq!(session_name(&s, &reg("b", "Repo", true), &team).unwrap(), "Repo-2");
        open(&mut s, "b", "repo-2", "team");
        assert_eq!(session_name(&s, &reg("c", "repo", true), &team).unwrap(), "repo-3");
        assert_eq!(session_name(&s, &reg("a", "repo", true), &team).unwrap(), "repo", "same session");
        assert_eq!(session_name(&s, &reg("d", "repo", true), &["other".into()]).unwrap(), "repo");
        assert_eq!(session_name(&s, &reg("e", "repo", false), &team).unwrap(), "repo", "chosen: as given");
        let e = session_name(&s, &reg("f", " bad", false), &team).unwrap_err();
        assert_eq!(e.0, ErrorCode::Invalid);
        assert!(e.1.contains("whitespace"), "{e:?}");
        assert_eq!(session_name(&s, &reg("g", "\u{7}", true), &team).unwrap(), "claude");
        let long = "x".repeat(80);
        let n = with_suffix(&long, 12);
        assert!(n.ends_with("-12") && n.chars().count() == MAX_DISPLAY_NAME_CHARS, "{n}");
    }
}
