//! Membership through the agent: `member_remove` and `member_set` (admins), and `leave`, which
//! tells the broker before the key is deleted so no ghost member stays behind.

use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::{
    ClientFrame, ErrorCode, GroupRole, MemberInfo, RemovalReason, Role, ServerFrame,
};
use claudemesh_protocol::local::LinkState;
use claudemesh_protocol::trust::{STATEMENT_VERSION, SignedStatement, Statement};
use serde_json::Value;

use super::admin::{request, request_raw};
use crate::api::ApiError;
use crate::config::Config;
use crate::core::calls::to_value;
use crate::core::{Input, UplinkEvent};
use crate::mesh::resolve::{candidates, former_named};
use crate::shared::Agent;

/// Finds one current member of `mesh_id` by display name (case-insensitive), member id, or a
/// unique prefix of a member id. Errors: not found (naming a former member as such, else
/// listing who is there) or ambiguous (each candidate's name, short id and hosts, as sends
/// list them).
pub fn find_member(agent: &Agent, mesh_id: &str, who: &str) -> Result<MemberInfo, ApiError> {
    let view = agent.view();
    let v = view.meshes.get(mesh_id).ok_or((ErrorCode::NotFound, "mesh not joined".to_string()))?;
    let who = who.trim();
    let by_id: Vec<&MemberInfo> = v.members.values().filter(|m| m.member_id == who).collect();
    let matches: Vec<&MemberInfo> = if !by_id.is_empty() {
        by_id
    } else {
        let by_name: Vec<&MemberInfo> =
            v.members.values().filter(|m| m.display_name.eq_ignore_ascii_case(who)).collect();
        if !by_name.is_empty() {
            by_name
        } else if who.len() >= 4 {
            v.members.values().filter(|m| m.member_id.starts_with(who)).collect()
        } else {
            vec![]
        }
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            if let Some(f) = former_named(v, who) {
                return Err((ErrorCode::NotFound, format!("{} {}", f.display_name, f.reason.phrase())));
            }
            let mut names: Vec<&str> = v.members.values().map(|m| m.display_name.as_str()).collect();
            names.sort_unstable();
            Err((
                ErrorCode::NotFound,
                format!("no member {who} in {}; members: {}", v.config.slug, names.join(", ")),
            ))
        }
        many => Err((
            ErrorCode::Conflict,
            format!("{who} matches several members: {}; use the member id", candidates(v, &[], many)),
        )),
    }
}

/// Asks the broker for the member directory of `mesh_id` now and stores it, so that a name
/// given right after a join, a leave or a role change resolves against the broker's state, not
/// against a view still waiting for batched presence. Only over a connected link (a down one
/// keeps the cached view and answers at once); returns whether the view was refreshed.
pub async fn refresh_directory(agent: &Agent, mesh_id: &str) -> bool {
    let connected = agent.view().meshes.get(mesh_id).is_some_and(|v| v.link == LinkState::Connected);
    if !connected {
        return false;
    }
    match request(agent, mesh_id, Box::new(crate::uplink::members::list_members)).await {
        Ok(ServerFrame::Members { members, former, .. }) => {
            // Applied (and in the snapshot) before this returns.
            let (done, applied) = tokio::sync::oneshot::channel();
            let event = UplinkEvent::Directory { members, former, done: Some(done) };
            agent.core.send(Input::Uplink { mesh: mesh_id.to_string(), event }).await.is_ok()
                && applied.await.is_ok()
        }
        _ => false,
    }
}

/// `mesh`'s id, or every joined mesh's (none when `mesh` names no joined mesh).
fn mesh_ids(agent: &Agent, mesh: Option<&str>) -> Vec<String> {
    match mesh {
        Some(m) => agent.view().resolve_mesh(Some(m)).into_iter().collect(),
        None => agent.view().meshes.keys().cloned().collect(),
    }
}

/// Fresh members for `mesh`, or for every joined mesh, and fresh presence where the broker
/// said `presence_reset`: one `list_members` per mesh ([`refresh_presence`] lists them with
/// the peers where presence was stale, [`refresh_directory`] the rest).
pub async fn refresh_directories(agent: &Agent, mesh: Option<&str>) {
    let listed = refresh_presence(agent, mesh).await;
    for id in mesh_ids(agent, mesh).into_iter().filter(|id| !listed.contains(id)) {
        refresh_directory(agent, &id).await;
    }
}

/// Lists the peers (and the directory) of `mesh`, or of every joined mesh, again where the
/// broker said `presence_reset` since the last list, and waits until the view
/// has them: a `peers` call or a send by name after a connect storm sees who is there now.
/// A connected, fresh view answers at once; a refresh waits at most [`REFRESH_WAIT`] (5 s).
/// Returns the meshes it asked to refresh.
pub async fn refresh_presence(agent: &Agent, mesh: Option<&str>) -> Vec<String> {
    let stale: Vec<_> = {
        let view = agent.view();
        mesh_ids(agent, mesh)
            .iter()
            .filter_map(|id| view.meshes.get(id))
            .filter(|v| v.presence_stale && v.link == LinkState::Connected)
            .map(|v| (v.config.id.clone(), v.uplink.clone()))
            .collect()
    };
    let ids = stale.iter().map(|(id, _)| id.clone()).collect();
    let refresh = async {
        let mut waits = Vec::new();
        for (_, uplink) in stale {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if uplink.send(crate::mesh::UplinkCmd::RefreshPresence(Some(tx))).await.is_ok() {
                waits.push(rx);
            }
        }
        futures_util::future::join_all(waits).await
    };
    // A link that looks connected but no longer answers costs a caller this much, then the
    // view as it is.
    let _ = tokio::time::timeout(REFRESH_WAIT, refresh).await;
    ids
}

/// The longest [`refresh_presence`] waits for the broker's lists.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn mesh_of(agent: &Agent, mesh: Option<&str>) -> Result<String, ApiError> {
    agent.view().resolve_mesh(mesh)
}

/// `member_remove`: the broker checks the caller is an admin and that it is not the last one.
pub async fn remove(agent: &Agent, mesh: Option<&str>, who: &str) -> Result<Value, ApiError> {
    let mesh_id = mesh_of(agent, mesh)?;
    refresh_directory(agent, &mesh_id).await;
    let m = find_member(agent, &mesh_id, who)?;
    let id = m.member_id.clone();
    let statement = sign(agent, &mesh_id, |key, mesh_id| Statement::Removal {
        v: STATEMENT_VERSION,
        mesh_id: mesh_id.to_string(),
        member_id: m.member_id.clone(),
        pubkey: m.pubkey.clone(),
        reason: RemovalReason::Removed,
        signer: key.public_hex(),
        at: crate::core::now_ms(),
    })?;
    request(
        agent,
        &mesh_id,
        Box::new(move |req| ClientFrame::MemberRemove { req, member_id: id, statement: Some(statement) }),
    )
    .await?;
    // What the broker just did, at once: a `members` or `send` right after sees it.
    refresh_directory(agent, &mesh_id).await;
    to_value(&claudemesh_protocol::local::RemoveReply { removed: m.member_id, display_name: m.display_name })
}

/// `member_set`: a new role and/or a new list of granted groups.
pub async fn set(
    agent: &Agent,
    mesh: Option<&str>,
    who: &str,
    role: Option<Role>,
    groups: Option<Vec<GroupRole>>,
) -> Result<Value, ApiError> {
    if role.is_none() && groups.is_none() {
        return Err((ErrorCode::Invalid, "nothing to change: give --role and/or --group".into()));
    }
    let mesh_id = mesh_of(agent, mesh)?;
    refresh_directory(agent, &mesh_id).await;
    let m = find_member(agent, &mesh_id, who)?;
    let id = m.member_id.clone();
    let (r2, g2) = (role, groups.clone());
    // What the member will be after the change, signed by this admin for every agent to check.
    let statement = sign(agent, &mesh_id, |key, mesh_id| Statement::Role {
        v: STATEMENT_VERSION,
        mesh_id: mesh_id.to_string(),
        member_id: m.member_id.clone(),
        pubkey: m.pubkey.clone(),
        display_name: m.display_name.clone(),
        role: role.unwrap_or(m.role),
        groups: groups.clone().unwrap_or_else(|| m.groups.clone()),
        signer: key.public_hex(),
        at: crate::core::now_ms(),
    })?;
    request(
        agent,
        &mesh_id,
        Box::new(move |req| ClientFrame::MemberSet {
            req,
            member_id: id,
            role: r2,
            groups: g2,
            statement: Some(statement),
        }),
    )
    .await?;
    // The member as the broker now has it (both fields, whichever one changed).
    refresh_directory(agent, &mesh_id).await;
    let now = agent.view().meshes.get(&mesh_id).and_then(|v| v.members.get(&m.member_id).cloned());
    let (role, groups) = match now {
        Some(n) => (n.role, n.groups),
        None => (role.unwrap_or(m.role), groups.unwrap_or(m.groups)),
    };
    to_value(&claudemesh_protocol::local::MemberSetReply {
        member_id: m.member_id,
        display_name: m.display_name,
        role,
        groups,
    })
}

/// `member_repin`: forgets the member's pinned key and verifies the directory again (fresh from
/// the broker), pinning the listed key if the chain verifies it.
pub async fn repin(agent: &Agent, mesh: Option<&str>, who: &str) -> Result<Value, ApiError> {
    let mesh_id = mesh_of(agent, mesh)?;
    refresh_directory(agent, &mesh_id).await;
    let m = find_member(agent, &mesh_id, who)?;
    if agent.view().meshes.get(&mesh_id).is_some_and(|v| v.config.member_id == m.member_id) {
        return Err((
            ErrorCode::Invalid,
            "that is you: your own key is never pinned, only other members' are".into(),
        ));
    }
    let (done, applied) = tokio::sync::oneshot::channel();
    agent.core.send(Input::Repin { mesh: mesh_id.clone(), member_id: m.member_id.clone(), done }).await?;
    applied.await.map_err(|_| (ErrorCode::Internal, "the agent stopped".to_string()))?;
    let entry = agent
        .view()
        .members(Some(&mesh_id))?
        .into_iter()
        .find(|e| e.member.member_id == m.member_id)
        .ok_or_else(|| (ErrorCode::NotFound, format!("{who} is no longer in the directory")))?;
    to_value(&entry)
}

/// `leave`: the broker removes the member (reason `left`), then the mesh and its key leave
/// `config.json` and the link drops. A broker that already removed the member does not block
/// leaving; one that cannot be asked (link down, key in use elsewhere, too old to know
/// `leave`) does, unless `local_only`, so that no ghost member stays behind unknowingly.
pub async fn leave(agent: &Agent, mesh: &str, local_only: bool) -> Result<Value, ApiError> {
    let mesh_id = match agent.view().resolve_mesh(Some(mesh)) {
        Ok(id) => id,
        // In config.json but without a link (its key is unusable): only a local removal works.
        Err((_, e)) => match Config::load(&agent.paths).ok().and_then(|c| c.mesh(mesh).map(|m| m.id.clone()))
        {
            Some(id) if local_only => id,
            Some(_) => {
                return Err((
                    ErrorCode::Unavailable,
                    format!(
                        "the agent has no link for {mesh} (see `claudemesh doctor`), so its broker cannot \
                         be told; `claudemesh leave {mesh} --local-only` forgets it on this machine only"
                    ),
                ));
            }
            None => return Err((ErrorCode::NotFound, e)),
        },
    };
    let link = agent.view().meshes.get(&mesh_id).map(|v| (v.link, v.link_detail.clone()));
    let told = match link {
        _ if local_only => false,
        None => false,
        // The broker refused us as removed: there is nobody left to tell.
        Some((LinkState::Refused, _)) => false,
        Some((LinkState::Connected, _)) => tell_broker(agent, &mesh_id, mesh).await?,
        Some((state, detail)) => {
            let state = serde_json::to_value(state).ok().and_then(|v| v.as_str().map(String::from));
            return Err((
                ErrorCode::Unavailable,
                format!(
                    "the broker of {mesh} cannot be told you leave: the link is {} ({}); try again when \
                     `claudemesh status` shows it connected, or forget the mesh on this machine only \
                     with `claudemesh leave {mesh} --local-only`",
                    state.unwrap_or_default(),
                    detail.unwrap_or_default()
                ),
            ));
        }
    };
    let mut cfg = Config::load(&agent.paths).map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    let before = cfg.meshes.len();
    cfg.meshes.retain(|m| m.id != mesh_id);
    if cfg.meshes.len() != before {
        cfg.save(&agent.paths).map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    }
    // Sends still waiting were sealed with the key just deleted: a later rejoin must not send
    // them under the new membership (the recipient could not open them). They fail, saying why.
    for rec in agent.store.outbox_for(&mesh_id).unwrap_or_default() {
        let state = claudemesh_protocol::local::SendState::Failed {
            error: format!("you left mesh {mesh} before the broker took it; send it again if you rejoin"),
        };
        let event = UplinkEvent::Outbox { client_msg_id: rec.client_msg_id, state };
        agent.core.send(Input::Uplink { mesh: mesh_id.clone(), event }).await?;
    }
    agent.core.send(Input::MeshRemoved { mesh: mesh_id.clone() }).await?;
    // What `leave` changed is committed before it answers.
    let (done, applied) = tokio::sync::oneshot::channel();
    agent.core.send(Input::Barrier(done)).await?;
    let _ = applied.await;
    tracing::info!(mesh, broker_told = told, "left mesh");
    to_value(&claudemesh_protocol::local::LeaveReply { left: mesh.to_string(), mesh_id, broker_told: told })
}

/// Sends `leave`; whether the broker recorded it (false: it had already forgotten us).
async fn tell_broker(agent: &Agent, mesh_id: &str, mesh: &str) -> Result<bool, ApiError> {
    let statement = sign(agent, mesh_id, |key, mesh_id| Statement::Removal {
        v: STATEMENT_VERSION,
        mesh_id: mesh_id.to_string(),
        member_id: String::new(),
        pubkey: key.public_hex(),
        reason: RemovalReason::Left,
        signer: key.public_hex(),
        at: crate::core::now_ms(),
    })?;
    let frame = move |req| ClientFrame::Leave { req, statement: Some(statement) };
    match request_raw(agent, mesh_id, Box::new(frame)).await? {
        ServerFrame::Ok { .. } => Ok(true),
        ServerFrame::Error(e) => match e.code {
            ErrorCode::Revoked | ErrorCode::NotFound | ErrorCode::Unauthorized => Ok(false),
            // What a broker from before `leave` answers to a frame it does not serve.
            ErrorCode::Unavailable => Err((
                ErrorCode::Unavailable,
                format!(
                    "the broker of {mesh} cannot record that you leave ({}); ask an admin to remove you \
                     (`claudemesh member remove NAME`), or forget the mesh on this machine only with \
                     `claudemesh leave {mesh} --local-only`",
                    e.message
                ),
            )),
            code => Err((code, e.message)),
        },
        other => Err((ErrorCode::Internal, format!("unexpected reply {} to leave", other.type_name()))),
    }
}

/// Signs the statement `build` makes (given this member's key and the mesh id) with this
/// member's key for `mesh_id`. A `member_id` left empty is filled with our own.
fn sign(
    agent: &Agent,
    mesh_id: &str,
    build: impl FnOnce(&MemberKeypair, &str) -> Statement,
) -> Result<SignedStatement, ApiError> {
    let view = agent.view();
    let v = view
        .meshes
        .get(mesh_id)
        .ok_or_else(|| (ErrorCode::NotFound, format!("mesh {mesh_id} is not joined")))?;
    let mut st = build(&v.key, mesh_id);
    if let Statement::Removal { member_id, .. } = &mut st
        && member_id.is_empty()
    {
        member_id.clone_from(&v.config.member_id);
    }
    st.sign(&v.key).map_err(|e| (ErrorCode::Internal, format!("cannot sign the statement: {e}")))
}
