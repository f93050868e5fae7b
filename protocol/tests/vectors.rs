//! Cross-implementation check: vectors made by a real libsodium (PyNaCl, see
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! vectors/gen_crypto.py) that our dryoc code must open and reproduce byte for byte.

use claudemesh_protocol::codec::{from_b64, from_hex_array, to_b64, to_hex};
use claudemesh_protocol::crypto::*;
use claudemesh_protocol::invite::parse_invite;
use serde_json::Value;

fn vectors() -> Value {
    let path = format!("{}/tests/vectors/crypto.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    path.split('.').fold(v, |v, k| &v[k]).as_str().unwrap_or_else(|| panic!("missing {path}"))
}

fn member(v: &Value, who: &str) -> MemberKeypair {
    MemberKeypair::from_seed(&from_hex_array::<32>("seed", s(v, &format!("{who}.seed"))).unwrap())
}

#[test]
fn seed_keypairs_and_conversion_match_libsodium() {
    let v = vectors();
    for who in ["alice", "bob"] {
        let kp = member(&v, who);
        assert_eq!(kp.public_hex(), s(&v, &format!("{who}.ed25519_pk")));
        assert_eq!(&*kp.secret_hex(), s(&v, &format!("{who}.ed25519_sk")));
        assert_eq!(to_hex(&kp.x25519_public().unwrap()), s(&v, &format!("{who}.x25519_pk")));
        assert_eq!(to_hex(&kp.x25519_secret()[..]), s(&v, &format!("{who}.x25519_sk")));
        // Loading libsodium's 64-byte secret key gives the same identity.
        let loaded = MemberKeypair::from_secret_hex(s(&v, &format!("{who}.ed25519_sk"))).unwrap();
        assert_eq!(loaded.public(), kp.public());
    }
}

#[test]
fn ed25519_signature_matches_libsodium() {
    let v = vectors();
    let alice = member(&v, "alice");
    let challenge = s(&v, "signature.challenge");
    assert_eq!(hello_transcript("mesh_1", "m_1", &alice.public_hex(), challenge), s(&v, "signature.message"));
    assert_eq!(sign_hello(&alice, "mesh_1", "m_1", challenge), s(&v, "signature.signature"));
    verify_hello("mesh_1", "m_1", &alice.public_hex(), challenge, s(&v, "signature.signature")).unwrap();
}

#[test]
fn box_opens_and_reproduces() {
    let v = vectors();
    let alice = member(&v, "alice");
    let bob = member(&v, "bob");
    let nonce = s(&v, "box.nonce");
    let ct = s(&v, "box.ciphertext");
    let opened = open_message(nonce, ct, alice.public(), &bob).unwrap();
    assert_eq!(opened.body, "hello bob \u{2713}");
    assert_eq!(opened.from_name, "alice");
    assert_eq!(opened.from_member, "m_alice");
    assert_eq!(opened.to_member, "m_bob");
    assert_eq!(opened.client_msg_id, "c0ffee00-0000-4000-8000-000000000001");
    assert_eq!(opened.priority, claudemesh_protocol::frames::Priority::Now);
    assert_eq!(opened.target, "member:m_bob");
    assert_eq!(opened.sent_at, 1_700_000_000_000);
    // Our plaintext JSON is byte-identical to the one libsodium boxed, so is our box.
    assert_eq!(serde_json::to_string(&opened).unwrap(), s(&v, "box.plaintext"));
    let nonce_bytes: [u8; 24] = from_b64("n", nonce).unwrap().try_into().unwrap();
    let ours = seal_message_with_nonce(&opened, bob.public(), &alice, &nonce_bytes).unwrap();
    assert_eq!(ours.ciphertext, ct);
    // crypto_box authenticates the pair, not the direction: the sender can open her own box
    // when told the peer sent it. Receivers must not trust direction from the box alone
    // (docs/security.md: reflection); a third party still cannot open it.
    assert!(open_message(nonce, ct, bob.public(), &alice).is_ok());
    let carol = MemberKeypair::from_seed(&[0x33; 32]);
    assert_eq!(open_message(nonce, ct, alice.public(), &carol), Err(CryptoError::Decrypt));
}

#[test]
fn vault_entry_opens_and_secretbox_reproduces() {
    let v = vectors();
    let bob = member(&v, "bob");
    let blob = VaultBlob {
        ciphertext: s(&v, "secretbox.ciphertext").into(),
        nonce: s(&v, "secretbox.nonce").into(),
        sealed_key: s(&v, "secretbox.sealed_key_to_bob").into(),
    };
    let value = decrypt_vault_entry(&blob, &bob).unwrap();
    assert_eq!(&value[..], s(&v, "secretbox.plaintext").as_bytes());
    let key: [u8; 32] = from_hex_array("key", s(&v, "secretbox.key")).unwrap();
    let nonce: [u8; 24] = from_b64("n", s(&v, "secretbox.nonce")).unwrap().try_into().unwrap();
    let ours = encrypt_vault_entry_with(&value, &bob, &key, &nonce).unwrap();
    assert_eq!(ours.ciphertext, blob.ciphertext);
    assert_eq!(ours.nonce, blob.nonce);
    // Alice cannot open Bob's vault entry.
    assert_eq!(decrypt_vault_entry(&blob, &member(&v, "alice")), Err(CryptoError::Decrypt));
}

#[test]
fn sealed_box_to_runner_opens() {
    let v = vectors();
    let runner = RunnerKeypair::from_secret_hex(s(&v, "sealed_box.runner_sk")).unwrap();
    assert_eq!(runner.public_hex(), s(&v, "sealed_box.runner_pk"));
    let opened = open_sealed(s(&v, "sealed_box.sealed"), &runner).unwrap();
    assert_eq!(&opened[..], s(&v, "sealed_box.plaintext").as_bytes());
    // Tampered sealed box fails.
    let mut raw = from_b64("x", s(&v, "sealed_box.sealed")).unwrap();
    *raw.last_mut().unwrap() ^= 1;
    assert_eq!(open_sealed(&to_b64(&raw), &runner), Err(CryptoError::Decrypt));
}

#[test]
fn libsodium_signed_invite_verifies() {
    let v = vectors();
    let inv = parse_invite(s(&v, "invite.token")).unwrap();
    assert_eq!(inv.payload.issuer_pubkey, s(&v, "alice.ed25519_pk"));
    assert_eq!(inv.payload.mesh_slug, "team");
    inv.check_issuer([s(&v, "alice.ed25519_pk")].into_iter()).unwrap();
    assert!(inv.check_issuer([s(&v, "bob.ed25519_pk")].into_iter()).is_err());
}

#[test]
fn libsodium_signed_statement_verifies_and_safety_code_matches() {
    use claudemesh_protocol::trust::{SignedStatement, Statement, safety_code};
    let v = vectors();
    let signed = SignedStatement {
        statement: s(&v, "statement.statement").into(),
        signature: s(&v, "statement.signature").into(),
    };
    let st = signed.verify().unwrap();
    assert!(matches!(&st, Statement::Member { display_name, .. } if display_name == "alice"));
    // Our serialization and signature are byte-identical to libsodium's.
    assert_eq!(st.sign(&member(&v, "alice")).unwrap(), signed);
    assert_eq!(safety_code("mesh_1", s(&v, "alice.ed25519_pk")), s(&v, "statement.safety_code"));
}
