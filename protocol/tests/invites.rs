//! Invite links: build, sign, encode, parse every form, and refuse tampering, expiry and
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! the wrong issuer.

mod common;

use claudemesh_protocol::codec::{from_b64url, to_b64url};
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::invite::{InviteError, InvitePayload, parse_invite};

fn payload(issuer: &MemberKeypair) -> InvitePayload {
    common::invite_payload(issuer)
}

#[test]
fn every_link_form_parses_to_the_same_invite() {
    let admin = MemberKeypair::generate();
    let inv = payload(&admin).sign(&admin).unwrap();
    let forms = [
        inv.token().to_string(),
        inv.claudemesh_url(),
        inv.https_url("mesh.example.com"),
        inv.https_url("mesh.example.com:8443/"),
        format!("https://mesh.example.com/prefix/join/{}?utm=x", inv.token()),
        format!("  {}\n", inv.claudemesh_url()),
        format!("http://localhost:7000/join/{}/", inv.token()),
    ];
    for f in forms {
        let parsed = parse_invite(&f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(parsed, inv, "{f}");
    }
    assert!(inv.claudemesh_url().starts_with("claudemesh://join/"));
    assert!(inv.https_url("h").starts_with("https://h/join/"));
}

#[test]
fn tampered_payload_or_signature_is_refused() {
    let admin = MemberKeypair::generate();
    let inv = payload(&admin).sign(&admin).unwrap();
    let (p, s) = inv.token().split_once('.').unwrap();
    // Elevate the role inside the payload, keep the signature.
    let mut json: serde_json::Value = serde_json::from_slice(&from_b64url("p", p).unwrap()).unwrap();
    json["role"] = "admin".into();
    let forged = format!("{}.{s}", to_b64url(json.to_string().as_bytes()));
    assert_eq!(parse_invite(&forged), Err(InviteError::BadSignature));
    // Flip one signature byte.
    let mut sig = from_b64url("s", s).unwrap();
    sig[10] ^= 1;
    assert_eq!(parse_invite(&format!("{p}.{}", to_b64url(&sig))), Err(InviteError::BadSignature));
    // A signature of the right length but altered characters.
    let altered: String = s.chars().rev().collect();
    assert_eq!(parse_invite(&format!("{p}.{altered}")), Err(InviteError::BadSignature));
}

#[test]
fn swapped_issuer_key_is_refused() {
    // An attacker re-signs a payload naming the real admin as issuer with their own key:
    // the signature no longer matches the embedded issuer.
    let admin = MemberKeypair::generate();
    let attacker = MemberKeypair::generate();
    assert_eq!(payload(&admin).sign(&attacker).unwrap_err(), InviteError::WrongIssuer);
    let mut p = payload(&attacker);
    let inv = p.clone().sign(&attacker).unwrap();
    // The invite is self-consistent but its issuer is not an admin of the mesh.
    assert_eq!(inv.check_issuer([admin.public_hex().as_str()].into_iter()), Err(InviteError::WrongIssuer));
    assert!(
        inv.check_issuer([admin.public_hex().as_str(), attacker.public_hex().as_str()].into_iter()).is_ok()
    );
    // Swap the issuer field for the admin's key after signing: signature check fails.
    p.issuer_pubkey = admin.public_hex();
    let bytes = serde_json::to_vec(&p).unwrap();
    let sig = attacker.sign(&bytes);
    let forged = format!("{}.{}", to_b64url(&bytes), to_b64url(&sig));
    assert_eq!(parse_invite(&forged), Err(InviteError::BadSignature));
}

#[test]
fn expiry_is_checked_against_the_given_clock() {
    let admin = MemberKeypair::generate();
    let inv = payload(&admin).sign(&admin).unwrap();
    assert!(inv.check_expiry(1_999_999_999).is_ok());
    assert_eq!(inv.check_expiry(2_000_000_000), Err(InviteError::Expired { expires_at: 2_000_000_000 }));
    let msg = inv.check_expiry(u64::MAX).unwrap_err().to_string();
    assert!(msg.contains("ask an admin"), "{msg}");
}

#[test]
fn malformed_links_are_refused_with_a_reason() {
    for bad in [
        "",
        "https://example.com/nothing-here",
        "ftp://x/join/abc.def",
        "no-dot-token",
        "!!!.@@@",
        "e30.AAAA", // "{}" payload
    ] {
        let e = parse_invite(bad).unwrap_err();
        assert!(matches!(e, InviteError::Malformed(_)), "{bad:?} gave {e:?}");
    }
}

#[test]
fn invalid_payload_fields_are_refused() {
    let admin = MemberKeypair::generate();
    let mut p = payload(&admin);
    p.max_uses = 0;
    assert!(matches!(p.sign(&admin), Err(InviteError::InvalidField { field: "max_uses", .. })));
    let mut p = payload(&admin);
    p.mesh_slug = "Bad Slug".into();
    assert!(matches!(p.sign(&admin), Err(InviteError::InvalidField { field: "mesh_slug", .. })));
    let mut p = payload(&admin);
    p.broker_url = "http://x".into();
    assert!(matches!(p.sign(&admin), Err(InviteError::InvalidField { field: "broker_url", .. })));
    let mut p = payload(&admin);
    p.v = 2;
    assert_eq!(p.sign(&admin), Err(InviteError::UnsupportedVersion(2)));
}

/// `text` broken into lines of `width` characters, each ending with `eol` and the next starting
/// with `indent`, as a mail client or chat app wraps a long link.
fn wrap(text: &str, width: usize, eol: &str, indent: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(width)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(&format!("{eol}{indent}"))
}

#[test]
fn links_mangled_by_chat_apps_and_mail_clients_still_parse() {
    let admin = MemberKeypair::generate();
    let inv = payload(&admin).sign(&admin).unwrap();
    let url = inv.claudemesh_url();
    let https = inv.https_url("mesh.example.com");
    let (p, s) = inv.token().split_once('.').unwrap();
    let shapes = [
        ("wrapped at 60 columns", wrap(&url, 60, "\n", "")),
        ("wrapped with CRLF and indentation", wrap(&url, 72, "\r\n", "    ")),
        ("an https link wrapped", wrap(&https, 50, "\n", "")),
        ("mail-quoted lines", format!("> {}", wrap(&url, 70, "\n", "> "))),
        ("quoted-printable soft breaks", wrap(&url, 75, "=\n", "")),
        ("spaces inside", format!("claudemesh://join/{} {} . {} {}", &p[..20], &p[20..], &s[..30], &s[30..])),
        ("double quotes", format!("\"{url}\"")),
        ("single quotes", format!("'{url}'")),
        ("backticks", format!("`{url}`")),
        ("typographic quotes", format!("\u{201C}{url}\u{201D}")),
        ("angle brackets", format!("<{url}>")),
        ("angle brackets around https", format!("<{https}>")),
        ("a trailing period", format!("{url}.")),
        ("a trailing comma", format!("{url},")),
        ("in a sentence", format!("Join us: {url}. See you there!")),
        ("in parentheses", format!("(the link: {https})")),
        ("zero-width spaces", format!("{}\u{200B}{}", &url[..40], &url[40..])),
        ("a capitalized scheme", format!("Claudemesh://join/{}", inv.token())),
        ("a bare token, quoted, with a period", format!("\"{}\".", inv.token())),
        ("a bare token wrapped", wrap(inv.token(), 64, "\n", "")),
        ("selected out of a terminal box", format!("│{}│", wrap(&url, 60, "│\n│", ""))),
    ];
    for (shape, text) in shapes {
        let parsed = parse_invite(&text).unwrap_or_else(|e| panic!("{shape}: {e}\n{text}"));
        assert_eq!(parsed, inv, "{shape}");
        assert_eq!(parsed.token(), inv.token(), "{shape}: the clean token goes to the broker");
    }
}

#[test]
fn a_cut_link_says_it_looks_cut_short() {
    let admin = MemberKeypair::generate();
    let inv = payload(&admin).sign(&admin).unwrap();
    let url = inv.claudemesh_url();
    let dot = url.find('.').unwrap();
    // Cut inside the payload at every length, at the dot, and inside the signature.
    let mut cuts: Vec<usize> = ("claudemesh://join/".len()..dot).collect();
    cuts.extend([dot, dot + 1, dot + 10, url.len() - 1]);
    for cut in cuts {
        let text = &url[..cut];
        assert_eq!(parse_invite(text), Err(InviteError::CutShort), "cut at {cut}: {text}");
        // The same cut with a trailing period, as in a sentence.
        assert_eq!(parse_invite(&format!("{text}.")), Err(InviteError::CutShort), "cut at {cut}.");
    }
    let msg = InviteError::CutShort.to_string();
    assert!(msg.contains("cut short") && msg.contains("copy all of it"), "{msg}");
    assert!(!msg.contains("base64") && !msg.contains("JSON"), "{msg}");
}
