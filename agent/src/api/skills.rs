//! Shared skills through the agent (DESIGN §9): `skill_share`, `skill_list`, `skill_get` and
//! `skill_remove` become the broker's `skill_*` frames on the mesh's link; replies name the
//! mesh and, when the directory knows it, the author's display name.

use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use claudemesh_protocol::local::{
    AgentCall, SkillItem, SkillListItem, SkillListReply, SkillRemoveReply, SkillShareParams,
};
use serde_json::Value;

use super::admin::REQUEST_TIMEOUT;
use super::services::{Mesh, every_mesh, unexpected};
use crate::api::ApiError;
use crate::core::calls::to_value;
use crate::shared::Agent;

/// Serves one `skill_*` call.
pub async fn handle(agent: &Agent, call: AgentCall) -> Result<Value, ApiError> {
    match call {
        AgentCall::SkillShare(p) => share(agent, *p).await,
        AgentCall::SkillList { query, mesh } => list(agent, query, mesh.as_deref()).await,
        AgentCall::SkillGet { name, mesh } => {
            let m = Mesh::resolve(agent, mesh.as_deref())?;
            to_value(&get(agent, &m, &name).await?)
        }
        AgentCall::SkillRemove { name, mesh } => {
            let m = Mesh::resolve(agent, mesh.as_deref())?;
            let n = name.clone();
            let build = Box::new(move |req| ClientFrame::SkillRemove { req, name: n });
            m.ask(agent, &format!("skill {name}"), build, REQUEST_TIMEOUT).await?;
            to_value(&SkillRemoveReply { mesh: m.slug, name })
        }
        _ => Err((ErrorCode::Internal, "not a skill call".to_string())),
    }
}

/// The display name of `member_id` in mesh `mesh_id`, when the directory knows it.
fn member_name(agent: &Agent, mesh_id: &str, member_id: &str) -> Option<String> {
    agent.view().meshes.get(mesh_id)?.members.get(member_id).map(|m| m.display_name.clone())
}

async fn share(agent: &Agent, p: SkillShareParams) -> Result<Value, ApiError> {
    claudemesh_protocol::sharing::validate_skill(&p.skill).map_err(|e| (e.code, e.message))?;
    let m = Mesh::resolve(agent, p.mesh.as_deref())?;
    let name = p.skill.name.clone();
    let skill = p.skill;
    let build = Box::new(move |req| ClientFrame::SkillShare { req, skill });
    m.ask(agent, &format!("skill {name}"), build, REQUEST_TIMEOUT).await?;
    to_value(&get(agent, &m, &name).await?)
}

/// Skill `name` of mesh `m`, whole.
async fn get(agent: &Agent, m: &Mesh, name: &str) -> Result<SkillItem, ApiError> {
    let n = name.to_string();
    let build = Box::new(move |req| ClientFrame::SkillGet { req, name: n });
    match m.ask(agent, &format!("skill {name}"), build, REQUEST_TIMEOUT).await? {
        ServerFrame::Skill { skill, .. } => {
            let author_name = member_name(agent, &m.id, &skill.author);
            Ok(SkillItem { mesh: m.slug.clone(), skill, author_name })
        }
        other => Err(unexpected(&other)),
    }
}

async fn list(agent: &Agent, query: Option<String>, mesh: Option<&str>) -> Result<Value, ApiError> {
    let mut skills = Vec::new();
    for m in every_mesh(agent, mesh)? {
        let q = query.clone();
        let build = Box::new(move |req| ClientFrame::SkillList { req, query: q });
        match m.ask(agent, "skills", build, REQUEST_TIMEOUT).await {
            Ok(ServerFrame::Skills { skills: list, .. }) => {
                skills.extend(list.into_iter().map(|skill| SkillListItem {
                    mesh: m.slug.clone(),
                    author_name: member_name(agent, &m.id, &skill.author),
                    skill,
                }));
            }
            Ok(other) => return Err(unexpected(&other)),
            // With no mesh named, a mesh whose broker is out of reach does not hide the others.
            Err((ErrorCode::Unavailable, e)) if mesh.is_none() => tracing::debug!(error = %e, "skill list"),
            Err(e) => return Err(e),
        }
    }
    to_value(&SkillListReply { skills })
}
