//! The Vault and Skills views' data: this member's vault entries per mesh (metadata from
//! `vault_list`, refreshed on `vault` events; a value is never held here), the skills shared in
//! the meshes (from `skill_list`, refreshed on `skills` events), and the skill open in the
//! reader. What the agent's errors mean for these calls, in words.

use claudemesh_protocol::frames::{ErrorCode, SkillSummary, VaultKind};
use claudemesh_protocol::local::{SkillItem, SkillListItem, VaultItem};

/// This member's vault entries (the Vault view).
#[derive(Debug, Clone, Default)]
pub struct Vault {
    /// Every entry seen, in no particular order (rows sort them).
    pub list: Vec<VaultItem>,
    /// A `vault_list` reply came since the agent connected.
    pub loaded: bool,
    /// Why the last `vault_list` failed, until one succeeds.
    pub error: Option<String>,
}

impl Vault {
    /// Replaces the entries of `mesh` (or of every mesh) with a `vault_list` reply's.
    pub fn replace(&mut self, mesh: Option<&str>, entries: Vec<VaultItem>) {
        self.list.retain(|x| mesh.is_some_and(|m| m != x.mesh));
        self.list.extend(entries);
        self.loaded = true;
        self.error = None;
    }

    /// Inserts an entry or replaces the one of the same mesh and key.
    pub fn upsert(&mut self, item: VaultItem) {
        self.remove(&item.mesh, &item.entry.key);
        self.list.push(item);
    }

    pub fn remove(&mut self, mesh: &str, key: &str) {
        self.list.retain(|x| !(x.mesh == mesh && x.entry.key == key));
    }

    /// The entry `key` of `mesh`.
    pub fn get(&self, mesh: &str, key: &str) -> Option<&VaultItem> {
        self.list.iter().find(|x| x.mesh == mesh && x.entry.key == key)
    }
}

/// The skills shared in the meshes (the Skills view).
#[derive(Debug, Clone, Default)]
pub struct Skills {
    /// Every skill listed, in no particular order (rows sort them).
    pub list: Vec<SkillListItem>,
    /// A `skill_list` reply came since the agent connected.
    pub loaded: bool,
    /// Why the last `skill_list` failed, until one succeeds.
    pub error: Option<String>,
}

impl Skills {
    /// Replaces the skills of `mesh` (or of every mesh) with a `skill_list` reply's.
    pub fn replace(&mut self, mesh: Option<&str>, skills: Vec<SkillListItem>) {
        self.list.retain(|x| mesh.is_some_and(|m| m != x.mesh));
        self.list.extend(skills);
        self.loaded = true;
        self.error = None;
    }

    /// Lists a whole skill (what `skill_share` and `skill_get` answer) by its summary.
    pub fn upsert(&mut self, item: &SkillItem) {
        self.remove(&item.mesh, &item.skill.skill.name);
        let r = &item.skill;
        self.list.push(SkillListItem {
            mesh: item.mesh.clone(),
            skill: SkillSummary {
                name: r.skill.name.clone(),
                description: r.skill.description.clone(),
                tags: r.skill.tags.clone(),
                author: r.author.clone(),
                updated_at: r.updated_at,
            },
            author_name: item.author_name.clone(),
        });
    }

    pub fn remove(&mut self, mesh: &str, name: &str) {
        self.list.retain(|x| !(x.mesh == mesh && x.skill.name == name));
    }

    /// The skill `name` of `mesh`.
    pub fn get(&self, mesh: &str, name: &str) -> Option<&SkillListItem> {
        self.list.iter().find(|x| x.mesh == mesh && x.skill.name == name)
    }
}

/// A skill open in the reader, and how far it is scrolled (lines from the top).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillRead {
    pub item: SkillItem,
    pub scroll: usize,
}

/// A vault entry's kind as a word.
pub fn kind_label(k: VaultKind) -> &'static str {
    match k {
        VaultKind::Env => "env",
        VaultKind::File => "file",
    }
}

/// What an agent error code means for a vault call, in words.
pub fn vault_meaning(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "no such entry (or mesh)",
        ErrorCode::Invalid => "invalid entry",
        ErrorCode::TooLarge => "the value is too large",
        ErrorCode::Limit => "the vault is full",
        ErrorCode::Unavailable => "unavailable (the broker is unreachable, or does not keep a vault)",
        ErrorCode::Forbidden | ErrorCode::Unauthorized => "not allowed",
        ErrorCode::Timeout => "timed out",
        ErrorCode::RateLimited => "rate limited: try again shortly",
        _ => "failed",
    }
}

/// What an agent error code means for a skill call, in words.
pub fn skill_meaning(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Forbidden => {
            "not allowed: only its author or an admin of the mesh may change or remove it"
        }
        ErrorCode::Unauthorized => "not authorised",
        ErrorCode::NotFound => "no such skill (or mesh)",
        ErrorCode::Invalid => "invalid skill",
        ErrorCode::TooLarge => "the skill is too large",
        ErrorCode::Limit => "the mesh has as many skills as it may",
        ErrorCode::Unavailable => "unavailable (the broker is unreachable, or does not keep skills)",
        ErrorCode::Timeout => "timed out",
        ErrorCode::RateLimited => "rate limited: try again shortly",
        ErrorCode::Conflict => "conflict (another member's skill has that name)",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use claudemesh_protocol::frames::{SkillRecord, VaultEntryMeta};

    use super::*;

    fn entry(mesh: &str, key: &str) -> VaultItem {
        let entry = VaultEntryMeta {
            key: key.into(),
            kind: VaultKind::Env,
            mount_path: None,
            description: None,
            updated_at: 1,
        };
        VaultItem { mesh: mesh.into(), entry }
    }

    #[test]
    fn a_reply_for_one_mesh_keeps_the_others() {
        let mut v = Vault::default();
        v.replace(None, vec![entry("a", "K1"), entry("b", "K2")]);
        v.replace(Some("a"), vec![entry("a", "K3")]);
        let mut keys: Vec<&str> = v.list.iter().map(|x| x.entry.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["K2", "K3"]);
        v.upsert(entry("b", "K2"));
        assert_eq!(v.list.len(), 2, "replaced, not added");
        v.remove("b", "K2");
        assert!(v.get("b", "K2").is_none() && v.get("a", "K3").is_some());
    }

    #[test]
    fn a_whole_skill_is_listed_by_its_summary() {
        let mut s = Skills::default();
        let skill = claudemesh_protocol::frames::Skill {
            name: "review".into(),
            description: "d".into(),
            instructions: "i".into(),
            tags: vec!["t".into()],
            files: Default::default(),
        };
        let item = SkillItem {
            mesh: "a".into(),
            skill: SkillRecord { skill, author: "m_1".into(), updated_at: 5 },
            author_name: Some("alice".into()),
        };
        s.upsert(&item);
        s.upsert(&item);
        assert_eq!(s.list.len(), 1);
        let x = s.get("a", "review").unwrap();
        assert_eq!(
            (x.skill.tags.as_slice(), x.author_name.as_deref()),
            (&["t".to_string()][..], Some("alice"))
        );
        s.remove("a", "review");
        assert!(s.list.is_empty());
    }
}
