//! Vault entries (DESIGN §8): value under `crypto_secretbox_easy` with a random key, that key
//! sealed (`crypto_box_seal`) to the owner's X25519 key; re-sealing a value to a runner key.

use dryoc::classic::crypto_box::{crypto_box_seal, crypto_box_seal_open};
use dryoc::classic::crypto_secretbox::{crypto_secretbox_easy, crypto_secretbox_open_easy};
use zeroize::Zeroizing;

use super::keys::random_bytes;
use super::{CryptoError, MemberKeypair, PublicKey, RunnerKeypair};
use crate::codec::{from_b64, from_b64_array, to_b64};

const MAC_BYTES: usize = 16;
const SEAL_BYTES: usize = 48;

/// What the broker stores for one vault entry; all base64. It cannot open any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultBlob {
    pub ciphertext: String,
    pub nonce: String,
    pub sealed_key: String,
}

fn seal(message: &[u8], to: &PublicKey) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; message.len() + SEAL_BYTES];
    crypto_box_seal(&mut out, message, to).map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    Ok(out)
}

fn seal_open(sealed: &[u8], pk: &PublicKey, sk: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < SEAL_BYTES {
        return Err(CryptoError::Decrypt);
    }
    let mut out = Zeroizing::new(vec![0u8; sealed.len() - SEAL_BYTES]);
    crypto_box_seal_open(&mut out, sealed, pk, sk).map_err(|_| CryptoError::Decrypt)?;
    Ok(out)
}

/// Encrypts a secret value for its owner.
pub fn encrypt_vault_entry(value: &[u8], owner: &MemberKeypair) -> Result<VaultBlob, CryptoError> {
    let key = Zeroizing::new(random_bytes::<32>());
    encrypt_vault_entry_with(value, owner, &key, &random_bytes())
}

/// [`encrypt_vault_entry`] with a caller-chosen key and nonce. Only for reproducible test
/// vectors: real entries must use fresh random ones.
pub fn encrypt_vault_entry_with(
    value: &[u8],
    owner: &MemberKeypair,
    key: &[u8; 32],
    nonce: &[u8; 24],
) -> Result<VaultBlob, CryptoError> {
    let mut ct = vec![0u8; value.len() + MAC_BYTES];
    crypto_secretbox_easy(&mut ct, value, nonce, key).map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    let sealed_key = seal(&key[..], &owner.x25519_public()?)?;
    Ok(VaultBlob { ciphertext: to_b64(&ct), nonce: to_b64(nonce), sealed_key: to_b64(&sealed_key) })
}

/// Opens the owner's own vault entry.
pub fn decrypt_vault_entry(
    blob: &VaultBlob,
    owner: &MemberKeypair,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let sealed_key = from_b64("sealed_key", &blob.sealed_key)?;
    let key = seal_open(&sealed_key, &owner.x25519_public()?, &owner.x25519_secret())?;
    let key: Zeroizing<[u8; 32]> =
        Zeroizing::new(key.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?);
    let nonce: [u8; 24] = from_b64_array("nonce", &blob.nonce)?;
    let ct = from_b64("ciphertext", &blob.ciphertext)?;
    if ct.len() < MAC_BYTES {
        return Err(CryptoError::Decrypt);
    }
    let mut out = Zeroizing::new(vec![0u8; ct.len() - MAC_BYTES]);
    crypto_secretbox_open_easy(&mut out, &ct, &nonce, &key).map_err(|_| CryptoError::Decrypt)?;
    Ok(out)
}

/// Opens the owner's entry and seals the value to another X25519 key (a runner's), as
/// base64. The broker relays this blob; only that runner can open it.
pub fn reseal_to(blob: &VaultBlob, owner: &MemberKeypair, to: &PublicKey) -> Result<String, CryptoError> {
    let value = decrypt_vault_entry(blob, owner)?;
    Ok(to_b64(&seal(&value, to)?))
}

/// The runner opens a blob sealed to it.
pub fn open_sealed(sealed_b64: &str, runner: &RunnerKeypair) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let sealed = from_b64("sealed", sealed_b64)?;
    seal_open(&sealed, runner.public(), runner.secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_round_trip_and_reseal() {
        let owner = MemberKeypair::generate();
        let blob = encrypt_vault_entry(b"ghp_secret", &owner).unwrap();
        assert_eq!(&decrypt_vault_entry(&blob, &owner).unwrap()[..], b"ghp_secret");
        let runner = RunnerKeypair::generate();
        let sealed = reseal_to(&blob, &owner, runner.public()).unwrap();
        assert_eq!(&open_sealed(&sealed, &runner).unwrap()[..], b"ghp_secret");
        assert_eq!(open_sealed(&sealed, &RunnerKeypair::generate()), Err(CryptoError::Decrypt));
    }

    #[test]
    fn other_member_cannot_open() {
        let owner = MemberKeypair::generate();
        let blob = encrypt_vault_entry(b"v", &owner).unwrap();
        assert_eq!(decrypt_vault_entry(&blob, &MemberKeypair::generate()), Err(CryptoError::Decrypt));
        assert!(reseal_to(&blob, &MemberKeypair::generate(), owner.public()).is_err());
    }

    #[test]
    fn tampering_fails() {
        let owner = MemberKeypair::generate();
        let blob = encrypt_vault_entry(b"value", &owner).unwrap();
        let flip = |s: &str| {
            let mut b = from_b64("x", s).unwrap();
            b[0] ^= 1;
            to_b64(&b)
        };
        for t in [
            VaultBlob { ciphertext: flip(&blob.ciphertext), ..blob.clone() },
            VaultBlob { nonce: flip(&blob.nonce), ..blob.clone() },
            VaultBlob { sealed_key: flip(&blob.sealed_key), ..blob.clone() },
            VaultBlob { sealed_key: to_b64(&[0; 10]), ..blob.clone() },
        ] {
            assert_eq!(decrypt_vault_entry(&t, &owner), Err(CryptoError::Decrypt));
        }
    }

    #[test]
    fn empty_value_works() {
        let owner = MemberKeypair::generate();
        let blob = encrypt_vault_entry(b"", &owner).unwrap();
        assert!(decrypt_vault_entry(&blob, &owner).unwrap().is_empty());
    }
}
