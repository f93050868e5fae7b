//! Vault frames (DESIGN §8): each member's entries, kept as the agent sent them —
//! `{ciphertext, nonce, sealed_key}` the broker cannot open — under `mesh␟member␟key`, so a
//! member can only ever name its own. Shapes and sizes are checked; the contents never are
//! (and never appear in a log or an error).

use claudemesh_protocol::codec::from_b64;
use claudemesh_protocol::frames::{ErrorCode, ServerFrame, VaultEntry, VaultEntryMeta, VaultKind};
use claudemesh_protocol::limits::{MAX_VAULT_CIPHERTEXT_B64, MAX_VAULT_ENTRIES};
use claudemesh_protocol::sharing::validate_vault_meta;

use crate::conn::Conn;
use crate::services::now_ms;
use crate::store::{VAULT, key};

/// Bytes of a `crypto_box_seal`ed 32-byte key: the key, an ephemeral public key and a MAC.
const SEALED_KEY_BYTES: usize = 32 + 48;
const NONCE_BYTES: usize = 24;
const MAC_BYTES: usize = 16;

/// The authenticated member's (mesh id, member id), or `None` after answering why not.
fn owner(conn: &Conn, req: u64) -> Option<(String, String)> {
    let a = conn.auth.as_ref()?;
    let active = a.mesh.lock().members.get(&a.member_id).is_some_and(|m| !m.removed);
    if !active {
        conn.error(Some(req), ErrorCode::Revoked, format!("member {} is not an active member", a.member_id));
        return None;
    }
    Some((a.mesh.id.clone(), a.member_id.clone()))
}

/// What `vault_set` carries besides `req`.
#[derive(Debug)]
pub struct SetFrame {
    pub key: String,
    pub ciphertext: String,
    pub nonce: String,
    pub sealed_key: String,
    pub kind: VaultKind,
    pub mount_path: Option<String>,
    pub description: Option<String>,
}

/// Checks the shape of an entry: valid metadata, base64 fields of the right sizes.
fn check(f: &SetFrame) -> Result<(), (ErrorCode, String)> {
    validate_vault_meta(&f.key, f.kind, f.mount_path.as_deref(), f.description.as_deref())
        .map_err(|e| (e.code, e.message))?;
    let k = &f.key;
    if f.ciphertext.len() > MAX_VAULT_CIPHERTEXT_B64 {
        return Err((ErrorCode::TooLarge, format!("vault entry {k}: the value is over 64 KiB")));
    }
    let bad = |field: &str| (ErrorCode::Invalid, format!("vault entry {k}: {field} is malformed"));
    let ct = from_b64("ciphertext", &f.ciphertext).map_err(|_| bad("ciphertext"))?;
    if ct.len() < MAC_BYTES {
        return Err(bad("ciphertext"));
    }
    if from_b64("nonce", &f.nonce).map_err(|_| bad("nonce"))?.len() != NONCE_BYTES {
        return Err(bad("nonce"));
    }
    if from_b64("sealed_key", &f.sealed_key).map_err(|_| bad("sealed_key"))?.len() != SEALED_KEY_BYTES {
        return Err(bad("sealed_key"));
    }
    Ok(())
}

/// `vault_set`: store or replace one of the member's entries; at most [`MAX_VAULT_ENTRIES`].
pub async fn set(conn: &mut Conn, req: u64, f: SetFrame) {
    let Some((mesh, member)) = owner(conn, req) else { return };
    if let Err((code, m)) = check(&f) {
        return conn.error(Some(req), code, m);
    }
    let entry = VaultEntry {
        key: f.key,
        ciphertext: f.ciphertext,
        nonce: f.nonce,
        sealed_key: f.sealed_key,
        kind: f.kind,
        mount_path: f.mount_path,
        description: f.description,
        updated_at: now_ms(),
    };
    let k = key(&[&mesh, &member, &entry.key]);
    let prefix = key(&[&mesh, &member]);
    let name = entry.key.clone();
    // Counting and inserting in one transaction of the single writer: two sets racing cannot
    // both pass the limit.
    let r = conn
        .hub
        .store
        .write(move |tx, _| {
            if !tx.exists(VAULT, &k)? && tx.scan(VAULT, &prefix)?.len() >= MAX_VAULT_ENTRIES {
                return Ok(false);
            }
            tx.put(VAULT, &k, &entry)?;
            Ok(true)
        })
        .await;
    match r {
        Ok(true) => conn.reply(&ServerFrame::Ok { req }),
        Ok(false) => conn.error(
            Some(req),
            ErrorCode::Limit,
            format!(
                "you have {MAX_VAULT_ENTRIES} vault entries in this mesh, the most allowed; delete one first"
            ),
        ),
        Err(e) => {
            conn.error(Some(req), ErrorCode::Internal, format!("vault entry {name} could not be stored: {e}"))
        }
    }
}

/// `vault_get`: the member's own entry, whole.
pub async fn get(conn: &mut Conn, req: u64, name: String) {
    let Some((mesh, member)) = owner(conn, req) else { return };
    let k = key(&[&mesh, &member, &name]);
    match conn.hub.store.get_blocking::<VaultEntry>(VAULT, k).await {
        Ok(Some(entry)) => conn.reply(&ServerFrame::VaultEntry { req, entry }),
        Ok(None) => conn.error(Some(req), ErrorCode::NotFound, format!("you have no vault entry {name}")),
        Err(e) => {
            conn.error(Some(req), ErrorCode::Internal, format!("vault entry {name} could not be read: {e}"))
        }
    }
}

/// `vault_list`: the member's entries, metadata only, by key.
pub async fn list(conn: &mut Conn, req: u64) {
    let Some((mesh, member)) = owner(conn, req) else { return };
    let rows = match conn.hub.store.scan_blocking(VAULT, key(&[&mesh, &member])).await {
        Ok(rows) => rows,
        Err(e) => {
            return conn.error(Some(req), ErrorCode::Internal, format!("the vault could not be read: {e}"));
        }
    };
    let entries = rows
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<VaultEntry>(v).ok())
        .map(|e| VaultEntryMeta {
            key: e.key,
            kind: e.kind,
            mount_path: e.mount_path,
            description: e.description,
            updated_at: e.updated_at,
        })
        .collect();
    conn.reply(&ServerFrame::VaultEntries { req, entries });
}

/// `vault_delete`: the member's own entry.
pub async fn delete(conn: &mut Conn, req: u64, name: String) {
    let Some((mesh, member)) = owner(conn, req) else { return };
    let k = key(&[&mesh, &member, &name]);
    match conn.hub.store.write(move |tx, _| tx.remove(VAULT, &k)).await {
        Ok(true) => conn.reply(&ServerFrame::Ok { req }),
        Ok(false) => conn.error(Some(req), ErrorCode::NotFound, format!("you have no vault entry {name}")),
        Err(e) => conn.error(
            Some(req),
            ErrorCode::Internal,
            format!("vault entry {name} could not be deleted: {e}"),
        ),
    }
}
