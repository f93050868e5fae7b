//! Agent-socket calls and replies for the vault (DESIGN §8) and shared skills (§9): what the
//! `vault` and `skill` CLI verbs, the `vault_*` and `skill_share` MCP tools, `claudemesh mcp`'s
//! prompts and the dashboard's Vault and Skills views send to the agent. The agent encrypts and
//! decrypts vault values; the broker only ever sees ciphertext.

use serde::{Deserialize, Serialize};

use crate::frames::{Skill, SkillAction, SkillRecord, SkillSummary, VaultEntryMeta, VaultKind};

/// `vault_set`: store (or replace) one of this member's secrets in `mesh`. Exactly one of
/// `value` (UTF-8 text) and `value_b64` (any bytes, standard base64) is given; at most
/// [`crate::limits::MAX_VAULT_VALUE_BYTES`] bytes. `kind` defaults to `file` when
/// `mount_path` is given, else `env`. Reply: [`VaultSetReply`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultSetParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<VaultKind>,
    /// For `file` entries: where `$vault:KEY` puts the file, relative to the service's
    /// `secrets/` dir (default: the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl std::fmt::Debug for VaultSetParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSetParams")
            .field("mesh", &self.mesh)
            .field("key", &self.key)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("value_b64", &self.value_b64.as_ref().map(|_| "<redacted>"))
            .field("kind", &self.kind)
            .field("mount_path", &self.mount_path)
            .finish_non_exhaustive()
    }
}

/// A vault entry's metadata and the mesh (slug) it belongs to. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultItem {
    pub mesh: String,
    #[serde(flatten)]
    pub entry: VaultEntryMeta,
}

/// `vault_set`'s reply: the stored entry's metadata.
pub type VaultSetReply = VaultItem;

/// `vault_list`'s reply: this member's entries in `mesh` or in every joined mesh, by mesh then
/// key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultListReply {
    pub entries: Vec<VaultItem>,
}

/// `vault_delete`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultDeleteReply {
    pub mesh: String,
    pub key: String,
}

/// What happened to a vault entry, in `vault` events (this agent's own changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultAction {
    Set,
    Deleted,
}

impl std::fmt::Display for VaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VaultAction::Set => "set",
            VaultAction::Deleted => "deleted",
        })
    }
}

/// `skill_share`: share (or replace, as its author or an admin) a skill with `mesh`.
/// Reply: [`SkillItem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillShareParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    #[serde(flatten)]
    pub skill: Skill,
}

/// A whole skill (`skill_get`, `skill_share`) and its mesh (slug).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillItem {
    pub mesh: String,
    #[serde(flatten)]
    pub skill: SkillRecord,
    /// The author's display name, when the agent knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
}

/// A skill in `skill_list`, with its mesh (slug).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillListItem {
    pub mesh: String,
    #[serde(flatten)]
    pub skill: SkillSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
}

/// `skill_list`'s reply, by mesh then name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillListReply {
    pub skills: Vec<SkillListItem>,
}

/// `skill_remove`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillRemoveReply {
    pub mesh: String,
    pub name: String,
}

/// A `skills` event: a skill was shared, replaced or removed in `mesh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillEvent {
    pub mesh: String,
    pub name: String,
    pub action: SkillAction,
}
