//! Message boxes (DESIGN §4): the plaintext JSON, `crypto_box_easy` to one recipient with
//! ed25519→X25519 keys, and fan-out to every recipient member of a multicast.

use std::collections::BTreeMap;

use dryoc::classic::crypto_box::{crypto_box_easy, crypto_box_open_easy};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::{ed25519_pk_to_x25519, random_bytes};
use super::{CryptoError, MemberKeypair, PublicKey};
use crate::codec::{from_b64, from_b64_array, to_b64};
use crate::frames::{Envelope, Priority};
use crate::limits::{MAX_BODY_BYTES, MAX_ENVELOPE_CIPHERTEXT_B64, MAX_SEND_ENVELOPE_BYTES};

/// Protocol 2: everything a recipient acts on is inside the box.
pub const PLAINTEXT_VERSION: u32 = 2;
const MAC_BYTES: usize = 16;

/// What is inside every box (protocol 2). Besides the body, everything a recipient acts on is
/// authenticated with it: sender member and session, the recipient member (set per box by
/// [`fan_out`]), the client message id, priority, target and time sent. The recipient checks
/// them against the broker's `push` and refuses a mismatch (reflection, misdirection, replay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePlaintext {
    pub v: u32,
    /// The sending member's id.
    #[serde(default)]
    pub from_member: String,
    pub from_session: String,
    /// The sending session's name: a claim, shown beside the verified member name.
    pub from_name: String,
    /// The member this box is for; [`fan_out`] and [`seal_message`] set it per box.
    #[serde(default)]
    pub to_member: String,
    /// The sender's idempotency key, also the recipient's replay key.
    #[serde(default)]
    pub client_msg_id: String,
    #[serde(default)]
    pub priority: Priority,
    /// The target as sent (`session:<id>`, `member:<id>`, `@group`, `*`).
    #[serde(default)]
    pub target: String,
    /// Unix milliseconds by the sender's clock.
    #[serde(default)]
    pub sent_at: u64,
    pub body: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl MessagePlaintext {
    pub fn new(
        from_session: impl Into<String>,
        from_name: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        Self {
            v: PLAINTEXT_VERSION,
            from_member: String::new(),
            from_session: from_session.into(),
            from_name: from_name.into(),
            to_member: String::new(),
            client_msg_id: String::new(),
            priority: Priority::default(),
            target: String::new(),
            sent_at: 0,
            body: body.into(),
            reply_to: None,
            meta: BTreeMap::new(),
        }
    }

    /// Sets what the recipient checks against the push: sender member, client message id,
    /// priority, target (its wire form) and time sent (Unix ms).
    pub fn addressed(
        mut self,
        from_member: impl Into<String>,
        client_msg_id: impl Into<String>,
        priority: Priority,
        target: impl Into<String>,
        sent_at: u64,
    ) -> Self {
        self.from_member = from_member.into();
        self.client_msg_id = client_msg_id.into();
        self.priority = priority;
        self.target = target.into();
        self.sent_at = sent_at;
        self
    }
}

/// One sealed box as it travels: nonce and ciphertext in standard base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    pub nonce: String,
    pub ciphertext: String,
}

fn encode_plaintext(p: &MessagePlaintext) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if p.body.len() > MAX_BODY_BYTES {
        return Err(CryptoError::BodyTooLarge { got: p.body.len(), max: MAX_BODY_BYTES });
    }
    serde_json::to_vec(p).map(Zeroizing::new).map_err(|e| CryptoError::Encrypt(e.to_string()))
}

fn box_bytes(
    plain: &[u8],
    nonce: &[u8; 24],
    recipient_x_pk: &PublicKey,
    sender_x_sk: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    let mut ct = vec![0u8; plain.len() + MAC_BYTES];
    crypto_box_easy(&mut ct, plain, nonce, recipient_x_pk, sender_x_sk)
        .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    Ok(ct)
}

/// Seals `plaintext` from `sender` to the member whose ed25519 public key is `recipient`.
pub fn seal_message(
    plaintext: &MessagePlaintext,
    recipient: &PublicKey,
    sender: &MemberKeypair,
) -> Result<SealedEnvelope, CryptoError> {
    seal_message_with_nonce(plaintext, recipient, sender, &random_bytes())
}

/// [`seal_message`] with a caller-chosen nonce. Only for reproducible test vectors: reusing
/// a nonce with the same key pair breaks confidentiality.
pub fn seal_message_with_nonce(
    plaintext: &MessagePlaintext,
    recipient: &PublicKey,
    sender: &MemberKeypair,
    nonce: &[u8; 24],
) -> Result<SealedEnvelope, CryptoError> {
    let plain = encode_plaintext(plaintext)?;
    let ct = box_bytes(&plain, nonce, &ed25519_pk_to_x25519(recipient)?, &sender.x25519_secret())?;
    Ok(SealedEnvelope { nonce: to_b64(nonce), ciphertext: to_b64(&ct) })
}

/// Opens a box addressed to `recipient`, sent by the member whose ed25519 key is `sender`.
/// Wrong keys and tampering give [`CryptoError::Decrypt`].
pub fn open_message(
    nonce_b64: &str,
    ciphertext_b64: &str,
    sender: &PublicKey,
    recipient: &MemberKeypair,
) -> Result<MessagePlaintext, CryptoError> {
    let nonce: [u8; 24] = from_b64_array("nonce", nonce_b64)?;
    let ct = from_b64("ciphertext", ciphertext_b64)?;
    if ct.len() < MAC_BYTES {
        return Err(CryptoError::Decrypt);
    }
    let mut plain = Zeroizing::new(vec![0u8; ct.len() - MAC_BYTES]);
    crypto_box_open_easy(&mut plain, &ct, &nonce, &ed25519_pk_to_x25519(sender)?, &recipient.x25519_secret())
        .map_err(|_| CryptoError::Decrypt)?;
    let msg: MessagePlaintext =
        serde_json::from_slice(&plain).map_err(|e| CryptoError::BadPlaintext(e.to_string()))?;
    if msg.v != PLAINTEXT_VERSION {
        return Err(CryptoError::BadPlaintext(format!(
            "plaintext version {} (this claudemesh reads {PLAINTEXT_VERSION}): the sender runs another \
             claudemesh release; one of you should upgrade",
            msg.v
        )));
    }
    Ok(msg)
}

/// Encrypts one plaintext once per recipient member (DESIGN §4: multicast is fan-out by the
/// sender; the broker never sees plaintext). `recipients` are `(member_id, ed25519 pubkey)`.
/// Each box's plaintext names its recipient (`to_member`) and gets its own random nonce.
pub fn fan_out(
    plaintext: &MessagePlaintext,
    recipients: &[(String, PublicKey)],
    sender: &MemberKeypair,
) -> Result<Vec<Envelope>, CryptoError> {
    let sender_sk = sender.x25519_secret();
    let mut p = plaintext.clone();
    p.v = PLAINTEXT_VERSION;
    recipients
        .iter()
        .map(|(member_id, pk)| {
            p.to_member.clone_from(member_id);
            let plain = encode_plaintext(&p)?;
            let nonce: [u8; 24] = random_bytes();
            let ct = box_bytes(&plain, &nonce, &ed25519_pk_to_x25519(pk)?, &sender_sk)?;
            Ok(Envelope { member_id: member_id.clone(), nonce: to_b64(&nonce), ciphertext: to_b64(&ct) })
        })
        .collect()
}

/// Why a send's envelopes are too large for a broker: one box over
/// [`MAX_ENVELOPE_CIPHERTEXT_B64`] (base64 bytes), or all of them (ciphertext and nonce) over
/// [`MAX_SEND_ENVELOPE_BYTES`]. The broker enforces it; the agent checks it before it accepts a
/// send, since a body under [`MAX_BODY_BYTES`] can exceed it once JSON-escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeSizeError {
    /// The first box over the limit: its member and base64 length.
    Box { member_id: String, len: usize },
    /// The sum over all `count` envelopes.
    Total { total: usize, count: usize },
}

/// Checks `envelopes` against the broker's size rules (see [`EnvelopeSizeError`]).
pub fn check_envelope_sizes(envelopes: &[Envelope]) -> Result<(), EnvelopeSizeError> {
    if let Some(big) = envelopes.iter().find(|e| e.ciphertext.len() > MAX_ENVELOPE_CIPHERTEXT_B64) {
        return Err(EnvelopeSizeError::Box { member_id: big.member_id.clone(), len: big.ciphertext.len() });
    }
    let total: usize = envelopes.iter().map(|e| e.ciphertext.len() + e.nonce.len()).sum();
    if total > MAX_SEND_ENVELOPE_BYTES {
        return Err(EnvelopeSizeError::Total { total, count: envelopes.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let alice = MemberKeypair::generate();
        let bob = MemberKeypair::generate();
        let mut m = MessagePlaintext::new("s1", "alice", "hello bob");
        m.meta.insert("k".into(), "v".into());
        m.reply_to = Some("m0".into());
        let env = seal_message(&m, bob.public(), &alice).unwrap();
        assert_eq!(open_message(&env.nonce, &env.ciphertext, alice.public(), &bob).unwrap(), m);
    }

    #[test]
    fn wrong_key_fails() {
        let alice = MemberKeypair::generate();
        let bob = MemberKeypair::generate();
        let eve = MemberKeypair::generate();
        let env = seal_message(&MessagePlaintext::new("s", "a", "secret"), bob.public(), &alice).unwrap();
        assert_eq!(
            open_message(&env.nonce, &env.ciphertext, alice.public(), &eve),
            Err(CryptoError::Decrypt)
        );
        // Right recipient, but claimed sender is someone else.
        assert_eq!(open_message(&env.nonce, &env.ciphertext, eve.public(), &bob), Err(CryptoError::Decrypt));
    }

    #[test]
    fn tampered_ciphertext_and_nonce_fail() {
        let alice = MemberKeypair::generate();
        let bob = MemberKeypair::generate();
        let env = seal_message(&MessagePlaintext::new("s", "a", "secret"), bob.public(), &alice).unwrap();
        let mut ct = from_b64("c", &env.ciphertext).unwrap();
        for i in [0, MAC_BYTES, ct.len() - 1] {
            ct[i] ^= 1;
            assert_eq!(
                open_message(&env.nonce, &to_b64(&ct), alice.public(), &bob),
                Err(CryptoError::Decrypt)
            );
            ct[i] ^= 1;
        }
        let mut nonce = from_b64("n", &env.nonce).unwrap();
        nonce[0] ^= 1;
        assert_eq!(
            open_message(&to_b64(&nonce), &env.ciphertext, alice.public(), &bob),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(open_message(&env.nonce, "AAAA", alice.public(), &bob), Err(CryptoError::Decrypt));
        assert!(matches!(
            open_message("short", &env.ciphertext, alice.public(), &bob),
            Err(CryptoError::Codec(_))
        ));
    }

    #[test]
    fn oversized_body_refused() {
        let alice = MemberKeypair::generate();
        let m = MessagePlaintext::new("s", "a", "x".repeat(MAX_BODY_BYTES + 1));
        assert!(matches!(seal_message(&m, alice.public(), &alice), Err(CryptoError::BodyTooLarge { .. })));
        let ok = MessagePlaintext::new("s", "a", "x".repeat(MAX_BODY_BYTES));
        assert!(seal_message(&ok, alice.public(), &alice).is_ok());
    }

    #[test]
    fn fan_out_one_box_per_recipient() {
        let sender = MemberKeypair::generate();
        let rs: Vec<MemberKeypair> = (0..3).map(|_| MemberKeypair::generate()).collect();
        let list: Vec<(String, PublicKey)> =
            rs.iter().enumerate().map(|(i, k)| (format!("m{i}"), *k.public())).collect();
        let m = MessagePlaintext::new("s", "sender", "to all");
        let envs = fan_out(&m, &list, &sender).unwrap();
        assert_eq!(envs.len(), 3);
        let nonces: std::collections::HashSet<_> = envs.iter().map(|e| e.nonce.clone()).collect();
        assert_eq!(nonces.len(), 3, "each box has its own nonce");
        for (i, env) in envs.iter().enumerate() {
            assert_eq!(env.member_id, format!("m{i}"));
            let opened = open_message(&env.nonce, &env.ciphertext, sender.public(), &rs[i]).unwrap();
            assert_eq!(opened.to_member, format!("m{i}"), "each box names its recipient");
            assert_eq!(MessagePlaintext { to_member: String::new(), ..opened }, m);
            // No recipient can open another's box.
            let other = &rs[(i + 1) % 3];
            assert!(open_message(&env.nonce, &env.ciphertext, sender.public(), other).is_err());
        }
    }
}
