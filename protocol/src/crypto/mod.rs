//! Crypto on dryoc (libsodium-compatible, DESIGN §4): member keys, challenge signatures,
//! message boxes with per-recipient fan-out, vault entries and re-sealing to a runner.

mod keys;
mod message;
mod sign;
mod vault;

pub use keys::{MemberKeypair, PublicKey, RunnerKeypair, ed25519_pk_to_x25519, random_bytes};
pub use message::{
    EnvelopeSizeError, MessagePlaintext, PLAINTEXT_VERSION, SealedEnvelope, check_envelope_sizes, fan_out,
    open_message, seal_message, seal_message_with_nonce,
};
pub use sign::{
    enroll_transcript, hello_transcript, sign_enroll, sign_hello, verify_enroll, verify_hello,
    verify_signature,
};
pub use vault::{
    VaultBlob, decrypt_vault_entry, encrypt_vault_entry, encrypt_vault_entry_with, open_sealed, reseal_to,
};

use crate::codec::CodecError;

/// Everything that can go wrong in a crypto operation. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("{0} is not a valid ed25519 public key")]
    InvalidPublicKey(&'static str),
    #[error("signature does not verify")]
    BadSignature,
    #[error("decryption failed: wrong key or tampered ciphertext")]
    Decrypt,
    #[error("decrypted message is not valid: {0}")]
    BadPlaintext(String),
    #[error("message body is {got} bytes, at most {max} allowed")]
    BodyTooLarge { got: usize, max: usize },
    #[error("encryption failed: {0}")]
    Encrypt(String),
}
