//! Value types shared by many frames: roles, groups, targets, priorities, sessions, members.

use std::fmt;
use std::str::FromStr;

use crate::trust::SignedStatement;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A member's role in a mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    #[default]
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// Membership of a group, with a free-form role inside it (e.g. `lead`, `member`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupRole {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl GroupRole {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), role: None }
    }
}

/// The mesh a connection is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshRef {
    pub id: String,
    pub slug: String,
}

/// Message priority (DESIGN §6): `now` interrupts, `next` waits for a turn boundary,
/// `low` waits until the model asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Now,
    #[default]
    Next,
    Low,
}

/// A session's declared availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    #[default]
    Idle,
    Working,
    Dnd,
}

/// What kind of peer a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PeerType {
    #[default]
    Ai,
    Human,
    Connector,
}

/// Addressee of a `send`, written on the wire as `session:<id>`, `member:<id>`, `@<group>`
/// or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Session(String),
    Member(String),
    Group(String),
    Broadcast,
}

/// A target string did not match any of the four forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target {0:?}: expected session:<id>, member:<id>, @<group> or *")]
pub struct TargetError(pub String);

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TargetError(s.to_string());
        if s == "*" {
            return Ok(Target::Broadcast);
        }
        if let Some(g) = s.strip_prefix('@') {
            crate::names::validate_group_name(g).map_err(|_| bad())?;
            return Ok(Target::Group(g.to_string()));
        }
        let nonempty = |v: &str| if v.is_empty() || v.len() > 128 { Err(bad()) } else { Ok(v.to_string()) };
        if let Some(id) = s.strip_prefix("session:") {
            return nonempty(id).map(Target::Session);
        }
        if let Some(id) = s.strip_prefix("member:") {
            return nonempty(id).map(Target::Member);
        }
        Err(bad())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Session(id) => write!(f, "session:{id}"),
            Target::Member(id) => write!(f, "member:{id}"),
            Target::Group(g) => write!(f, "@{g}"),
            Target::Broadcast => f.write_str("*"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A session as its owner describes it in `session_open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SessionInfo {
    pub session_id: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub peer_type: PeerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub groups: Vec<GroupRole>,
    #[serde(default)]
    pub status: SessionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// A change to a session: only the fields present change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SessionPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupRole>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl SessionPatch {
    /// Applies the present fields to `s`.
    pub fn apply(&self, s: &mut SessionInfo) {
        if let Some(v) = &self.display_name {
            s.display_name.clone_from(v);
        }
        if self.cwd.is_some() {
            s.cwd.clone_from(&self.cwd);
        }
        if self.channel.is_some() {
            s.channel.clone_from(&self.channel);
        }
        if self.model.is_some() {
            s.model.clone_from(&self.model);
        }
        if let Some(g) = &self.groups {
            s.groups.clone_from(g);
        }
        if let Some(st) = self.status {
            s.status = st;
        }
        if self.summary.is_some() {
            s.summary.clone_from(&self.summary);
        }
    }
}

/// A session in presence listings and events: the session plus who owns it and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSession {
    pub member_id: String,
    #[serde(flatten)]
    pub session: SessionInfo,
    /// Unix milliseconds when the session was first opened on this connection lineage.
    pub connected_since: u64,
}

/// A member of a mesh, as listed by `list_members`: the directory senders encrypt against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub member_id: String,
    /// ed25519 public key, hex.
    pub pubkey: String,
    pub display_name: String,
    pub role: Role,
    /// Groups granted by invite or admin (these also count for service scopes).
    #[serde(default)]
    pub groups: Vec<GroupRole>,
    /// Messaging groups its sessions declared (remembered while it is offline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declared_groups: Vec<String>,
    #[serde(default)]
    pub online: bool,
    /// What the member and admins signed about it (protocol 2): its enrollment statement and
    /// the latest role and removal statements. Agents verify them; the broker only relays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<SignedStatement>,
}

/// Why a member is no longer in a mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// An admin removed it (`member_remove`).
    #[default]
    Removed,
    /// It left on its own (`leave`).
    Left,
}

impl RemovalReason {
    /// "left the mesh" / "was removed from the mesh", for messages like "bob left the mesh".
    pub fn phrase(self) -> &'static str {
        match self {
            RemovalReason::Removed => "was removed from the mesh",
            RemovalReason::Left => "left the mesh",
        }
    }
}

/// A member who left or was removed: enough to say so when someone addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormerMember {
    pub member_id: String,
    pub display_name: String,
    #[serde(default)]
    pub reason: RemovalReason,
    /// Unix milliseconds.
    #[serde(default)]
    pub at: u64,
    /// Its key (hex) and statements, so an agent can pin the removal (protocol 2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pubkey: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<SignedStatement>,
}

impl MemberInfo {
    /// Whether `@group` sends reach this member: granted or declared.
    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x.name == g) || self.declared_groups.iter().any(|x| x == g)
    }
}

/// One recipient member's box inside a `send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub member_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// Per-recipient delivery state reported by `message_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Delivered,
    Seen,
    Expired,
}

/// How far a message got with one recipient, as a `receipt` says it: a recipient agent reports
/// only `seen` (a client `receipt` carrying `delivered` is refused as `invalid`); the broker tells
/// the sender both, in `event{kind:"receipt"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// The recipient's agent stored the message durably (its `client_ack` moved it from queued
    /// to delivered). Said by the broker only.
    Delivered,
    /// The message was shown in one of the recipient's sessions (or read by its person).
    Seen,
}

/// A string that must never be printed: `Debug` shows `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        for s in ["session:abc", "member:m1", "@team", "*"] {
            let t: Target = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        for bad in ["", "session:", "member:", "@", "@Bad", "bob", "**", "user:x"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_is_redacted() {
        assert_eq!(format!("{:?}", Secret("tok".into())), "<redacted>");
    }

    #[test]
    fn patch_applies_only_present_fields() {
        let mut s = SessionInfo { session_id: "s".into(), display_name: "a".into(), ..Default::default() };
        SessionPatch { status: Some(SessionStatus::Dnd), summary: Some("x".into()), ..Default::default() }
            .apply(&mut s);
        assert_eq!(s.status, SessionStatus::Dnd);
        assert_eq!(s.summary.as_deref(), Some("x"));
        assert_eq!(s.display_name, "a");
    }
}
