//! End-to-end trust in the member directory (protocol 2): signed statements, the chain that
//! verifies them from a root key pinned at join, and per-member safety codes two people can
//! compare by voice. See docs/security.md "Authenticated directory".

mod chain;
mod statement;
#[cfg(test)]
mod tests;

pub use chain::{Entry, Standing, Verdict, Via, verify_directory};
pub use statement::{MAX_STATEMENT_BYTES, STATEMENT_VERSION, SignedStatement, Statement, StatementError};

use dryoc::classic::crypto_generichash::crypto_generichash;

/// A member's safety code: 15 decimal digits in three groups of five (about 50 bits), from
/// BLAKE2b-256 of `claudemesh-safety|2|<mesh_id>|<pubkey hex, lowercase>`. Both ends compute it
/// from the key their own agent uses, so equal codes mean equal keys.
pub fn safety_code(mesh_id: &str, pubkey_hex: &str) -> String {
    let input = format!("claudemesh-safety|2|{mesh_id}|{}", pubkey_hex.to_ascii_lowercase());
    let mut out = [0u8; 32];
    // BLAKE2b with a 32-byte output and no key cannot fail: both lengths are within its bounds.
    if crypto_generichash(&mut out, input.as_bytes(), None).is_err() {
        return "unavailable".into();
    }
    let mut n = u64::from_le_bytes([out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]]);
    n %= 1_000_000_000_000_000;
    let d = format!("{n:015}");
    format!("{} {} {}", &d[0..5], &d[5..10], &d[10..15])
}

/// The member id a key enrolls as (protocol 2): `m_` and the first 10 bytes of BLAKE2b-256 of
/// `claudemesh-member-id|2|<pubkey hex, lowercase>`, in hex. Derived, so a new member signs its
/// `member` statement (id included) before the broker answers, and the broker cannot assign a
/// key another member's id.
pub fn member_id_for(pubkey_hex: &str) -> String {
    let input = format!("claudemesh-member-id|2|{}", pubkey_hex.to_ascii_lowercase());
    let mut out = [0u8; 32];
    // As in safety_code: a 32-byte unkeyed BLAKE2b cannot fail.
    if crypto_generichash(&mut out, input.as_bytes(), None).is_err() {
        return String::new();
    }
    format!("m_{}", crate::codec::to_hex(&out[..10]))
}

/// The `member` statement a new member signs when it enrolls with `invite_token` (for mesh
/// `mesh_id`), under its derived member id ([`member_id_for`]). `at` is Unix milliseconds.
pub fn enrollment_statement(
    key: &crate::crypto::MemberKeypair,
    mesh_id: &str,
    display_name: &str,
    invite_token: &str,
    at: u64,
) -> Result<SignedStatement, StatementError> {
    let member_id = member_id_for(&key.public_hex());
    member_statement(key, mesh_id, &member_id, display_name, Some(invite_token), at)
}

/// The `member` statement `key` signs about itself as `member_id` of `mesh_id`, named
/// `display_name`, enrolled with `invite_token` (none for a mesh's creator or a member from
/// before protocol 2). `at` is Unix milliseconds.
pub fn member_statement(
    key: &crate::crypto::MemberKeypair,
    mesh_id: &str,
    member_id: &str,
    display_name: &str,
    invite_token: Option<&str>,
    at: u64,
) -> Result<SignedStatement, StatementError> {
    Statement::Member {
        v: STATEMENT_VERSION,
        mesh_id: mesh_id.to_string(),
        member_id: member_id.to_string(),
        pubkey: key.public_hex(),
        display_name: display_name.to_string(),
        invite: invite_token.map(str::to_string),
        at,
    }
    .sign(key)
}
