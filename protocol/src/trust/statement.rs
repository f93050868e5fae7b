//! Signed statements (protocol 2, docs/security.md "Authenticated directory"): what a member
//! says of itself when it enrolls, and what an admin says of a member when it changes its role
//! or removes it. Each is a JSON text signed with ed25519 under the domain-separated
//! transcript `claudemesh-statement|2|<json>`, so a broker can relay them but never make one.

use serde::{Deserialize, Serialize};

use crate::codec::{from_hex_array, to_hex};
use crate::crypto::{CryptoError, MemberKeypair, verify_signature};
use crate::frames::{GroupRole, RemovalReason, Role};

/// Version of the statement format.
pub const STATEMENT_VERSION: u32 = 2;

/// Longest statement text accepted, in bytes (an invite token plus a few ids fits in 2 KiB).
pub const MAX_STATEMENT_BYTES: usize = 8 * 1024;

/// What a statement says. Tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Statement {
    /// Signed by the member's own key: "I am `display_name`, member `member_id` of `mesh_id`,
    /// and I joined with `invite`" (the whole invite token, issuer's signature included). The
    /// mesh creator has no invite: its statement is a founder claim, valid only for a key the
    /// reader already trusts as an admin.
    Member {
        v: u32,
        mesh_id: String,
        member_id: String,
        /// ed25519 public key, hex: the signer.
        pubkey: String,
        display_name: String,
        #[serde(default)]
        invite: Option<String>,
        /// Unix milliseconds when it was signed.
        at: u64,
    },
    /// Signed by an admin (`signer`): member `member_id` with key `pubkey` has `role` and
    /// `groups` from now on. Also vouches for a member that has no enrollment proof.
    Role {
        v: u32,
        mesh_id: String,
        member_id: String,
        pubkey: String,
        display_name: String,
        role: Role,
        #[serde(default)]
        groups: Vec<GroupRole>,
        /// The signing admin's ed25519 public key, hex.
        signer: String,
        at: u64,
    },
    /// Signed by an admin (`reason: removed`) or by the member itself (`reason: left`): the
    /// key is no longer a member, for good.
    Removal {
        v: u32,
        mesh_id: String,
        member_id: String,
        pubkey: String,
        reason: RemovalReason,
        signer: String,
        at: u64,
    },
}

impl Statement {
    /// The key that must have signed it.
    pub fn signer(&self) -> &str {
        match self {
            Statement::Member { pubkey, .. } => pubkey,
            Statement::Role { signer, .. } | Statement::Removal { signer, .. } => signer,
        }
    }

    /// (mesh id, member id, member key) the statement is about.
    pub fn subject(&self) -> (&str, &str, &str) {
        match self {
            Statement::Member { mesh_id, member_id, pubkey, .. }
            | Statement::Role { mesh_id, member_id, pubkey, .. }
            | Statement::Removal { mesh_id, member_id, pubkey, .. } => (mesh_id, member_id, pubkey),
        }
    }

    /// When it was signed, Unix milliseconds.
    pub fn at(&self) -> u64 {
        match self {
            Statement::Member { at, .. } | Statement::Role { at, .. } | Statement::Removal { at, .. } => *at,
        }
    }

    fn version(&self) -> u32 {
        match self {
            Statement::Member { v, .. } | Statement::Role { v, .. } | Statement::Removal { v, .. } => *v,
        }
    }

    /// Signs the statement with `key`, which must be its [`Statement::signer`].
    pub fn sign(&self, key: &MemberKeypair) -> Result<SignedStatement, StatementError> {
        if self.signer() != key.public_hex() {
            return Err(StatementError::WrongSigner);
        }
        let text = serde_json::to_string(self).map_err(|e| StatementError::Malformed(e.to_string()))?;
        let signature = to_hex(&key.sign(transcript(&text).as_bytes()));
        Ok(SignedStatement { statement: text, signature })
    }
}

/// A statement as it travels: its exact JSON text and the signer's signature over
/// `claudemesh-statement|2|<statement>`, hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedStatement {
    pub statement: String,
    pub signature: String,
}

/// Why a statement is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("statement is not valid JSON of a known kind: {0}")]
    Malformed(String),
    #[error("statement is {0} bytes; at most {MAX_STATEMENT_BYTES} allowed")]
    TooLarge(usize),
    #[error("statement version {0} is not supported; upgrade claudemesh")]
    Version(u32),
    #[error("statement signature does not verify against its signer's key")]
    BadSignature,
    #[error("statement must be signed by the key it names as signer")]
    WrongSigner,
}

fn transcript(text: &str) -> String {
    format!("claudemesh-statement|{STATEMENT_VERSION}|{text}")
}

impl SignedStatement {
    /// Parses the text and checks the signature of the key it names as signer. Says nothing of
    /// whether that signer is trusted: see [`super::chain`].
    pub fn verify(&self) -> Result<Statement, StatementError> {
        if self.statement.len() > MAX_STATEMENT_BYTES {
            return Err(StatementError::TooLarge(self.statement.len()));
        }
        let st: Statement =
            serde_json::from_str(&self.statement).map_err(|e| StatementError::Malformed(e.to_string()))?;
        if st.version() != STATEMENT_VERSION {
            return Err(StatementError::Version(st.version()));
        }
        from_hex_array::<32>("signer", st.signer()).map_err(|e| StatementError::Malformed(e.to_string()))?;
        verify_signature(st.signer(), transcript(&self.statement).as_bytes(), &self.signature).map_err(
            |e| match e {
                CryptoError::Codec(c) => StatementError::Malformed(c.to_string()),
                _ => StatementError::BadSignature,
            },
        )?;
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(k: &MemberKeypair) -> Statement {
        Statement::Member {
            v: STATEMENT_VERSION,
            mesh_id: "mesh1".into(),
            member_id: "m_1".into(),
            pubkey: k.public_hex(),
            display_name: "bob".into(),
            invite: None,
            at: 1,
        }
    }

    #[test]
    fn signed_statements_verify_and_any_change_breaks_them() {
        let k = MemberKeypair::generate();
        let s = member(&k).sign(&k).unwrap();
        assert_eq!(s.verify().unwrap(), member(&k));
        let forged = SignedStatement { statement: s.statement.replace("bob", "eve"), ..s.clone() };
        assert_eq!(forged.verify(), Err(StatementError::BadSignature));
        // Another key cannot sign a statement naming someone else as signer.
        let other = MemberKeypair::generate();
        assert_eq!(member(&k).sign(&other), Err(StatementError::WrongSigner));
        // A hello or enroll signature over the same text is not a statement signature.
        let raw = SignedStatement {
            statement: s.statement.clone(),
            signature: to_hex(&k.sign(s.statement.as_bytes())),
        };
        assert_eq!(raw.verify(), Err(StatementError::BadSignature));
    }

    #[test]
    fn malformed_and_oversized_statements_are_typed_errors() {
        let s = SignedStatement { statement: "{}".into(), signature: "00".repeat(64) };
        assert!(matches!(s.verify(), Err(StatementError::Malformed(_))));
        let big =
            SignedStatement { statement: "x".repeat(MAX_STATEMENT_BYTES + 1), signature: String::new() };
        assert!(matches!(big.verify(), Err(StatementError::TooLarge(_))));
        let k = MemberKeypair::generate();
        let mut st = member(&k);
        if let Statement::Member { v, .. } = &mut st {
            *v = 9;
        }
        let text = serde_json::to_string(&st).unwrap();
        let sig = to_hex(&k.sign(transcript(&text).as_bytes()));
        assert_eq!(
            SignedStatement { statement: text, signature: sig }.verify(),
            Err(StatementError::Version(9))
        );
    }
}
