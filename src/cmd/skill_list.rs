//! `claudemesh skill list [QUERY…]`: the skills shared in your meshes (or `--mesh`), those whose
//! name, description or tags hold every word of QUERY, as a table (NAME MESH DESCRIPTION TAGS
//! AUTHOR UPDATED). Everything in it was written by a member: shown through
//! [`claudemesh_protocol::text`], one line each.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, SkillListItem, SkillListReply};
use claudemesh_protocol::text;

use crate::cli::SkillListArgs;
use crate::out::outln;

/// Descriptions and tags are cut to these many characters in the table (`--json` has them whole).
const DESCRIPTION_CHARS: usize = 48;
const TAGS_CHARS: usize = 24;

/// The author as lists show it: the directory's name and short id, or the short id alone.
pub fn author(name: Option<&str>, member_id: &str) -> String {
    match name {
        Some(n) => text::sender(n, member_id, None),
        None => text::short_member_id(member_id).to_string(),
    }
}

pub async fn run(a: SkillListArgs) -> anyhow::Result<ExitCode> {
    let query = Some(a.query.join(" ")).filter(|q| !q.trim().is_empty());
    let mut c = super::agent().await?;
    let r: SkillListReply = c.request(AgentCall::SkillList { query: query.clone(), mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.skills.is_empty() {
        match query {
            Some(q) => {
                outln!("no skill matches {:?}; `claudemesh skill list` shows them all", text::one_line(&q))?
            }
            None => {
                outln!("no skills shared yet; share one with `claudemesh skill share NAME --file SKILL.md`")?
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{:<24} {:<14} {:<48} {:<24} {:<24} UPDATED", "NAME", "MESH", "DESCRIPTION", "TAGS", "AUTHOR")?;
    for s in &r.skills {
        outln!("{}", row(s))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn row(s: &SkillListItem) -> String {
    let k = &s.skill;
    format!(
        "{:<24} {:<14} {:<48} {:<24} {:<24} {}",
        text::name(&k.name),
        text::name(&s.mesh),
        text::cap(&text::one_line(&k.description), DESCRIPTION_CHARS),
        text::cap(&text::one_line(&k.tags.join(",")), TAGS_CHARS),
        author(s.author_name.as_deref(), &k.author),
        crate::when::message_time(k.updated_at)
    )
}
