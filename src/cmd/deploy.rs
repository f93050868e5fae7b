//! `claudemesh deploy NAME (--npx PKG[@VER] | --uvx PKG[==VER] | --git URL [--rev REV] |
//! --bundle DIR|ZIP | --command -- CMD ARGS…)`: deploy a shared MCP server to the mesh's
//! broker and wait until it runs (or failed: its error and log tail, exit 1). Env values are
//! sent, never printed.

use std::process::ExitCode;

use claudemesh_protocol::frames::ServiceStatus;
use claudemesh_protocol::local::{AgentCall, DeployParams, DeployReply, LocalSource};
use claudemesh_protocol::text;

use super::service_args::{npx, parse_env, parse_scope, uvx};
use crate::cli::DeployArgs;
use crate::out::outln;

fn source(a: &DeployArgs) -> anyhow::Result<LocalSource> {
    Ok(if let Some(p) = &a.npx {
        npx(p)
    } else if let Some(p) = &a.uvx {
        uvx(p)
    } else if let Some(url) = &a.git {
        LocalSource::Git { url: url.clone(), rev: a.rev.clone() }
    } else if let Some(path) = &a.bundle {
        LocalSource::Bundle { path: std::path::absolute(path)? }
    } else if a.command {
        if a.argv.is_empty() {
            anyhow::bail!(
                "--command needs the command after `--`: claudemesh deploy NAME --command -- CMD ARGS…"
            );
        }
        LocalSource::Command { argv: a.argv.clone() }
    } else {
        anyhow::bail!("say where the service comes from: --npx, --uvx, --git, --bundle or --command");
    })
}

/// The broker admin token a `--command` deploy needs: from `--admin-token-file` or
/// `$CLAUDEMESH_ADMIN_TOKEN`, never from argv.
fn admin_token(a: &DeployArgs) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Some(f) = &a.admin_token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the admin token file {}", f.display()))?;
        return Ok(t.trim().to_string());
    }
    match std::env::var("CLAUDEMESH_ADMIN_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => anyhow::bail!(
            "--command runs an executable on the broker host, which only its operator may do: pass --admin-token-file FILE (on the broker host: <data>/admin.token; under `claudemesh up`: $CLAUDEMESH_CONFIG_DIR/broker/admin.token, default ~/.claudemesh/broker/admin.token) or set CLAUDEMESH_ADMIN_TOKEN"
        ),
    }
}

pub async fn run(a: DeployArgs) -> anyhow::Result<ExitCode> {
    let p = DeployParams {
        mesh: a.mesh.clone(),
        name: a.name.clone(),
        source: source(&a)?,
        description: a.description.clone().unwrap_or_default(),
        args: a.args.clone(),
        entry: a.entry.as_deref().map(|e| e.split_whitespace().map(str::to_string).collect()),
        env: parse_env(&a.env)?,
        scope: a.scope.as_deref().map(parse_scope).transpose()?,
        admin_token: if a.command {
            Some(claudemesh_protocol::frames::Secret(admin_token(&a)?))
        } else {
            None
        },
    };
    if !a.json {
        eprintln!("deploying {} (this can take minutes while packages install)…", a.name);
    }
    let mut c = super::agent().await?;
    let r: DeployReply = c.request(AgentCall::ServiceDeploy(Box::new(p))).await?;
    print(&r, a.json)
}

/// Prints a deploy or update reply; a service that did not come up is exit 1.
pub fn print(r: &DeployReply, json: bool) -> anyhow::Result<ExitCode> {
    let ok = r.status == ServiceStatus::Running;
    if json {
        outln!("{}", serde_json::to_string(r)?)?;
    } else if ok {
        let tools: Vec<String> = r.tools.iter().map(|t| text::name(&t.name)).collect();
        outln!(
            "{} on {}: running, {} tool{}: {}",
            text::name(&r.name),
            text::name(&r.mesh),
            tools.len(),
            if tools.len() == 1 { "" } else { "s" },
            tools.join(", ")
        )?;
    } else {
        eprintln!(
            "error: {} on {} is {}: {}",
            text::name(&r.name),
            text::name(&r.mesh),
            super::word(&r.status),
            text::terminal(r.error.as_deref().unwrap_or("no reason given"))
        );
        for l in &r.log_tail {
            eprintln!("  | {}", text::terminal(l));
        }
        eprintln!("Fix the cause and deploy again; `claudemesh logs {}` shows its log.", text::name(&r.name));
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
