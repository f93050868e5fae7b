//! Invites (DESIGN §4): a JSON payload signed by an admin member, carried as
//! `claudemesh://join/<token>` or `https://<host>/join/<token>`; no secret is in the URL.

use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, from_b64url, from_hex_array, to_b64url, to_hex};
use crate::crypto::{CryptoError, MemberKeypair, verify_signature};
use crate::frames::{GroupRole, Role};
use crate::names;

pub const INVITE_VERSION: u32 = 1;
const SCHEME_PREFIX: &str = "claudemesh://join/";

/// What an invite grants. Signed as its exact JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitePayload {
    pub v: u32,
    pub broker_url: String,
    pub mesh_id: String,
    pub mesh_slug: String,
    pub invite_id: String,
    pub role: Role,
    #[serde(default)]
    pub groups: Vec<GroupRole>,
    /// Unix seconds after which the invite is refused.
    pub expires_at: u64,
    pub max_uses: u32,
    /// The signing admin's ed25519 public key, hex.
    pub issuer_pubkey: String,
}

/// Why an invite was refused. Each says what the person should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("not an invite link: {0}; expected claudemesh://join/<token> or https://<host>/join/<token>")]
    Malformed(String),
    #[error("invite signature does not verify: the link was altered or truncated; ask for a new one")]
    BadSignature,
    #[error("invite expired at {expires_at} (unix seconds); ask an admin for a new one")]
    Expired { expires_at: u64 },
    #[error("invite was not signed by an admin of this mesh")]
    WrongIssuer,
    #[error("invite version {0} is not supported by this claudemesh; upgrade it")]
    UnsupportedVersion(u32),
    #[error("invite field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl From<CodecError> for InviteError {
    fn from(e: CodecError) -> Self {
        InviteError::Malformed(e.to_string())
    }
}

/// A parsed invite whose signature matches its embedded issuer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInvite {
    pub payload: InvitePayload,
    token: String,
}

impl InvitePayload {
    fn validate(&self) -> Result<(), InviteError> {
        if self.v != INVITE_VERSION {
            return Err(InviteError::UnsupportedVersion(self.v));
        }
        let field = |field: &'static str, reason: String| InviteError::InvalidField { field, reason };
        names::validate_mesh_slug(&self.mesh_slug).map_err(|e| field("mesh_slug", e.to_string()))?;
        for g in &self.groups {
            names::validate_group_name(&g.name).map_err(|e| field("groups", e.to_string()))?;
        }
        if self.max_uses == 0 {
            return Err(field("max_uses", "must be at least 1".into()));
        }
        if !(self.broker_url.starts_with("ws://") || self.broker_url.starts_with("wss://")) {
            return Err(field("broker_url", "must be a ws:// or wss:// URL".into()));
        }
        if self.invite_id.is_empty() || self.mesh_id.is_empty() {
            return Err(field("invite_id", "must not be empty".into()));
        }
        from_hex_array::<32>("issuer_pubkey", &self.issuer_pubkey)
            .map_err(|e| field("issuer_pubkey", e.to_string()))?;
        Ok(())
    }

    /// Signs the payload with the issuing admin's key, which must match `issuer_pubkey`.
    pub fn sign(self, issuer: &MemberKeypair) -> Result<SignedInvite, InviteError> {
        if self.issuer_pubkey != issuer.public_hex() {
            return Err(InviteError::WrongIssuer);
        }
        self.validate()?;
        let bytes = serde_json::to_vec(&self).map_err(|e| InviteError::Malformed(e.to_string()))?;
        let sig = issuer.sign(&bytes);
        let token = format!("{}.{}", to_b64url(&bytes), to_b64url(&sig));
        Ok(SignedInvite { payload: self, token })
    }
}

/// Extracts the token from a `claudemesh://join/…` or `http(s)://host/…/join/…` link, or a
/// bare token.
fn extract_token(input: &str) -> Result<&str, InviteError> {
    let s = input.trim();
    let token = if let Some(rest) = s.strip_prefix(SCHEME_PREFIX) {
        rest
    } else if s.starts_with("https://") || s.starts_with("http://") {
        let idx = s.rfind("/join/").ok_or_else(|| InviteError::Malformed("URL has no /join/ path".into()))?;
        &s[idx + "/join/".len()..]
    } else if s.contains("://") {
        return Err(InviteError::Malformed("unknown URL scheme".into()));
    } else {
        s
    };
    let token = token.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
    if token.is_empty() {
        return Err(InviteError::Malformed("empty token".into()));
    }
    Ok(token)
}

/// Parses an invite link or token and checks its signature against the embedded issuer key.
/// Expiry and whether the issuer is an admin are checked separately ([`SignedInvite::check_expiry`],
/// [`SignedInvite::check_issuer`]): the CLI knows only the former, the broker both.
pub fn parse_invite(input: &str) -> Result<SignedInvite, InviteError> {
    let token = extract_token(input)?;
    let (p64, s64) =
        token.split_once('.').ok_or_else(|| InviteError::Malformed("token has no signature part".into()))?;
    let bytes = from_b64url("invite payload", p64)?;
    // A damaged signature part means the link was altered or truncated, like a bad signature.
    let sig = from_b64url("invite signature", s64).map_err(|_| InviteError::BadSignature)?;
    let payload: InvitePayload =
        serde_json::from_slice(&bytes).map_err(|e| InviteError::Malformed(format!("payload: {e}")))?;
    payload.validate()?;
    verify_signature(&payload.issuer_pubkey, &bytes, &to_hex(&sig)).map_err(|e| match e {
        CryptoError::BadSignature => InviteError::BadSignature,
        CryptoError::Codec(_) => InviteError::BadSignature,
        other => InviteError::Malformed(other.to_string()),
    })?;
    Ok(SignedInvite { payload, token: token.to_string() })
}

impl SignedInvite {
    /// The bare token: `base64url(payload).base64url(signature)`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `claudemesh://join/<token>`
    pub fn claudemesh_url(&self) -> String {
        format!("{SCHEME_PREFIX}{}", self.token)
    }

    /// `https://<host>/join/<token>`; `host` may carry a port.
    pub fn https_url(&self, host: &str) -> String {
        format!("https://{}/join/{}", host.trim_end_matches('/'), self.token)
    }

    /// Refuses an invite whose `expires_at` is not after `now_unix`.
    pub fn check_expiry(&self, now_unix: u64) -> Result<(), InviteError> {
        if now_unix >= self.payload.expires_at {
            return Err(InviteError::Expired { expires_at: self.payload.expires_at });
        }
        Ok(())
    }

    /// Refuses an invite whose issuer is not among `admin_pubkeys` (hex).
    pub fn check_issuer<'a>(
        &self,
        mut admin_pubkeys: impl Iterator<Item = &'a str>,
    ) -> Result<(), InviteError> {
        if admin_pubkeys.any(|k| k.eq_ignore_ascii_case(&self.payload.issuer_pubkey)) {
            Ok(())
        } else {
            Err(InviteError::WrongIssuer)
        }
    }
}
