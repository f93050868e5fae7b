//! Resolving what a person typed (`bob`, a session or member id, `@group`, `*`) to a wire
//! target, and a wire target to the members whose keys the message is sealed to.

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::frames::{FormerMember, MemberInfo, PeerSession, RemovalReason, Target};
use claudemesh_protocol::local::LinkState;

use crate::mesh::{MeshView, short_id};

/// Why a target could not be resolved; each message lists what would have worked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no peer or member named {to:?} in {mesh}; known: {known}")]
    Unknown { to: String, mesh: String, known: String },
    #[error("{to:?} is ambiguous in {mesh}: {candidates}; use the id in parentheses")]
    Ambiguous { to: String, mesh: String, candidates: String },
    /// `to` names a member who left or was removed, and nobody current.
    #[error("{name} {} ({mesh}); `claudemesh members` lists who is in it", reason.phrase())]
    Former { name: String, mesh: String, reason: RemovalReason },
    /// Nothing matched, and the link is down, so the cached presence may just be stale.
    #[error(
        "cannot look up {to:?} in {mesh}: its broker link is down ({state}: {detail}; see `claudemesh \
         status`), so who is online is unknown; nothing was sent — try again once it reconnects"
    )]
    LinkDown { to: String, mesh: String, state: String, detail: String },
    #[error("{0}")]
    Empty(String),
    #[error("member {0} has an unusable public key")]
    BadKey(String),
    /// The one member a target names has a key this agent does not trust.
    #[error("not sent to {name}: {reason}")]
    Untrusted { name: String, reason: String },
}

/// The shortest prefix of an id that [`resolve_target`] accepts in place of the whole id.
const MIN_ID_PREFIX: usize = 4;

/// The one id among `ids` that starts with `prefix` (at least [`MIN_ID_PREFIX`] long).
fn unique_prefix<'a>(ids: impl Iterator<Item = &'a String>, prefix: &str) -> Option<String> {
    if prefix.len() < MIN_ID_PREFIX {
        return None;
    }
    let hits: Vec<&String> = ids.filter(|id| id.starts_with(prefix)).collect();
    match hits[..] {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// `session:<id>` / `member:<id>` as typed, a unique prefix expanded to the whole id (so the
/// short ids that lists and errors show work).
fn explicit(view: &MeshView, to: &str) -> Result<Target, ResolveError> {
    let t = to.parse::<Target>().map_err(|e| ResolveError::Empty(e.to_string()))?;
    Ok(match t {
        Target::Session(id) if !view.peers.contains_key(&id) && !view.senders.contains_key(&id) => {
            Target::Session(unique_prefix(view.peers.keys(), &id).unwrap_or(id))
        }
        Target::Member(id) if !view.members.contains_key(&id) => {
            Target::Member(unique_prefix(view.members.keys(), &id).unwrap_or(id))
        }
        t => t,
    })
}

/// The member who left or was removed that `who` names: by member id, else by display name
/// (case-insensitive; the most recent one when several had it).
pub(crate) fn former_named<'a>(view: &'a MeshView, who: &str) -> Option<&'a FormerMember> {
    view.former.get(who).or_else(|| {
        view.former.values().filter(|f| f.display_name.eq_ignore_ascii_case(who)).max_by_key(|f| f.at)
    })
}

/// One ambiguity candidate per session (name, host, short id) and per member (name, short id,
/// the hosts of its sessions).
pub(crate) fn candidates(view: &MeshView, sessions: &[&PeerSession], members: &[&MemberInfo]) -> String {
    let mut c: Vec<String> = sessions
        .iter()
        .map(|p| {
            format!(
                "{} on {} (session:{})",
                p.session.display_name,
                p.session.hostname.as_deref().unwrap_or("an unknown host"),
                short_id(&p.session.session_id)
            )
        })
        .chain(members.iter().map(|m| {
            let mut hosts: Vec<&str> = view
                .peers
                .values()
                .filter(|p| p.member_id == m.member_id)
                .filter_map(|p| p.session.hostname.as_deref())
                .collect();
            hosts.sort_unstable();
            hosts.dedup();
            let on = if hosts.is_empty() {
                "no session open".to_string()
            } else {
                format!("on {}", hosts.join(", "))
            };
            format!("{} (member:{}, {on})", m.display_name, short_id(&m.member_id))
        }))
        .collect();
    c.sort();
    c.join(", ")
}

/// Resolves `to` against the cached directory and presence of `view`: `*`, `@group`,
/// `session:`/`member:` ids (or unique prefixes), then a member id, then (case-insensitive,
/// exact) a display name of one member (a session's name before its member's), then a session
/// id, then a unique id prefix; a string matching two of these ways is ambiguous. When nothing matches, a member who left or was removed is named as such, and a
/// link that is down is blamed rather than the name.
pub fn resolve_target(view: &MeshView, to: &str) -> Result<Target, ResolveError> {
    let to = to.trim();
    if to == "*" {
        return Ok(Target::Broadcast);
    }
    if ["session:", "member:", "@"].iter().any(|p| to.starts_with(p)) {
        return explicit(view, to);
    }
    // Member ids first, then unique display names, then session ids; a string that matches
    // two of these ways (a session id equal to a member's id or name, which a hostile broker or
    // member could set up) is ambiguous, never silently one of them.
    let member_hit = view.members.get(to);
    let session_hit = view.peers.get(to);
    let sender_hit = session_hit.is_none() && view.senders.contains_key(to);
    let lower = to.to_lowercase();
    let sessions: Vec<&PeerSession> =
        view.peers.values().filter(|p| p.session.display_name.to_lowercase() == lower).collect();
    let members: Vec<&MemberInfo> =
        view.members.values().filter(|m| m.display_name.to_lowercase() == lower).collect();
    let mut owners: Vec<&str> = sessions
        .iter()
        .map(|p| p.member_id.as_str())
        .chain(members.iter().map(|m| m.member_id.as_str()))
        .collect();
    owners.sort_unstable();
    owners.dedup();
    let ways = usize::from(member_hit.is_some())
        + usize::from(session_hit.is_some() || sender_hit)
        + usize::from(!owners.is_empty());
    if ways > 1 || sessions.len() > 1 || members.len() > 1 || owners.len() > 1 {
        let mut s = sessions.clone();
        s.extend(
            session_hit.filter(|p| !sessions.iter().any(|x| x.session.session_id == p.session.session_id)),
        );
        let mut m = members.clone();
        m.extend(member_hit.filter(|x| !members.iter().any(|y| y.member_id == x.member_id)));
        return Err(ResolveError::Ambiguous {
            to: to.into(),
            mesh: view.config.slug.clone(),
            candidates: candidates(view, &s, &m),
        });
    }
    if member_hit.is_some() {
        return Ok(Target::Member(to.to_string()));
    }
    if let [one] = sessions[..] {
        return Ok(Target::Session(one.session.session_id.clone()));
    }
    if let [m] = members[..] {
        return Ok(Target::Member(m.member_id.clone()));
    }
    if session_hit.is_some() || sender_hit {
        return Ok(Target::Session(to.to_string()));
    }
    if let Some(id) = unique_prefix(view.peers.keys(), to) {
        return Ok(Target::Session(id));
    }
    if let Some(id) = unique_prefix(view.members.keys(), to) {
        return Ok(Target::Member(id));
    }
    if let Some(f) = former_named(view, to) {
        return Err(ResolveError::Former {
            name: f.display_name.clone(),
            mesh: view.config.slug.clone(),
            reason: f.reason,
        });
    }
    if view.link != LinkState::Connected {
        let state = serde_json::to_value(view.link).ok().and_then(|v| v.as_str().map(String::from));
        return Err(ResolveError::LinkDown {
            to: to.into(),
            mesh: view.config.slug.clone(),
            state: state.unwrap_or_default(),
            detail: view.link_detail.clone().unwrap_or_else(|| "no detail yet".into()),
        });
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

/// The members a multicast target would reach whose keys this agent does not trust, as
/// `name (short id)`: they are left out of the send, and the reply says so.
pub fn untrusted(view: &MeshView, target: &Target) -> Vec<String> {
    if !matches!(target, Target::Broadcast | Target::Group(_)) {
        return Vec::new();
    }
    let mut v: Vec<String> = reached(view, target)
        .into_iter()
        .filter(|id| view.trust.usable(id).is_err())
        .map(|id| {
            let name = view.members.get(id).map_or(id.as_str(), |m| m.display_name.as_str());
            format!("{name} ({})", short_id(id))
        })
        .collect();
    v.sort();
    v
}

/// The members (id, ed25519 key) a target reaches, by the broker's rules: `@g` and `*` exclude
/// ourselves; `member:`/`session:` may be ourselves. Only members whose keys this agent trusts
/// ([`super::MeshTrust::usable`]): a multicast leaves the others out ([`untrusted`] lists them),
/// a target naming one such member is [`ResolveError::Untrusted`].
pub fn recipients(view: &MeshView, target: &Target) -> Result<Vec<(String, [u8; 32])>, ResolveError> {
    let multicast = matches!(target, Target::Broadcast | Target::Group(_));
    let mut ids = reached(view, target);
    if multicast {
        ids.retain(|id| view.trust.usable(id).is_ok());
    } else if let Some(id) = ids.first()
        && let Err(reason) = view.trust.usable(id)
    {
        let name = view.members.get(*id).map_or(id.as_str(), |m| m.display_name.as_str()).to_string();
        return Err(ResolveError::Untrusted { name, reason });
    }
    keys(view, target, ids)
}

/// The member ids `target` reaches, trusted or not.
fn reached<'a>(view: &'a MeshView, target: &Target) -> Vec<&'a String> {
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
    ids
}

/// The keys of `ids`, or why a target reaches nobody.
fn keys(
    view: &MeshView,
    target: &Target,
    ids: Vec<&String>,
) -> Result<Vec<(String, [u8; 32])>, ResolveError> {
    if ids.is_empty() {
        if let Target::Member(id) = target
            && let Some(f) = view.former.get(id)
        {
            return Err(ResolveError::Former {
                name: f.display_name.clone(),
                mesh: view.config.slug.clone(),
                reason: f.reason,
            });
        }
        return Err(ResolveError::Empty(format!(
            "{target} reaches nobody in {} right now",
            view.config.slug
        )));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let m = view.members.get(id).ok_or_else(|| match view.former.get(id) {
            Some(f) => ResolveError::Former {
                name: f.display_name.clone(),
                mesh: view.config.slug.clone(),
                reason: f.reason,
            },
            None => ResolveError::Empty(format!("member {id} is not in the directory")),
        })?;
        let pk = from_hex_array::<32>("pubkey", &m.pubkey).map_err(|_| ResolveError::BadKey(id.clone()))?;
        out.push((id.clone(), pk));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use claudemesh_protocol::crypto::MemberKeypair;
    use claudemesh_protocol::frames::{Role, SessionInfo};

    use super::*;
    use crate::config::MeshConfig;

    fn view(link: LinkState) -> MeshView {
        let key = MemberKeypair::generate();
        let mut v = MeshView::new(
            MeshConfig {
                id: "mesh_1".into(),
                slug: "team".into(),
                broker_url: "ws://127.0.0.1:1/ws".into(),
                member_id: "m_me".into(),
                role: Role::Member,
                secret_key: key.secret_hex().to_string(),
                display_name: "me".into(),
                joined_at: 0,
                root_pubkey: None,
                invite: None,
                extra: Default::default(),
            },
            Arc::new(key),
            tokio::sync::mpsc::channel(1).0,
            Default::default(),
        );
        v.link = link;
        v.link_detail = Some("cannot reach ws://127.0.0.1:1/ws".into());
        v
    }

    fn member(id: &str, name: &str) -> MemberInfo {
        MemberInfo {
            member_id: id.into(),
            pubkey: "00".repeat(32),
            display_name: name.into(),
            role: Role::Member,
            groups: vec![],
            declared_groups: vec![],
            online: true,
            statements: vec![],
        }
    }

    fn session(member: &str, id: &str, name: &str, host: &str) -> PeerSession {
        PeerSession {
            member_id: member.into(),
            session: SessionInfo {
                session_id: id.into(),
                display_name: name.into(),
                hostname: Some(host.into()),
                ..Default::default()
            },
            connected_since: 0,
        }
    }

    fn former(id: &str, name: &str, reason: RemovalReason, at: u64) -> FormerMember {
        FormerMember {
            member_id: id.into(),
            display_name: name.into(),
            reason,
            at,
            pubkey: String::new(),
            statements: vec![],
        }
    }

    #[test]
    fn a_former_member_is_named_as_such_unless_someone_current_has_the_name() {
        let mut v = view(LinkState::Connected);
        v.former.insert("m_old".into(), former("m_old", "bob", RemovalReason::Left, 1));
        v.former.insert("m_gone".into(), former("m_gone", "carol", RemovalReason::Removed, 1));
        let e = resolve_target(&v, "Bob").unwrap_err();
        assert!(matches!(e, ResolveError::Former { .. }), "{e:?}");
        assert!(e.to_string().starts_with("bob left the mesh"), "{e}");
        assert!(resolve_target(&v, "m_gone").unwrap_err().to_string().starts_with("carol was removed"));
        assert!(recipients(&v, &Target::Member("m_old".into())).unwrap_err().to_string().contains("left"));
        // bob came back with a new member id: the current bob wins.
        v.members.insert("m_new".into(), member("m_new", "bob"));
        assert_eq!(resolve_target(&v, "bob").unwrap(), Target::Member("m_new".into()));
    }

    #[test]
    fn an_unknown_name_on_a_link_that_is_down_blames_the_link() {
        let v = view(LinkState::Disconnected);
        let e = resolve_target(&v, "bob").unwrap_err();
        assert!(matches!(e, ResolveError::LinkDown { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("disconnected") && msg.contains("cannot reach") && msg.contains("status"),
            "{msg}"
        );
        let e = resolve_target(&view(LinkState::Connected), "bob").unwrap_err();
        assert!(matches!(e, ResolveError::Unknown { .. }), "{e:?}");
    }

    #[test]
    fn a_session_id_equal_to_a_member_id_or_name_cannot_hijack_it() {
        let mut v = view(LinkState::Connected);
        v.members.insert("m_bob0000000".into(), member("m_bob0000000", "bob"));
        v.members.insert("m_eve0000000".into(), member("m_eve0000000", "eve"));
        // Eve's sessions carry bob's name and bob's member id as their session ids.
        v.peers.insert("bob".into(), session("m_eve0000000", "bob", "x", "evehost"));
        v.peers.insert("m_bob0000000".into(), session("m_eve0000000", "m_bob0000000", "y", "evehost"));
        for to in ["bob", "m_bob0000000"] {
            let e = resolve_target(&v, to).unwrap_err();
            assert!(matches!(e, ResolveError::Ambiguous { .. }), "{to}: {e}");
            assert!(e.to_string().contains("bob (member:m_bob000"), "{e}");
        }
        // Without the look-alike sessions both reach bob, by name and by id.
        v.peers.clear();
        assert_eq!(resolve_target(&v, "bob").unwrap(), Target::Member("m_bob0000000".into()));
        assert_eq!(resolve_target(&v, "m_bob0000000").unwrap(), Target::Member("m_bob0000000".into()));
        // A member's own session named like it is not ambiguous: the session is meant.
        v.peers.insert("0f0f0f0f-aaaa".into(), session("m_bob0000000", "0f0f0f0f-aaaa", "bob", "laptop"));
        assert_eq!(resolve_target(&v, "bob").unwrap(), Target::Session("0f0f0f0f-aaaa".into()));
    }

    #[test]
    fn ambiguity_lists_name_host_and_short_id_and_the_short_id_works() {
        let mut v = view(LinkState::Connected);
        v.members.insert("m_1234567890".into(), member("m_1234567890", "bob"));
        v.members.insert("m_abcdefghij".into(), member("m_abcdefghij", "bob2"));
        for (sid, host) in [("0f0f0f0f-aaaa", "laptop"), ("1e1e1e1e-bbbb", "desktop")] {
            v.peers.insert(sid.into(), session("m_1234567890", sid, "review", host));
        }
        let e = resolve_target(&v, "review").unwrap_err().to_string();
        assert!(e.contains("review on laptop (session:0f0f0f0f)"), "{e}");
        assert!(e.contains("review on desktop (session:1e1e1e1e)"), "{e}");
        assert_eq!(resolve_target(&v, "session:0f0f0f0f").unwrap(), Target::Session("0f0f0f0f-aaaa".into()));
        assert_eq!(resolve_target(&v, "m_abcdef").unwrap(), Target::Member("m_abcdefghij".into()));
        v.members.insert("m_12345678zz".into(), member("m_12345678zz", "Bob"));
        let e = resolve_target(&v, "bob").unwrap_err().to_string();
        assert!(e.contains("bob (member:m_123456, on desktop, laptop)"), "{e}");
        assert!(e.contains("Bob (member:m_123456, no session open)"), "{e}");
    }
}
