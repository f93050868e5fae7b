//! Deploy-time vault references in a service's environment values (DESIGN §8) —
//! `$vault:KEY` and `$vault:KEY:file:REL_PATH` — and the rule for the relative paths that
//! secret files and skill files may use.

use std::collections::{BTreeMap, BTreeSet};

use crate::names::{NameError, validate_vault_key};

/// What every reference starts with.
pub const PREFIX: &str = "$vault:";
/// Separates the key from a file mount path: `$vault:KEY:file:REL_PATH`.
const FILE_TAG: &str = ":file:";
/// Longest relative path of a secret file or skill file, in bytes.
pub const MAX_RELATIVE_PATH_BYTES: usize = 255;

/// One parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultRef<'a> {
    /// `$vault:KEY`: the variable is set to the secret.
    Env { key: &'a str },
    /// `$vault:KEY:file:PATH`: the secret is written to `<service dir>/secrets/PATH` (0600)
    /// and the variable is set to that file's absolute path.
    File { key: &'a str, path: &'a str },
}

impl<'a> VaultRef<'a> {
    /// The vault key it names.
    pub fn key(&self) -> &'a str {
        match self {
            VaultRef::Env { key } | VaultRef::File { key, .. } => key,
        }
    }
}

/// A value that mentions `$vault:` but is not a well-formed reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("a vault reference must be the whole value (`$vault:KEY` or `$vault:KEY:file:PATH`)")]
    Embedded,
    #[error("{0}")]
    Key(#[from] NameError),
    #[error("secret file path {path:?}: {reason}")]
    Path { path: String, reason: String },
}

/// The reference `value` holds: `None` when it does not mention `$vault:` at all.
pub fn parse(value: &str) -> Option<Result<VaultRef<'_>, RefError>> {
    if !value.contains(PREFIX) {
        return None;
    }
    let Some(rest) = value.strip_prefix(PREFIX) else { return Some(Err(RefError::Embedded)) };
    if rest.contains(PREFIX) {
        return Some(Err(RefError::Embedded));
    }
    Some(match rest.split_once(FILE_TAG) {
        Some((key, path)) => validate_vault_key(key)
            .map_err(RefError::from)
            .and_then(|()| validate_relative_path(path).map_err(|reason| path_err(path, reason)))
            .map(|()| VaultRef::File { key, path }),
        None => validate_vault_key(rest).map(|()| VaultRef::Env { key: rest }).map_err(RefError::from),
    })
}

fn path_err(path: &str, reason: String) -> RefError {
    RefError::Path { path: path.to_string(), reason }
}

/// `$vault:KEY:file:PATH` for a file-kind entry mounted at `path`.
pub fn file_ref(key: &str, path: &str) -> String {
    format!("{PREFIX}{key}{FILE_TAG}{path}")
}

/// The vault keys an environment references, sorted and without repeats. Errors name the
/// variable whose value is malformed.
pub fn referenced_keys(env: &BTreeMap<String, String>) -> Result<Vec<String>, (String, RefError)> {
    let mut keys = BTreeSet::new();
    for (var, value) in env {
        match parse(value) {
            None => {}
            Some(Ok(r)) => {
                keys.insert(r.key().to_string());
            }
            Some(Err(e)) => return Err((var.clone(), e)),
        }
    }
    Ok(keys.into_iter().collect())
}

/// Whether `value` can be an environment variable's value: UTF-8 text without a NUL byte
/// (`execve` ends a variable at the first NUL). Other values must be `file` entries.
pub fn env_safe(value: &[u8]) -> bool {
    !value.contains(&0) && std::str::from_utf8(value).is_ok()
}

/// A path relative to a directory that cannot leave it: not empty, at most
/// [`MAX_RELATIVE_PATH_BYTES`], `/`-separated parts that are neither empty, `.` nor `..`, no
/// leading `/`, no backslash, no control characters. The error says which rule it broke.
pub fn validate_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.len() > MAX_RELATIVE_PATH_BYTES {
        return Err(format!("{} bytes, at most {MAX_RELATIVE_PATH_BYTES} allowed", path.len()));
    }
    if path.starts_with('/') {
        return Err("must be relative (no leading '/')".into());
    }
    if path.contains('\\') {
        return Err("must use '/' (no backslash)".into());
    }
    if path.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err("must not have empty, '.' or '..' parts".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(parse("plain"), None);
        assert_eq!(parse("$vault:GH_TOKEN"), Some(Ok(VaultRef::Env { key: "GH_TOKEN" })));
        assert_eq!(
            parse("$vault:gcp:file:creds/sa.json"),
            Some(Ok(VaultRef::File { key: "gcp", path: "creds/sa.json" }))
        );
    }

    #[test]
    fn refuses_malformed_references() {
        for bad in [
            "Bearer $vault:TOKEN",
            "$vault:",
            "$vault:a b",
            "$vault:K:file:",
            "$vault:K:file:/etc/passwd",
            "$vault:K:file:../x",
            "$vault:K:file:a//b",
            "$vault:K:file:a\\b",
            "$vault:A$vault:B",
        ] {
            assert!(matches!(parse(bad), Some(Err(_))), "{bad} should be refused");
        }
    }

    #[test]
    fn referenced_keys_are_unique_and_name_the_bad_variable() {
        let env: BTreeMap<String, String> = [
            ("A".to_string(), "$vault:K1".to_string()),
            ("B".to_string(), "$vault:K1:file:k1".to_string()),
            ("C".to_string(), "x".to_string()),
        ]
        .into();
        assert_eq!(referenced_keys(&env).unwrap(), vec!["K1".to_string()]);
        let bad: BTreeMap<String, String> = [("X".to_string(), "a$vault:K".to_string())].into();
        assert_eq!(referenced_keys(&bad).unwrap_err().0, "X");
    }

    #[test]
    fn relative_paths() {
        assert!(validate_relative_path("a/b.txt").is_ok());
        assert!(validate_relative_path(&"a".repeat(256)).is_err());
        assert!(validate_relative_path("./a").is_err());
        assert!(validate_relative_path("a\n").is_err());
    }

    #[test]
    fn env_values_are_text_without_nul() {
        assert!(super::env_safe(b"tok-123 with spaces\n"));
        assert!(!super::env_safe(b"ab\0cd"));
        assert!(!super::env_safe(&[0xff, 0xfe]));
    }
}
