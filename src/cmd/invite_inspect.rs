//! `claudemesh invite inspect <link>`: verify an invite offline and show what it grants: its id
//! (what `invite revoke` takes), role, groups, uses, and expiry as a date.

use std::process::ExitCode;

use anyhow::Context;
use claudemesh_protocol::frames::GroupRole;
use claudemesh_protocol::invite::parse_invite;

use crate::cli::InviteInspectArgs;
use crate::out::outln;

/// A granted group as the CLI writes it: `ops` or `ops:lead`.
pub fn group_text(g: &GroupRole) -> String {
    match &g.role {
        Some(r) => format!("{}:{r}", g.name),
        None => g.name.clone(),
    }
}

/// Granted groups as `name` or `name:role`, comma-separated; `-` for none.
pub fn groups_text(groups: &[GroupRole]) -> String {
    if groups.is_empty() {
        return "-".into();
    }
    groups.iter().map(group_text).collect::<Vec<_>>().join(", ")
}

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
        crate::out::json(&out)?;
    } else {
        outln!("mesh:       {} ({})", p.mesh_slug, p.mesh_id)?;
        outln!("invite id:  {} (`claudemesh invite revoke {}` stops it)", p.invite_id, p.invite_id)?;
        outln!("broker:     {}", p.broker_url)?;
        outln!("role:       {}", p.role.as_str())?;
        outln!("groups:     {}", groups_text(&p.groups))?;
        outln!("max uses:   {}", p.max_uses)?;
        let expiry = crate::when::date_from_now(p.expires_at, now);
        outln!("expires:    {expiry}{}", if expired { ", EXPIRED" } else { "" })?;
        outln!("issuer key: {}", p.issuer_pubkey)?;
        outln!("signature:  valid")?;
    }
    if expired {
        eprintln!("error: this invite has expired; ask an admin of {} for a new one", p.mesh_slug);
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
