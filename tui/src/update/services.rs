//! The Services view's keys (deploy, update, undeploy, scope, tool selection and calls), its
//! forms, its `services` events, the log follow of the selected service, and the replies to
//! the service calls.

use claudemesh_protocol::frames::{Event as Wire, ServiceStatus};
use claudemesh_protocol::local::{
    AgentCall, CallParams, CatalogReply, DeployParams, DeployReply, LocalSource, LogsReply, ScopeReply,
    ServiceEntry, UpdateParams,
};
use claudemesh_protocol::text;
use crossterm::event::{KeyCode, KeyEvent};
use serde_json::Value;

use crate::effect::Effect;
use crate::event::CallError;
use crate::rows;
use crate::state::form::{self, Form, FormField, FormKind, Input};
use crate::state::services::{LOG_FETCH, status_label};
use crate::state::{Confirm, ConfirmAction, Field, Follow, Modal, Pending, Prompt, PromptKind, State, View};

/// The service selected in the Services view.
pub(crate) fn selected(s: &State) -> Option<ServiceEntry> {
    rows::services(s).get(s.cursor(View::Services).selected).map(|x| (*x).clone())
}

/// A key of the Services view.
pub(super) fn key(s: &mut State, k: KeyEvent) {
    let sel = selected(s);
    match (k.code, sel) {
        (KeyCode::Char('D'), _) => deploy_form(s),
        (KeyCode::Char('U'), Some(x)) => {
            s.modal = Some(Modal::Confirm(Confirm {
                title: "Update service".into(),
                text: format!(
                    "Update {} on {}? Its code is fetched again and it restarts.",
                    text::name(&x.entry.name),
                    x.mesh
                ),
                action: ConfirmAction::UpdateService { mesh: x.mesh, name: x.entry.name },
            }));
        }
        (KeyCode::Char('X'), Some(x)) => {
            s.modal = Some(Modal::Confirm(Confirm {
                title: "Undeploy service".into(),
                text: format!(
                    "Undeploy {} from {}? It stops for every member, and its tools are gone.",
                    text::name(&x.entry.name),
                    x.mesh
                ),
                action: ConfirmAction::Undeploy { mesh: x.mesh, name: x.entry.name },
            }));
        }
        (KeyCode::Char('S'), Some(x)) => {
            let current = s.scope_cli(&x.mesh, &x.entry.scope);
            s.modal = Some(Modal::Prompt(Prompt {
                kind: PromptKind::ServiceScope { mesh: x.mesh.clone(), name: x.entry.name.clone() },
                title: format!("Scope of {} on {}", text::name(&x.entry.name), x.mesh),
                hint: "peer, mesh, group:ops, groups:a,b, role:admin or members:alice,bob; enter applies"
                    .into(),
                field: Field::new(current),
                error: None,
                busy: false,
            }));
        }
        (KeyCode::Right | KeyCode::Char('l'), Some(x)) => {
            s.services.tool = (s.services.tool + 1).min(x.entry.tools.len().saturating_sub(1));
        }
        (KeyCode::Left | KeyCode::Char('h'), Some(_)) => s.services.tool = s.services.tool.saturating_sub(1),
        (KeyCode::Enter | KeyCode::Char('c'), Some(x)) => call_form(s, &x),
        _ => {}
    }
}

fn deploy_form(s: &mut State) {
    if !s.agent_up() {
        s.toast("the agent is not connected: nothing can be deployed now", true);
        return;
    }
    let mesh = s
        .scope
        .clone()
        .or_else(|| selected(s).map(|x| x.mesh))
        .or_else(|| s.meshes.first().map(|m| m.slug.clone()))
        .unwrap_or_default();
    let kinds = ["npx", "uvx", "git", "bundle"].map(|k| Value::String(k.into())).to_vec();
    let mut source =
        FormField::new("source", Input::Choice(kinds), true, "npx · uvx · git · bundle (space cycles)");
    source.field = Field::new("npx");
    let mut scope =
        FormField::new("scope", Input::Text, false, "peer, mesh, group:ops, role:admin, members:alice,bob");
    scope.field = Field::new("peer");
    let fields = vec![
        FormField::new("name", Input::Text, true, "the service's name in the mesh"),
        source,
        FormField::new(
            "package",
            Input::Text,
            true,
            "npm or PyPI package, git URL, or a directory or .zip here",
        ),
        scope,
        FormField::new("env", Input::Secret, false, "K=V pairs, space separated (values masked)"),
    ];
    s.modal = Some(Modal::Form(Box::new(Form {
        kind: FormKind::Deploy { mesh: mesh.clone() },
        title: format!("Deploy a service to {mesh}"),
        fields,
        focus: 0,
        error: None,
        busy: false,
    })));
}

fn call_form(s: &mut State, x: &ServiceEntry) {
    let Some(tool) = x.entry.tools.get(s.services.tool.min(x.entry.tools.len().saturating_sub(1))) else {
        s.toast(format!("{} has no tool to call", text::name(&x.entry.name)), true);
        return;
    };
    s.modal = Some(Modal::Form(Box::new(Form {
        kind: FormKind::Call { mesh: x.mesh.clone(), service: x.entry.name.clone(), tool: tool.name.clone() },
        title: format!("Call {} of {}", text::name(&tool.name), text::name(&x.entry.name)),
        fields: form::call_fields(&tool.input_schema),
        focus: 0,
        error: None,
        busy: false,
    })));
}

/// A key in a form; returns the dialog to keep.
pub(super) fn form_key(s: &mut State, mut f: Box<Form>, k: KeyEvent, fx: &mut Vec<Effect>) -> Option<Modal> {
    let n = f.fields.len().max(1);
    let choice = f.fields.get(f.focus).is_some_and(|x| !x.choices().is_empty());
    match k.code {
        KeyCode::Esc => return None,
        KeyCode::Tab | KeyCode::Down => f.focus = (f.focus + 1) % n,
        KeyCode::BackTab | KeyCode::Up => f.focus = (f.focus + n - 1) % n,
        KeyCode::Enter if !f.busy => submit(s, &mut f, fx),
        KeyCode::Enter => {}
        KeyCode::Char(' ') | KeyCode::Right if choice => cycle(&mut f, 1),
        KeyCode::Left if choice => cycle(&mut f, -1),
        _ if choice => {}
        _ => {
            if let Some(x) = f.fields.get_mut(f.focus) {
                super::dialogs::edit(&mut x.field, k, false);
            }
        }
    }
    Some(Modal::Form(f))
}

fn cycle(f: &mut Form, dir: isize) {
    if let Some(x) = f.fields.get_mut(f.focus) {
        x.cycle(dir);
    }
}

/// Enter in a form: the call, or the error shown in it.
fn submit(s: &mut State, f: &mut Form, fx: &mut Vec<Effect>) {
    let outcome = match &f.kind {
        FormKind::Deploy { mesh } => deploy_params(mesh, &f.fields).map(|p| {
            let tag = s.tag(Pending::Deploy);
            fx.push(Effect::Call { tag, call: AgentCall::ServiceDeploy(Box::new(p)) });
        }),
        FormKind::VaultSet { mesh } => {
            let mesh = mesh.clone();
            super::vault::submit(s, f, &mesh, fx)
        }
        FormKind::SkillShare { mesh } => {
            let mesh = mesh.clone();
            super::skills::submit(s, f, &mesh, fx)
        }
        FormKind::Call { mesh, service, tool } => form::arguments(&f.fields).map(|arguments| {
            let tag = s.tag(Pending::ServiceCall { service: service.clone(), tool: tool.clone() });
            let p = CallParams {
                mesh: Some(mesh.clone()),
                service: service.clone(),
                tool: tool.clone(),
                arguments,
                timeout_ms: None,
            };
            fx.push(Effect::Call { tag, call: AgentCall::ServiceCall(p) });
        }),
    };
    match outcome {
        Ok(()) => {
            f.busy = true;
            f.error = None;
        }
        Err(e) => f.error = Some(e),
    }
}

/// The deploy form's fields as `service_deploy` params, or what is wrong.
pub(crate) fn deploy_params(mesh: &str, fields: &[FormField]) -> Result<DeployParams, String> {
    let get = |n: &str| fields.iter().find(|f| f.name == n).map_or("", |f| f.field.text.trim());
    for f in fields {
        f.value()?;
    }
    let name = get("name").to_string();
    claudemesh_protocol::names::validate_service_name(&name).map_err(|e| e.to_string())?;
    let what = get("package").to_string();
    let source = match get("source") {
        "npx" => LocalSource::Npx { package: what, version: None },
        "uvx" => LocalSource::Uvx { package: what, version: None },
        "git" => LocalSource::Git { url: what, rev: None },
        _ => LocalSource::Bundle { path: what.into() },
    };
    let scope = match get("scope") {
        "" => None,
        t => Some(form::scope_json(t)?),
    };
    let mut env = std::collections::BTreeMap::new();
    for w in get("env").split_whitespace() {
        let (k, v) = w
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("env: {:?} is not K=V", w.split('=').next().unwrap_or_default()))?;
        env.insert(k.to_string(), v.to_string());
    }
    Ok(DeployParams {
        mesh: Some(mesh.to_string()),
        name,
        source,
        description: String::new(),
        args: Vec::new(),
        entry: None,
        env,
        scope,
        admin_token: None,
    })
}

/// A confirmed update or undeploy.
pub(super) fn confirmed(s: &mut State, a: ConfirmAction, fx: &mut Vec<Effect>) {
    match a {
        ConfirmAction::UpdateService { mesh, name } => {
            let tag = s.tag(Pending::ServiceUpdate { name: name.clone() });
            let p = UpdateParams { mesh: Some(mesh), name, source: None, args: None, env: None };
            fx.push(Effect::Call { tag, call: AgentCall::ServiceUpdate(p) });
        }
        ConfirmAction::Undeploy { mesh, name } => {
            let tag = s.tag(Pending::Undeploy { mesh: mesh.clone(), name: name.clone() });
            fx.push(Effect::Call { tag, call: AgentCall::ServiceUndeploy { name, mesh: Some(mesh) } });
        }
        _ => {}
    }
}

/// Enter in the scope prompt: the `service_scope` call with the scope's JSON form.
pub(super) fn scope_enter(
    s: &mut State,
    mesh: &str,
    name: &str,
    text: &str,
    fx: &mut Vec<Effect>,
) -> Result<(), String> {
    let scope = form::scope_json(text)?;
    let tag = s.tag(Pending::ServiceScope);
    let call =
        AgentCall::ServiceScope { name: name.to_string(), scope: Some(scope), mesh: Some(mesh.to_string()) };
    fx.push(Effect::Call { tag, call });
    Ok(())
}

/// A `services` event of `mesh`.
pub(super) fn event(s: &mut State, mesh: &str, e: Wire, fx: &mut Vec<Effect>) {
    // A scope change may have just made a service visible: the catalog says what it is.
    if let Wire::McpScopeChanged { name, .. } = &e
        && s.services.get(mesh, name).is_none()
    {
        let tag = s.tag(Pending::Catalog(Some(mesh.to_string())));
        fx.push(Effect::Call { tag, call: AgentCall::ServiceCatalog { mesh: Some(mesh.to_string()) } });
    }
    if let Some(line) = s.services.apply(mesh, e, s.now_ms) {
        s.log(mesh, "service", line);
    }
}

/// Follows the selected service's log while the Services view is shown (one follow at a time):
/// when what should be followed changed, the follow moves and the log tail is fetched.
pub(super) fn sync_follow(s: &mut State, fx: &mut Vec<Effect>) {
    let want = if s.view == View::Services && s.agent_up() {
        selected(s).map(|x| Follow { mesh: x.mesh, name: x.entry.name })
    } else {
        None
    };
    if want == s.services.following {
        return;
    }
    s.services.following = want.clone();
    s.services.log.clear();
    s.services.tool = 0;
    fx.push(Effect::Follow(want.clone()));
    if let Some(f) = want {
        let tag = s.tag(Pending::ServiceLogs(f.clone()));
        fx.push(Effect::Call {
            tag,
            call: AgentCall::ServiceLogs { name: f.name, lines: Some(LOG_FETCH), mesh: Some(f.mesh) },
        });
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError { code: None, message: format!("unexpected reply: {e}") })
}

/// The reply to a service call (`p` is one of the service pendings).
pub(super) fn reply(s: &mut State, p: &Pending, v: Value) -> Result<(), CallError> {
    match p {
        Pending::Catalog(mesh) => {
            let r: CatalogReply = parse(v)?;
            let unreachable: Vec<String> = r.errors.iter().map(|e| e.mesh.clone()).collect();
            for e in &r.errors {
                s.log(&e.mesh, "service", format!("catalog unavailable: {}", e.message));
            }
            s.services.replace(mesh.as_deref(), r.services, &unreachable);
        }
        Pending::ServiceLogs(f) => {
            let r: LogsReply = parse(v)?;
            if s.services.following.as_ref() == Some(f) {
                // Lines the follow brought before this reply stay after the fetched ones.
                let since: Vec<String> = s.services.log.drain(..).collect();
                s.services.push_log(r.lines);
                s.services.log.extend(since);
            }
        }
        Pending::Deploy | Pending::ServiceUpdate { .. } => {
            let r: DeployReply = parse(v)?;
            if let Some(Modal::Form(_)) = &s.modal {
                s.modal = None;
            }
            let name = text::name(&r.name);
            let verb = if matches!(p, Pending::Deploy) { "deployed" } else { "updated" };
            match r.status {
                ServiceStatus::Running => s.toast(
                    format!("{name} {verb} on {}: running with {} tool(s)", r.mesh, r.tools.len()),
                    false,
                ),
                ServiceStatus::Failed | ServiceStatus::Crashed => {
                    let mut lines = vec![format!("{name} on {}: {}", r.mesh, status_label(r.status))];
                    if let Some(e) = &r.error {
                        lines.push(format!("error: {e}"));
                    }
                    if !r.log_tail.is_empty() {
                        lines.push(String::new());
                        lines.push("last log lines:".into());
                        lines.extend(r.log_tail.iter().cloned());
                    }
                    s.modal = Some(Modal::Output {
                        title: format!("{name} failed"),
                        lines: clean(&lines),
                        error: true,
                    });
                }
                other => s.toast(format!("{name} {verb} on {}: {}", r.mesh, status_label(other)), false),
            }
        }
        Pending::Undeploy { mesh, name } => {
            s.services.list.retain(|x| !(&x.mesh == mesh && &x.entry.name == name));
            s.toast(format!("undeployed {} from {mesh}", text::name(name)), false);
        }
        Pending::ServiceScope => {
            let r: ScopeReply = parse(v)?;
            s.modal = None;
            s.toast(format!("{} on {} is now visible to {}", text::name(&r.name), r.mesh, r.scope), false);
            if let Some(x) = s.services.list.iter_mut().find(|x| x.mesh == r.mesh && x.entry.name == r.name) {
                x.entry.scope = r.scope;
            }
        }
        Pending::ServiceCall { service, tool } => {
            let (lines, error) = call_result(&v);
            let title = format!(
                "{} of {}: {}",
                text::name(tool),
                text::name(service),
                if error { "error" } else { "result" }
            );
            s.modal = Some(Modal::Output { title, lines, error });
        }
        _ => {}
    }
    Ok(())
}

/// Lines cleaned of control and escape characters (untrusted service output), one per line.
fn clean(lines: &[String]) -> Vec<String> {
    lines.iter().flat_map(|l| text::terminal(l).split('\n').map(str::to_string).collect::<Vec<_>>()).collect()
}

/// A `CallReply`'s text contents (other content kinds named), and its `isError`.
pub(crate) fn call_result(v: &Value) -> (Vec<String>, bool) {
    let result = v.get("result").unwrap_or(v);
    let error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let mut out = Vec::new();
    for c in result.get("content").and_then(Value::as_array).into_iter().flatten() {
        match (c.get("type").and_then(Value::as_str), c.get("text").and_then(Value::as_str)) {
            (Some("text"), Some(t)) => out.push(t.to_string()),
            (kind, _) => out.push(format!("[{} content]", kind.unwrap_or("unknown"))),
        }
    }
    if out.is_empty() {
        out.push("(no content)".into());
    }
    (clean(&out), error)
}
