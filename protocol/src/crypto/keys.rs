//! Member (ed25519) and runner (x25519) keypairs; secrets zeroized on drop, never printed.

use std::fmt;

use dryoc::classic::crypto_box::crypto_box_keypair;
use dryoc::classic::crypto_sign::{crypto_sign_detached, crypto_sign_keypair, crypto_sign_seed_keypair};
use dryoc::classic::crypto_sign_ed25519::{
    crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519,
};
use zeroize::{Zeroize, Zeroizing};

use super::CryptoError;
use crate::codec::{from_hex_array, to_hex};

/// A 32-byte public key (ed25519 for members, x25519 for runners).
pub type PublicKey = [u8; 32];

/// Fills a buffer with OS randomness.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    dryoc::rng::copy_randombytes(&mut out);
    out
}

/// Converts an ed25519 public key into the X25519 key used for boxes
/// (`crypto_sign_ed25519_pk_to_curve25519`). Fails for keys not on the curve.
pub fn ed25519_pk_to_x25519(pk: &PublicKey) -> Result<PublicKey, CryptoError> {
    let mut out = [0u8; 32];
    crypto_sign_ed25519_pk_to_curve25519(&mut out, pk)
        .map_err(|_| CryptoError::InvalidPublicKey("member key"))?;
    Ok(out)
}

/// A member's ed25519 identity key. The secret half is zeroized on drop and never
/// appears in `Debug` output.
pub struct MemberKeypair {
    public: PublicKey,
    secret: Zeroizing<[u8; 64]>,
}

impl MemberKeypair {
    /// Fresh keypair from OS randomness.
    pub fn generate() -> Self {
        let (public, secret) = crypto_sign_keypair();
        Self { public, secret: Zeroizing::new(secret) }
    }

    /// Deterministic keypair from a 32-byte seed (used by test vectors).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (public, secret) = crypto_sign_seed_keypair(seed);
        Self { public, secret: Zeroizing::new(secret) }
    }

    /// Loads the 64-byte libsodium secret key (seed ‖ public) from hex, checking that its
    /// public half matches the seed.
    pub fn from_secret_hex(hex: &str) -> Result<Self, CryptoError> {
        let mut secret: [u8; 64] = from_hex_array("secret key", hex)?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&secret[..32]);
        secret.zeroize();
        let kp = Self::from_seed(&seed);
        seed.zeroize();
        let mut given_public = [0u8; 32];
        given_public.copy_from_slice(&from_hex_array::<64>("secret key", hex)?[32..]);
        if given_public != kp.public {
            return Err(CryptoError::InvalidPublicKey("secret key's public half"));
        }
        Ok(kp)
    }

    /// The secret key as hex, for the 0600 config file. The caller owns zeroizing it.
    pub fn secret_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(to_hex(&self.secret[..]))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn public_hex(&self) -> String {
        to_hex(&self.public)
    }

    /// Detached ed25519 signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        // dryoc documents that detached signing with fixed-size keys cannot fail; the
        // Result exists only for API compatibility, so an Err here leaves a zero signature
        // that every verifier rejects rather than panicking.
        let _ = crypto_sign_detached(&mut sig, message, &self.secret);
        sig
    }

    /// The X25519 secret key for boxes (`crypto_sign_ed25519_sk_to_curve25519`).
    pub fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        crypto_sign_ed25519_sk_to_curve25519(&mut out, &self.secret);
        out
    }

    /// The X25519 public key for boxes.
    pub fn x25519_public(&self) -> Result<PublicKey, CryptoError> {
        ed25519_pk_to_x25519(&self.public)
    }
}

impl fmt::Debug for MemberKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberKeypair")
            .field("public", &to_hex(&self.public))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A mesh runner's X25519 keypair: deployers seal service secrets to its public key.
pub struct RunnerKeypair {
    public: PublicKey,
    secret: Zeroizing<[u8; 32]>,
}

impl RunnerKeypair {
    pub fn generate() -> Self {
        let (public, secret) = crypto_box_keypair();
        Self { public, secret: Zeroizing::new(secret) }
    }

    /// Loads the 32-byte X25519 secret from hex; the public key is derived from it.
    pub fn from_secret_hex(hex: &str) -> Result<Self, CryptoError> {
        let secret: [u8; 32] = from_hex_array("runner secret key", hex)?;
        let secret = Zeroizing::new(secret);
        let mut public = [0u8; 32];
        dryoc::classic::crypto_core::crypto_scalarmult_base(&mut public, &secret);
        Ok(Self { public, secret })
    }

    pub fn secret_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(to_hex(&self.secret[..]))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn public_hex(&self) -> String {
        to_hex(&self.public)
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for RunnerKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerKeypair")
            .field("public", &to_hex(&self.public))
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hex_round_trip() {
        let kp = MemberKeypair::generate();
        let back = MemberKeypair::from_secret_hex(&kp.secret_hex()).unwrap();
        assert_eq!(back.public(), kp.public());
        let r = RunnerKeypair::generate();
        let rb = RunnerKeypair::from_secret_hex(&r.secret_hex()).unwrap();
        assert_eq!(rb.public(), r.public());
    }

    #[test]
    fn inconsistent_secret_is_refused() {
        let a = MemberKeypair::generate();
        let b = MemberKeypair::generate();
        let mut forged = a.secret_hex()[..64].to_string();
        forged.push_str(&b.public_hex());
        assert!(MemberKeypair::from_secret_hex(&forged).is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let kp = MemberKeypair::generate();
        let shown = format!("{kp:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&kp.secret_hex()[..16]));
        let r = RunnerKeypair::generate();
        assert!(!format!("{r:?}").contains(&r.secret_hex()[..16]));
    }

    #[test]
    fn bad_public_key_is_an_error() {
        // Not a canonical point encoding.
        assert!(ed25519_pk_to_x25519(&[0xff; 32]).is_err());
    }
}
