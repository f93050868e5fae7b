//! What this agent believes of each member's key: the broker's directory verified against the
//! root key pinned at join ([`claudemesh_protocol::trust::verify_directory`]), then checked
//! against the keys pinned on first sight. Only a usable member is encrypted to or accepted
//! from. Pure data; the core persists new pins.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use claudemesh_protocol::frames::{FormerMember, MemberInfo};
use claudemesh_protocol::local::{MemberTrust, TrustState};
use claudemesh_protocol::trust::{Entry, Standing, Verdict, safety_code, verify_directory};

use crate::store::Pin;

/// The trust side of one mesh view.
#[derive(Debug, Clone, Default)]
pub struct MeshTrust {
    /// The key pinned at join (the invite's issuer, or our own for the mesh's creator). `None`
    /// for a mesh joined before protocol 2: members are then trusted on first use only.
    pub root: Option<String>,
    /// Keys pinned on first sight, by member id.
    pub pins: HashMap<String, Pin>,
    /// The verdict of the last verification, by member id (current members only).
    pub members: HashMap<String, MemberTrust>,
    /// What the chain said last time, and a hash of what it was given: a directory change that
    /// touches no key or statement (presence, declared groups) verifies no signature again.
    chain: (u64, HashMap<String, Verdict>),
}

impl MeshTrust {
    /// Trust for a mesh whose root key is `root` (see [`MeshTrust::root`]), nothing pinned yet.
    pub fn new(root: Option<String>) -> Self {
        Self { root, ..Default::default() }
    }

    /// Whether `member_id` may be encrypted to and accepted from; the error says why not and
    /// what to do.
    pub fn usable(&self, member_id: &str) -> Result<(), String> {
        match self.members.get(member_id) {
            Some(t) if t.state == TrustState::Verified => Ok(()),
            Some(t) if t.state == TrustState::Unverified && self.root.is_none() => Ok(()),
            Some(t) => Err(t.detail.clone().unwrap_or_else(|| format!("its key is {:?}", t.state))),
            None => Err("it is not in the member directory".into()),
        }
    }

    /// Verifies `members` (and `former`, for removals and invite use counts) of mesh `mesh_id`
    /// as seen by `own_member`, and overwrites each member's `display_name` with the name it
    /// signed. Returns the pins to store (new ones and removals).
    pub fn verify(
        &mut self,
        mesh_id: &str,
        own_member: &str,
        members: &mut HashMap<String, MemberInfo>,
        former: &HashMap<String, FormerMember>,
        now_ms: u64,
    ) -> Vec<(String, Pin)> {
        let mut entries: Vec<Entry<'_>> = members
            .values()
            .map(|m| Entry { member_id: &m.member_id, pubkey: &m.pubkey, statements: &m.statements })
            .collect();
        entries.extend(former.values().filter(|f| !f.pubkey.is_empty()).map(|f| Entry {
            member_id: &f.member_id,
            pubkey: &f.pubkey,
            statements: &f.statements,
        }));
        entries.sort_by(|a, b| a.member_id.cmp(b.member_id));
        let input = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&self.root, mesh_id).hash(&mut h);
            for e in &entries {
                (e.member_id, e.pubkey, e.statements).hash(&mut h);
            }
            h.finish()
        };
        if self.chain.0 != input || self.chain.1.is_empty() {
            let verdicts = self
                .root
                .as_deref()
                .map(|root| verify_directory(mesh_id, root, &entries))
                .unwrap_or_default();
            self.chain = (input, verdicts);
        }
        let verdicts = &self.chain.1;
        let mut new_pins = Vec::new();
        // Former members with a verified removal: pin the removal for good.
        for f in former.values() {
            if let Some(v) = verdicts.get(&f.member_id)
                && matches!(v.standing, Standing::Removed(_))
                && self.pins.get(&f.member_id).is_none_or(|p| !p.removed)
            {
                let pin = Pin {
                    pubkey: f.pubkey.to_ascii_lowercase(),
                    display_name: f.display_name.clone(),
                    pinned_at: now_ms,
                    removed: true,
                };
                self.pins.insert(f.member_id.clone(), pin.clone());
                new_pins.push((f.member_id.clone(), pin));
            }
        }
        self.members.clear();
        for m in members.values_mut() {
            let key = m.pubkey.to_ascii_lowercase();
            let verdict = verdicts.get(&m.member_id);
            if let Some(name) = verdict.and_then(|v| v.display_name.clone()) {
                m.display_name = name;
            }
            let (mut state, mut detail) = match verdict.map(|v| &v.standing) {
                _ if m.member_id == own_member => (TrustState::Verified, None),
                Some(Standing::Verified(_)) => (TrustState::Verified, None),
                Some(Standing::Removed(r)) => {
                    (TrustState::Removed, Some(format!("it {}; the broker still lists it", r.phrase())))
                }
                Some(Standing::Unverified(why)) => {
                    (TrustState::Unverified, Some(unverified_detail(&m.display_name, why)))
                }
                None => (
                    TrustState::Unverified,
                    Some(format!(
                        "{}'s key is trusted on first use only: this agent joined before claudemesh kept the key of the admin who invited it",
                        m.display_name
                    )),
                ),
            };
            match self.pins.get(&m.member_id) {
                Some(p) if p.removed => {
                    state = TrustState::Removed;
                    detail = Some(format!(
                        "{} was verifiably removed from the mesh; the broker lists it again",
                        m.display_name
                    ));
                }
                Some(p) if p.pubkey != key => {
                    state = TrustState::KeyChanged;
                    detail = Some(key_changed_detail(mesh_id, &m.display_name, &p.pubkey, &key));
                    tracing::warn!(member = %m.member_id, name = %m.display_name, "KEY CHANGED: refusing to encrypt to or accept from this member");
                }
                Some(_) => {}
                None if state == TrustState::Verified
                    || (self.root.is_none() && state == TrustState::Unverified) =>
                {
                    let pin = Pin {
                        pubkey: key.clone(),
                        display_name: m.display_name.clone(),
                        pinned_at: now_ms,
                        removed: false,
                    };
                    self.pins.insert(m.member_id.clone(), pin.clone());
                    new_pins.push((m.member_id.clone(), pin));
                }
                None => {}
            }
            let overused = verdict.is_some_and(|v| v.overused_invite);
            let safety = safety_code(mesh_id, &key);
            self.members.insert(
                m.member_id.clone(),
                MemberTrust { state, detail, safety_code: safety, overused_invite: overused },
            );
        }
        new_pins
    }
}

fn unverified_detail(name: &str, why: &str) -> String {
    format!(
        "{name}'s key is not vouched for by an admin this agent trusts ({why}). Compare safety codes \
         with {name} (`claudemesh members --verify`); if they match, an admin can vouch for it with \
         `claudemesh member set {name} --role member`"
    )
}

fn key_changed_detail(mesh_id: &str, name: &str, pinned: &str, now: &str) -> String {
    format!(
        "{name}'s KEY CHANGED since this agent first saw it (pinned code {}, now {}): the broker may be \
         substituting keys, so nothing is sent to or accepted from {name}. Ask {name} for the code \
         `claudemesh members --verify` shows them; only if it equals the new one, run \
         `claudemesh member repin {name}`",
        safety_code(mesh_id, pinned),
        safety_code(mesh_id, now)
    )
}
