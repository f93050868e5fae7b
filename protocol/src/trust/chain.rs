//! Verifying a member directory without trusting the broker (docs/security.md "Authenticated
//! directory"). The root is the key of the admin who signed this agent's own invite (pinned at
//! join; the mesh creator's own key for the creator). From it, trust flows:
//! - down: a member whose enrollment statement carries an invite signed by a trusted admin is
//!   verified, with the invite's role and groups; a member an admin vouched for with a role
//!   statement is verified;
//! - up: a trusted admin that joined with an invite makes that invite's issuer trusted (it
//!   accepted that admin when it joined);
//! - a founder statement (no invite) verifies only a key already trusted;
//! - the latest role statement signed by a trusted admin gives the role and groups; a verified
//!   admin's key becomes trusted in turn;
//! - a removal signed by a trusted admin, or a `left` signed by the member, removes it for good.
//!
//! The result is a fixpoint: the trusted set only grows, so it ends after at most one pass per
//! member.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::statement::{SignedStatement, Statement};
use crate::frames::{GroupRole, RemovalReason, Role};
use crate::invite::{InvitePayload, parse_invite};

/// One member as the broker lists it (current or former), with the statements it relayed.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub member_id: &'a str,
    /// ed25519 public key, hex, as the broker says.
    pub pubkey: &'a str,
    pub statements: &'a [SignedStatement],
}

/// How a member's key was vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// It is the root key this agent pinned at join.
    Root,
    /// It enrolled with an invite signed by the trusted admin `issuer` (hex key).
    Invite { issuer: String },
    /// It created the mesh, and its key is trusted through an admin it invited.
    Founder,
    /// A trusted admin (`signer`) signed a role statement for it.
    Admin { signer: String },
}

/// What the chain says of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Verified(Via),
    /// Verifiably gone: an admin removed it, or it left.
    Removed(RemovalReason),
    /// Nothing chains it to the root; the reason says what is missing.
    Unverified(String),
}

/// The verified facts of one member; `display_name`, `role` and `groups` are `None`/empty
/// unless a verified statement says them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub standing: Standing,
    /// The name the member signed for itself (or an admin signed for it).
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub groups: Vec<GroupRole>,
    /// The invite it enrolled with.
    pub invite_id: Option<String>,
    /// More verified members enrolled under its invite than the invite allows (`max_uses`):
    /// someone who saw the invite, maybe the broker, enrolled extra keys with it.
    pub overused_invite: bool,
}

impl Verdict {
    pub fn is_verified(&self) -> bool {
        matches!(self.standing, Standing::Verified(_))
    }
}

/// What one entry's statements say, each checked for signature and subject.
#[derive(Default)]
struct Parsed {
    name: Option<String>,
    /// `Some(None)`: a founder claim; `Some(Some(p))`: enrolled with invite `p`.
    invite: Option<Option<InvitePayload>>,
    roles: Vec<(String, Role, Vec<GroupRole>, String, u64)>,
    removals: Vec<(String, RemovalReason)>,
    problem: Option<String>,
}

fn parse(mesh_id: &str, e: &Entry<'_>) -> Parsed {
    let mut p = Parsed::default();
    for s in e.statements {
        let st = match s.verify() {
            Ok(st) => st,
            Err(err) => {
                p.problem = Some(err.to_string());
                continue;
            }
        };
        let (m, id, key) = st.subject();
        if m != mesh_id || id != e.member_id || !key.eq_ignore_ascii_case(e.pubkey) {
            p.problem = Some("a statement names another mesh, member or key".into());
            continue;
        }
        match st {
            Statement::Member { display_name, invite, .. } => {
                let invite = match invite.as_deref().map(parse_invite) {
                    None => None,
                    Some(Ok(i)) if i.payload.mesh_id == mesh_id => Some(i.payload),
                    Some(Ok(_)) => {
                        p.problem = Some("its invite is for another mesh".into());
                        continue;
                    }
                    Some(Err(err)) => {
                        p.problem = Some(format!("its invite does not verify: {err}"));
                        continue;
                    }
                };
                p.name = Some(display_name);
                p.invite = Some(invite);
            }
            Statement::Role { signer, role, groups, display_name, at, .. } => {
                p.roles.push((signer.to_ascii_lowercase(), role, groups, display_name, at));
            }
            Statement::Removal { signer, reason, .. } => {
                p.removals.push((signer.to_ascii_lowercase(), reason))
            }
        }
    }
    p.roles.sort_by_key(|r| r.4);
    p
}

/// Verifies every entry of one mesh's directory against `root` (hex key). Entries are keyed by
/// member id in the result. Pure: no clock, no I/O.
pub fn verify_directory(mesh_id: &str, root: &str, entries: &[Entry<'_>]) -> HashMap<String, Verdict> {
    let parsed: Vec<Parsed> = entries.iter().map(|e| parse(mesh_id, e)).collect();
    let root = root.to_ascii_lowercase();
    let mut admins: HashSet<String> = HashSet::from([root.clone()]);
    loop {
        let before = admins.len();
        for (e, p) in entries.iter().zip(&parsed) {
            let key = e.pubkey.to_ascii_lowercase();
            if let Some(Some(inv)) = &p.invite
                && admins.contains(&key)
            {
                admins.insert(inv.issuer_pubkey.to_ascii_lowercase());
            }
            let v = judge(&key, &root, p, &admins);
            if v.is_verified() && v.role == Some(Role::Admin) {
                admins.insert(key);
            }
        }
        if admins.len() == before {
            break;
        }
    }
    let mut out: HashMap<String, Verdict> = entries
        .iter()
        .zip(&parsed)
        .map(|(e, p)| (e.member_id.to_string(), judge(&e.pubkey.to_ascii_lowercase(), &root, p, &admins)))
        .collect();
    flag_overuse(entries, &parsed, &mut out);
    out
}

fn judge(key: &str, root: &str, p: &Parsed, admins: &HashSet<String>) -> Verdict {
    let role_st = p.roles.iter().rev().find(|r| admins.contains(&r.0));
    let removed = p
        .removals
        .iter()
        .find(|(signer, reason)| (*reason == RemovalReason::Left && signer == key) || admins.contains(signer))
        .map(|r| r.1);
    let via = if key == root {
        Some(Via::Root)
    } else {
        match &p.invite {
            Some(Some(inv)) if admins.contains(&inv.issuer_pubkey.to_ascii_lowercase()) => {
                Some(Via::Invite { issuer: inv.issuer_pubkey.to_ascii_lowercase() })
            }
            Some(None) if admins.contains(key) => Some(Via::Founder),
            _ => role_st.map(|r| Via::Admin { signer: r.0.clone() }),
        }
    };
    let invite = p.invite.as_ref().and_then(|i| i.as_ref());
    let (role, groups) = match (role_st, invite, &p.invite) {
        (Some(r), _, _) => (Some(r.1), r.2.clone()),
        (None, Some(inv), _) => (Some(inv.role), inv.groups.clone()),
        (None, None, Some(None)) => (Some(Role::Admin), Vec::new()),
        _ => (None, Vec::new()),
    };
    let display_name = p.name.clone().or_else(|| role_st.map(|r| r.3.clone()));
    let standing = match (removed, via) {
        (Some(reason), _) => Standing::Removed(reason),
        (None, Some(via)) => Standing::Verified(via),
        (None, None) => Standing::Unverified(unverified_reason(p)),
    };
    Verdict {
        standing,
        display_name,
        role,
        groups,
        invite_id: invite.map(|i| i.invite_id.clone()),
        overused_invite: false,
    }
}

fn unverified_reason(p: &Parsed) -> String {
    match (&p.invite, &p.problem) {
        (_, Some(problem)) => problem.clone(),
        (None, None) => {
            "it has no enrollment statement (it joined before protocol 2, or the broker withheld it)".into()
        }
        (Some(Some(_)), None) => "its invite was not signed by an admin this agent trusts".into(),
        (Some(None), None) => {
            "it claims to have created the mesh, but no trusted admin vouches for its key".into()
        }
    }
}

fn flag_overuse(entries: &[Entry<'_>], parsed: &[Parsed], out: &mut HashMap<String, Verdict>) {
    let mut by_invite: BTreeMap<String, (u32, Vec<String>)> = BTreeMap::new();
    for (e, p) in entries.iter().zip(parsed) {
        let Some(Some(inv)) = &p.invite else { continue };
        if !out
            .get(e.member_id)
            .is_some_and(|v| matches!(v.standing, Standing::Verified(_) | Standing::Removed(_)))
        {
            continue;
        }
        let slot = by_invite.entry(inv.invite_id.clone()).or_insert((inv.max_uses, Vec::new()));
        slot.1.push(e.member_id.to_string());
    }
    for (max, ids) in by_invite.into_values() {
        if ids.len() > max as usize {
            for id in ids {
                if let Some(v) = out.get_mut(&id) {
                    v.overused_invite = true;
                }
            }
        }
    }
}
