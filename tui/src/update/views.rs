//! The keys of each view (what `?` lists): compose to a peer, member or conversation; member
//! admin (remove, role and groups, repin); reading and marking conversations read; joining,
//! leaving and inviting in the Meshes view (the Services, Vault and Skills views' keys are in
//! their own files).

use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::AgentCall;
use crossterm::event::{KeyCode, KeyEvent};

use crate::effect::Effect;
use crate::rows;
use crate::state::messages::{ConvKind, Direction};
use crate::state::{
    Compose, ComposeFocus, Confirm, ConfirmAction, Field, Focus, Modal, Pending, Prompt, PromptKind, State,
    View,
};

/// How many of a conversation's newest sends get their delivery states asked for on opening.
const STATUS_ON_OPEN: usize = 20;

/// A key the current view handles.
pub(super) fn key(s: &mut State, k: KeyEvent, fx: &mut Vec<Effect>) {
    match s.view {
        View::Peers => peers(s, k),
        View::Members => members(s, k),
        View::Messages => messages(s, k, fx),
        View::Events => {}
        View::Meshes => meshes(s, k),
        View::Services => super::services::key(s, k),
        View::Vault => super::vault::key(s, k),
        View::Skills => super::skills::key(s, k, fx),
    }
}

/// Opens the compose box on `mesh` to `to`.
pub(crate) fn compose(s: &mut State, mesh: &str, to: &str, conv: Option<crate::state::ConvKey>) {
    if !s.agent_up() {
        s.toast("the agent is not connected: nothing can be sent now", true);
        return;
    }
    s.modal = Some(Modal::Compose(Box::new(Compose {
        mesh: mesh.to_string(),
        to: Field::new(to),
        body: Field::default(),
        priority: Priority::Next,
        focus: if to.is_empty() { ComposeFocus::To } else { ComposeFocus::Body },
        conv,
        error: None,
        sending: false,
    })));
}

/// A name to address `name` by on `mesh` when no other member or session has it, else `id`.
fn address(s: &State, mesh: &str, name: &str, id: &str) -> String {
    let same = s.members.iter().filter(|m| m.mesh == mesh && m.member.display_name == name).count()
        + s.peers
            .iter()
            .filter(|p| p.mesh == mesh && p.peer.session.display_name == name && p.peer.member_id != id)
            .count();
    let simple =
        !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if same <= 1 && simple { name.to_string() } else { id.to_string() }
}

fn peers(s: &mut State, k: KeyEvent) {
    let Some(p) = rows::peers(s).get(s.cursor(View::Peers).selected).map(|p| (*p).clone()) else { return };
    let conv =
        crate::state::ConvKey { mesh: p.mesh.clone(), kind: ConvKind::Direct(p.peer.member_id.clone()) };
    match k.code {
        KeyCode::Char('m') => {
            let sid = &p.peer.session.session_id;
            let to = address(s, &p.mesh, &p.peer.session.display_name, sid);
            compose(s, &p.mesh, &to, Some(conv));
        }
        KeyCode::Char('M') => {
            let group = p.peer.session.groups.first().map(|g| format!("@{}", g.name)).unwrap_or_default();
            let conv = p.peer.session.groups.first().map(|g| crate::state::ConvKey {
                mesh: p.mesh.clone(),
                kind: ConvKind::Group(g.name.clone()),
            });
            compose(s, &p.mesh, &group, conv);
        }
        _ => {}
    }
}

fn members(s: &mut State, k: KeyEvent) {
    let Some(m) = rows::members(s).get(s.cursor(View::Members).selected).map(|m| (*m).clone()) else {
        return;
    };
    let (mesh, id, name) = (m.mesh.clone(), m.member.member_id.clone(), m.member.display_name.clone());
    let shown = claudemesh_protocol::text::name(&name);
    let admin_only = |s: &mut State| {
        if !s.is_admin(&mesh) {
            s.toast(format!("only an admin of {mesh} can change its members"), true);
            return false;
        }
        if m.me {
            s.toast("that is you: an admin does not remove or demote themself here (Meshes, L leaves)", true);
            return false;
        }
        true
    };
    match k.code {
        KeyCode::Char('m') => {
            let to = address(s, &mesh, &name, &id);
            let conv = crate::state::ConvKey { mesh: mesh.clone(), kind: ConvKind::Direct(id.clone()) };
            compose(s, &mesh, &to, Some(conv));
        }
        KeyCode::Char('d') | KeyCode::Delete if admin_only(s) => {
            s.modal = Some(Modal::Confirm(Confirm {
                title: "Remove member".into(),
                text: format!(
                    "Remove {shown} ({}) from {mesh}? Its agent is cut off at once and its key can never rejoin.",
                    m.short_id
                ),
                action: ConfirmAction::RemoveMember { mesh, member_id: id, name: shown },
            }));
        }
        KeyCode::Char('e') if admin_only(s) => {
            let mut current = m.member.role.as_str().to_string();
            for g in &m.member.groups {
                current.push_str(&format!(" @{}", g.name));
                if let Some(r) = &g.role {
                    current.push_str(&format!(":{r}"));
                }
            }
            s.modal = Some(Modal::Prompt(Prompt {
                kind: PromptKind::MemberEdit { mesh, member_id: id, name: shown.clone() },
                title: format!("Role and groups of {shown}"),
                hint: "admin|member, then @group or @group:role for each granted group (the list replaces the old one)"
                    .into(),
                field: Field::new(current),
                error: None,
                busy: false,
            }));
        }
        KeyCode::Char('p')
            if m.trust
                .as_ref()
                .is_some_and(|t| t.state == claudemesh_protocol::local::TrustState::Verified) =>
        {
            s.toast(format!("{shown}'s key is verified and pinned: nothing to accept"), false);
        }
        KeyCode::Char('p') => {
            let code = m.trust.as_ref().map_or("?".to_string(), |t| t.safety_code.clone());
            s.modal = Some(Modal::Confirm(Confirm {
                title: "Accept a changed key".into(),
                text: format!(
                    "Pin the key {mesh} lists now for {shown}, safety code {code}? Only if {shown} reads you the same code (claudemesh members --verify on their machine)."
                ),
                action: ConfirmAction::Repin { mesh, member_id: id },
            }));
        }
        _ => {}
    }
}

fn messages(s: &mut State, k: KeyEvent, fx: &mut Vec<Effect>) {
    let Some(c) = rows::convs(s).get(s.cursor(View::Messages).selected).map(|c| (*c).clone()) else {
        if k.code == KeyCode::Char('m') {
            let mesh =
                s.scope.clone().or_else(|| s.meshes.first().map(|m| m.slug.clone())).unwrap_or_default();
            compose(s, &mesh, "", None);
        }
        return;
    };
    match k.code {
        KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') if s.focus == Focus::List => {
            s.focus = Focus::Thread;
            s.thread_scroll = 0;
            mark_read(s, &c.msgs, fx);
        }
        KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => s.focus = Focus::List,
        KeyCode::Char('m') | KeyCode::Char('c') => {
            let to = match &c.key.kind {
                ConvKind::Direct(id) => {
                    let name =
                        s.member(&c.key.mesh, id).map(|m| m.member.display_name.clone()).unwrap_or_default();
                    address(s, &c.key.mesh, &name, id)
                }
                _ => c.key.send_to(),
            };
            compose(s, &c.key.mesh.clone(), &to, Some(c.key.clone()));
        }
        KeyCode::Char('r') => mark_read(s, &c.msgs, fx),
        KeyCode::Char('R') => {
            let all: Vec<usize> =
                (0..s.messages.all.len()).filter(|&i| s.in_scope(&s.messages.all[i].mesh)).collect();
            mark_read(s, &all, fx);
        }
        _ => {}
    }
}

/// Marks messages read here and in the agent (never `seen`: that is the Claude sessions').
pub(crate) fn mark_read(s: &mut State, idx: &[usize], fx: &mut Vec<Effect>) {
    let changed = s.messages.mark_read(idx);
    let mut by_mesh: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (mesh, id) in changed {
        by_mesh.entry(mesh).or_default().push(id);
    }
    for (mesh, msg_ids) in by_mesh {
        let tag = s.tag(Pending::MarkRead);
        fx.push(Effect::Call { tag, call: AgentCall::MarkRead { msg_ids, mesh: Some(mesh) } });
    }
}

/// The conversation shown changed: ask for the delivery states of its newest sends that are
/// not final yet (receipts keep them current after that).
pub(crate) fn conversation_opened(s: &mut State, fx: &mut Vec<Effect>) {
    let Some(c) = rows::convs(s).get(s.cursor(View::Messages).selected).map(|c| (*c).clone()) else { return };
    if !s.agent_up() {
        return;
    }
    for &i in c.msgs.iter().rev().take(STATUS_ON_OPEN) {
        let m = &s.messages.all[i];
        if let Direction::Out(o) = &m.dir
            && matches!(o.state, claudemesh_protocol::local::SendState::Accepted { .. })
            && o.recipients.values().any(|d| {
                !matches!(
                    d,
                    claudemesh_protocol::frames::DeliveryState::Seen
                        | claudemesh_protocol::frames::DeliveryState::Expired
                )
            })
        {
            let (mesh, id) = (m.mesh.clone(), o.client_msg_id.clone());
            let tag = s.tag(Pending::MessageStatus { mesh });
            fx.push(Effect::Call { tag, call: AgentCall::MessageStatus { msg_id: id } });
        }
    }
}

fn meshes(s: &mut State, k: KeyEvent) {
    let sel = rows::meshes(s).get(s.cursor(View::Meshes).selected).map(|m| (*m).clone());
    match (k.code, sel) {
        (KeyCode::Char('J'), _) => {
            s.modal = Some(Modal::Prompt(Prompt {
                kind: PromptKind::JoinInvite,
                title: "Join a mesh".into(),
                hint: "paste the claudemesh:// invite link, then Enter".into(),
                field: Field::default(),
                error: None,
                busy: false,
            }));
        }
        (KeyCode::Char('i'), Some(m)) => {
            if !s.is_admin(&m.slug) {
                s.toast(format!("only an admin of {} can invite", m.slug), true);
                return;
            }
            s.modal = Some(Modal::Prompt(Prompt {
                kind: PromptKind::InviteCreate { mesh: m.slug.clone() },
                title: format!("Invite to {}", m.slug),
                hint: "role, uses, lifetime, groups: e.g. `member 1 24h` or `admin 3 7d @dev @ops:lead`"
                    .into(),
                field: Field::new("member 1 24h"),
                error: None,
                busy: false,
            }));
        }
        (KeyCode::Char('L'), Some(m)) => {
            s.modal = Some(Modal::Confirm(Confirm {
                title: "Leave mesh".into(),
                text: format!(
                    "Leave {}? The broker removes you, this machine forgets the mesh's key, and you need a new invite to come back.",
                    m.slug
                ),
                action: ConfirmAction::Leave { mesh: m.slug.clone() },
            }));
        }
        (KeyCode::Enter | KeyCode::Char('s'), Some(m)) => {
            s.scope = Some(m.slug.clone());
            s.toast(format!("showing {} only ([ and ] to change)", m.slug), false);
        }
        _ => {}
    }
}
