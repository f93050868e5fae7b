//! Byte codecs used on the wire: lowercase hex for keys and signatures, standard padded
//! base64 for ciphertext and nonces, unpadded base64url for invite tokens.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// A field could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{field}: not valid hex")]
    Hex { field: &'static str },
    #[error("{field}: not valid base64")]
    Base64 { field: &'static str },
    #[error("{field}: expected {expected} bytes, got {got}")]
    Length { field: &'static str, expected: usize, got: usize },
}

pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

pub fn from_hex(field: &'static str, s: &str) -> Result<Vec<u8>, CodecError> {
    hex::decode(s).map_err(|_| CodecError::Hex { field })
}

/// Decodes hex into exactly `N` bytes.
pub fn from_hex_array<const N: usize>(field: &'static str, s: &str) -> Result<[u8; N], CodecError> {
    let v = from_hex(field, s)?;
    let got = v.len();
    v.try_into().map_err(|_| CodecError::Length { field, expected: N, got })
}

pub fn to_b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn from_b64(field: &'static str, s: &str) -> Result<Vec<u8>, CodecError> {
    STANDARD.decode(s).map_err(|_| CodecError::Base64 { field })
}

/// Decodes standard base64 into exactly `N` bytes.
pub fn from_b64_array<const N: usize>(field: &'static str, s: &str) -> Result<[u8; N], CodecError> {
    let v = from_b64(field, s)?;
    let got = v.len();
    v.try_into().map_err(|_| CodecError::Length { field, expected: N, got })
}

pub fn to_b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn from_b64url(field: &'static str, s: &str) -> Result<Vec<u8>, CodecError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| CodecError::Base64 { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data = [0u8, 1, 2, 250, 255];
        assert_eq!(from_hex("x", &to_hex(&data)).unwrap(), data);
        assert_eq!(from_b64("x", &to_b64(&data)).unwrap(), data);
        assert_eq!(from_b64url("x", &to_b64url(&data)).unwrap(), data);
        assert_eq!(to_b64(b"ab"), "YWI=", "standard base64 is padded");
        assert_eq!(to_b64url(&[0xfb, 0xff]), "-_8", "base64url is unpadded and url-safe");
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(from_hex("pubkey", "zz"), Err(CodecError::Hex { field: "pubkey" }));
        assert_eq!(from_b64("nonce", "!!"), Err(CodecError::Base64 { field: "nonce" }));
        assert_eq!(
            from_hex_array::<4>("sig", "0011"),
            Err(CodecError::Length { field: "sig", expected: 4, got: 2 })
        );
        assert_eq!(
            from_b64_array::<2>("n", "AAAA"),
            Err(CodecError::Length { field: "n", expected: 2, got: 3 })
        );
    }
}
