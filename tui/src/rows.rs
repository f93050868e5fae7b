//! The rows each view shows: the state's lists narrowed by the mesh scope and the view's
//! filter, in display order. `update` (which row is selected, what a key acts on) and the
//! renderers both read them, so they always agree.

use claudemesh_protocol::local::{MemberEntry, MeshStatus, PeerEntry};

use crate::state::messages::Conv;
use crate::state::{LogLine, State, View};

/// Whether any of `fields`, as shown (cleaned to one line), contains `filter` (already
/// lowercase), ignoring case.
pub fn matches(filter: &str, fields: &[&str]) -> bool {
    filter.is_empty()
        || fields.iter().any(|f| claudemesh_protocol::text::one_line(f).to_lowercase().contains(filter))
}

/// Online sessions, this user's own first, then by mesh and name.
pub fn peers(s: &State) -> Vec<&PeerEntry> {
    let f = s.filter(View::Peers).to_lowercase();
    let mut v: Vec<&PeerEntry> = s
        .peers
        .iter()
        .filter(|p| s.in_scope(&p.mesh))
        .filter(|p| {
            let groups: Vec<&str> = p.peer.session.groups.iter().map(|g| g.name.as_str()).collect();
            matches(
                &f,
                &[
                    &p.peer.session.display_name,
                    p.member_name.as_deref().unwrap_or(""),
                    p.peer.session.summary.as_deref().unwrap_or(""),
                    p.peer.session.hostname.as_deref().unwrap_or(""),
                    p.peer.session.cwd.as_deref().unwrap_or(""),
                    &p.mesh,
                    &groups.join(" "),
                ],
            )
        })
        .collect();
    v.sort_by(|a, b| {
        (!a.me, &a.mesh, &a.peer.session.display_name, &a.peer.session.session_id).cmp(&(
            !b.me,
            &b.mesh,
            &b.peer.session.display_name,
            &b.peer.session.session_id,
        ))
    });
    v
}

/// Members: admins first, then by name.
pub fn members(s: &State) -> Vec<&MemberEntry> {
    let f = s.filter(View::Members).to_lowercase();
    let mut v: Vec<&MemberEntry> = s
        .members
        .iter()
        .filter(|m| s.in_scope(&m.mesh))
        .filter(|m| {
            let groups: Vec<&str> = m.member.groups.iter().map(|g| g.name.as_str()).collect();
            matches(&f, &[&m.member.display_name, &m.member.member_id, &m.mesh, &groups.join(" ")])
        })
        .collect();
    v.sort_by(|a, b| {
        (&a.mesh, a.member.role != claudemesh_protocol::frames::Role::Admin, &a.member.display_name).cmp(&(
            &b.mesh,
            b.member.role != claudemesh_protocol::frames::Role::Admin,
            &b.member.display_name,
        ))
    });
    v
}

/// Conversations, newest first.
pub fn convs(s: &State) -> Vec<&Conv> {
    let f = s.filter(View::Messages).to_lowercase();
    s.messages
        .conv_list(s.scope.as_deref())
        .into_iter()
        .filter(|c| matches(&f, &[&c.title, &c.key.mesh]))
        .collect()
}

/// Events, oldest first.
pub fn events(s: &State) -> Vec<&LogLine> {
    let f = s.filter(View::Events).to_lowercase();
    s.events
        .iter()
        .filter(|e| e.mesh.is_empty() || s.in_scope(&e.mesh))
        .filter(|e| matches(&f, &[&e.mesh, e.kind, &e.text]))
        .collect()
}

/// Joined meshes, in the agent's order.
pub fn meshes(s: &State) -> Vec<&MeshStatus> {
    let f = s.filter(View::Meshes).to_lowercase();
    s.meshes.iter().filter(|m| matches(&f, &[&m.slug, &m.broker_url, &m.display_name])).collect()
}

/// How many rows the current table of `view` has.
pub fn len(s: &State, view: View) -> usize {
    match view {
        View::Peers => peers(s).len(),
        View::Members => members(s).len(),
        View::Messages => convs(s).len(),
        View::Events => events(s).len(),
        View::Meshes => meshes(s).len(),
    }
}
