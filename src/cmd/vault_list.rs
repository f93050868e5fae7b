//! `claudemesh vault list`: this member's vault entries in each mesh (or `--mesh`), as a table
//! (KEY MESH KIND MOUNT DESCRIPTION UPDATED). Metadata only: the agent never hands out a value,
//! and a member sees only its own entries.

use std::process::ExitCode;

use claudemesh_protocol::frames::VaultKind;
use claudemesh_protocol::local::{AgentCall, VaultListReply};
use claudemesh_protocol::text;

use crate::cli::MeshArgs;
use crate::out::outln;

/// Descriptions are cut to this many characters in the table (`--json` has them whole).
const DESCRIPTION_CHARS: usize = 40;

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let r: VaultListReply = c.request(AgentCall::VaultList { mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.entries.is_empty() {
        outln!("no vault entries; add one with `claudemesh vault set KEY -` (the value from stdin)")?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{:<28} {:<14} {:<5} {:<24} {:<40} UPDATED", "KEY", "MESH", "KIND", "MOUNT", "DESCRIPTION")?;
    for item in &r.entries {
        let e = &item.entry;
        let mount = match e.kind {
            VaultKind::File => e.mount_path.as_deref().unwrap_or(&e.key).to_string(),
            VaultKind::Env => "-".into(),
        };
        outln!(
            "{:<28} {:<14} {:<5} {:<24} {:<40} {}",
            text::name(&e.key),
            text::name(&item.mesh),
            super::word(&e.kind),
            text::name(&mount),
            text::cap(&text::one_line(e.description.as_deref().unwrap_or("")), DESCRIPTION_CHARS),
            crate::when::message_time(e.updated_at)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
