//! Validation of user-chosen names: mesh slugs, service names, group names, vault keys, display names.

use crate::limits::{MAX_DISPLAY_NAME_CHARS, MAX_NAME_LEN, MAX_VAULT_KEY_LEN};

/// What kind of name was being validated, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    MeshSlug,
    Service,
    Group,
    GroupRole,
    VaultKey,
    DisplayName,
    Skill,
}

impl NameKind {
    fn label(self) -> &'static str {
        match self {
            NameKind::MeshSlug => "mesh slug",
            NameKind::Service => "service name",
            NameKind::Group => "group name",
            NameKind::GroupRole => "group role",
            NameKind::VaultKey => "vault key",
            NameKind::DisplayName => "display name",
            NameKind::Skill => "skill name",
        }
    }
}

/// A name was refused; the message says which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {}: {reason}", kind.label())]
pub struct NameError {
    pub kind: NameKind,
    pub reason: String,
}

fn err(kind: NameKind, reason: impl Into<String>) -> NameError {
    NameError { kind, reason: reason.into() }
}

/// `^[a-z0-9][a-z0-9_-]{0,63}$`: mesh slugs, service names, group names and skill names.
pub fn validate_slug(kind: NameKind, name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(err(kind, "must not be empty"));
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err(err(kind, format!("{} characters, at most {MAX_NAME_LEN} allowed", bytes.len())));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(err(kind, "must start with a lowercase letter or a digit"));
    }
    if let Some(bad) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(err(kind, format!("{bad:?} is not allowed: use lowercase letters, digits, '-' and '_'")));
    }
    Ok(())
}

pub fn validate_mesh_slug(name: &str) -> Result<(), NameError> {
    validate_slug(NameKind::MeshSlug, name)
}

pub fn validate_service_name(name: &str) -> Result<(), NameError> {
    validate_slug(NameKind::Service, name)
}

pub fn validate_group_name(name: &str) -> Result<(), NameError> {
    validate_slug(NameKind::Group, name)
}

pub fn validate_skill_name(name: &str) -> Result<(), NameError> {
    validate_slug(NameKind::Skill, name)
}

/// Vault keys look like environment variable names or dotted paths:
/// `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`.
pub fn validate_vault_key(key: &str) -> Result<(), NameError> {
    let kind = NameKind::VaultKey;
    let Some(first) = key.chars().next() else {
        return Err(err(kind, "must not be empty"));
    };
    if key.len() > MAX_VAULT_KEY_LEN {
        return Err(err(kind, format!("{} characters, at most {MAX_VAULT_KEY_LEN} allowed", key.len())));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(err(kind, "must start with a letter, digit or '_'"));
    }
    if let Some(bad) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(err(kind, format!("{bad:?} is not allowed: use letters, digits, '_', '.' and '-'")));
    }
    Ok(())
}

/// Display names are free text for people: 1–64 characters, no control characters,
/// no leading or trailing whitespace.
pub fn validate_display_name(name: &str) -> Result<(), NameError> {
    let kind = NameKind::DisplayName;
    if name.is_empty() {
        return Err(err(kind, "must not be empty"));
    }
    let chars = name.chars().count();
    if chars > MAX_DISPLAY_NAME_CHARS {
        return Err(err(kind, format!("{chars} characters, at most {MAX_DISPLAY_NAME_CHARS} allowed")));
    }
    if name.chars().any(char::is_control) {
        return Err(err(kind, "must not contain control characters"));
    }
    if name.trim() != name {
        return Err(err(kind, "must not start or end with whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "0", "my-mesh", "team_2", &"a".repeat(64)] {
            assert!(validate_mesh_slug(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "-a", "_a", "A", "aB", "a b", "a.b", "ä", &"a".repeat(65), "a/b", "a\n"] {
            assert!(validate_mesh_slug(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn slug_error_says_why() {
        let e = validate_service_name("Bad").unwrap_err();
        assert_eq!(e.kind, NameKind::Service);
        assert!(e.to_string().contains("service name"), "{e}");
        assert!(e.to_string().contains("lowercase"), "{e}");
    }

    #[test]
    fn vault_keys() {
        for ok in ["GITHUB_TOKEN", "_x", "db.password", "a-b", "9lives", &"K".repeat(128)] {
            assert!(validate_vault_key(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", ".x", "-x", "a b", "a/b", "a=b", "$x", &"K".repeat(129), "../etc"] {
            assert!(validate_vault_key(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn display_names() {
        for ok in ["Alice", "Bob's laptop", "日本語の名前", &"x".repeat(64)] {
            assert!(validate_display_name(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", " lead", "trail ", "bell\u{7}", "new\nline", &"x".repeat(65)] {
            assert!(validate_display_name(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
