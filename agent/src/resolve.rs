//! Resolving what a person typed (`bob`, a session or member id, `@group`, `*`) to a wire
//! target, and a wire target to the members whose keys the message is sealed to.

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::frames::Target;

use crate::state::MeshView;

/// Why a target could not be resolved; each message lists what would have worked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no peer or member named {to:?} in {mesh}; known: {known}")]
    Unknown { to: String, mesh: String, known: String },
    #[error("{to:?} is ambiguous in {mesh}: {candidates}; use an id")]
    Ambiguous { to: String, mesh: String, candidates: String },
    #[error("{0}")]
    Empty(String),
    #[error("member {0} has an unusable public key")]
    BadKey(String),
}

/// Resolves `to` against the cached directory and presence of `view`: `*`, `@group`, a
/// session id, a member id, then (case-insensitive, exact) a session display name and a member
/// display name.
pub fn resolve_target(view: &MeshView, to: &str) -> Result<Target, ResolveError> {
    let to = to.trim();
    if to == "*" {
        return Ok(Target::Broadcast);
    }
    if ["session:", "member:", "@"].iter().any(|p| to.starts_with(p)) {
        return to.parse::<Target>().map_err(|e| ResolveError::Empty(e.to_string()));
    }
    if view.peers.contains_key(to) || view.senders.contains_key(to) {
        return Ok(Target::Session(to.to_string()));
    }
    if view.members.contains_key(to) {
        return Ok(Target::Member(to.to_string()));
    }
    let lower = to.to_lowercase();
    let sessions: Vec<_> =
        view.peers.values().filter(|p| p.session.display_name.to_lowercase() == lower).collect();
    if sessions.len() == 1 {
        return Ok(Target::Session(sessions[0].session.session_id.clone()));
    }
    let members: Vec<_> = view.members.values().filter(|m| m.display_name.to_lowercase() == lower).collect();
    if sessions.len() > 1 || members.len() > 1 {
        let mut c: Vec<String> = sessions
            .iter()
            .map(|p| {
                format!(
                    "session:{} ({} on {})",
                    p.session.session_id,
                    p.session.display_name,
                    p.session.hostname.as_deref().unwrap_or("?")
                )
            })
            .chain(members.iter().map(|m| format!("member:{} ({})", m.member_id, m.display_name)))
            .collect();
        c.sort();
        return Err(ResolveError::Ambiguous {
            to: to.into(),
            mesh: view.config.slug.clone(),
            candidates: c.join(", "),
        });
    }
    if let [m] = members[..] {
        return Ok(Target::Member(m.member_id.clone()));
    }
    let mut known: Vec<String> = view
        .peers
        .values()
        .map(|p| p.session.display_name.clone())
        .chain(view.members.values().map(|m| m.display_name.clone()))
        .collect();
    known.sort();
    known.dedup();
    Err(ResolveError::Unknown {
        to: to.into(),
        mesh: view.config.slug.clone(),
        known: if known.is_empty() { "nobody yet".into() } else { known.join(", ") },
    })
}

/// The members (id, ed25519 key) a target reaches, by the broker's rules: `@g` and `*` exclude
/// ourselves; `member:`/`session:` may be ourselves.
pub fn recipients(view: &MeshView, target: &Target) -> Result<Vec<(String, [u8; 32])>, ResolveError> {
    let me = &view.config.member_id;
    let ids: Vec<&String> = match target {
        Target::Broadcast => view.members.keys().filter(|id| *id != me).collect(),
        Target::Group(g) => {
            // Granted or remembered groups from the directory, plus groups live sessions declare
            // right now (their member_updated may still be in flight).
            let live = |id: &str| {
                view.peers
                    .values()
                    .any(|p| p.member_id == id && p.session.groups.iter().any(|x| &x.name == g))
            };
            view.members
                .values()
                .filter(|m| &m.member_id != me && (m.in_group(g) || live(&m.member_id)))
                .map(|m| &m.member_id)
                .collect()
        }
        Target::Member(id) => view.members.get(id).map(|m| vec![&m.member_id]).unwrap_or_default(),
        Target::Session(sid) => view
            .peers
            .get(sid)
            .map(|p| &p.member_id)
            .or_else(|| view.senders.get(sid))
            .map(|m| vec![m])
            .unwrap_or_default(),
    };
    if ids.is_empty() {
        return Err(ResolveError::Empty(format!(
            "{target} reaches nobody in {} right now",
            view.config.slug
        )));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let m = view
            .members
            .get(id)
            .ok_or_else(|| ResolveError::Empty(format!("member {id} is not in the directory")))?;
        let pk = from_hex_array::<32>("pubkey", &m.pubkey).map_err(|_| ResolveError::BadKey(id.clone()))?;
        out.push((id.clone(), pk));
    }
    out.sort();
    Ok(out)
}
