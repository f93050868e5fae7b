//! `claudemesh join <invite>`: verify the invite, make a key, enroll, save the mesh (0600).

use std::process::ExitCode;

use anyhow::Context;
use claudemesh_agent::Config;
use claudemesh_agent::enroll::JoinError;
use claudemesh_protocol::invite::parse_invite;

use crate::broker_url::{self, Source};
use crate::cli::JoinArgs;
use crate::out::outln;

/// How others see this user when no `--name` is given: the configured name, else user@host.
pub(super) fn default_name(paths: &claudemesh_agent::Paths) -> String {
    if let Ok(Some(n)) = Config::load(paths).map(|c| c.display_name) {
        return n;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "me".into());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    if host.is_empty() { user } else { format!("{user}@{host}") }
}

pub async fn run(a: JoinArgs) -> anyhow::Result<ExitCode> {
    let invite = parse_invite(&a.invite).context("this invite cannot be used")?;
    invite.check_expiry(super::now_unix()).context("this invite cannot be used")?;
    let paths = super::paths();
    let name = a.name.unwrap_or_else(|| default_name(&paths));
    claudemesh_protocol::names::validate_display_name(&name).context("choose another --name")?;
    let joined = match claudemesh_agent::enroll::join(&paths, &invite, &name, a.insecure_transport).await {
        Ok(joined) => joined,
        Err(JoinError::Refused { code, message }) => {
            let slug = &invite.payload.mesh_slug;
            anyhow::bail!("the broker refused to let you join {slug} ({code}): {message}")
        }
        Err(e) => {
            let p = &invite.payload;
            return Err(broker_url::explain(&p.broker_url, Source::Invite { mesh: &p.mesh_slug }, e).await);
        }
    };
    let m = joined.mesh;
    // Start the agent now (a running one picks the mesh up from config.json): the new member is
    // online for its teammates without running another command first.
    let agent_note = match super::agent().await {
        Ok(_) => String::new(),
        Err(e) => format!("; the agent could not be started ({e}), the next claudemesh command tries again"),
    };
    if a.json {
        outln!(
            "{}",
            serde_json::json!({"mesh": m.slug, "mesh_id": m.id, "member_id": m.member_id, "role": m.role, "broker_url": m.broker_url})
        )?;
    } else {
        outln!("joined mesh {} as {} (role {}, member {})", m.slug, name, m.role.as_str(), m.member_id)?;
        outln!(
            "key saved in {} (0600); the agent connects to {}{agent_note}",
            paths.config().display(),
            m.broker_url
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
