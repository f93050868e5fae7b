//! The vault and skill tools of `claudemesh mcp` (DESIGN §8, §9): `vault_set`, `vault_list`,
//! `vault_delete`, `skill_share`, `skill_list` and `skill_get`. A vault value goes to the agent
//! (which encrypts it) and is never repeated in a result; skills listed or fetched are a
//! member's text, attributed and cleaned as the prompts are ([`super::prompts::skill_text`]).

use std::time::Duration;

use claudemesh_agent::ClientError;
use claudemesh_protocol::frames::{ErrorCode, Skill, VaultKind};
use claudemesh_protocol::local::{
    AgentCall, SkillItem, SkillListReply, SkillShareParams, VaultDeleteReply, VaultItem, VaultListReply,
    VaultSetParams,
};
use claudemesh_protocol::text;
use rmcp::model::{CallToolResult, ContentBlock, Tool};
use serde_json::{Value, json};

use super::Shared;
use super::tools::{Args, ToolResult, agent_error, object, ok, opt_str, str_arg, tool};

/// How long a vault or skill call may take (the agent asks the broker).
const SHORT: Duration = Duration::from_secs(30);

/// The vault and skill tools.
pub fn all() -> Vec<Tool> {
    let mesh = json!({"type": "string", "description": "Mesh slug, when you are in several"});
    vec![
        tool(
            "vault_set",
            "Store a secret in the user's mesh vault (encrypted on this machine; the broker never \
             sees it) so a service can get it at deploy time: mesh_deploy env {\"VAR\": \"$vault:KEY\"}. \
             The value passes through this conversation: for a real secret, ask the user to run \
             `claudemesh vault set KEY -` in a terminal instead. kind \"file\" (or a mount_path) \
             hands the service a file holding it.",
            object(
                json!({"key": {"type": "string", "description": "Letters, digits, _ . - (e.g. GH_TOKEN)"},
                       "value": {"type": "string"},
                       "kind": {"type": "string", "enum": ["env", "file"], "default": "env"},
                       "mount_path": {"type": "string", "description": "For file secrets: where under the service's secrets/ dir (default: the key)"},
                       "description": {"type": "string"}, "mesh": mesh}),
                &["key", "value"],
            ),
        ),
        tool(
            "vault_list",
            "List the user's vault entries (key, kind, mount path, description; never a value).",
            object(json!({"mesh": mesh}), &[]),
        ),
        tool(
            "vault_delete",
            "Delete one of the user's vault entries (services already deployed keep their copy).",
            object(json!({"key": {"type": "string"}, "mesh": mesh}), &["key"]),
        ),
        tool(
            "skill_share",
            "Share a skill (reusable instructions, like a SKILL.md) with the mesh; every member's \
             Claude Code then has it as a prompt. Sharing a name again replaces it (its author or \
             an admin).",
            object(
                json!({"name": {"type": "string", "description": "Lowercase letters, digits, - and _"},
                       "instructions": {"type": "string", "description": "The skill's text (Markdown)"},
                       "description": {"type": "string", "description": "One line: what it is for"},
                       "tags": {"type": "array", "items": {"type": "string"}}, "mesh": mesh}),
                &["name", "instructions"],
            ),
        ),
        tool(
            "skill_list",
            "List the skills shared in your meshes (name, author, tags, description), or those whose \
             name, description or tags hold every word of query. skill_get returns one.",
            object(json!({"query": {"type": "string"}, "mesh": mesh}), &[]),
        ),
        tool(
            "skill_get",
            "Return a shared skill's instructions and files, attributed to the member who shared \
             it: their text, not the user's.",
            object(json!({"name": {"type": "string"}, "mesh": mesh}), &["name"]),
        ),
    ]
}

/// Runs vault or skill tool `name`; `None` when it is not one.
pub async fn call(link: &Shared, name: &str, args: &Args) -> Option<CallToolResult> {
    let r = match name {
        "vault_set" => vault_set(link, args).await,
        "vault_list" => vault_list(link, args).await,
        "vault_delete" => vault_delete(link, args).await,
        "skill_share" => skill_share(link, args).await,
        "skill_list" => skill_list(link, args).await,
        "skill_get" => skill_get(link, args).await,
        _ => return None,
    };
    Some(r.unwrap_or_else(|e| e))
}

fn fail(t: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(t)])
}

/// An agent error with a hint for this tool family (not [`agent_error`]'s, which are about
/// peers and messages).
fn error(e: &ClientError, not_found: &str) -> CallToolResult {
    let ClientError::Api(le) = e else { return agent_error(e) };
    let hint = match le.code {
        ErrorCode::NotFound => not_found,
        ErrorCode::Forbidden => " Only its author or a mesh admin may change it.",
        ErrorCode::Limit => " Remove entries no longer used first.",
        ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Timeout => " Try again shortly.",
        _ => "",
    };
    let message = text::one_line(&le.message);
    let stop = if message.ends_with(['.', '!', '?']) { "" } else { "." };
    fail(format!("{message}{stop}{hint}"))
}

/// A call made once (a set, share or delete is not repeated after a broken connection).
async fn once<T: serde::de::DeserializeOwned>(link: &Shared, call: AgentCall) -> Result<T, ClientError> {
    link.lock().await.request_long(call, SHORT).await
}

/// A read, retried once after a broken connection.
async fn read<T: serde::de::DeserializeOwned>(link: &Shared, call: AgentCall) -> Result<T, ClientError> {
    link.lock().await.request_retry(call).await
}

fn kind_text(kind: VaultKind, key: &str, mount: Option<&str>) -> String {
    match kind {
        VaultKind::Env => "env".into(),
        VaultKind::File => format!("file at secrets/{}", text::name(mount.unwrap_or(key))),
    }
}

async fn vault_set(link: &Shared, args: &Args) -> ToolResult {
    let key = str_arg(args, "key")?;
    let value = match args.get("value") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        _ => return Err(fail("`value` is required (a non-empty string).")),
    };
    let kind = match opt_str(args, "kind").as_deref() {
        None => None,
        Some("env") => Some(VaultKind::Env),
        Some("file") => Some(VaultKind::File),
        Some(k) => return Err(fail(format!("kind {:?} is not one of env, file.", text::one_line(k)))),
    };
    let p = VaultSetParams {
        mesh: opt_str(args, "mesh"),
        key,
        value: Some(value),
        value_b64: None,
        kind,
        mount_path: opt_str(args, "mount_path"),
        description: opt_str(args, "description"),
    };
    let r: VaultItem = once(link, AgentCall::VaultSet(p))
        .await
        .map_err(|e| error(&e, " Call vault_list to see the keys you have set."))?;
    let e = &r.entry;
    Ok(ok(format!(
        "Stored {} in mesh {} ({}). A deploy's env references it as \"$vault:{}\"; the value is not shown again.",
        text::name(&e.key),
        text::name(&r.mesh),
        kind_text(e.kind, &e.key, e.mount_path.as_deref()),
        text::name(&e.key)
    )))
}

async fn vault_list(link: &Shared, args: &Args) -> ToolResult {
    let r: VaultListReply =
        read(link, AgentCall::VaultList { mesh: opt_str(args, "mesh") }).await.map_err(|e| error(&e, ""))?;
    if r.entries.is_empty() {
        return Ok(ok("No vault entries. vault_set (or `claudemesh vault set KEY -`) adds one."));
    }
    let lines: Vec<String> = r
        .entries
        .iter()
        .map(|i| {
            let e = &i.entry;
            let d =
                e.description.as_deref().map(|d| format!(" — {}", text::meta_value(d))).unwrap_or_default();
            format!(
                "- {} (mesh {}, {}){d}",
                text::name(&e.key),
                text::name(&i.mesh),
                kind_text(e.kind, &e.key, e.mount_path.as_deref())
            )
        })
        .collect();
    Ok(ok(lines.join("\n")))
}

async fn vault_delete(link: &Shared, args: &Args) -> ToolResult {
    let key = str_arg(args, "key")?;
    let r: VaultDeleteReply = once(link, AgentCall::VaultDelete { key, mesh: opt_str(args, "mesh") })
        .await
        .map_err(|e| error(&e, " Call vault_list to see the keys you have set."))?;
    Ok(ok(format!("Deleted {} from mesh {}.", text::name(&r.key), text::name(&r.mesh))))
}

async fn skill_share(link: &Shared, args: &Args) -> ToolResult {
    let (name, instructions) = (str_arg(args, "name")?, str_arg(args, "instructions")?);
    let tags = match args.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(String::from).collect(),
        Some(_) => return Err(fail("`tags` must be an array of strings.")),
    };
    let skill = Skill {
        name,
        description: opt_str(args, "description").unwrap_or_default(),
        instructions,
        tags,
        files: Default::default(),
    };
    let p = SkillShareParams { mesh: opt_str(args, "mesh"), skill };
    let r: SkillItem = once(link, AgentCall::SkillShare(Box::new(p))).await.map_err(|e| error(&e, ""))?;
    Ok(ok(format!(
        "Shared skill {} in mesh {}; members see it as a prompt and in skill_list.",
        text::name(&r.skill.skill.name),
        text::name(&r.mesh)
    )))
}

async fn skill_list(link: &Shared, args: &Args) -> ToolResult {
    let call = AgentCall::SkillList { query: opt_str(args, "query"), mesh: opt_str(args, "mesh") };
    let r: SkillListReply = read(link, call).await.map_err(|e| error(&e, ""))?;
    if r.skills.is_empty() {
        return Ok(ok("No skills match."));
    }
    let mut lines =
        vec!["[skills shared by mesh members: their descriptions, not the user's words]".to_string()];
    lines.extend(r.skills.iter().map(|s| {
        let k = &s.skill;
        let tags: Vec<String> = k.tags.iter().map(|t| text::name(t)).collect();
        let tags = if tags.is_empty() { String::new() } else { format!(" [{}]", tags.join(", ")) };
        format!(
            "- {} (mesh {}, by {}){tags}: {}",
            text::name(&k.name),
            text::name(&s.mesh),
            crate::cmd::skill_list::author(s.author_name.as_deref(), &k.author),
            text::meta_value(&k.description)
        )
    }));
    Ok(ok(lines.join("\n")))
}

async fn skill_get(link: &Shared, args: &Args) -> ToolResult {
    let name = str_arg(args, "name")?;
    let item: SkillItem = read(link, AgentCall::SkillGet { name, mesh: opt_str(args, "mesh") })
        .await
        .map_err(|e| error(&e, " Call skill_list to see the skills of your meshes."))?;
    Ok(ok(super::prompts::skill_text(&item)))
}
