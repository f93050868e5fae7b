//! The rules a vault entry's metadata and a shared skill must meet (DESIGN §8, §9, §13): the
//! agent checks them before it sends, the broker again before it stores. Each error says which
//! rule was broken.

use crate::frames::{ErrorCode, Skill, VaultKind};
use crate::limits::{
    MAX_DESCRIPTION_CHARS, MAX_SKILL_BYTES, MAX_SKILL_FILES, MAX_SKILL_INSTRUCTIONS_BYTES,
    MAX_SKILL_TAG_CHARS, MAX_SKILL_TAGS,
};
use crate::names::{validate_skill_name, validate_vault_key};
use crate::vault_ref::validate_relative_path;

/// A broken rule: `too_large` for sizes and counts, `invalid` for the rest; the message says
/// which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub code: ErrorCode,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> RuleError {
    RuleError { code: ErrorCode::Invalid, message: message.into() }
}

fn too_large(message: impl Into<String>) -> RuleError {
    RuleError { code: ErrorCode::TooLarge, message: message.into() }
}

/// A description: at most [`MAX_DESCRIPTION_CHARS`] characters.
pub fn validate_description(what: &str, d: &str) -> Result<(), RuleError> {
    let n = d.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(too_large(format!(
            "{what} description is {n} characters, at most {MAX_DESCRIPTION_CHARS} allowed"
        )));
    }
    Ok(())
}

/// A vault entry's metadata: a valid key, a mount path only for `file` entries (and then a
/// safe relative path), a bounded description.
pub fn validate_vault_meta(
    key: &str,
    kind: VaultKind,
    mount_path: Option<&str>,
    description: Option<&str>,
) -> Result<(), RuleError> {
    validate_vault_key(key).map_err(|e| invalid(e.to_string()))?;
    if let Some(m) = mount_path {
        if kind != VaultKind::File {
            return Err(invalid(format!("vault entry {key}: a mount path is only for file entries")));
        }
        validate_relative_path(m)
            .map_err(|r| invalid(format!("vault entry {key}: mount path {m:?}: {r}")))?;
    }
    validate_description(&format!("vault entry {key}:"), description.unwrap_or(""))
}

/// A skill as shared: a valid name, non-empty instructions within size, bounded description
/// and tags, at most [`MAX_SKILL_FILES`] files with safe relative paths, and the whole within
/// [`MAX_SKILL_BYTES`].
pub fn validate_skill(s: &Skill) -> Result<(), RuleError> {
    validate_skill_name(&s.name).map_err(|e| invalid(e.to_string()))?;
    let name = &s.name;
    if s.instructions.trim().is_empty() {
        return Err(invalid(format!("skill {name}: the instructions are empty")));
    }
    if s.instructions.len() > MAX_SKILL_INSTRUCTIONS_BYTES {
        return Err(too_large(format!(
            "skill {name}: the instructions are {} bytes, at most {MAX_SKILL_INSTRUCTIONS_BYTES} allowed",
            s.instructions.len()
        )));
    }
    validate_description(&format!("skill {name}:"), &s.description)?;
    if s.tags.len() > MAX_SKILL_TAGS {
        return Err(too_large(format!(
            "skill {name}: {} tags, at most {MAX_SKILL_TAGS} allowed",
            s.tags.len()
        )));
    }
    for t in &s.tags {
        let n = t.chars().count();
        if n == 0 || n > MAX_SKILL_TAG_CHARS || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(format!(
                "skill {name}: tag {t:?} must be 1–{MAX_SKILL_TAG_CHARS} characters without spaces"
            )));
        }
    }
    if s.files.len() > MAX_SKILL_FILES {
        return Err(too_large(format!(
            "skill {name}: {} files, at most {MAX_SKILL_FILES} allowed",
            s.files.len()
        )));
    }
    for path in s.files.keys() {
        validate_relative_path(path).map_err(|r| invalid(format!("skill {name}: file {path:?}: {r}")))?;
        if path == "SKILL.md" {
            return Err(invalid(format!("skill {name}: SKILL.md is the instructions, not an extra file")));
        }
    }
    let total = s.instructions.len() + s.files.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if total > MAX_SKILL_BYTES {
        return Err(too_large(format!(
            "skill {name}: {total} bytes in all, at most {MAX_SKILL_BYTES} allowed"
        )));
    }
    Ok(())
}

/// Whether a skill matches a `skill_list` query: every whitespace-separated word appears
/// (case-insensitively) in its name, description or tags. An empty query matches all.
pub fn skill_matches(name: &str, description: &str, tags: &[String], query: &str) -> bool {
    let hay = format!("{name}\n{description}\n{}", tags.join("\n")).to_lowercase();
    query.split_whitespace().all(|w| hay.contains(&w.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn skill() -> Skill {
        Skill {
            name: "review".into(),
            description: "Code review checklist".into(),
            instructions: "Check the tests.".into(),
            tags: vec!["rust".into()],
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn skill_rules() {
        assert!(validate_skill(&skill()).is_ok());
        let mut s = skill();
        s.instructions = " ".into();
        assert!(validate_skill(&s).unwrap_err().message.contains("empty"));
        let mut s = skill();
        s.files.insert("../x".into(), "y".into());
        assert!(validate_skill(&s).unwrap_err().message.contains("../x"));
        let mut s = skill();
        s.files.insert("big.txt".into(), "x".repeat(MAX_SKILL_BYTES));
        assert_eq!(validate_skill(&s).unwrap_err().code, ErrorCode::TooLarge);
        let mut s = skill();
        s.tags = vec!["two words".into()];
        assert!(validate_skill(&s).is_err());
        let mut s = skill();
        s.name = "Bad Name".into();
        assert!(validate_skill(&s).is_err());
    }

    #[test]
    fn vault_meta_rules() {
        assert!(validate_vault_meta("GH_TOKEN", VaultKind::Env, None, Some("github")).is_ok());
        assert!(validate_vault_meta("sa", VaultKind::File, Some("gcp/sa.json"), None).is_ok());
        assert!(validate_vault_meta("sa", VaultKind::Env, Some("x"), None).is_err());
        assert!(validate_vault_meta("sa", VaultKind::File, Some("/etc/x"), None).is_err());
        assert!(validate_vault_meta("a:b", VaultKind::Env, None, None).is_err());
    }

    #[test]
    fn queries_match_words() {
        let tags = vec!["rust".to_string()];
        assert!(skill_matches("review", "Code review", &tags, ""));
        assert!(skill_matches("review", "Code review", &tags, "RUST code"));
        assert!(!skill_matches("review", "Code review", &tags, "python"));
    }
}
