//! Who may do what with a service (DESIGN §7 "Scopes"), as pure functions of the service and
//! the member: seeing and calling (the scope, over member groups granted by invite or admin,
//! never session-declared ones), and managing (the deployer or a mesh admin).

use claudemesh_protocol::frames::{GroupRole, Role};
use claudemesh_protocol::scope::{Scope, can_access};

use crate::hub::MeshState;

/// A member as the access rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub member_id: String,
    pub role: Role,
    /// Granted groups only.
    pub groups: Vec<GroupRole>,
}

impl Who {
    /// The member as the mesh knows it now; `None` when it is not an active member.
    pub fn of(st: &MeshState, member_id: &str) -> Option<Who> {
        st.members.get(member_id).filter(|m| !m.removed).map(|m| Who {
            member_id: m.member_id.clone(),
            role: m.role,
            groups: m.groups.clone(),
        })
    }

    /// Whether this member may see and call a service with `scope` deployed by `deployer`.
    pub fn can_use(&self, scope: &Scope, deployer: &str) -> bool {
        can_access(scope, deployer, &self.member_id, &self.groups, self.role)
    }

    /// Whether this member may undeploy, update or re-scope it.
    pub fn can_manage(&self, deployer: &str) -> bool {
        self.member_id == deployer || self.role == Role::Admin
    }
}

/// Active members of the mesh, split by access under `before` and `after`: who gains access
/// and who loses it (those keeping or never having it are not told of a scope change).
pub fn scope_change(
    st: &MeshState,
    deployer: &str,
    before: &Scope,
    after: &Scope,
) -> (Vec<String>, Vec<String>) {
    let mut gain = Vec::new();
    let mut lose = Vec::new();
    for m in st.active_members() {
        let who = Who { member_id: m.member_id.clone(), role: m.role, groups: m.groups.clone() };
        match (who.can_use(before, deployer), who.can_use(after, deployer)) {
            (false, true) => gain.push(m.member_id.clone()),
            (true, false) => lose.push(m.member_id.clone()),
            _ => {}
        }
    }
    (gain, lose)
}

/// Connected members allowed to see a service: where its events go.
pub fn audience(st: &MeshState, scope: &Scope, deployer: &str) -> Vec<String> {
    st.conns
        .keys()
        .filter(|id| Who::of(st, id).is_some_and(|w| w.can_use(scope, deployer)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: &str, role: Role, groups: &[&str]) -> Who {
        Who { member_id: id.into(), role, groups: groups.iter().map(|g| GroupRole::new(*g)).collect() }
    }

    #[test]
    fn managing_is_for_the_deployer_and_admins() {
        assert!(who("dep", Role::Member, &[]).can_manage("dep"));
        assert!(who("adm", Role::Admin, &[]).can_manage("dep"));
        assert!(!who("other", Role::Member, &["ops"]).can_manage("dep"));
    }

    #[test]
    fn group_scopes_use_granted_groups() {
        let ops = who("op", Role::Member, &["ops"]);
        assert!(ops.can_use(&Scope::Group("ops".into()), "dep"));
        assert!(!ops.can_use(&Scope::Group("dev".into()), "dep"));
        assert!(!ops.can_use(&Scope::Peer, "dep"));
    }
}
