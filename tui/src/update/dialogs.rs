//! Keys while a dialog is open: editing the compose box and prompts, answering a confirmation,
//! closing help, notices and outputs; and what each dialog's Enter asks the agent to do (forms
//! and the Services view's dialogs go to `services.rs`, the Vault and Skills views' to
//! `vault.rs` and `skills.rs`).

use claudemesh_protocol::frames::{GroupRole, Priority, Role};
use claudemesh_protocol::local::{AgentCall, InviteCreate, SendParams};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::effect::Effect;
use crate::state::{Compose, ComposeFocus, ConfirmAction, Field, Modal, Pending, Prompt, PromptKind, State};

/// A key for the open dialog.
pub(super) fn key(s: &mut State, k: KeyEvent, fx: &mut Vec<Effect>) {
    let Some(modal) = s.modal.take() else { return };
    s.modal = match modal {
        Modal::Help => match k.code {
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter => None,
            _ => Some(Modal::Help),
        },
        Modal::Notice { title, lines } => match k.code {
            KeyCode::Char('y') | KeyCode::Char('c') => {
                if let Some(link) = lines.iter().find(|l| l.starts_with("claudemesh://")) {
                    fx.push(Effect::Copy(link.clone()));
                    s.toast("copied (OSC 52); if your terminal refuses it, select the text", false);
                }
                Some(Modal::Notice { title, lines })
            }
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => None,
            _ => Some(Modal::Notice { title, lines }),
        },
        Modal::Confirm(c) => match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                confirmed(s, c.action, fx);
                None
            }
            KeyCode::Char('n') | KeyCode::Esc | KeyCode::Char('q') => None,
            _ => Some(Modal::Confirm(c)),
        },
        Modal::Prompt(mut p) => match k.code {
            KeyCode::Esc => None,
            KeyCode::Enter if !p.busy => prompt_enter(s, p, fx),
            _ => {
                edit(&mut p.field, k, false);
                Some(Modal::Prompt(p))
            }
        },
        Modal::Compose(mut c) => compose_key(s, &mut c, k, fx).then_some(Modal::Compose(c)),
        Modal::Form(f) => super::services::form_key(s, f, k, fx),
        Modal::Output { title, lines, error } => match k.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => None,
            _ => Some(Modal::Output { title, lines, error }),
        },
        Modal::Skill(r) => super::skills::reader_key(s, r, k),
    };
}

/// Edits a field; returns whether `k` was an editing key.
pub(super) fn edit(f: &mut Field, k: KeyEvent, multiline: bool) -> bool {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    match k.code {
        KeyCode::Char('w') if ctrl => f.delete_word(),
        KeyCode::Char('a') if ctrl => f.home(),
        KeyCode::Char('e') if ctrl => f.end(),
        KeyCode::Char('u') if ctrl => *f = Field::default(),
        KeyCode::Char('j') if ctrl && multiline => f.insert('\n'),
        KeyCode::Char(c) if !ctrl => f.insert(c),
        KeyCode::Backspace => f.backspace(),
        KeyCode::Delete => f.delete(),
        KeyCode::Left => f.left(),
        KeyCode::Right => f.right(),
        KeyCode::Home => f.home(),
        KeyCode::End => f.end(),
        _ => return false,
    }
    true
}

/// A key in the compose box; returns whether the box stays open.
fn compose_key(s: &mut State, c: &mut Compose, k: KeyEvent, fx: &mut Vec<Effect>) -> bool {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    match k.code {
        KeyCode::Esc => return false,
        KeyCode::Tab | KeyCode::BackTab => {
            c.focus = if c.focus == ComposeFocus::To { ComposeFocus::Body } else { ComposeFocus::To };
        }
        KeyCode::Char('p') if ctrl => c.priority = next_priority(c.priority),
        KeyCode::F(2) => c.priority = next_priority(c.priority),
        KeyCode::Enter if k.modifiers.contains(KeyModifiers::ALT) => c.body.insert('\n'),
        KeyCode::Enter if !c.sending => send(s, c, fx),
        KeyCode::Enter => {}
        _ => {
            let multiline = c.focus == ComposeFocus::Body;
            let field = if multiline { &mut c.body } else { &mut c.to };
            edit(field, k, multiline);
        }
    }
    true
}

/// Priorities in the order Ctrl-P goes through them.
fn next_priority(p: Priority) -> Priority {
    match p {
        Priority::Next => Priority::Now,
        Priority::Now => Priority::Low,
        Priority::Low => Priority::Next,
    }
}

fn send(s: &mut State, c: &mut Compose, fx: &mut Vec<Effect>) {
    let to = c.to.text.trim().to_string();
    if to.is_empty() {
        c.error = Some("who to? a name, a member id, @group or *".into());
        c.focus = ComposeFocus::To;
        return;
    }
    if c.body.text.trim().is_empty() {
        c.error = Some("the message is empty".into());
        return;
    }
    c.error = None;
    c.sending = true;
    let tag = s.tag(Pending::Send { conv: c.conv.clone(), to: to.clone() });
    let call = AgentCall::Send(SendParams {
        to,
        message: c.body.text.clone(),
        priority: c.priority,
        mesh: Some(c.mesh.clone()),
        from_session: None,
        reply_to: None,
        // A retry of this very send (after a lost connection) is not sent twice.
        idempotency_key: Some(format!("tui-{}-{tag}", s.now_ms)),
    });
    fx.push(Effect::Call { tag, call });
}

fn confirmed(s: &mut State, a: ConfirmAction, fx: &mut Vec<Effect>) {
    match a {
        ConfirmAction::RemoveMember { mesh, member_id, name } => {
            let tag = s.tag(Pending::MemberRemove { name });
            fx.push(Effect::Call {
                tag,
                call: AgentCall::MemberRemove { member: member_id, mesh: Some(mesh) },
            });
        }
        ConfirmAction::Leave { mesh } => {
            let tag = s.tag(Pending::Leave { mesh: mesh.clone() });
            fx.push(Effect::Call { tag, call: AgentCall::Leave { mesh, local_only: false } });
        }
        ConfirmAction::Repin { mesh, member_id } => {
            let tag = s.tag(Pending::Repin);
            fx.push(Effect::Call {
                tag,
                call: AgentCall::MemberRepin { member: member_id, mesh: Some(mesh) },
            });
        }
        a @ (ConfirmAction::Undeploy { .. } | ConfirmAction::UpdateService { .. }) => {
            super::services::confirmed(s, a, fx)
        }
        ConfirmAction::VaultDelete { mesh, key } => super::vault::confirmed(s, mesh, key, fx),
        ConfirmAction::SkillRemove { mesh, name } => super::skills::confirmed(s, mesh, name, fx),
    }
}

/// Enter in a prompt: the call it makes, or the error it shows; returns the dialog to keep.
fn prompt_enter(s: &mut State, mut p: Prompt, fx: &mut Vec<Effect>) -> Option<Modal> {
    let text = p.field.text.trim().to_string();
    let outcome = match &p.kind {
        PromptKind::JoinInvite => match claudemesh_protocol::invite::parse_invite(&text) {
            Err(e) => Err(format!("not an invite: {e}")),
            Ok(inv) if s.meshes.iter().any(|m| m.id == inv.payload.mesh_id) => Err(format!(
                "you already joined {}; leave it first (L in Meshes) to join it again",
                claudemesh_protocol::text::name(&inv.payload.mesh_slug)
            )),
            Ok(inv) => match inv.check_expiry(s.now_ms / 1000) {
                Err(e) => Err(e.to_string()),
                Ok(()) => {
                    return Some(Modal::Prompt(Prompt {
                        kind: PromptKind::JoinName { invite: text },
                        title: format!("Join {} as", claudemesh_protocol::text::name(&inv.payload.mesh_slug)),
                        hint: "the name others see you as".into(),
                        field: Field::new(s.default_name.clone()),
                        error: None,
                        busy: false,
                    }));
                }
            },
        },
        PromptKind::JoinName { invite } => match claudemesh_protocol::names::validate_display_name(&text) {
            Err(e) => Err(e.to_string()),
            Ok(()) => {
                let tag = s.tag(Pending::Join);
                fx.push(Effect::Join { tag, invite: invite.clone(), name: text });
                Ok(())
            }
        },
        PromptKind::InviteCreate { mesh } => {
            parse_invite_spec(&text).map(|(role, max_uses, secs, groups)| {
                let tag = s.tag(Pending::InviteCreate);
                let call = AgentCall::InviteCreate(InviteCreate {
                    mesh: Some(mesh.clone()),
                    role,
                    groups,
                    max_uses,
                    expires_in_secs: secs,
                    broker_url: None,
                });
                fx.push(Effect::Call { tag, call });
            })
        }
        PromptKind::MemberEdit { mesh, member_id, name } => parse_role_groups(&text).map(|(role, groups)| {
            let tag = s.tag(Pending::MemberSet { name: name.clone() });
            let call = AgentCall::MemberSet {
                member: member_id.clone(),
                mesh: Some(mesh.clone()),
                role: Some(role),
                groups: Some(groups),
            };
            fx.push(Effect::Call { tag, call });
        }),
        PromptKind::ServiceScope { mesh, name } => {
            let (mesh, name) = (mesh.clone(), name.clone());
            super::services::scope_enter(s, &mesh, &name, &text, fx)
        }
    };
    match outcome {
        Ok(()) => {
            p.busy = true;
            p.error = None;
        }
        Err(e) => p.error = Some(e),
    }
    Some(Modal::Prompt(p))
}

fn parse_role(w: &str) -> Result<Role, String> {
    match w {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        other => Err(format!("{other:?} is not a role: admin or member")),
    }
}

fn parse_group(w: &str) -> Result<GroupRole, String> {
    let g = w.strip_prefix('@').ok_or_else(|| format!("{w:?}: groups start with @"))?;
    let (name, role) = match g.split_once(':') {
        Some((n, r)) => (n, Some(r.to_string())),
        None => (g, None),
    };
    claudemesh_protocol::names::validate_group_name(name).map_err(|e| e.to_string())?;
    Ok(GroupRole { name: name.to_string(), role })
}

/// `role [@group[:role]…]`.
pub(crate) fn parse_role_groups(text: &str) -> Result<(Role, Vec<GroupRole>), String> {
    let mut words = text.split_whitespace();
    let role = parse_role(words.next().ok_or("type a role: admin or member")?)?;
    let groups = words.map(parse_group).collect::<Result<Vec<_>, _>>()?;
    Ok((role, groups))
}

/// `role uses lifetime [@group…]`, lifetime like `24h`, `7d`, `30m`.
pub(crate) fn parse_invite_spec(text: &str) -> Result<(Role, u32, u64, Vec<GroupRole>), String> {
    let mut words = text.split_whitespace();
    let role = parse_role(words.next().ok_or("type a role: admin or member")?)?;
    let uses = words.next().unwrap_or("1");
    let max_uses: u32 =
        uses.parse().ok().filter(|n| *n > 0).ok_or(format!("{uses:?} is not a number of uses"))?;
    let life = words.next().unwrap_or("24h");
    let secs = humantime_secs(life).ok_or(format!("{life:?} is not a lifetime like 30m, 24h or 7d"))?;
    let groups = words.map(parse_group).collect::<Result<Vec<_>, _>>()?;
    Ok((role, max_uses, secs, groups))
}

fn humantime_secs(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mul).filter(|v| *v > 0)
}
