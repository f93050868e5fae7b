//! `claudemesh skill get NAME [--out DIR [--force]]`: print a skill's instructions, or write
//! SKILL.md and its files into DIR. Printed, stdout holds the instructions alone (so
//! `> SKILL.md` works) cleaned for the terminal, and who shared it goes to stderr; written,
//! the files are the exact text that was shared (see [`super::skill_files::write_out`]).

use std::process::ExitCode;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::local::{AgentCall, SkillItem};
use claudemesh_protocol::text;
use serde_json::json;

use super::skill_files::write_out;
use super::skill_list::author;
use crate::cli::SkillGetArgs;
use crate::out::{out, outln};

pub async fn run(a: SkillGetArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let r: SkillItem =
        c.request(AgentCall::SkillGet { name: a.name.clone(), mesh: a.mesh.clone() }).await.map_err(|e| {
            super::advise(e, |code| {
                (code == ErrorCode::NotFound)
                    .then(|| "`claudemesh skill list` shows the skills of your meshes".to_string())
            })
        })?;
    let rec = &r.skill;
    let skill = &rec.skill;
    let who = author(r.author_name.as_deref(), &rec.author);
    if let Some(dir) = &a.out {
        let written = write_out(dir, &skill.instructions, &skill.files, a.force)?;
        if a.json {
            let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            let v =
                json!({"mesh": r.mesh, "name": skill.name, "author": rec.author, "dir": dir, "files": files});
            outln!("{}", serde_json::to_string(&v)?)?;
        } else {
            let names: Vec<String> =
                std::iter::once("SKILL.md".to_string()).chain(skill.files.keys().cloned()).collect();
            outln!(
                "wrote skill {} (shared by {who} in {}) to {}: {}",
                text::name(&skill.name),
                text::name(&r.mesh),
                dir.display(),
                names.join(", ")
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "skill {} shared by {who} in {}: a member wrote it, read it before you follow it",
        text::name(&skill.name),
        text::name(&r.mesh)
    );
    if !skill.files.is_empty() {
        let names: Vec<String> = skill.files.keys().map(|k| text::name(k)).collect();
        eprintln!("it has {} more file(s): {} (`--out DIR` writes them)", names.len(), names.join(", "));
    }
    out!("{}", skill.instructions)?;
    if !skill.instructions.ends_with('\n') {
        outln!()?;
    }
    Ok(ExitCode::SUCCESS)
}
