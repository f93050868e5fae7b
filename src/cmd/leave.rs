//! `claudemesh leave <slug>`: after confirmation, the agent tells the broker (which removes the
//! member, so no ghost stays behind), then deletes the key from config.json and drops the
//! link. `--local-only` skips the broker, for one that is gone or a copied identity.

use std::process::ExitCode;

use claudemesh_agent::Config;
use claudemesh_protocol::local::{AgentCall, LeaveReply};

use crate::cli::LeaveArgs;
use crate::out::outln;

pub async fn run(a: LeaveArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&super::paths())?;
    let Some(mesh) = cfg.mesh(&a.slug) else {
        let known: Vec<&str> = cfg.meshes.iter().map(|m| m.slug.as_str()).collect();
        anyhow::bail!(
            "not a member of {}; joined: {}",
            a.slug,
            if known.is_empty() { "none".into() } else { known.join(", ") }
        );
    };
    let slug = mesh.slug.clone();
    if !a.yes {
        let question = format!(
            "Leave {slug} and delete your key for it? You will need a new invite to come back. Type the \
             slug to confirm:"
        );
        if !super::confirm(&question, &slug, &format!("leaving deletes your key for {slug}"))? {
            eprintln!("not confirmed; nothing changed");
            return Ok(ExitCode::from(1));
        }
    }
    let mut c = super::agent().await?;
    let r: LeaveReply = c.request(AgentCall::Leave { mesh: slug.clone(), local_only: a.local_only }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else if r.broker_told {
        outln!("left {slug}; the broker removed you and your key was deleted")?;
    } else if a.local_only {
        outln!(
            "forgot {slug} on this machine; its broker was not told. If this identity is not in use on \
             another machine either, an admin can remove it there (`claudemesh member remove NAME`); if it \
             is (a copied config dir), leave it be: removing it would cut off that machine too"
        )?;
    } else {
        outln!("left {slug}; the broker had already removed you, and your key was deleted")?;
    }
    Ok(ExitCode::SUCCESS)
}
