//! Challenge transcripts for `hello` and `enroll` (DESIGN §4/§5) and their ed25519 signatures.
//! No clocks: the broker's fresh random challenge is what prevents replay.

use dryoc::classic::crypto_sign::crypto_sign_verify_detached;

use super::{CryptoError, MemberKeypair, PublicKey};
use crate::codec::{from_hex_array, to_hex};

/// `claudemesh-hello|1|<mesh_id>|<member_id>|<pubkey hex>|<challenge hex>`
pub fn hello_transcript(mesh_id: &str, member_id: &str, pubkey_hex: &str, challenge_hex: &str) -> String {
    format!("claudemesh-hello|1|{mesh_id}|{member_id}|{pubkey_hex}|{challenge_hex}")
}

/// `claudemesh-enroll|1|<invite_id>|<pubkey hex>|<challenge hex>`
pub fn enroll_transcript(invite_id: &str, pubkey_hex: &str, challenge_hex: &str) -> String {
    format!("claudemesh-enroll|1|{invite_id}|{pubkey_hex}|{challenge_hex}")
}

/// Verifies a detached signature given as hex against a public key given as hex.
pub fn verify_signature(pubkey_hex: &str, message: &[u8], signature_hex: &str) -> Result<(), CryptoError> {
    let pk: PublicKey = from_hex_array("pubkey", pubkey_hex)?;
    let sig: [u8; 64] = from_hex_array("signature", signature_hex)?;
    crypto_sign_verify_detached(&sig, message, &pk).map_err(|_| CryptoError::BadSignature)
}

/// The `signature` field of a `hello`, as hex.
pub fn sign_hello(key: &MemberKeypair, mesh_id: &str, member_id: &str, challenge_hex: &str) -> String {
    let t = hello_transcript(mesh_id, member_id, &key.public_hex(), challenge_hex);
    to_hex(&key.sign(t.as_bytes()))
}

pub fn verify_hello(
    mesh_id: &str,
    member_id: &str,
    pubkey_hex: &str,
    challenge_hex: &str,
    signature_hex: &str,
) -> Result<(), CryptoError> {
    let t = hello_transcript(mesh_id, member_id, pubkey_hex, challenge_hex);
    verify_signature(pubkey_hex, t.as_bytes(), signature_hex)
}

/// The `signature` field of an `enroll`, made by the new member key, as hex.
pub fn sign_enroll(key: &MemberKeypair, invite_id: &str, challenge_hex: &str) -> String {
    let t = enroll_transcript(invite_id, &key.public_hex(), challenge_hex);
    to_hex(&key.sign(t.as_bytes()))
}

pub fn verify_enroll(
    invite_id: &str,
    pubkey_hex: &str,
    challenge_hex: &str,
    signature_hex: &str,
) -> Result<(), CryptoError> {
    let t = enroll_transcript(invite_id, pubkey_hex, challenge_hex);
    verify_signature(pubkey_hex, t.as_bytes(), signature_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_signature_binds_every_field() {
        let k = MemberKeypair::generate();
        let ch = "00".repeat(32);
        let sig = sign_hello(&k, "mesh1", "mem1", &ch);
        assert!(verify_hello("mesh1", "mem1", &k.public_hex(), &ch, &sig).is_ok());
        let other_ch = "01".repeat(32);
        assert_eq!(
            verify_hello("mesh1", "mem1", &k.public_hex(), &other_ch, &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(verify_hello("mesh2", "mem1", &k.public_hex(), &ch, &sig), Err(CryptoError::BadSignature));
        assert_eq!(verify_hello("mesh1", "mem2", &k.public_hex(), &ch, &sig), Err(CryptoError::BadSignature));
        let wrong = MemberKeypair::generate();
        assert_eq!(
            verify_hello("mesh1", "mem1", &wrong.public_hex(), &ch, &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn enroll_signature() {
        let k = MemberKeypair::generate();
        let ch = "ab".repeat(32);
        let sig = sign_enroll(&k, "inv1", &ch);
        assert!(verify_enroll("inv1", &k.public_hex(), &ch, &sig).is_ok());
        assert!(verify_enroll("inv2", &k.public_hex(), &ch, &sig).is_err());
        // A hello signature is not an enroll signature (domain separation).
        let hello_sig = sign_hello(&k, "inv1", "x", &ch);
        assert!(verify_enroll("inv1", &k.public_hex(), &ch, &hello_sig).is_err());
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        assert!(matches!(verify_signature("zz", b"m", &"00".repeat(64)), Err(CryptoError::Codec(_))));
        assert!(matches!(verify_signature(&"00".repeat(32), b"m", "00"), Err(CryptoError::Codec(_))));
    }
}
