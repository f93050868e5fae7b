//! `claudemesh mesh create <slug> --broker URL`: create a mesh with the broker admin token and
//! become its first admin. The token comes from a file or the environment, never argv.

use std::process::ExitCode;

use anyhow::Context;
use claudemesh_agent::enroll::JoinError;

use crate::broker_url::{self, Source};
use crate::cli::MeshCreateArgs;
use crate::out::outln;

fn admin_token(a: &MeshCreateArgs) -> anyhow::Result<String> {
    if let Some(f) = &a.admin_token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the admin token file {}", f.display()))?;
        return Ok(t.trim().to_string());
    }
    if let Ok(t) = std::env::var("CLAUDEMESH_ADMIN_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    // The broker `claudemesh up` runs on this machine: its token is ours to read.
    let own = claudemesh_agent::Config::load(&super::paths()).ok().and_then(|c| c.local_broker).filter(|b| {
        let url = a.broker.trim().trim_end_matches('/');
        url == b.local_url() || b.public_url.as_deref().is_some_and(|p| p.trim_end_matches('/') == url)
    });
    if let Some(b) = own {
        return b.admin_token().with_context(|| {
            format!(
                "cannot read the admin token of the broker on this machine, {}",
                b.admin_token_file().display()
            )
        });
    }
    anyhow::bail!(
        "creating a mesh needs the broker admin token: pass --admin-token-file <file> (the broker writes \
         <data>/admin.token) or set CLAUDEMESH_ADMIN_TOKEN; for the broker `claudemesh up` runs here, \
         `claudemesh up --mesh {}` creates it",
        a.slug
    )
}

/// Why the mesh was not created, said for this verb (the agent's own wording is about joining).
async fn failure(a: &MeshCreateArgs, e: JoinError) -> anyhow::Error {
    match e {
        // Decided by the broker's stable error codes.
        JoinError::Refused { code, message } => match code.as_str() {
            "unauthorized" => anyhow::anyhow!(
                "the broker refused the admin token: it is not the one the broker at {} uses; check \
                 --admin-token-file (on the broker host: <data>/admin.token) or $CLAUDEMESH_ADMIN_TOKEN",
                a.broker
            ),
            "conflict" => {
                anyhow::anyhow!("a mesh named {} already exists on that broker; pick another name", a.slug)
            }
            _ => anyhow::anyhow!("the broker refused to create mesh {} ({code}): {message}", a.slug),
        },
        e => broker_url::explain(&a.broker, Source::Flag, e).await,
    }
}

pub async fn run(a: MeshCreateArgs) -> anyhow::Result<ExitCode> {
    claudemesh_protocol::names::validate_mesh_slug(&a.slug)?;
    broker_url::check(&a.broker)?;
    let token = admin_token(&a)?;
    let paths = super::paths();
    let name = a.name.clone().unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "admin".into()));
    let joined = match claudemesh_agent::enroll::create_mesh(
        &paths,
        &a.broker,
        &a.slug,
        &name,
        &token,
        a.insecure_transport,
    )
    .await
    {
        Ok(joined) => joined,
        Err(e) => return Err(failure(&a, e).await),
    };
    let m = joined.mesh;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({"mesh": m.slug, "mesh_id": m.id, "member_id": m.member_id, "role": "admin"})
        )?;
    } else {
        outln!("created mesh {} on {}; you are its admin ({})", m.slug, m.broker_url, m.member_id)?;
        // Name the mesh: with this one the user may well be in several.
        outln!("next: `claudemesh invite create --mesh {} --uses 5` and share the link", m.slug)?;
    }
    Ok(ExitCode::SUCCESS)
}
