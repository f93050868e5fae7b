//! Validation of user-chosen names: mesh slugs, service names, group names, vault keys,
//! display names, session ids, and the one rule set for every presence field a session sends
//! ([`validate_session`], [`validate_session_patch`]).

use crate::frames::{ErrorCode, GroupRole, SessionInfo, SessionPatch};
use crate::limits::{
    MAX_DISPLAY_NAME_CHARS, MAX_GROUPS, MAX_NAME_LEN, MAX_SHORT_TEXT_BYTES, MAX_SUMMARY_CHARS,
    MAX_VAULT_KEY_LEN,
};

/// Longest hostname a session may declare, in bytes.
pub const MAX_HOSTNAME_BYTES: usize = 255;
/// Longest `channel` or `model` a session may declare, in bytes.
pub const MAX_TAG_BYTES: usize = 128;

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

/// A presence field was refused: which field, and why. `too_long` ones are answered with
/// `too_large`, the others with `invalid` (see [`FieldError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field as named on the wire (`groups[2].role`, `summary`, …).
    pub field: String,
    /// The value is longer than its cap (otherwise it has a bad shape or character).
    pub too_long: bool,
    pub reason: String,
}

impl FieldError {
    fn new(field: impl Into<String>, too_long: bool, reason: impl Into<String>) -> Self {
        Self { field: field.into(), too_long, reason: reason.into() }
    }

    /// The stable code to refuse with: `too_large` for a value over its cap, else `invalid`.
    pub fn code(&self) -> ErrorCode {
        if self.too_long { ErrorCode::TooLarge } else { ErrorCode::Invalid }
    }
}

/// Session ids are lowercase canonical UUIDs (`8-4-4-4-12` hex digits), the shape Claude Code
/// and claudemesh generate: one can never equal a member id (`m_…`) or a display name.
pub fn validate_session_id(id: &str) -> Result<(), FieldError> {
    let b = id.as_bytes();
    let shape_ok = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        });
    if shape_ok {
        return Ok(());
    }
    Err(FieldError::new(
        "session_id",
        false,
        "must be a lowercase UUID, 8-4-4-4-12 hex digits (e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)",
    ))
}

/// Free text of at most `max` bytes with no control characters (`\n` and `\t` too when
/// `multiline`).
fn text(field: &str, v: &str, max: usize, multiline: bool) -> Result<(), FieldError> {
    if v.len() > max {
        return Err(FieldError::new(field, true, format!("{} bytes, at most {max} allowed", v.len())));
    }
    if v.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t'))) {
        return Err(FieldError::new(field, false, "must not contain control characters"));
    }
    Ok(())
}

fn opt_text(field: &str, v: &Option<String>, max: usize) -> Result<(), FieldError> {
    v.as_deref().map_or(Ok(()), |v| text(field, v, max, false))
}

fn name_err(field: String, e: NameError) -> FieldError {
    let too_long = e.reason.contains("at most");
    FieldError::new(field, too_long, e.to_string())
}

fn validate_groups(gs: &[GroupRole]) -> Result<(), FieldError> {
    if gs.len() > MAX_GROUPS {
        return Err(FieldError::new(
            "groups",
            true,
            format!("{} groups, at most {MAX_GROUPS} allowed", gs.len()),
        ));
    }
    for (i, g) in gs.iter().enumerate() {
        validate_group_name(&g.name).map_err(|e| name_err(format!("groups[{i}].name"), e))?;
        if let Some(r) = &g.role {
            validate_slug(NameKind::GroupRole, r).map_err(|e| name_err(format!("groups[{i}].role"), e))?;
        }
        if gs[..i].iter().any(|o| o.name == g.name) {
            return Err(FieldError::new(
                format!("groups[{i}].name"),
                false,
                format!("group {} is listed twice", g.name),
            ));
        }
    }
    Ok(())
}

fn validate_summary(v: &Option<String>) -> Result<(), FieldError> {
    let Some(s) = v else { return Ok(()) };
    let chars = s.chars().count();
    if chars > MAX_SUMMARY_CHARS {
        return Err(FieldError::new(
            "summary",
            true,
            format!("{chars} characters, at most {MAX_SUMMARY_CHARS} allowed"),
        ));
    }
    text("summary", s, MAX_SUMMARY_CHARS * 4, true)
}

/// Every field of a `session_open`: the session id's shape, the display name, `cwd` (≤ 1 KiB),
/// `hostname` (≤ 255 bytes), `channel` and `model` (≤ 128 bytes each), `summary` (≤ 512
/// characters; newlines and tabs allowed), groups (≤ 64, names and roles
/// `^[a-z0-9][a-z0-9_-]{0,63}$`, no name twice). No other text field may hold control
/// characters.
pub fn validate_session(s: &SessionInfo) -> Result<(), FieldError> {
    validate_session_id(&s.session_id)?;
    validate_session_fields(s)
}

/// Every field of [`validate_session`] but the session id: what an agent checks of a local
/// session before it offers it to a broker.
pub fn validate_session_fields(s: &SessionInfo) -> Result<(), FieldError> {
    validate_display_name(&s.display_name).map_err(|e| name_err("display_name".into(), e))?;
    opt_text("cwd", &s.cwd, MAX_SHORT_TEXT_BYTES)?;
    opt_text("hostname", &s.hostname, MAX_HOSTNAME_BYTES)?;
    opt_text("channel", &s.channel, MAX_TAG_BYTES)?;
    opt_text("model", &s.model, MAX_TAG_BYTES)?;
    validate_summary(&s.summary)?;
    validate_groups(&s.groups)
}

/// The fields present in a `session_update`, by the rules of [`validate_session`].
pub fn validate_session_patch(p: &SessionPatch) -> Result<(), FieldError> {
    if let Some(n) = &p.display_name {
        validate_display_name(n).map_err(|e| name_err("display_name".into(), e))?;
    }
    opt_text("cwd", &p.cwd, MAX_SHORT_TEXT_BYTES)?;
    opt_text("channel", &p.channel, MAX_TAG_BYTES)?;
    opt_text("model", &p.model, MAX_TAG_BYTES)?;
    validate_summary(&p.summary)?;
    p.groups.as_deref().map_or(Ok(()), validate_groups)
}

/// What a session costs in presence, in bytes: the length of every text field plus 64 for the
/// fixed ones. A member's sessions together may hold at most the broker's per-member budget.
pub fn presence_bytes(s: &SessionInfo) -> usize {
    let opt = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    64 + s.session_id.len()
        + s.display_name.len()
        + opt(&s.cwd)
        + opt(&s.hostname)
        + opt(&s.channel)
        + opt(&s.model)
        + opt(&s.summary)
        + s.groups.iter().map(|g| 8 + g.name.len() + g.role.as_ref().map_or(0, String::len)).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn session_ids_are_lowercase_uuids() {
        assert!(validate_session_id(SID).is_ok());
        for bad in [
            "",
            "s1",
            "m_abc",
            "bob",
            &SID.to_uppercase(),
            &SID.replace('-', ""),
            &format!("{SID}0"),
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "0f8fad5bd-9cb-469f-a165-70867728950e",
        ] {
            let e = validate_session_id(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Invalid);
            assert!(e.to_string().contains("lowercase UUID"), "{e}");
        }
    }

    #[test]
    fn every_presence_field_is_checked() {
        let ok = SessionInfo { session_id: SID.into(), display_name: "a".into(), ..Default::default() };
        assert!(validate_session(&ok).is_ok());
        let cases: Vec<(SessionInfo, &str, ErrorCode)> = vec![
            (SessionInfo { cwd: Some("x".repeat(1025)), ..ok.clone() }, "cwd", ErrorCode::TooLarge),
            (SessionInfo { hostname: Some("h".repeat(256)), ..ok.clone() }, "hostname", ErrorCode::TooLarge),
            (
                SessionInfo { hostname: Some("a\u{1b}[2J".into()), ..ok.clone() },
                "hostname",
                ErrorCode::Invalid,
            ),
            (SessionInfo { channel: Some("c".repeat(129)), ..ok.clone() }, "channel", ErrorCode::TooLarge),
            (SessionInfo { model: Some("m\n".into()), ..ok.clone() }, "model", ErrorCode::Invalid),
            (SessionInfo { summary: Some("s".repeat(513)), ..ok.clone() }, "summary", ErrorCode::TooLarge),
            (SessionInfo { display_name: "x".repeat(65), ..ok.clone() }, "display_name", ErrorCode::TooLarge),
            (
                SessionInfo {
                    groups: vec![GroupRole { name: "g".into(), role: Some("r".repeat(3_900_000)) }],
                    ..ok.clone()
                },
                "groups[0].role",
                ErrorCode::TooLarge,
            ),
            (
                SessionInfo {
                    groups: vec![GroupRole { name: "g".into(), role: Some("Lead Dev".into()) }],
                    ..ok.clone()
                },
                "groups[0].role",
                ErrorCode::Invalid,
            ),
            (
                SessionInfo { groups: vec![GroupRole::new("g"), GroupRole::new("g")], ..ok.clone() },
                "groups[1].name",
                ErrorCode::Invalid,
            ),
            (
                SessionInfo {
                    groups: (0..65).map(|i| GroupRole::new(format!("g{i}"))).collect(),
                    ..ok.clone()
                },
                "groups",
                ErrorCode::TooLarge,
            ),
        ];
        for (s, field, code) in cases {
            let e = validate_session(&s).unwrap_err();
            assert_eq!((e.field.as_str(), e.code()), (field, code), "{e}");
        }
        let multi = SessionInfo { summary: Some("line one\nline two\tx".into()), ..ok.clone() };
        assert!(validate_session(&multi).is_ok());
        let patch = SessionPatch {
            groups: Some(vec![GroupRole { name: "g".into(), role: Some("R".into()) }]),
            ..Default::default()
        };
        assert_eq!(validate_session_patch(&patch).unwrap_err().field, "groups[0].role");
        assert!(presence_bytes(&multi) > presence_bytes(&ok));
    }

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
