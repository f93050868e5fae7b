#!/usr/bin/env python3
"""Generates crypto.json with a real libsodium (PyNaCl), for protocol/tests/vectors.rs.

Run once: `pip install pynacl==1.6.2 && python3 gen_crypto.py > crypto.json`.
Everything deterministic (signatures, boxes with a fixed nonce, secretbox, key conversion)
must be reproduced byte for byte by our dryoc code; sealed boxes use a random ephemeral key,
so ours must open them.
"""
import base64
import hashlib
import json

import nacl.bindings as b
import nacl.signing

def hx(x: bytes) -> str:
    return x.hex()

def b64(x: bytes) -> str:
    return base64.b64encode(x).decode()

def b64url(x: bytes) -> str:
    return base64.urlsafe_b64encode(x).rstrip(b"=").decode()

def member(seed_byte: int):
    seed = bytes([seed_byte]) * 32
    pk, sk = b.crypto_sign_seed_keypair(seed)
    return {
        "seed": hx(seed),
        "ed25519_pk": hx(pk),
        "ed25519_sk": hx(sk),
        "x25519_pk": hx(b.crypto_sign_ed25519_pk_to_curve25519(pk)),
        "x25519_sk": hx(b.crypto_sign_ed25519_sk_to_curve25519(sk)),
    }, pk, sk

alice, a_pk, a_sk = member(0x11)
bob, b_pk, b_sk = member(0x22)
a_xsk = b.crypto_sign_ed25519_sk_to_curve25519(a_sk)
b_xpk = b.crypto_sign_ed25519_pk_to_curve25519(b_pk)

challenge = bytes(range(32)).hex()
hello = f"claudemesh-hello|1|mesh_1|m_1|{hx(a_pk)}|{challenge}"
hello_sig = b.crypto_sign(hello.encode(), a_sk)[:64]

# Message plaintext of protocol 2 (docs/protocol.md), serialized compactly in field order.
plaintext = json.dumps(
    {"v": 2, "from_member": "m_alice", "from_session": "0b6a4b8e-1f0e-4a57-9c51-5e1f2d3c4b5a",
     "from_name": "alice", "to_member": "m_bob", "client_msg_id": "c0ffee00-0000-4000-8000-000000000001",
     "priority": "now", "target": "member:m_bob", "sent_at": 1700000000000,
     "body": "hello bob \u2713", "reply_to": None, "meta": {}},
    separators=(",", ":"), ensure_ascii=False,
).encode()
box_nonce = bytes([7]) * 24
box_ct = b.crypto_box(plaintext, box_nonce, b_xpk, a_xsk)

# Vault entry for bob: secretbox under a fixed key, that key sealed to bob's X25519 key.
vault_key = bytes([9]) * 32
vault_nonce = bytes([5]) * 24
vault_value = b"ghp_example_token"
vault_ct = b.crypto_secretbox(vault_value, vault_nonce, vault_key)
vault_sealed_key = b.crypto_box_seal(vault_key, b_xpk)

# A runner keypair and a secret sealed to it.
runner_sk = bytes([3]) * 32
runner_pk = b.crypto_scalarmult_base(runner_sk)
runner_sealed = b.crypto_box_seal(b"runner-secret", runner_pk)

# An invite signed by alice.
invite_payload = json.dumps(
    {"v": 1, "broker_url": "wss://broker.example/ws", "mesh_id": "mesh_1", "mesh_slug": "team",
     "invite_id": "inv_1", "role": "member", "groups": [{"name": "ops"}], "expires_at": 4102444800,
     "max_uses": 5, "issuer_pubkey": hx(a_pk)},
    separators=(",", ":"),
).encode()
invite_sig = b.crypto_sign(invite_payload, a_sk)[:64]

# A member statement signed by alice (protocol 2 directory), and her safety code.
statement = json.dumps(
    {"kind": "member", "v": 2, "mesh_id": "mesh_1", "member_id": "m_alice", "pubkey": hx(a_pk),
     "display_name": "alice", "invite": None, "at": 1700000000000},
    separators=(",", ":"),
)
statement_sig = b.crypto_sign(("claudemesh-statement|2|" + statement).encode(), a_sk)[:64]
digest = hashlib.blake2b(f"claudemesh-safety|2|mesh_1|{hx(a_pk)}".encode(), digest_size=32).digest()
n = int.from_bytes(digest[:8], "little") % 10**15
safety = f"{n:015d}"
safety = f"{safety[0:5]} {safety[5:10]} {safety[10:15]}"

print(json.dumps({
    "generator": "PyNaCl " + nacl.__version__ + " (its bundled libsodium), gen_crypto.py",
    "alice": alice,
    "bob": bob,
    "signature": {"challenge": challenge, "message": hello, "signature": hx(hello_sig)},
    "box": {"plaintext": plaintext.decode(), "nonce": b64(box_nonce), "ciphertext": b64(box_ct)},
    "secretbox": {"key": hx(vault_key), "nonce": b64(vault_nonce), "plaintext": vault_value.decode(),
                  "ciphertext": b64(vault_ct), "sealed_key_to_bob": b64(vault_sealed_key)},
    "sealed_box": {"runner_sk": hx(runner_sk), "runner_pk": hx(runner_pk), "plaintext": "runner-secret",
                   "sealed": b64(runner_sealed)},
    "invite": {"token": b64url(invite_payload) + "." + b64url(invite_sig)},
    "statement": {"statement": statement, "signature": hx(statement_sig), "safety_code": safety},
}, indent=2, ensure_ascii=False))
