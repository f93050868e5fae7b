//! Applying what the agent says: the subscription's snapshot (then the loads it starts), each
//! sequenced event (peers, members, messages, receipts, links, local sessions, sends, services,
//! vault and skills), and the connection going away. A gap in the sequence resubscribes rather
//! than guess.

use claudemesh_protocol::frames::{DeliveryState, Event as Wire, Priority, ReceiptState};
use claudemesh_protocol::local::{AgentCall, InboxParams, LocalEvent, PeerEntry, SendState, SubscribeReply};
use claudemesh_protocol::text;

use crate::effect::Effect;
use crate::event::AgentEvent;
use crate::rows;
use crate::state::{AgentConn, Pending, State, View};

/// Most messages and sends loaded at start (the newest).
pub const LOAD_LIMIT: u32 = 10_000;

pub(super) fn apply(s: &mut State, a: AgentEvent, fx: &mut Vec<Effect>) {
    match a {
        AgentEvent::Subscribed(r) => subscribed(s, *r, fx),
        AgentEvent::Event { seq, event } => {
            if s.seq != 0 && seq != s.seq + 1 {
                s.log("", "agent", format!("missed events ({} then {seq}): subscribing again", s.seq));
                s.agent = AgentConn::Connecting;
                fx.push(Effect::Reconnect);
                return;
            }
            s.seq = seq;
            // The Events view follows the newest line while its selection is on the last one.
            let follow =
                s.view == View::Events && s.cursor(View::Events).selected + 1 >= rows::len(s, View::Events);
            event_(s, *event, fx);
            super::clamp_all(s);
            if follow {
                super::move_cursor(s, isize::MAX / 2);
            }
        }
        AgentEvent::Gone { error, retry_in_ms } => {
            if !matches!(s.agent, AgentConn::Gone { .. }) {
                s.log("", "agent", format!("agent connection lost: {error}"));
            }
            s.agent = AgentConn::Gone { error: text::one_line(&error), retry_at_ms: s.now_ms + retry_in_ms };
            s.seq = 0;
            // Calls run on their own connections: their replies (or failures) still come.
        }
        AgentEvent::Reply { tag, result } => super::replies::apply(s, tag, result, fx),
        AgentEvent::ServiceLog { mesh, name, lines } => {
            if s.services.following.as_ref().is_some_and(|f| f.mesh == mesh && f.name == name) {
                s.services.push_log(lines);
            }
        }
    }
}

fn subscribed(s: &mut State, r: SubscribeReply, fx: &mut Vec<Effect>) {
    let st = r.snapshot.status;
    let again = matches!(s.agent, AgentConn::Gone { .. }) || s.seq != 0;
    s.agent = AgentConn::Up {
        version: st.agent_version.clone(),
        pid: st.pid,
        uptime_secs: st.uptime_secs,
        at_ms: s.now_ms,
    };
    s.seq = r.seq;
    s.meshes = st.meshes;
    s.sessions = st.local_sessions;
    s.peers = r.snapshot.peers;
    if s.scope.as_ref().is_some_and(|sc| s.mesh(sc).is_none()) {
        s.scope = None;
    }
    s.log(
        "",
        "agent",
        format!(
            "{} agent {} (pid {})",
            if again { "back:" } else { "connected to" },
            st.agent_version,
            st.pid
        ),
    );
    // A send refused while the agent was away can go now.
    if let Some(crate::state::Modal::Compose(c)) = &mut s.modal
        && !c.sending
    {
        c.error = None;
    }
    load(s, fx);
    super::reload_view(s, fx);
    // A new connection: the log follow (if any) starts again, with a fresh tail.
    s.services.following = None;
    super::clamp_all(s);
}

/// Asks for what the snapshot does not carry: members with their trust, the inbox, the sends,
/// the services.
pub(super) fn load(s: &mut State, fx: &mut Vec<Effect>) {
    let tag = s.tag(Pending::Members);
    fx.push(Effect::Call { tag, call: AgentCall::Members { mesh: None } });
    let tag = s.tag(Pending::Inbox);
    let inbox = InboxParams { all: true, limit: Some(LOAD_LIMIT), ..InboxParams::default() };
    fx.push(Effect::Call { tag, call: AgentCall::Inbox(inbox) });
    let tag = s.tag(Pending::Sent);
    fx.push(Effect::Call { tag, call: AgentCall::Sent { mesh: None, limit: Some(LOAD_LIMIT) } });
    let tag = s.tag(Pending::Catalog(None));
    fx.push(Effect::Call { tag, call: AgentCall::ServiceCatalog { mesh: None } });
}

fn event_(s: &mut State, e: LocalEvent, fx: &mut Vec<Effect>) {
    match e {
        LocalEvent::Messages(mut m) => {
            // This member's own sends (from the CLI or another session) are not news to it.
            m.read |= s.mesh(&m.mesh).is_some_and(|x| x.member_id == m.from_member);
            let (mesh, at, now_p) = (m.mesh.clone(), m.received_at, m.priority == Priority::Now);
            let from = text::sender(&m.from_name, &m.from_member, m.session_name.as_deref());
            if let Some(i) = s.messages.add_incoming(m) {
                s.rates.entry(mesh.clone()).or_default().count(at, s.now_ms);
                s.log(&mesh, "message", format!("from {from}"));
                // Into the thread the person has open: read as it arrives.
                let open = s.view == View::Messages
                    && s.focus == crate::state::Focus::Thread
                    && rows::convs(s)
                        .get(s.cursor(View::Messages).selected)
                        .is_some_and(|c| c.key == s.messages.all[i].conv);
                if open {
                    super::views::mark_read(s, &[i], fx);
                }
                if now_p {
                    fx.push(Effect::Bell);
                    s.toast(format!("now: a message from {from}"), false);
                }
            }
        }
        LocalEvent::Presence { mesh, event } => presence(s, &mesh, event, fx),
        LocalEvent::Links { mesh, state, detail } => {
            let detail_s = detail.as_deref().map(text::one_line);
            match s.meshes.iter_mut().find(|m| m.slug == mesh) {
                Some(m) => {
                    m.link = state;
                    m.detail = detail_s.clone();
                }
                None => {
                    let tag = s.tag(Pending::Status);
                    fx.push(Effect::Call { tag, call: AgentCall::Status });
                }
            }
            let why = detail_s.map(|d| format!(": {d}")).unwrap_or_default();
            s.log(&mesh, "link", format!("{state:?}{why}").to_lowercase());
        }
        LocalEvent::Sessions { session, closed } => {
            let name = text::name(&session.display_name);
            s.sessions.retain(|x| x.session_id != session.session_id);
            if closed {
                s.log("", "session", format!("{name} closed"));
            } else {
                s.sessions.push(session);
            }
        }
        LocalEvent::Outbox { mesh, client_msg_id, state, sent } => {
            match sent {
                Some(rec) => {
                    let title = direct_title(s, &mesh, &rec.recipient_ids);
                    let at = rec.created_at;
                    s.messages.add_outgoing(&mesh, *rec, &title);
                    s.rates.entry(mesh.clone()).or_default().count(at, s.now_ms);
                }
                None => {
                    s.messages.set_send_state(&client_msg_id, state.clone());
                }
            }
            let what = match &state {
                SendState::Pending => "queued".to_string(),
                SendState::Accepted { recipients, .. } => {
                    format!("accepted by the broker for {recipients} recipient member(s)")
                }
                SendState::Failed { error } => format!("failed: {error}"),
            };
            let to = s
                .messages
                .outgoing(&client_msg_id)
                .map_or_else(|| short(&client_msg_id).to_string(), |o| o.to.clone());
            s.log(&mesh, "outbox", format!("send to {to} {what}"));
        }
        LocalEvent::Services { mesh, event } => super::services::event(s, &mesh, event, fx),
        LocalEvent::Vault { mesh, key, action } => super::vault::event(s, &mesh, &key, action, fx),
        LocalEvent::Skills(e) => super::skills::event(s, e, fx),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The title of a direct conversation with the one recipient of a send, when known.
pub(super) fn direct_title(s: &State, mesh: &str, recipients: &[String]) -> String {
    match recipients {
        [one] => {
            s.member(mesh, one).map(|m| text::sender(&m.member.display_name, one, None)).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// `bob (m_1cf451)` when the directory knows the member, else its short id.
fn member_label(s: &State, mesh: &str, id: &str) -> String {
    s.member(mesh, id).map_or_else(
        || text::short_member_id(id).to_string(),
        |m| text::sender(&m.member.display_name, id, None),
    )
}

/// Whether a member event is a join (said once) or a change.
enum Kind {
    Joined,
    Other,
}

fn presence(s: &mut State, mesh: &str, e: Wire, fx: &mut Vec<Effect>) {
    let me = s.mesh(mesh).map(|m| m.member_id.clone()).unwrap_or_default();
    let e_kind = if matches!(e, Wire::MemberJoined(_)) { Kind::Joined } else { Kind::Other };
    match e {
        Wire::PeerJoined(p) | Wire::PeerUpdated(p) => {
            let joined =
                !s.peers.iter().any(|x| x.mesh == mesh && x.peer.session.session_id == p.session.session_id);
            let member_name = s.member(mesh, &p.member_id).map(|m| m.member.display_name.clone());
            let name =
                format!("{} of {}", text::name(&p.session.display_name), member_label(s, mesh, &p.member_id));
            let status = format!("{:?}", p.session.status).to_lowercase();
            let entry = PeerEntry { me: p.member_id == me, mesh: mesh.to_string(), member_name, peer: p };
            s.peers
                .retain(|x| !(x.mesh == mesh && x.peer.session.session_id == entry.peer.session.session_id));
            s.peers.push(entry);
            s.log(
                mesh,
                "peer",
                if joined { format!("{name} joined") } else { format!("{name} is {status}") },
            );
        }
        Wire::PeerLeft { session_id, .. } => {
            let name =
                s.peers.iter().find(|x| x.mesh == mesh && x.peer.session.session_id == session_id).map(|x| {
                    format!(
                        "{} of {}",
                        text::name(&x.peer.session.display_name),
                        member_label(s, mesh, &x.peer.member_id)
                    )
                });
            s.peers.retain(|x| !(x.mesh == mesh && x.peer.session.session_id == session_id));
            s.log(mesh, "peer", format!("{} left", name.unwrap_or_else(|| short(&session_id).to_string())));
        }
        Wire::MemberJoined(m) | Wire::MemberUpdated(m) => {
            let what = if matches!(e_kind, Kind::Joined) { "joined" } else { "changed" };
            let who = text::sender(&m.display_name, &m.member_id, None);
            s.log(mesh, "member", format!("{who} {what} ({})", m.role.as_str()));
            // The agent's verdict on the key comes with `members`.
            let tag = s.tag(Pending::Members);
            fx.push(Effect::Call { tag, call: AgentCall::Members { mesh: None } });
        }
        Wire::MemberOnline { member_id, online } => {
            let who = member_label(s, mesh, &member_id);
            if let Some(m) = s.members.iter_mut().find(|m| m.mesh == mesh && m.member.member_id == member_id)
            {
                m.member.online = online;
            }
            s.log(mesh, "member", format!("{who} {}", if online { "came online" } else { "went offline" }));
        }
        Wire::PresenceReset {} => {
            // The agent lists the directory and peers again within 2 s (a dashboard watches) and
            // says what changed as `peer_*` and `member_online`; asking for `members` here would
            // turn the broker's presence back on at every reset of a storm.
            s.log(mesh, "peer", "presence changed faster than the broker sends it; refreshing".to_string());
        }
        Wire::MemberRemoved { member_id, display_name, reason } => {
            s.members.retain(|m| !(m.mesh == mesh && m.member.member_id == member_id));
            s.log(mesh, "member", format!("{} {reason:?}", text::name(&display_name)).to_lowercase());
        }
        Wire::Receipt { msg_ids, member_id, state } => {
            let st = match state {
                ReceiptState::Seen => DeliveryState::Seen,
                ReceiptState::Delivered => DeliveryState::Delivered,
            };
            for id in &msg_ids {
                s.messages.set_recipient(mesh, id, &member_id, st);
            }
            let (n, who) = (msg_ids.len(), member_label(s, mesh, &member_id));
            let st = format!("{st:?}").to_lowercase();
            s.log(mesh, "receipt", format!("{who}: {n} message(s) {st}"));
        }
        Wire::Expired { msg_ids, member_id } => {
            for id in &msg_ids {
                s.messages.set_recipient(mesh, id, &member_id, DeliveryState::Expired);
            }
            let who = member_label(s, mesh, &member_id);
            s.log(mesh, "receipt", format!("{who}: {} message(s) expired undelivered", msg_ids.len()));
        }
        other => s.log(mesh, "event", format!("{other:?}")),
    }
}
