//! The rows each view shows: the state's lists narrowed by the mesh scope and the view's
//! filter, in display order. `update` (which row is selected, what a key acts on) and the
//! renderers both read them, so they always agree. [`len`] counts without sorting: `update`
//! asks it after every event.

use claudemesh_protocol::local::{
    MemberEntry, MeshStatus, PeerEntry, ServiceEntry, SkillListItem, VaultItem,
};
use claudemesh_protocol::text;

use crate::state::messages::Conv;
use crate::state::{LogLine, State, View};

/// Whether any of `fields`, as shown (cleaned to one line), contains `filter` (already
/// lowercase), ignoring case.
pub fn matches(filter: &str, fields: &[&str]) -> bool {
    filter.is_empty() || fields.iter().any(|f| text::one_line(f).to_lowercase().contains(filter))
}

/// The current filter of `view`, lowercased.
fn filter_of(s: &State, view: View) -> String {
    s.filter(view).to_lowercase()
}

fn peer_shown(s: &State, f: &str, p: &PeerEntry) -> bool {
    if !s.in_scope(&p.mesh) {
        return false;
    }
    if f.is_empty() {
        return true;
    }
    let ses = &p.peer.session;
    let groups: Vec<&str> = ses.groups.iter().map(|g| g.name.as_str()).collect();
    matches(
        f,
        &[
            &ses.display_name,
            p.member_name.as_deref().unwrap_or(""),
            ses.summary.as_deref().unwrap_or(""),
            ses.hostname.as_deref().unwrap_or(""),
            ses.cwd.as_deref().unwrap_or(""),
            &p.mesh,
            &groups.join(" "),
        ],
    )
}

fn member_shown(s: &State, f: &str, m: &MemberEntry) -> bool {
    if !s.in_scope(&m.mesh) {
        return false;
    }
    if f.is_empty() {
        return true;
    }
    let groups: Vec<&str> = m.member.groups.iter().map(|g| g.name.as_str()).collect();
    matches(f, &[&m.member.display_name, &m.member.member_id, &m.mesh, &groups.join(" ")])
}

fn conv_shown(s: &State, f: &str, c: &Conv) -> bool {
    s.in_scope(&c.key.mesh) && matches(f, &[&c.title, &c.key.mesh])
}

fn event_shown(s: &State, f: &str, e: &LogLine) -> bool {
    (e.mesh.is_empty() || s.in_scope(&e.mesh)) && matches(f, &[&e.mesh, e.kind, &e.text])
}

fn mesh_shown(f: &str, m: &MeshStatus) -> bool {
    matches(f, &[&m.slug, &m.broker_url, &m.display_name])
}

fn service_shown(s: &State, f: &str, x: &ServiceEntry) -> bool {
    if !s.in_scope(&x.mesh) {
        return false;
    }
    let e = &x.entry;
    let scope = e.scope.to_string();
    let status = crate::state::services::status_label(e.status);
    f.is_empty() || matches(f, &[&e.name, &x.mesh, &e.description, status, &scope, &e.source_kind])
}

fn vault_shown(s: &State, f: &str, x: &VaultItem) -> bool {
    let e = &x.entry;
    let kind = crate::state::sharing::kind_label(e.kind);
    s.in_scope(&x.mesh)
        && (f.is_empty()
            || matches(
                f,
                &[
                    &e.key,
                    &x.mesh,
                    kind,
                    e.mount_path.as_deref().unwrap_or(""),
                    e.description.as_deref().unwrap_or(""),
                ],
            ))
}

/// A skill is shown when every word of the filter is in its name, description or tags: what
/// the broker's `skill_list` query matches.
fn skill_shown(s: &State, f: &str, x: &SkillListItem) -> bool {
    let k = &x.skill;
    s.in_scope(&x.mesh) && claudemesh_protocol::sharing::skill_matches(&k.name, &k.description, &k.tags, f)
}

/// The order of Vault and Skills: by mesh, then key or name.
fn vault_rank(x: &VaultItem) -> (&str, &str) {
    (&x.mesh, &x.entry.key)
}

fn skill_rank(x: &SkillListItem) -> (&str, &str) {
    (&x.mesh, &x.skill.name)
}

/// The order of Services: by mesh, then name.
fn service_rank(x: &ServiceEntry) -> (&str, &str) {
    (&x.mesh, &x.entry.name)
}

/// The order of Peers: this user's own sessions first, then by mesh, name and id.
fn peer_rank(p: &PeerEntry) -> (bool, &str, &str, &str) {
    (!p.me, &p.mesh, &p.peer.session.display_name, &p.peer.session.session_id)
}

/// The order of Members: by mesh, admins first, then by name and id.
fn member_rank(m: &MemberEntry) -> (&str, bool, &str, &str) {
    (
        &m.mesh,
        m.member.role != claudemesh_protocol::frames::Role::Admin,
        &m.member.display_name,
        &m.member.member_id,
    )
}

/// Online sessions, this user's own first, then by mesh and name.
pub fn peers(s: &State) -> Vec<&PeerEntry> {
    let f = filter_of(s, View::Peers);
    let mut v: Vec<&PeerEntry> = s.peers.iter().filter(|p| peer_shown(s, &f, p)).collect();
    v.sort_by(|a, b| peer_rank(a).cmp(&peer_rank(b)));
    v
}

/// Members: by mesh, admins first, then by name.
pub fn members(s: &State) -> Vec<&MemberEntry> {
    let f = filter_of(s, View::Members);
    let mut v: Vec<&MemberEntry> = s.members.iter().filter(|m| member_shown(s, &f, m)).collect();
    v.sort_by(|a, b| member_rank(a).cmp(&member_rank(b)));
    v
}

/// Conversations, newest first.
pub fn convs(s: &State) -> Vec<&Conv> {
    let f = filter_of(s, View::Messages);
    s.messages.conv_list(s.scope.as_deref()).into_iter().filter(|c| conv_shown(s, &f, c)).collect()
}

/// Events, oldest first.
pub fn events(s: &State) -> Vec<&LogLine> {
    let f = filter_of(s, View::Events);
    s.events.iter().filter(|e| event_shown(s, &f, e)).collect()
}

/// Joined meshes, in the agent's order.
pub fn meshes(s: &State) -> Vec<&MeshStatus> {
    let f = filter_of(s, View::Meshes);
    s.meshes.iter().filter(|m| mesh_shown(&f, m)).collect()
}

/// Shared services, by mesh and name.
pub fn services(s: &State) -> Vec<&ServiceEntry> {
    let f = filter_of(s, View::Services);
    let mut v: Vec<&ServiceEntry> = s.services.list.iter().filter(|x| service_shown(s, &f, x)).collect();
    v.sort_by(|a, b| service_rank(a).cmp(&service_rank(b)));
    v
}

/// This member's vault entries, by mesh and key.
pub fn vault(s: &State) -> Vec<&VaultItem> {
    let f = filter_of(s, View::Vault);
    let mut v: Vec<&VaultItem> = s.vault.list.iter().filter(|x| vault_shown(s, &f, x)).collect();
    v.sort_by(|a, b| vault_rank(a).cmp(&vault_rank(b)));
    v
}

/// Shared skills, by mesh and name.
pub fn skills(s: &State) -> Vec<&SkillListItem> {
    let f = filter_of(s, View::Skills);
    let mut v: Vec<&SkillListItem> = s.skills.list.iter().filter(|x| skill_shown(s, &f, x)).collect();
    v.sort_by(|a, b| skill_rank(a).cmp(&skill_rank(b)));
    v
}

/// How many rows the table of `view` has (what [`peers`], [`members`]… return, uncounted
/// order aside).
pub fn len(s: &State, view: View) -> usize {
    let f = filter_of(s, view);
    match view {
        View::Peers => s.peers.iter().filter(|p| peer_shown(s, &f, p)).count(),
        View::Members => s.members.iter().filter(|m| member_shown(s, &f, m)).count(),
        View::Messages => s.messages.convs.values().filter(|c| conv_shown(s, &f, c)).count(),
        View::Events => s.events.iter().filter(|e| event_shown(s, &f, e)).count(),
        View::Meshes => s.meshes.iter().filter(|m| mesh_shown(&f, m)).count(),
        View::Services => s.services.list.iter().filter(|x| service_shown(s, &f, x)).count(),
        View::Vault => s.vault.list.iter().filter(|x| vault_shown(s, &f, x)).count(),
        View::Skills => s.skills.list.iter().filter(|x| skill_shown(s, &f, x)).count(),
    }
}

/// What a row is, whatever its position: `mesh \u{1f} session id` (Peers), `mesh \u{1f}
/// member id` (Members), the conversation (Messages), the mesh slug (Meshes), `mesh \u{1f}
/// name` (Services, Skills), `mesh \u{1f} key` (Vault). Events have none: their rows only
/// ever append.
pub fn key_at(s: &State, view: View, i: usize) -> Option<String> {
    let k = |a: &str, b: &str| format!("{a}\u{1f}{b}");
    match view {
        View::Peers => peers(s).get(i).map(|p| k(&p.mesh, &p.peer.session.session_id)),
        View::Members => members(s).get(i).map(|m| k(&m.mesh, &m.member.member_id)),
        View::Messages => convs(s).get(i).map(|c| format!("{:?}", c.key)),
        View::Meshes => meshes(s).get(i).map(|m| m.slug.clone()),
        View::Services => services(s).get(i).map(|x| k(&x.mesh, &x.entry.name)),
        View::Vault => vault(s).get(i).map(|x| k(&x.mesh, &x.entry.key)),
        View::Skills => skills(s).get(i).map(|x| k(&x.mesh, &x.skill.name)),
        View::Events => None,
    }
}

/// Where the row `key` ([`key_at`]) is now, counted without sorting.
pub fn position(s: &State, view: View, key: &str) -> Option<usize> {
    let k = |a: &str, b: &str| format!("{a}\u{1f}{b}");
    match view {
        View::Peers => {
            let f = filter_of(s, view);
            let p = s.peers.iter().find(|p| k(&p.mesh, &p.peer.session.session_id) == key)?;
            let rank = peer_rank;
            peer_shown(s, &f, p)
                .then(|| s.peers.iter().filter(|x| peer_shown(s, &f, x) && rank(x) < rank(p)).count())
        }
        View::Members => {
            let f = filter_of(s, view);
            let m = s.members.iter().find(|m| k(&m.mesh, &m.member.member_id) == key)?;
            let rank = member_rank;
            member_shown(s, &f, m)
                .then(|| s.members.iter().filter(|x| member_shown(s, &f, x) && rank(x) < rank(m)).count())
        }
        View::Messages => convs(s).iter().position(|c| format!("{:?}", c.key) == key),
        View::Meshes => meshes(s).iter().position(|m| m.slug == key),
        View::Services => {
            let f = filter_of(s, view);
            let x = s.services.list.iter().find(|x| k(&x.mesh, &x.entry.name) == key)?;
            service_shown(s, &f, x).then(|| {
                s.services
                    .list
                    .iter()
                    .filter(|y| service_shown(s, &f, y) && service_rank(y) < service_rank(x))
                    .count()
            })
        }
        View::Vault => {
            let f = filter_of(s, view);
            let x = s.vault.list.iter().find(|x| k(&x.mesh, &x.entry.key) == key)?;
            vault_shown(s, &f, x).then(|| {
                s.vault.list.iter().filter(|y| vault_shown(s, &f, y) && vault_rank(y) < vault_rank(x)).count()
            })
        }
        View::Skills => {
            let f = filter_of(s, view);
            let x = s.skills.list.iter().find(|x| k(&x.mesh, &x.skill.name) == key)?;
            skill_shown(s, &f, x).then(|| {
                s.skills
                    .list
                    .iter()
                    .filter(|y| skill_shown(s, &f, y) && skill_rank(y) < skill_rank(x))
                    .count()
            })
        }
        View::Events => None,
    }
}
