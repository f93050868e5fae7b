//! `claudemesh skill share NAME --file SKILL.md|DIR [--description D] [--tag T]…`: share a
//! skill with the mesh (or replace it, as its author or an admin). The description defaults to
//! SKILL.md's front-matter `description:`; the whole is checked against the protocol's limits
//! before anything is sent (see [`super::skill_files`] for what a directory may hold).

use std::process::ExitCode;

use claudemesh_protocol::frames::{ErrorCode, Skill};
use claudemesh_protocol::local::{AgentCall, SkillItem, SkillShareParams};
use claudemesh_protocol::text;

use super::skill_files::{front_matter_description, load};
use crate::cli::SkillShareArgs;
use crate::out::outln;

pub async fn run(a: SkillShareArgs) -> anyhow::Result<ExitCode> {
    claudemesh_protocol::names::validate_skill_name(&a.name)
        .map_err(|e| anyhow::anyhow!("{e}; e.g. code-review"))?;
    let loaded = load(&a.file)?;
    let description =
        a.description.clone().or_else(|| front_matter_description(&loaded.instructions)).unwrap_or_default();
    if description.trim().is_empty() {
        eprintln!(
            "note: {} has no description (`skill list` and Claude Code show it blank); add `description:` to \
             SKILL.md's front matter (between `---` lines) or pass --description",
            text::name(&a.name)
        );
    }
    if a.file.is_file() && a.file.file_name().is_some_and(|n| n != "SKILL.md") {
        eprintln!(
            "note: sharing {} as the skill's SKILL.md (Claude Code's name for a skill's instructions)",
            a.file.display()
        );
    }
    let skill = Skill {
        name: a.name.clone(),
        description,
        instructions: loaded.instructions,
        tags: a.tags.clone(),
        files: loaded.files,
    };
    claudemesh_protocol::sharing::validate_skill(&skill)
        .map_err(|e| anyhow::anyhow!("{e}; nothing was shared"))?;
    let files = skill.files.len();
    let p = SkillShareParams { mesh: a.mesh.clone(), skill };
    let mut c = super::agent().await?;
    let r: SkillItem = c.request(AgentCall::SkillShare(Box::new(p))).await.map_err(|e| {
        super::advise(e, |code| match code {
            ErrorCode::Forbidden => Some(format!(
                "another member shared {} first: only its author or a mesh admin may replace it; choose another name",
                a.name
            )),
            ErrorCode::Limit => Some("remove skills no longer used (`claudemesh skill list`)".into()),
            _ => None,
        })
    })?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        let more = match files {
            0 => String::new(),
            1 => " with 1 file".into(),
            n => format!(" with {n} files"),
        };
        outln!(
            "shared skill {}{more} in {}; `claudemesh mcp` offers it to Claude Code as a prompt",
            text::name(&r.skill.skill.name),
            text::name(&r.mesh)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
