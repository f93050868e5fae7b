//! The chain against honest and lying directories.

use super::*;
use crate::crypto::MemberKeypair;
use crate::frames::{GroupRole, RemovalReason, Role};
use crate::invite::InvitePayload;

const MESH: &str = "mesh-1";

struct M {
    id: String,
    key: MemberKeypair,
    statements: Vec<SignedStatement>,
}

fn invite(issuer: &MemberKeypair, id: &str, role: Role, max_uses: u32) -> String {
    InvitePayload {
        v: 1,
        broker_url: "ws://127.0.0.1:1".into(),
        mesh_id: MESH.into(),
        mesh_slug: "team".into(),
        invite_id: id.into(),
        role,
        groups: vec![GroupRole::new("eng")],
        expires_at: u64::MAX / 2,
        max_uses,
        issuer_pubkey: issuer.public_hex(),
    }
    .sign(issuer)
    .unwrap()
    .token()
    .to_string()
}

fn member(id: &str, name: &str, invite: Option<String>) -> M {
    let key = MemberKeypair::generate();
    let st = Statement::Member {
        v: STATEMENT_VERSION,
        mesh_id: MESH.into(),
        member_id: id.into(),
        pubkey: key.public_hex(),
        display_name: name.into(),
        invite,
        at: 1,
    };
    let s = st.sign(&key).unwrap();
    M { id: id.into(), key, statements: vec![s] }
}

fn role(admin: &MemberKeypair, m: &M, role: Role, at: u64) -> SignedStatement {
    Statement::Role {
        v: STATEMENT_VERSION,
        mesh_id: MESH.into(),
        member_id: m.id.clone(),
        pubkey: m.key.public_hex(),
        display_name: "vouched".into(),
        role,
        groups: vec![],
        signer: admin.public_hex(),
        at,
    }
    .sign(admin)
    .unwrap()
}

fn entries(ms: &[&M]) -> Vec<(String, String, Vec<SignedStatement>)> {
    ms.iter().map(|m| (m.id.clone(), m.key.public_hex(), m.statements.clone())).collect()
}

fn verify(
    root: &MemberKeypair,
    list: &[(String, String, Vec<SignedStatement>)],
) -> std::collections::HashMap<String, Verdict> {
    let e: Vec<Entry<'_>> =
        list.iter().map(|(id, k, s)| Entry { member_id: id, pubkey: k, statements: s }).collect();
    verify_directory(MESH, &root.public_hex(), &e)
}

/// founder F; admin A joined with F's admin invite; B with A's invite; C with F's invite.
fn mesh() -> (M, M, M, M) {
    let f = member("m_f", "fay", None);
    let a = member("m_a", "ann", Some(invite(&f.key, "i-a", Role::Admin, 1)));
    let b = member("m_b", "bob", Some(invite(&a.key, "i-b", Role::Member, 1)));
    let c = member("m_c", "cat", Some(invite(&f.key, "i-c", Role::Member, 1)));
    (f, a, b, c)
}

#[test]
fn an_honest_directory_verifies_from_any_members_root() {
    let (f, a, b, c) = mesh();
    let list = entries(&[&f, &a, &b, &c]);
    // B's root is A (A signed B's invite): F is trusted because A joined with F's invite.
    for root in [&a.key, &f.key] {
        let v = verify(root, &list);
        for id in ["m_f", "m_a", "m_b", "m_c"] {
            assert!(v[id].is_verified(), "{id} from root {}: {:?}", root.public_hex(), v[id]);
        }
        assert_eq!(v["m_b"].display_name.as_deref(), Some("bob"));
        assert_eq!(v["m_b"].role, Some(Role::Member));
        assert_eq!(v["m_b"].groups, vec![GroupRole::new("eng")]);
        assert_eq!(v["m_a"].role, Some(Role::Admin));
        assert!(!v["m_b"].overused_invite);
    }
}

#[test]
fn a_broker_key_for_bob_is_not_verified() {
    let (f, a, mut b, c) = mesh();
    // The broker lists its own key under bob's id and name, with bob's statement or its own.
    let evil = MemberKeypair::generate();
    b.key = evil;
    let v = verify(&f.key, &entries(&[&f, &a, &b, &c]));
    assert!(matches!(v["m_b"].standing, Standing::Unverified(_)), "{:?}", v["m_b"]);
    // A statement it signs itself claiming to be a founder does not verify either.
    let fake = member("m_x", "bob", None);
    let v = verify(&f.key, &entries(&[&f, &a, &fake]));
    assert!(matches!(v["m_x"].standing, Standing::Unverified(_)));
    // Nor an invite it signed with its own key.
    let rogue = MemberKeypair::generate();
    let y = member("m_y", "yan", Some(invite(&rogue, "i-y", Role::Admin, 1)));
    let v = verify(&f.key, &entries(&[&f, &a, &y]));
    assert!(matches!(v["m_y"].standing, Standing::Unverified(_)));
}

#[test]
fn role_statements_promote_demote_and_vouch_only_from_admins() {
    let (f, a, mut b, c) = mesh();
    b.statements.push(role(&a.key, &b, Role::Admin, 5));
    let v = verify(&f.key, &entries(&[&f, &a, &b, &c]));
    assert_eq!(v["m_b"].role, Some(Role::Admin));
    b.statements.push(role(&f.key, &b, Role::Member, 9));
    let v = verify(&f.key, &entries(&[&f, &a, &b, &c]));
    assert_eq!(v["m_b"].role, Some(Role::Member), "the latest admin statement wins");
    // A member cannot promote itself or anyone.
    let mut c2 = member("m_c", "cat", Some(invite(&f.key, "i-c", Role::Member, 1)));
    let self_promo = role(&c2.key, &c2, Role::Admin, 10);
    c2.statements.push(self_promo);
    let v = verify(&f.key, &entries(&[&f, &a, &c2]));
    assert_eq!(v["m_c"].role, Some(Role::Member));
    // A legacy member with no enrollment statement is verified once an admin vouches for it.
    let mut old = member("m_o", "old", None);
    old.statements.clear();
    let v = verify(&f.key, &entries(&[&f, &old]));
    assert!(matches!(v["m_o"].standing, Standing::Unverified(_)));
    old.statements.push(role(&f.key, &old, Role::Member, 3));
    let v = verify(&f.key, &entries(&[&f, &old]));
    assert_eq!(v["m_o"].standing, Standing::Verified(Via::Admin { signer: f.key.public_hex() }));
    assert_eq!(v["m_o"].display_name.as_deref(), Some("vouched"));
}

#[test]
fn removals_count_only_from_an_admin_or_the_member_itself() {
    let (f, a, mut b, c) = mesh();
    let removal = |signer: &MemberKeypair, reason| {
        Statement::Removal {
            v: STATEMENT_VERSION,
            mesh_id: MESH.into(),
            member_id: "m_b".into(),
            pubkey: b.key.public_hex(),
            reason,
            signer: signer.public_hex(),
            at: 7,
        }
        .sign(signer)
        .unwrap()
    };
    let by_member = removal(&c.key, RemovalReason::Removed);
    b.statements.push(by_member);
    assert!(verify(&f.key, &entries(&[&f, &a, &b, &c]))["m_b"].is_verified());
    let left = removal(&b.key, RemovalReason::Left);
    b.statements.push(left);
    assert_eq!(
        verify(&f.key, &entries(&[&f, &a, &b, &c]))["m_b"].standing,
        Standing::Removed(RemovalReason::Left)
    );
}

#[test]
fn more_members_under_an_invite_than_it_allows_are_flagged() {
    let (f, a, b, c) = mesh();
    // Someone who saw bob's one-use invite enrolled a second key with it.
    let token = invite(&a.key, "i-b", Role::Member, 1);
    let twin = member("m_t", "tom", Some(token));
    let v = verify(&f.key, &entries(&[&f, &a, &b, &c, &twin]));
    assert!(v["m_b"].overused_invite && v["m_t"].overused_invite);
    assert!(!v["m_c"].overused_invite);
}

#[test]
fn statements_about_another_member_are_ignored() {
    let (f, a, b, mut c) = mesh();
    // The broker moves bob's statement onto cat's entry.
    c.statements = b.statements.clone();
    let v = verify(&f.key, &entries(&[&f, &a, &c]));
    assert!(matches!(&v["m_c"].standing, Standing::Unverified(r) if r.contains("another")));
}

#[test]
fn safety_codes_are_stable_and_differ_per_key_and_mesh() {
    let k = "ab".repeat(32);
    let code = safety_code("mesh-1", &k);
    assert_eq!(code.len(), 17);
    assert_eq!(code, safety_code("mesh-1", &k.to_uppercase()));
    assert_ne!(code, safety_code("mesh-2", &k));
    assert_ne!(code, safety_code("mesh-1", &"ac".repeat(32)));
    assert!(code.chars().all(|ch| ch.is_ascii_digit() || ch == ' '));
}
