//! Applying the reply to each call the dashboard made, by what it was for ([`Pending`]): loads
//! fill the state, sends show in their conversation, admin calls say what they did, failures
//! become a toast (and stay in the dialog that asked, so nothing typed is lost).

use claudemesh_protocol::local::{
    InboxReply, InviteReply, LeaveReply, MemberEntry, MemberSetReply, MessageStatusReply, RemoveReply,
    SendReply, SentReply, StatusReply,
};
use claudemesh_protocol::text;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::effect::Effect;
use crate::event::CallError;
use crate::state::{Modal, Pending, State};

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError { code: None, message: format!("unexpected reply: {e}") })
}

pub(super) fn apply(s: &mut State, tag: u64, result: Result<Value, CallError>, fx: &mut Vec<Effect>) {
    let Some(p) = s.pending.remove(&tag) else { return };
    if let Err(e) = apply_ok(s, &p, result, fx) {
        failed(s, &p, e);
    }
    super::clamp_all(s);
}

fn apply_ok(
    s: &mut State,
    p: &Pending,
    r: Result<Value, CallError>,
    fx: &mut Vec<Effect>,
) -> Result<(), CallError> {
    let v = r?;
    match p {
        Pending::Members => {
            s.members = parse::<Vec<MemberEntry>>(v)?;
            // Conversations made before the directory came (only this machine's sends in them)
            // get their names now.
            let names: std::collections::HashMap<(String, String), String> = s
                .members
                .iter()
                .map(|m| ((m.mesh.clone(), m.member.member_id.clone()), m.member.display_name.clone()))
                .collect();
            s.messages.retitle(|mesh, id| names.get(&(mesh.to_string(), id.to_string())).cloned());
        }
        Pending::Status => {
            let st: StatusReply = parse(v)?;
            s.meshes = st.meshes;
            s.sessions = st.local_sessions;
            if s.scope.as_ref().is_some_and(|sc| s.mesh(sc).is_none()) {
                s.scope = None;
            }
        }
        Pending::Inbox => {
            let r: InboxReply = parse(v)?;
            for mut m in r.messages {
                m.read |= s.mesh(&m.mesh).is_some_and(|x| x.member_id == m.from_member);
                let (mesh, at) = (m.mesh.clone(), m.received_at);
                if s.messages.add_incoming(m).is_some() {
                    s.rates.entry(mesh).or_default().count(at, s.now_ms);
                }
            }
            super::views::conversation_opened(s, fx);
        }
        Pending::Sent => {
            let r: SentReply = parse(v)?;
            for rec in r.sent {
                let Some(mesh) = s.slug_of(&rec.mesh_id).map(str::to_string) else { continue };
                let title = super::agent::direct_title(s, &mesh, &rec.recipient_ids);
                let at = rec.created_at;
                s.messages.add_outgoing(&mesh, rec, &title);
                s.rates.entry(mesh).or_default().count(at, s.now_ms);
            }
            super::views::conversation_opened(s, fx);
        }
        Pending::Send { to, .. } => {
            let r: SendReply = parse(v)?;
            if let Some(Modal::Compose(_)) = &s.modal {
                s.modal = None;
            }
            let mut msg = match r.id {
                Some(_) => format!("sent to {} ({} recipient(s))", text::name(to), r.recipients + r.local),
                None => format!("delivered to {} of your own session(s)", r.local),
            };
            if !r.untrusted.is_empty() {
                msg.push_str(&format!("; left out (untrusted keys): {}", r.untrusted.join(", ")));
            }
            s.toast(msg, !r.untrusted.is_empty());
        }
        Pending::MessageStatus { mesh } => {
            let r: MessageStatusReply = parse(v)?;
            let mesh = mesh.clone();
            s.messages.set_send_state(&r.sent.client_msg_id, r.sent.state.clone());
            if let claudemesh_protocol::local::SendState::Accepted { msg_id, .. } = &r.sent.state {
                for rs in r.recipient_states.unwrap_or_default() {
                    s.messages.set_recipient(&mesh, msg_id, &rs.member_id, rs.state);
                }
            }
        }
        Pending::MarkRead => {}
        Pending::Repin => {
            let m: MemberEntry = parse(v)?;
            let name = text::name(&m.member.display_name);
            s.members.retain(|x| !(x.mesh == m.mesh && x.member.member_id == m.member.member_id));
            s.members.push(m);
            s.toast(format!("{name}'s current key is pinned"), false);
        }
        Pending::MemberRemove { .. } => {
            let r: RemoveReply = parse(v)?;
            s.members.retain(|m| m.member.member_id != r.removed);
            s.toast(format!("removed {}", text::name(&r.display_name)), false);
        }
        Pending::MemberSet { .. } => {
            let r: MemberSetReply = parse(v)?;
            s.modal = None;
            s.toast(format!("{} is now {}", text::name(&r.display_name), r.role.as_str()), false);
        }
        Pending::Leave { .. } => {
            let r: LeaveReply = parse(v)?;
            s.meshes.retain(|m| m.slug != r.left);
            s.peers.retain(|p| p.mesh != r.left);
            s.members.retain(|m| m.mesh != r.left);
            if s.scope.as_deref() == Some(r.left.as_str()) {
                s.scope = None;
            }
            let told = if r.broker_told { "" } else { " (the broker could not be told)" };
            s.toast(format!("left {}{told}", r.left), !r.broker_told);
        }
        Pending::InviteCreate => {
            let r: InviteReply = parse(v)?;
            let groups: Vec<String> = r.groups.iter().map(|g| format!("@{}", text::name(&g.name))).collect();
            let groups =
                if groups.is_empty() { String::new() } else { format!(", groups {}", groups.join(" ")) };
            let expires = crate::ui::clock(s, r.expires_at.saturating_mul(1000));
            let mut lines = vec![
                format!(
                    "An invite to {} as {}{groups}, for {} use(s), until {expires}.",
                    r.mesh,
                    r.role.as_str(),
                    r.max_uses
                ),
                "Send this link to the person joining (it is on your clipboard; y copies it again):".into(),
                String::new(),
                r.url.clone(),
                String::new(),
                "They run `claudemesh join` with it, or paste it in their dashboard (Meshes, J).".into(),
            ];
            if let Some(w) = &r.warning {
                lines.push(String::new());
                lines.push(format!("Note: {}", text::one_line(w)));
            }
            fx.push(Effect::Copy(r.url.clone()));
            s.modal = Some(Modal::Notice { title: "Invite created".into(), lines });
        }
        Pending::Catalog(_)
        | Pending::ServiceLogs(_)
        | Pending::Deploy
        | Pending::ServiceUpdate { .. }
        | Pending::Undeploy { .. }
        | Pending::ServiceScope
        | Pending::ServiceCall { .. } => super::services::reply(s, p, v)?,
        Pending::VaultList(_) | Pending::VaultSet { .. } | Pending::VaultDelete { .. } => {
            super::vault::reply(s, p, v)?
        }
        Pending::SkillList(_) | Pending::SkillGet | Pending::SkillShare | Pending::SkillRemove { .. } => {
            super::skills::reply(s, p, v)?
        }
        Pending::Join => {
            let slug: String = parse(v)?;
            s.modal = None;
            s.toast(format!("joined {}: the agent connects it now", text::name(&slug)), false);
            let tag = s.tag(Pending::Status);
            fx.push(Effect::Call { tag, call: claudemesh_protocol::local::AgentCall::Status });
            super::agent::load(s, fx);
        }
    }
    Ok(())
}

/// A call failed: its dialog stays open with the error; otherwise a toast and a log line.
fn failed(s: &mut State, p: &Pending, e: CallError) {
    let service_call = matches!(
        p,
        Pending::Catalog(_)
            | Pending::ServiceLogs(_)
            | Pending::Deploy
            | Pending::ServiceUpdate { .. }
            | Pending::Undeploy { .. }
            | Pending::ServiceScope
            | Pending::ServiceCall { .. }
    );
    let vault_call =
        matches!(p, Pending::VaultList(_) | Pending::VaultSet { .. } | Pending::VaultDelete { .. });
    let msg = match e.code {
        Some(code) if service_call => {
            format!("{}: {}", crate::state::services::code_meaning(code), text::one_line(&e.message))
        }
        Some(code) if vault_call => {
            format!("{}: {}", crate::state::sharing::vault_meaning(code), text::one_line(&e.message))
        }
        Some(code) if p.is_sharing() => {
            format!("{}: {}", crate::state::sharing::skill_meaning(code), text::one_line(&e.message))
        }
        _ => text::one_line(&e.message),
    };
    match (&mut s.modal, p) {
        (Some(Modal::Compose(c)), Pending::Send { .. }) => {
            c.sending = false;
            c.error = Some(msg.clone());
        }
        (
            Some(Modal::Form(f)),
            Pending::Deploy | Pending::ServiceCall { .. } | Pending::VaultSet { .. } | Pending::SkillShare,
        ) => {
            f.busy = false;
            // A typed secret left the form with the call: it is typed again, not kept.
            let retype = matches!(p, Pending::VaultSet { .. })
                && f.text("from file").is_empty()
                && f.field("value").is_some_and(|x| x.field.text.is_empty());
            f.error = Some(if retype { format!("{msg} (type the value again)") } else { msg.clone() });
            s.toast(msg.clone(), true);
        }
        (_, Pending::VaultList(_)) => {
            s.vault.error = Some(msg.clone());
            s.toast(msg.clone(), true);
        }
        (_, Pending::SkillList(_)) => {
            s.skills.error = Some(msg.clone());
            s.toast(msg.clone(), true);
        }
        (
            Some(Modal::Prompt(pr)),
            Pending::Join | Pending::InviteCreate | Pending::MemberSet { .. } | Pending::ServiceScope,
        ) => {
            pr.busy = false;
            pr.error = Some(msg.clone());
        }
        // The log tail says it in its pane: a toast on every selection change would be noise.
        (_, Pending::ServiceLogs(f)) if s.services.following.as_ref() == Some(f) => {
            s.services.push_log([format!("(the log could not be fetched: {msg})")]);
        }
        (_, Pending::ServiceLogs(_)) => {}
        // Asked at every connect: said in the Events view, not over whatever the person is doing.
        (_, Pending::Catalog(_)) => {}
        _ => s.toast(msg.clone(), true),
    }
    s.log("", "error", msg);
}
