//! `claudemesh invite inspect <link>`: verify an invite offline and show what it grants.

use std::process::ExitCode;

use anyhow::Context;
use claudemesh_protocol::invite::parse_invite;

use crate::cli::InviteInspectArgs;
use crate::out::outln;

pub fn run(args: &InviteInspectArgs) -> anyhow::Result<ExitCode> {
    let invite = parse_invite(&args.link).context("this invite cannot be used")?;
    let p = &invite.payload;
    let now = super::now_unix();
    let expired = invite.check_expiry(now).is_err();
    if args.json {
        let out = serde_json::json!({
            "valid_signature": true,
            "expired": expired,
            "payload": p,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        outln!("mesh:       {} ({})", p.mesh_slug, p.mesh_id)?;
        outln!("broker:     {}", p.broker_url)?;
        outln!("role:       {}", p.role.as_str())?;
        let groups: Vec<String> = p
            .groups
            .iter()
            .map(|g| match &g.role {
                Some(r) => format!("{}:{r}", g.name),
                None => g.name.clone(),
            })
            .collect();
        outln!("groups:     {}", if groups.is_empty() { "-".into() } else { groups.join(", ") })?;
        outln!("max uses:   {}", p.max_uses)?;
        let left = p.expires_at.saturating_sub(now);
        outln!(
            "expires:    {} ({})",
            p.expires_at,
            if expired {
                "EXPIRED".to_string()
            } else {
                format!("in {}h {}m", left / 3600, (left % 3600) / 60)
            }
        )?;
        outln!("issuer key: {}", p.issuer_pubkey)?;
        outln!("signature:  valid")?;
    }
    if expired {
        eprintln!("error: this invite has expired; ask an admin of {} for a new one", p.mesh_slug);
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
