//! The vault through the agent (DESIGN §4, §8): `vault_set` encrypts a value with this member's
//! key before it leaves the machine, `vault_list`/`vault_delete` pass metadata only, and
//! [`seal_for_runner`] turns a deploy's `$vault:` references into secrets sealed to the mesh
//! runner's key. Values are never logged nor put in an error.

use std::collections::BTreeMap;

use claudemesh_protocol::codec::{from_b64, from_b64_array};
use claudemesh_protocol::crypto::{VaultBlob, encrypt_vault_entry, reseal_to};
use claudemesh_protocol::frames::{
    ClientFrame, ErrorCode, SealedSecret, ServerFrame, VaultEntry, VaultEntryMeta, VaultKind,
};
use claudemesh_protocol::limits::MAX_VAULT_VALUE_BYTES;
use claudemesh_protocol::local::{
    AgentCall, LocalEvent, Topic, VaultAction, VaultDeleteReply, VaultItem, VaultListReply, VaultSetParams,
};
use claudemesh_protocol::vault_ref::{VaultRef, file_ref, parse, referenced_keys};
use serde_json::Value;
use zeroize::Zeroizing;

use super::admin::REQUEST_TIMEOUT;
use super::services::{Mesh, every_mesh, unexpected};
use crate::api::ApiError;
use crate::core::Input;
use crate::core::calls::to_value;
use crate::shared::Agent;

/// Serves one `vault_*` call.
pub async fn handle(agent: &Agent, call: AgentCall) -> Result<Value, ApiError> {
    match call {
        AgentCall::VaultSet(p) => set(agent, p).await,
        AgentCall::VaultList { mesh } => list(agent, mesh.as_deref()).await,
        AgentCall::VaultDelete { key, mesh } => delete(agent, &key, mesh.as_deref()).await,
        _ => Err((ErrorCode::Internal, "not a vault call".to_string())),
    }
}

/// The value a `vault_set` carries, checked for size. Never echoed.
fn value_of(p: &VaultSetParams) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let bytes = match (&p.value, &p.value_b64) {
        (Some(v), None) => Zeroizing::new(v.as_bytes().to_vec()),
        (None, Some(b)) => Zeroizing::new(from_b64("value_b64", b).map_err(|_| {
            (ErrorCode::Invalid, format!("vault entry {}: value_b64 is not standard base64", p.key))
        })?),
        _ => {
            return Err((
                ErrorCode::Invalid,
                format!("vault entry {}: give exactly one of value and value_b64", p.key),
            ));
        }
    };
    if bytes.len() > MAX_VAULT_VALUE_BYTES {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "vault entry {}: the value is {} bytes, at most {MAX_VAULT_VALUE_BYTES} allowed",
                p.key,
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

async fn set(agent: &Agent, p: VaultSetParams) -> Result<Value, ApiError> {
    let m = Mesh::resolve(agent, p.mesh.as_deref())?;
    let kind = p.kind.unwrap_or(if p.mount_path.is_some() { VaultKind::File } else { VaultKind::Env });
    let description = p.description.clone().filter(|d| !d.is_empty());
    claudemesh_protocol::sharing::validate_vault_meta(
        &p.key,
        kind,
        p.mount_path.as_deref(),
        description.as_deref(),
    )
    .map_err(|e| (e.code, e.message))?;
    let value = value_of(&p)?;
    if kind == VaultKind::Env && !claudemesh_protocol::vault_ref::env_safe(&value) {
        return Err((
            ErrorCode::Invalid,
            format!(
                "vault entry {}: the value holds a NUL byte or is not UTF-8 text, which an environment \
                 variable cannot carry; make it a file entry (--kind file, or --mount PATH)",
                p.key
            ),
        ));
    }
    let blob = {
        let view = agent.view();
        let v = view.meshes.get(&m.id).ok_or_else(|| not_joined(&m))?;
        encrypt_vault_entry(&value, &v.key)
            .map_err(|e| (ErrorCode::Internal, format!("cannot encrypt vault entry {}: {e}", p.key)))?
    };
    drop(value);
    let (key, mount_path) = (p.key.clone(), p.mount_path.clone());
    let d = description.clone();
    let build = Box::new(move |req| ClientFrame::VaultSet {
        req,
        key,
        ciphertext: blob.ciphertext,
        nonce: blob.nonce,
        sealed_key: blob.sealed_key,
        kind,
        mount_path,
        description: d,
    });
    m.ask(agent, &format!("vault entry {}", p.key), build, REQUEST_TIMEOUT).await?;
    notify(agent, &m, &p.key, VaultAction::Set).await;
    let entry = VaultEntryMeta {
        key: p.key,
        kind,
        mount_path: p.mount_path,
        description,
        updated_at: crate::core::now_ms(),
    };
    to_value(&VaultItem { mesh: m.slug, entry })
}

fn not_joined(m: &Mesh) -> ApiError {
    (ErrorCode::NotFound, format!("mesh {} is no longer joined", m.slug))
}

async fn notify(agent: &Agent, m: &Mesh, key: &str, action: VaultAction) {
    let event = LocalEvent::Vault { mesh: m.slug.clone(), key: key.to_string(), action };
    let input = Input::Publish { topic: Topic::Vault, mesh_id: m.id.clone(), event: Box::new(event) };
    if let Err((_, e)) = agent.core.send(input).await {
        tracing::debug!(error = %e, "could not publish a vault event");
    }
}

async fn list(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let meshes = every_mesh(agent, mesh)?;
    let mut entries = Vec::new();
    for m in meshes {
        let build = Box::new(|req| ClientFrame::VaultList { req });
        match m.ask(agent, "vault", build, REQUEST_TIMEOUT).await {
            Ok(ServerFrame::VaultEntries { entries: list, .. }) => {
                entries.extend(list.into_iter().map(|entry| VaultItem { mesh: m.slug.clone(), entry }));
            }
            Ok(other) => return Err(unexpected(&other)),
            // With no mesh named, a mesh whose broker is out of reach does not hide the others.
            Err((ErrorCode::Unavailable, e)) if mesh.is_none() => tracing::debug!(error = %e, "vault list"),
            Err(e) => return Err(e),
        }
    }
    to_value(&VaultListReply { entries })
}

async fn delete(agent: &Agent, key: &str, mesh: Option<&str>) -> Result<Value, ApiError> {
    let m = Mesh::resolve(agent, mesh)?;
    let k = key.to_string();
    let build = Box::new(move |req| ClientFrame::VaultDelete { req, key: k });
    m.ask(agent, &format!("vault entry {key}"), build, REQUEST_TIMEOUT).await?;
    notify(agent, &m, key, VaultAction::Deleted).await;
    to_value(&VaultDeleteReply { mesh: m.slug, key: key.to_string() })
}

/// This member's own entry `key` in mesh `m`, whole (still encrypted).
async fn fetch(agent: &Agent, m: &Mesh, key: &str) -> Result<VaultEntry, ApiError> {
    let k = key.to_string();
    let build = Box::new(move |req| ClientFrame::VaultGet { req, key: k });
    match m.ask(agent, &format!("vault entry {key}"), build, REQUEST_TIMEOUT).await {
        Ok(ServerFrame::VaultEntry { entry, .. }) => Ok(entry),
        Ok(other) => Err(unexpected(&other)),
        Err((ErrorCode::NotFound, _)) => Err((
            ErrorCode::NotFound,
            format!(
                "the environment references vault key {key}, which you have not set in {}; set it with `claudemesh vault set {key} -`",
                m.slug
            ),
        )),
        Err(e) => Err(e),
    }
}

/// The mesh runner's public key (`mcp_runner_key`).
async fn runner_key(agent: &Agent, m: &Mesh) -> Result<[u8; 32], ApiError> {
    match m
        .ask(agent, "service runner", Box::new(|req| ClientFrame::McpRunnerKey { req }), REQUEST_TIMEOUT)
        .await?
    {
        ServerFrame::RunnerKey { public_key, .. } => from_b64_array("public_key", &public_key)
            .map_err(|e| (ErrorCode::Internal, format!("the broker sent a malformed runner key: {e}"))),
        other => Err(unexpected(&other)),
    }
}

/// Rewrites `env`'s `$vault:KEY` references to file entries as `$vault:KEY:file:<mount>` and
/// returns every referenced key's value sealed to the mesh runner. Nothing when `env` has no
/// reference. Errors name the variable or key, never a value.
pub(crate) async fn seal_for_runner(
    agent: &Agent,
    m: &Mesh,
    env: &mut BTreeMap<String, String>,
) -> Result<Vec<SealedSecret>, ApiError> {
    let keys = referenced_keys(env)
        .map_err(|(var, e)| (ErrorCode::Invalid, format!("environment variable {var}: {e}")))?;
    seal_keys(agent, m, &keys, Some(env)).await
}

/// Seals the values of `keys` to the mesh runner; with `env`, also rewrites references to file
/// entries (see [`seal_for_runner`]).
pub(crate) async fn seal_keys(
    agent: &Agent,
    m: &Mesh,
    keys: &[String],
    mut env: Option<&mut BTreeMap<String, String>>,
) -> Result<Vec<SealedSecret>, ApiError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let runner = runner_key(agent, m).await?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let entry = fetch(agent, m, key).await?;
        if let (Some(env), VaultKind::File) = (env.as_deref_mut(), entry.kind) {
            let mount = entry.mount_path.clone().unwrap_or_else(|| key.clone());
            for value in env.values_mut() {
                if let Some(Ok(VaultRef::Env { key: k })) = parse(value)
                    && k == key
                {
                    *value = file_ref(key, &mount);
                }
            }
        }
        let blob =
            VaultBlob { ciphertext: entry.ciphertext, nonce: entry.nonce, sealed_key: entry.sealed_key };
        let view = agent.view();
        let v = view.meshes.get(&m.id).ok_or_else(|| not_joined(m))?;
        let sealed = reseal_to(&blob, &v.key, &runner).map_err(|_| {
            (
                ErrorCode::Invalid,
                format!(
                    "vault entry {key} in {} cannot be opened with this member's key; set it again",
                    m.slug
                ),
            )
        })?;
        out.push(SealedSecret { key: key.clone(), sealed });
    }
    Ok(out)
}
