//! `config.json`: the meshes this user joined, with their member keys. Read-modify-write is
//! atomic (temp file + rename, 0600) and keeps fields it does not know.

use std::collections::BTreeMap;

use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::Role;
use serde::{Deserialize, Serialize};

use crate::paths::{Paths, write_private};

/// One joined mesh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshConfig {
    pub id: String,
    pub slug: String,
    pub broker_url: String,
    pub member_id: String,
    #[serde(default)]
    pub role: Role,
    /// The member's ed25519 secret key (libsodium's 64-byte form), hex. Only in this 0600 file.
    pub secret_key: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub joined_at: u64,
    /// The root of trust for this mesh's directory (protocol 2): the ed25519 key (hex) of the
    /// admin who signed the invite this member joined with, or its own key for the mesh's
    /// creator. Absent for meshes joined before protocol 2 (members are then trusted on first
    /// use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_pubkey: Option<String>,
    /// The invite token this member enrolled with; its `member` statement carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for MeshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConfig")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("broker_url", &self.broker_url)
            .field("member_id", &self.member_id)
            .field("role", &self.role)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

impl MeshConfig {
    /// Whether the member accepted plaintext `ws://` to a broker that is not loopback
    /// (`--insecure-transport` at join; [`crate::transport`]). Kept among the entry's other
    /// fields under [`crate::transport::INSECURE_TRANSPORT_KEY`], so older agents keep it too.
    pub fn insecure_transport(&self) -> bool {
        self.extra
            .get(crate::transport::INSECURE_TRANSPORT_KEY)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// Records (or clears) [`MeshConfig::insecure_transport`].
    pub fn set_insecure_transport(&mut self, on: bool) {
        if on {
            self.extra.insert(crate::transport::INSECURE_TRANSPORT_KEY.into(), serde_json::Value::Bool(true));
        } else {
            self.extra.remove(crate::transport::INSECURE_TRANSPORT_KEY);
        }
    }

    pub fn keypair(&self) -> Result<MemberKeypair, ConfigError> {
        MemberKeypair::from_secret_hex(&self.secret_key)
            .map_err(|e| ConfigError::BadKey { mesh: self.slug.clone(), reason: e.to_string() })
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub meshes: Vec<MeshConfig>,
    /// The broker `claudemesh up` runs on this machine, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_broker: Option<crate::local_broker::LocalBrokerConfig>,
    /// How long a message addressed to one session waits for that session to come back before
    /// it goes to the member's next session (default
    /// [`claudemesh_protocol::limits::DEFAULT_SESSION_GRACE_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_grace_secs: Option<u64>,
    /// How long a received message is kept once it was seen (default
    /// [`claudemesh_protocol::limits::DEFAULT_INBOX_TTL_SECS`], the broker's queue TTL); unseen
    /// messages are kept until seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_ttl_secs: Option<u64>,
    /// How often seen messages past their TTL are pruned (default
    /// [`claudemesh_protocol::limits::DEFAULT_INBOX_PRUNE_SECS`]; also at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_prune_secs: Option<u64>,
    /// Local MCP servers this agent exposes to a mesh (`claudemesh serve-mcp`), started again
    /// when the agent starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosted_services: Vec<crate::hosting::HostedService>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid claudemesh config: {source}; fix or remove it (a backup is safest)")]
    Parse { path: String, source: serde_json::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error(
        "the key stored for mesh {mesh} is unusable: {reason}; restore config.json from a backup, or \
         forget the mesh with `claudemesh leave {mesh} --local-only` and join again with a new invite"
    )]
    BadKey { mesh: String, reason: String },
}

impl Config {
    /// Reads the config; a missing file is an empty config.
    pub fn load(paths: &Paths) -> Result<Self, ConfigError> {
        let path = paths.config();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ConfigError::Parse { path: path.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Writes the config atomically, 0600, in a 0700 directory.
    pub fn save(&self, paths: &Paths) -> Result<(), ConfigError> {
        let path = paths.config();
        let err = |source| ConfigError::Write { path: path.display().to_string(), source };
        paths.ensure_dir().map_err(err)?;
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        bytes.push(b'\n');
        write_private(&path, &bytes).map_err(err)
    }

    pub fn mesh(&self, slug_or_id: &str) -> Option<&MeshConfig> {
        self.meshes.iter().find(|m| m.slug == slug_or_id || m.id == slug_or_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unknown_fields_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().join("cm"));
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(
            paths.config(),
            r#"{"future":1,"meshes":[{"id":"i","slug":"s","broker_url":"ws://x","member_id":"m","secret_key":"00","later":true}]}"#,
        )
        .unwrap();
        let c = Config::load(&paths).unwrap();
        assert_eq!(c.meshes[0].extra["later"], true);
        c.save(&paths).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(paths.config()).unwrap()).unwrap();
        assert_eq!(v["future"], 1);
        assert_eq!(v["meshes"][0]["later"], true);
        let mode = std::fs::metadata(paths.config()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&paths.dir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert!(!format!("{:?}", c.meshes[0]).contains("\"00\""));
    }

    #[test]
    fn broken_config_is_a_clear_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::write(paths.config(), "{ not json").unwrap();
        let e = Config::load(&paths).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("not valid"), "{e}");
        assert_eq!(std::fs::read_to_string(paths.config()).unwrap(), "{ not json", "untouched");
    }
}
