//! The Skills view: loading the shared skills (on entering the view, with the `/` filter as
//! the query when it is confirmed, and on `skills` events), reading one (Enter opens the
//! reader; its keys scroll it), sharing one from a file or directory (the runner reads and
//! checks it), removing one after a confirmation, and the replies to these calls.

use std::path::PathBuf;

use claudemesh_protocol::frames::SkillAction;
use claudemesh_protocol::local::{
    AgentCall, SkillEvent, SkillItem, SkillListItem, SkillListReply, SkillRemoveReply,
};
use claudemesh_protocol::text;
use crossterm::event::{KeyCode, KeyEvent};
use serde_json::Value;

use crate::effect::{Effect, FileCall};
use crate::event::CallError;
use crate::rows;
use crate::state::form::{Form, FormField, FormKind, Input};
use crate::state::{Confirm, ConfirmAction, Modal, Pending, SkillRead, State, View};
use crate::ui::layout;

/// The skill selected in the Skills view.
pub(crate) fn selected(s: &State) -> Option<SkillListItem> {
    rows::skills(s).get(s.cursor(View::Skills).selected).map(|x| (*x).clone())
}

/// Asks for the skills of `mesh` (or of every mesh) matching the view's filter.
pub(super) fn load(s: &mut State, mesh: Option<String>, fx: &mut Vec<Effect>) {
    if !s.agent_up() {
        return;
    }
    let query = Some(s.filter(View::Skills).trim().to_string()).filter(|q| !q.is_empty());
    let tag = s.tag(Pending::SkillList(mesh.clone()));
    fx.push(Effect::Call { tag, call: AgentCall::SkillList { query, mesh } });
}

/// A key of the Skills view.
pub(super) fn key(s: &mut State, k: KeyEvent, fx: &mut Vec<Effect>) {
    match (k.code, selected(s)) {
        (KeyCode::Char('s'), _) => share_form(s),
        (KeyCode::Enter, Some(x)) => {
            let tag = s.tag(Pending::SkillGet);
            fx.push(Effect::Call {
                tag,
                call: AgentCall::SkillGet { name: x.skill.name, mesh: Some(x.mesh) },
            });
        }
        (KeyCode::Char('d') | KeyCode::Delete, Some(x)) => {
            let name = text::name(&x.skill.name);
            s.modal = Some(Modal::Confirm(Confirm {
                title: "Remove skill".into(),
                text: format!(
                    "Remove the skill {name} from {}? It is gone for every member (only its author or an admin may).",
                    text::name(&x.mesh)
                ),
                action: ConfirmAction::SkillRemove { mesh: x.mesh, name: x.skill.name },
            }));
        }
        _ => {}
    }
}

fn share_form(s: &mut State) {
    if !s.agent_up() {
        s.toast("the agent is not connected: nothing can be shared now", true);
        return;
    }
    let mesh = super::vault::target_mesh(s, selected(s).map(|x| x.mesh));
    let fields = vec![
        FormField::new(
            "path",
            Input::Text,
            true,
            "a SKILL.md file, or a directory with SKILL.md and text files (read here; ~/ is home)",
        ),
        FormField::new("name", Input::Text, false, "default: the directory's name (or the file's stem)"),
        FormField::new(
            "description",
            Input::Text,
            false,
            "default: the description in SKILL.md's front matter",
        ),
        FormField::new("tags", Input::Text, false, "space separated, e.g. rust review"),
    ];
    s.modal = Some(Modal::Form(Box::new(Form {
        kind: FormKind::SkillShare { mesh: mesh.clone() },
        title: format!("Share a skill with {mesh}"),
        fields,
        focus: 0,
        error: None,
        busy: false,
    })));
}

/// Enter in the share form: the runner reads the path, checks the skill and shares it.
pub(super) fn submit(s: &mut State, f: &Form, mesh: &str, fx: &mut Vec<Effect>) -> Result<(), String> {
    let path = f.text("path");
    if path.is_empty() {
        return Err("path is required: a SKILL.md file or a directory holding one".into());
    }
    let name = f.text("name").to_string();
    if !name.is_empty() {
        claudemesh_protocol::names::validate_skill_name(&name).map_err(|e| e.to_string())?;
    }
    let tags = f.text("tags").split_whitespace().map(str::to_string).collect();
    let call = FileCall::SkillShare {
        mesh: mesh.to_string(),
        path: PathBuf::from(path),
        name,
        description: f.text("description").to_string(),
        tags,
    };
    let tag = s.tag(Pending::SkillShare);
    fx.push(Effect::CallWithFile { tag, call });
    Ok(())
}

/// A confirmed removal.
pub(super) fn confirmed(s: &mut State, mesh: String, name: String, fx: &mut Vec<Effect>) {
    let tag = s.tag(Pending::SkillRemove { mesh: mesh.clone(), name: name.clone() });
    fx.push(Effect::Call { tag, call: AgentCall::SkillRemove { name, mesh: Some(mesh) } });
}

/// A `skills` event: a skill of a mesh was shared, replaced or removed (by anyone).
pub(super) fn event(s: &mut State, e: SkillEvent, fx: &mut Vec<Effect>) {
    let action = match e.action {
        SkillAction::Shared => "shared",
        SkillAction::Removed => "removed",
    };
    s.log(&e.mesh, "skills", format!("{action} {}", text::name(&e.name)));
    match e.action {
        SkillAction::Removed => s.skills.remove(&e.mesh, &e.name),
        SkillAction::Shared => load(s, Some(e.mesh), fx),
    }
}

/// A key while the reader is open; returns it unless closed.
pub(super) fn reader_key(s: &State, mut r: Box<SkillRead>, k: KeyEvent) -> Option<Modal> {
    let (w, h) = layout::reader_page(s);
    let max = crate::ui::reader_text(s, &r.item, w).len().saturating_sub(h);
    let page = h.max(1);
    r.scroll = match k.code {
        KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => return None,
        KeyCode::Down | KeyCode::Char('j') => r.scroll + 1,
        KeyCode::Up | KeyCode::Char('k') => r.scroll.saturating_sub(1),
        KeyCode::PageDown | KeyCode::Char(' ') => r.scroll + page,
        KeyCode::PageUp => r.scroll.saturating_sub(page),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::End | KeyCode::Char('G') => max,
        _ => r.scroll,
    }
    .min(max);
    Some(Modal::Skill(r))
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError { code: None, message: format!("unexpected reply: {e}") })
}

/// The reply to a skill call (`p` is one of the skill pendings).
pub(super) fn reply(s: &mut State, p: &Pending, v: Value) -> Result<(), CallError> {
    match p {
        Pending::SkillList(mesh) => {
            let r: SkillListReply = parse(v)?;
            s.skills.replace(mesh.as_deref(), r.skills);
        }
        Pending::SkillGet => {
            let item: SkillItem = parse(v)?;
            s.skills.upsert(&item);
            // Over whatever else is open only when nothing is: a reply may come late.
            if s.modal.is_none() {
                s.modal = Some(Modal::Skill(Box::new(SkillRead { item, scroll: 0 })));
            }
        }
        Pending::SkillShare => {
            let item: SkillItem = parse(v)?;
            if let Some(Modal::Form(f)) = &s.modal
                && matches!(f.kind, FormKind::SkillShare { .. })
            {
                s.modal = None;
            }
            let files = item.skill.skill.files.len();
            let files = if files == 0 { String::new() } else { format!(" with {files} file(s)") };
            s.toast(
                format!("shared {}{files} with {}", text::name(&item.skill.skill.name), item.mesh),
                false,
            );
            s.skills.upsert(&item);
        }
        Pending::SkillRemove { .. } => {
            let r: SkillRemoveReply = parse(v)?;
            s.skills.remove(&r.mesh, &r.name);
            s.toast(format!("removed the skill {} from {}", text::name(&r.name), r.mesh), false);
        }
        _ => {}
    }
    Ok(())
}
