//! Fuzzing invite parsing (`invite::parse_invite`) inside `cargo test`: arbitrary text, links
//! built around arbitrary tokens and byte-level mutations of the seed corpus in
//! `tests/corpus/invites/` never panic and never yield an invite its issuer did not sign; every
//! valid invite round-trips through each link form, also when wrapped and sprinkled with what
//! chat apps and mail clients insert. `CLAUDEMESH_FUZZ_CASES=N` runs longer;
//! `CLAUDEMESH_FUZZ_WRITE_CORPUS=1` rewrites the generated seeds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fuzzing;

use std::sync::{Arc, LazyLock};

use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::{GroupRole, Role};
use claudemesh_protocol::invite::{InviteError, InvitePayload, SignedInvite, parse_invite};
use fuzzing::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// The corpus's issuer: a fixed key, so the seeds stay valid.
fn issuer() -> MemberKeypair {
    MemberKeypair::from_seed(&[7; 32])
}

static SEEDS: LazyLock<Arc<Vec<Seed>>> = LazyLock::new(|| {
    write_corpus();
    Arc::new(corpus("invites"))
});

/// Every payload a valid seed carries: a mutation may only ever parse to one of them.
static SIGNED: LazyLock<Vec<InvitePayload>> = LazyLock::new(|| {
    SEEDS
        .iter()
        .filter_map(|s| parse_invite(&String::from_utf8_lossy(&s.bytes)).ok())
        .map(|i| i.payload)
        .collect()
});

/// Tokens that matter to the link parser: separators, mangling, invisible characters.
const INVITE_TOKENS: &[&[u8]] = &[
    b".",
    b"/",
    b"/join/",
    b"claudemesh://join/",
    b"https://",
    b"://",
    b"=\n",
    b"\n> ",
    b"\r\n",
    b" ",
    b"\t",
    b">",
    b"<",
    b"\"",
    b"'",
    b"?",
    b"#",
    b"-",
    b"_",
    b"A",
    b"e",
    b"\xe2\x80\x8b",
    b"\xef\xbb\xbf",
    b"\xc2\xad",
    b"\xe2\x94\x82",
    b"\xff",
    b"eyJ2Ijox",
];

fn payload(issuer: &MemberKeypair) -> InvitePayload {
    common::invite_payload(issuer)
}

/// With `CLAUDEMESH_FUZZ_WRITE_CORPUS=1`, writes the seeds made from signed invites.
fn write_corpus() {
    if std::env::var_os("CLAUDEMESH_FUZZ_WRITE_CORPUS").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/invites");
    std::fs::create_dir_all(&dir).unwrap();
    let key = issuer();
    let base = payload(&key).sign(&key).unwrap();
    let admin = InvitePayload { role: Role::Admin, groups: vec![], max_uses: u32::MAX, ..payload(&key) };
    let admin = admin.sign(&key).unwrap();
    let odd = InvitePayload {
        mesh_id: "m \"quoted\" \u{e9}\u{1f600}\n".into(),
        invite_id: "\u{0}\u{7f}".into(),
        broker_url: "ws://127.0.0.1:7000".into(),
        expires_at: 0,
        ..payload(&key)
    };
    let odd = odd.sign(&key).unwrap();
    let (p, s) = base.token().split_once('.').unwrap();
    let w = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
    w("ok-token.txt", base.token().into());
    w("ok-claudemesh-url.txt", base.claudemesh_url());
    w("ok-https-url.txt", base.https_url("mesh.example.com:8443"));
    w("ok-admin.txt", admin.claudemesh_url());
    w("ok-odd-fields.txt", odd.claudemesh_url());
    w("ok-capitalized.txt", base.claudemesh_url().replacen("claudemesh://join", "Claudemesh://Join", 1));
    w("ok-sentence.txt", format!("Join us: <{}>, thanks.", base.https_url("h")));
    w(
        "ok-wrapped-mail.txt",
        format!("> {}=\n> {}", &base.claudemesh_url()[..40], &base.claudemesh_url()[40..]),
    );
    w("ok-zero-width.txt", base.token().replacen('.', "\u{200b}.\u{feff}", 1));
    w("ok-box.txt", format!("\u{2502} {} \u{2502}", base.claudemesh_url()));
    w("ok-query.txt", format!("https://h/prefix/join/{}?utm=x#frag", base.token()));
    w("err-cut-payload.txt", base.claudemesh_url()[..60].to_string());
    w("err-cut-signature.txt", format!("{p}.{}", &s[..40]));
    w("err-no-signature.txt", p.to_string());
    w("err-bad-signature.txt", format!("{p}.{}", s.chars().rev().collect::<String>()));
    w("err-swapped-signature.txt", format!("{}.{s}", admin.token().split_once('.').unwrap().0));
}

/// Parses `text`; a success must be an invite some seed's issuer signed (nothing else can
/// verify). Returns the outcome.
fn check(text: &str) -> Result<SignedInvite, InviteError> {
    let r = parse_invite(text);
    if let Ok(inv) = &r {
        assert!(SIGNED.contains(&inv.payload), "{text:?} parsed to an invite no seed holds: {inv:?}");
        assert_eq!(parse_invite(inv.token()).as_ref(), Ok(inv), "its token parses back");
    }
    r
}

#[test]
fn the_corpus_replays() {
    for s in SEEDS.iter() {
        let text = String::from_utf8_lossy(&s.bytes);
        let r = check(&text);
        assert!(!s.valid() || r.is_ok(), "invites/{} was refused: {r:?}", s.name);
        assert!(!s.invalid() || r.is_err(), "invites/{} was accepted", s.name);
    }
    assert!(SIGNED.len() >= 3);
}

/// A valid payload with arbitrary contents where the format allows any.
fn payloads() -> impl Strategy<Value = InvitePayload> {
    let slug = "[a-z0-9][a-z0-9_-]{0,30}";
    let groups = vec((slug, proptest::option::of(any::<String>())), 0..4)
        .prop_map(|g| g.into_iter().map(|(name, role)| GroupRole { name, role }).collect());
    (
        ("wss?://[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-z]{0,8})?", ".+", slug, ".+"),
        (any::<bool>(), groups, any::<u64>(), 1..=u32::MAX),
    )
        .prop_map(
            |((broker_url, mesh_id, mesh_slug, invite_id), (admin, groups, expires_at, max_uses))| {
                InvitePayload {
                    v: 1,
                    broker_url,
                    mesh_id,
                    mesh_slug,
                    invite_id,
                    role: if admin { Role::Admin } else { Role::Member },
                    groups,
                    expires_at,
                    max_uses,
                    issuer_pubkey: issuer().public_hex(),
                }
            },
        )
}

/// Noise a chat app or mail client puts into a link, inserted between its characters.
const NOISE: &[&str] =
    &[" ", "\n", "\r\n", "\t", "\u{200b}", "\u{feff}", "\u{ad}", "\u{2502}", "=\n", "\n> "];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text).ok();
    }

    #[test]
    fn links_around_arbitrary_tokens_never_panic(
        prefix in prop::sample::select(&["", "claudemesh://join/", "https://h/join/", "http://h:1/x/join/", "ftp://"][..]),
        token in "[A-Za-z0-9_.=-]{0,200}",
        tail in "[ .,>?#/a-z]{0,4}",
    ) {
        check(&format!("{prefix}{token}{tail}")).ok();
    }

    #[test]
    fn mutated_invites_never_panic_nor_forge(bytes in mutated(SEEDS.clone(), INVITE_TOKENS)) {
        check(&String::from_utf8_lossy(&bytes)).ok();
    }

    #[test]
    fn valid_invites_round_trip_in_every_form(p in payloads(), host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?") {
        let inv = p.sign(&issuer()).unwrap();
        for form in [inv.token().to_string(), inv.claudemesh_url(), inv.https_url(&host)] {
            prop_assert_eq!(parse_invite(&form), Ok(inv.clone()), "{}", form);
        }
        let (p64, s64) = inv.token().split_once('.').unwrap();
        prop_assert_eq!(parse_invite(p64), Err(InviteError::CutShort));
        prop_assert_eq!(parse_invite(&format!("{p64}.{}", &s64[..s64.len() - 1])), Err(InviteError::CutShort));
    }

    #[test]
    fn mangled_links_still_parse(
        which in 0..2usize,
        inserts in vec((any::<Index>(), prop::sample::select(NOISE)), 0..12),
    ) {
        let key = issuer();
        let inv = payload(&key).sign(&key).unwrap();
        let link = if which == 0 { inv.claudemesh_url() } else { inv.https_url("mesh.example.com") };
        let chars: Vec<char> = link.chars().collect();
        let mut at: Vec<(usize, &str)> = inserts.iter().map(|(i, n)| (i.index(chars.len() + 1), *n)).collect();
        at.sort_by_key(|(i, _)| *i);
        let mut text = String::new();
        let mut next = at.iter().peekable();
        for (i, c) in chars.iter().enumerate() {
            while let Some((_, n)) = next.next_if(|(p, _)| *p == i) {
                text.push_str(n);
            }
            text.push(*c);
        }
        next.for_each(|(_, n)| text.push_str(n));
        prop_assert_eq!(parse_invite(&text), Ok(inv), "{:?}", text);
    }
}
