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
    #[error("this invite link looks cut short: copy all of it, to its very end, and try again")]
    CutShort,
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

/// Length of the signature part of a token: 64 bytes of ed25519 signature in unpadded base64url.
const SIG_B64_LEN: usize = 86;

/// A character of unpadded base64url, the only characters a token's two parts hold.
fn is_b64url(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whitespace and the invisible characters chat apps insert when they wrap or render a link.
fn is_noise(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
        // Box-drawing characters: a link selected out of a terminal box (`│ … │`).
        || ('\u{2500}'..='\u{257F}').contains(&c)
}

/// The pasted text without what wrapping and quoting put into a link: whitespace, invisible and
/// box-drawing characters anywhere, mail quote markers (`>`) at line starts, and quoted-printable soft line
/// breaks (`=` at a line end). A token never holds any of them.
fn unwrap_text(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    let mut line_start = true;
    while let Some(c) = chars.next() {
        let soft_break = c == '=' && matches!(chars.peek(), Some('\r' | '\n'));
        if c == '\n' {
            line_start = true;
        } else if !(is_noise(c) || soft_break || line_start && c == '>') {
            line_start = false;
            out.push(c);
        }
    }
    out
}

/// Where the token starts in `text`: after `claudemesh://join/` (any case, as phone keyboards
/// capitalize it) or a URL's `/join/`, or, for a bare token, after any quote or bracket before
/// it. The flag says whether a link prefix was found.
fn locate(text: &str) -> Result<(&str, bool), InviteError> {
    // ASCII lowercasing keeps every byte offset, so offsets in `lower` are offsets in `text`.
    let lower = text.to_ascii_lowercase();
    if let Some(i) = lower.find(SCHEME_PREFIX) {
        return Ok((&text[i + SCHEME_PREFIX.len()..], true));
    }
    for scheme in ["https://", "http://"] {
        if let Some(i) = lower.find(scheme) {
            let j = lower[i..]
                .find("/join/")
                .ok_or_else(|| InviteError::Malformed("URL has no /join/ path".into()))?;
            return Ok((&text[i + j + "/join/".len()..], true));
        }
    }
    if lower.contains("://") {
        return Err(InviteError::Malformed("unknown URL scheme".into()));
    }
    Ok((text.trim_start_matches(|c: char| !is_b64url(c)), false))
}

/// The payload part and (after a `.`) the signature part of the token at the start of `rest`;
/// whatever follows the signature's fixed length (a trailing `.` or `,`, `>`, a query, words
/// glued on when spaces were removed) is not part of it.
fn split_token(rest: &str) -> (&str, Option<&str>) {
    let end = rest.find(|c: char| !is_b64url(c)).unwrap_or(rest.len());
    let sig = rest[end..].strip_prefix('.').map(|s| {
        let n = s.find(|c: char| !is_b64url(c)).unwrap_or(s.len());
        &s[..n.min(SIG_B64_LEN)]
    });
    (&rest[..end], sig)
}

/// How every token starts: `{"v":1` in base64url (serde writes the fields in order).
const TOKEN_START: &str = "eyJ2Ijox";

/// Decodes the payload part. A part cut at any length decodes as far as its whole 4-character
/// groups go (the flag says so), so that a cut link shows as a cut JSON object, not bad base64.
fn decode_payload(p64: &str) -> Result<(Vec<u8>, bool), InviteError> {
    if let Ok(bytes) = from_b64url("invite payload", p64) {
        return Ok((bytes, false));
    }
    if p64.len() < 4 && TOKEN_START.starts_with(p64) {
        return Ok((b"{".to_vec(), true));
    }
    Ok((from_b64url("invite payload", &p64[..p64.len() - p64.len() % 4])?, true))
}

/// Parses an invite link or token and checks its signature against the embedded issuer key.
/// Links mangled the way chat apps and mail clients mangle them still parse: wrapped over lines
/// or with spaces inside, quoted, in `<…>`, with a trailing `.` or `,`, in a sentence. A link
/// cut short is [`InviteError::CutShort`]. Expiry and whether the issuer is an admin are checked
/// separately ([`SignedInvite::check_expiry`], [`SignedInvite::check_issuer`]): the CLI knows only
/// the former, the broker both.
pub fn parse_invite(input: &str) -> Result<SignedInvite, InviteError> {
    let text = unwrap_text(input);
    let (rest, linked) = locate(&text)?;
    let (p64, s64) = split_token(rest);
    if p64.is_empty() {
        return Err(if linked {
            InviteError::CutShort
        } else {
            InviteError::Malformed("empty token".into())
        });
    }
    let (bytes, cut) = decode_payload(p64)?;
    let parsed = serde_json::from_slice::<InvitePayload>(&bytes);
    // JSON that starts as an object and stops early: the link was cut inside its payload.
    if bytes.starts_with(b"{") && (cut || matches!(&parsed, Err(e) if e.is_eof())) {
        return Err(InviteError::CutShort);
    }
    let payload = parsed.map_err(|e| InviteError::Malformed(format!("payload: {e}")))?;
    payload.validate()?;
    // A complete payload with a missing or short signature: the link ends too early.
    let s64 = s64.filter(|s| s.len() == SIG_B64_LEN).ok_or(InviteError::CutShort)?;
    let sig = from_b64url("invite signature", s64).map_err(|_| InviteError::BadSignature)?;
    verify_signature(&payload.issuer_pubkey, &bytes, &to_hex(&sig)).map_err(|e| match e {
        CryptoError::BadSignature => InviteError::BadSignature,
        CryptoError::Codec(_) => InviteError::BadSignature,
        other => InviteError::Malformed(other.to_string()),
    })?;
    Ok(SignedInvite { payload, token: format!("{p64}.{s64}") })
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
