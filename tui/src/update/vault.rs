//! The Vault view: loading this member's entries (on entering the view, after a reconnect and
//! on `vault` events), the add form (its value masked, taken out of the form as it is sent, or
//! read from a file by the runner), the delete confirmation, and the replies to these calls.

use std::path::PathBuf;

use claudemesh_protocol::frames::VaultKind;
use claudemesh_protocol::local::{
    AgentCall, VaultAction, VaultDeleteReply, VaultItem, VaultListReply, VaultSetParams,
};
use claudemesh_protocol::sharing::validate_vault_meta;
use claudemesh_protocol::text;
use crossterm::event::{KeyCode, KeyEvent};
use serde_json::Value;

use crate::effect::{Effect, FileCall};
use crate::event::CallError;
use crate::rows;
use crate::state::form::{Form, FormField, FormKind, Input};
use crate::state::sharing::kind_label;
use crate::state::{Confirm, ConfirmAction, Field, Modal, Pending, State, View};

/// Room reserved for a typed value, so typing it never moves it (leaving copies behind).
const VALUE_ROOM: usize = 512;

/// The entry selected in the Vault view.
pub(crate) fn selected(s: &State) -> Option<VaultItem> {
    rows::vault(s).get(s.cursor(View::Vault).selected).map(|x| (*x).clone())
}

/// Asks for the entries of `mesh`, or of every mesh.
pub(super) fn load(s: &mut State, mesh: Option<String>, fx: &mut Vec<Effect>) {
    if !s.agent_up() {
        return;
    }
    let tag = s.tag(Pending::VaultList(mesh.clone()));
    fx.push(Effect::Call { tag, call: AgentCall::VaultList { mesh } });
}

/// A key of the Vault view.
pub(super) fn key(s: &mut State, k: KeyEvent) {
    match (k.code, selected(s)) {
        (KeyCode::Char('a'), _) => add_form(s),
        (KeyCode::Char('d') | KeyCode::Delete, Some(x)) => {
            let shown = text::name(&x.entry.key);
            s.modal = Some(Modal::Confirm(Confirm {
                title: "Delete vault entry".into(),
                text: format!(
                    "Delete {shown} from your vault on {}? Services that reference $vault:{shown} fail at their next deploy or update.",
                    text::name(&x.mesh)
                ),
                action: ConfirmAction::VaultDelete { mesh: x.mesh, key: x.entry.key },
            }));
        }
        _ => {}
    }
}

/// The mesh a new entry or skill goes to: the one shown, else the selected row's, else the
/// first.
pub(super) fn target_mesh(s: &State, selected: Option<String>) -> String {
    s.scope.clone().or(selected).or_else(|| s.meshes.first().map(|m| m.slug.clone())).unwrap_or_default()
}

fn add_form(s: &mut State) {
    if !s.agent_up() {
        s.toast("the agent is not connected: nothing can be stored now", true);
        return;
    }
    let mesh = target_mesh(s, selected(s).map(|x| x.mesh));
    let mut value = FormField::new("value", Input::Masked, false, "typed, never shown (• per character)");
    value.field.text.reserve(VALUE_ROOM);
    let kinds = ["env", "file"].map(|k| Value::String(k.into())).to_vec();
    let mut kind = FormField::new(
        "kind",
        Input::Choice(kinds),
        true,
        "env: $vault:KEY is the value · file: written under the service's secrets/, the variable holds its path",
    );
    kind.field = Field::new("env");
    let fields = vec![
        FormField::new(
            "key",
            Input::Text,
            true,
            "letters, digits, _ . -: used as $vault:KEY in a deploy's env",
        ),
        value,
        FormField::new("from file", Input::Text, false, "or: a file whose bytes are the value (read here)"),
        kind,
        FormField::new(
            "mount path",
            Input::Text,
            false,
            "file entries: relative path under secrets/ (default: the key)",
        ),
        FormField::new("description", Input::Text, false, "what it is (shown to you only)"),
    ];
    s.modal = Some(Modal::Form(Box::new(Form {
        kind: FormKind::VaultSet { mesh: mesh.clone() },
        title: format!("Add a secret to your vault on {mesh}"),
        fields,
        focus: 0,
        error: None,
        busy: false,
    })));
}

/// Enter in the add form: the `vault_set` (the typed value moves out of the form into the
/// call), or what is wrong.
pub(super) fn submit(s: &mut State, f: &mut Form, mesh: &str, fx: &mut Vec<Effect>) -> Result<(), String> {
    let key = f.text("key").to_string();
    let path = f.text("from file").to_string();
    let mount = Some(f.text("mount path").to_string()).filter(|m| !m.is_empty());
    let description = Some(f.text("description").to_string()).filter(|d| !d.is_empty());
    let kind = if f.text("kind") == "file" || mount.is_some() { VaultKind::File } else { VaultKind::Env };
    let typed = f.field("value").is_some_and(|x| !x.field.text.is_empty());
    validate_vault_meta(&key, kind, mount.as_deref(), description.as_deref()).map_err(|e| e.message)?;
    let params = VaultSetParams {
        mesh: Some(mesh.to_string()),
        key: key.clone(),
        value: None,
        value_b64: None,
        kind: Some(kind),
        mount_path: mount,
        description,
    };
    match (typed, path.is_empty()) {
        (true, false) => Err("type a value or name a file, not both".into()),
        (false, true) => Err("type the value, or name a file that holds it".into()),
        (false, false) => {
            let tag = s.tag(Pending::VaultSet { key });
            fx.push(Effect::CallWithFile {
                tag,
                call: FileCall::VaultSet { params, path: PathBuf::from(path) },
            });
            Ok(())
        }
        (true, true) => {
            let Some(x) = f.field_mut("value") else { return Err("no value field".into()) };
            let value = std::mem::take(&mut x.field);
            let tag = s.tag(Pending::VaultSet { key });
            let call = AgentCall::VaultSet(VaultSetParams { value: Some(value.text), ..params });
            fx.push(Effect::Call { tag, call });
            Ok(())
        }
    }
}

/// A confirmed delete.
pub(super) fn confirmed(s: &mut State, mesh: String, key: String, fx: &mut Vec<Effect>) {
    let tag = s.tag(Pending::VaultDelete { mesh: mesh.clone(), key: key.clone() });
    fx.push(Effect::Call { tag, call: AgentCall::VaultDelete { key, mesh: Some(mesh) } });
}

/// A `vault` event: this member's entry changed through this agent (perhaps from the CLI).
pub(super) fn event(s: &mut State, mesh: &str, key: &str, action: VaultAction, fx: &mut Vec<Effect>) {
    s.log(mesh, "vault", format!("{action} {}", text::name(key)));
    match action {
        VaultAction::Deleted => s.vault.remove(mesh, key),
        // The metadata is not in the event: the mesh's list says it.
        VaultAction::Set => load(s, Some(mesh.to_string()), fx),
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError { code: None, message: format!("unexpected reply: {e}") })
}

/// The reply to a vault call (`p` is one of the vault pendings).
pub(super) fn reply(s: &mut State, p: &Pending, v: Value) -> Result<(), CallError> {
    match p {
        Pending::VaultList(mesh) => {
            let r: VaultListReply = parse(v)?;
            s.vault.replace(mesh.as_deref(), r.entries);
        }
        Pending::VaultSet { .. } => {
            let r: VaultItem = parse(v)?;
            if let Some(Modal::Form(f)) = &s.modal
                && matches!(f.kind, FormKind::VaultSet { .. })
            {
                s.modal = None;
            }
            s.toast(
                format!(
                    "stored {} ({}) in your vault on {}: use it as $vault:{}",
                    r.entry.key,
                    kind_label(r.entry.kind),
                    r.mesh,
                    r.entry.key
                ),
                false,
            );
            s.vault.upsert(r);
        }
        Pending::VaultDelete { .. } => {
            let r: VaultDeleteReply = parse(v)?;
            s.vault.remove(&r.mesh, &r.key);
            s.toast(format!("deleted {} from your vault on {}", r.key, r.mesh), false);
        }
        _ => {}
    }
    Ok(())
}
