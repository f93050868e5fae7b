//! `claudemesh up`: the first run in one command. With no mesh yet it sets up a broker on this
//! machine (run and restarted by the agent), starts the agent, creates a mesh with this user as
//! its admin, offers to add claudemesh to Claude Code, and says what to do next. Run again, it
//! changes nothing and shows the same mesh.

use std::io::{BufRead, IsTerminal, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use claudemesh_agent::local_broker::{LocalBrokerConfig, log_path};
use claudemesh_agent::{Config, Paths};
use claudemesh_protocol::local::{AgentCall, LinkState, StatusReply};
use serde_json::json;

use crate::cli::UpArgs;
use crate::out::{out, outln};

/// The address a first `up` listens on: this machine only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7900";
/// The mesh a first `up` creates.
pub const DEFAULT_MESH: &str = "local";
/// How long `up` waits for the local broker to accept connections.
const BROKER_START: Duration = Duration::from_secs(20);

pub async fn run(a: UpArgs) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let mut cfg = Config::load(&paths)?;
    let mut did: Vec<String> = Vec::new();
    let wants_broker =
        cfg.meshes.is_empty() || cfg.local_broker.is_some() || a.listen.is_some() || a.public_url.is_some();
    if wants_broker {
        configure_broker(&paths, &mut cfg, &a, &mut did)?;
    }
    let mut notes: Vec<String> = Vec::new();
    // Start the agent (it starts the broker) and wait until the broker answers.
    let mut agent = super::agent().await?;
    if let Some(b) = cfg.local_broker.clone() {
        wait_for_broker(&paths, &b).await?;
        let slug = a.mesh.clone().unwrap_or_else(|| DEFAULT_MESH.into());
        let local_url = b.local_url();
        let have =
            cfg.meshes.iter().find(|m| m.broker_url == local_url && (a.mesh.is_none() || m.slug == slug));
        match have {
            None => create_mesh(&paths, &b, &slug, a.name.as_deref(), &mut did).await?,
            Some(m) => notes.extend(name_unchanged(a.name.as_deref(), &m.slug, &m.display_name)),
        }
    }
    if !a.no_claude {
        offer_install(a.yes, &mut did, &mut notes)?;
    }
    let cfg = Config::load(&paths)?;
    let status = settled_status(&mut agent, &cfg).await?;
    if a.json {
        outln!("{}", json!({ "did": did, "notes": notes, "status": status, "config_dir": paths.dir }))?;
        return Ok(ExitCode::SUCCESS);
    }
    report(&cfg, &status, &did, &notes)?;
    // Then the dashboard, when a person is at a terminal and did not say `--no-tui`.
    if !a.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        super::tui::open().await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The agent's status once every configured mesh has a link that connected (or, after a few
/// seconds, as it is): a fresh mesh reaches the agent through its config watch.
async fn settled_status(
    agent: &mut claudemesh_agent::AgentClient,
    cfg: &Config,
) -> anyhow::Result<StatusReply> {
    let start = Instant::now();
    loop {
        let st: StatusReply = agent.request(AgentCall::Status).await?;
        let settled = cfg
            .meshes
            .iter()
            .all(|c| st.meshes.iter().any(|m| m.id == c.id && m.link == LinkState::Connected));
        if settled || start.elapsed() > Duration::from_secs(5) {
            return Ok(st);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What to say when `--name` asks for another name in a mesh that already exists: the name a
/// member enrolled with is signed into its enrollment statement, so `up` does not change it.
fn name_unchanged(asked: Option<&str>, slug: &str, current: &str) -> Option<String> {
    let asked = asked.filter(|n| *n != current)?;
    Some(format!(
        "you are already {current:?} in mesh {slug}: --name only names you in a mesh `up` creates, so \
         {asked:?} was not used. A member keeps the name it joined with (it is signed into its \
         enrollment); a session can show another: `claudemesh launch --name {}`",
        crate::claude_hooks::shell_quote(asked)
    ))
}

/// Writes (or re-enables, or updates) `local_broker` in config.json.
fn configure_broker(
    paths: &Paths,
    cfg: &mut Config,
    a: &UpArgs,
    did: &mut Vec<String>,
) -> anyhow::Result<()> {
    let existing = cfg.local_broker.clone();
    let listen = match (&a.listen, &existing) {
        (Some(l), _) => concrete_listen(l)?,
        (None, Some(b)) => b.listen.clone(),
        (None, None) => concrete_listen(DEFAULT_LISTEN)?,
    };
    let public_url = match (&a.public_url, &existing) {
        (Some(u), _) => Some(check_public_url(u)?),
        (None, Some(b)) => b.public_url.clone(),
        (None, None) => None,
    };
    let data = existing.as_ref().map(|b| b.data.clone()).unwrap_or_else(|| paths.dir.join("broker"));
    let want = LocalBrokerConfig { listen: listen.clone(), public_url, data, enabled: true };
    if existing.as_ref() == Some(&want) {
        return Ok(());
    }
    if existing.as_ref().is_none_or(|b| b.listen != want.listen) && !port_free(&want.listen) {
        bail!(
            "{} is already in use (another broker, or another program); choose a free address with \
             `claudemesh up --listen 127.0.0.1:PORT`",
            want.listen
        );
    }
    if let Some(old) = &existing
        && old.local_url() != want.local_url()
    {
        // Meshes on this broker follow it to its new address.
        let (from, to) = (old.local_url(), want.local_url());
        for m in cfg.meshes.iter_mut().filter(|m| m.broker_url == from) {
            m.broker_url.clone_from(&to);
        }
    }
    did.push(match &existing {
        None => format!(
            "set up a broker on this machine: listening on {}, data in {}",
            want.listen,
            want.data.display()
        ),
        Some(b) if !b.enabled => format!("started the broker on this machine again ({})", want.listen),
        Some(_) => format!("changed the broker on this machine: listening on {}", want.listen),
    });
    cfg.local_broker = Some(want);
    cfg.save(paths)?;
    Ok(())
}

/// `HOST:0` becomes a free port now, so the URL stays the same across restarts.
fn concrete_listen(listen: &str) -> anyhow::Result<String> {
    let addr: std::net::SocketAddr = listen.parse().with_context(|| {
        format!("--listen {listen} is not an address like 127.0.0.1:7900 or 0.0.0.0:7900")
    })?;
    if addr.port() != 0 {
        return Ok(addr.to_string());
    }
    let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on {listen}"))?;
    Ok(l.local_addr()?.to_string())
}

fn port_free(listen: &str) -> bool {
    TcpListener::bind(listen).is_ok()
}

/// `--public-url`, checked as every broker URL a person gives (`crate::broker_url`).
fn check_public_url(u: &str) -> anyhow::Result<String> {
    let u = u.trim();
    crate::broker_url::check(u).context("--public-url")?;
    Ok(u.to_string())
}

/// Waits until the broker accepts connections and has written its admin token.
async fn wait_for_broker(paths: &Paths, b: &LocalBrokerConfig) -> anyhow::Result<()> {
    let addr = b.local_addr();
    let start = Instant::now();
    while start.elapsed() < BROKER_START {
        if b.admin_token_file().exists() && tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = log_path(paths);
    bail!(
        "the broker on this machine did not start within {} s ({}); its log {} ends with:\n{}",
        BROKER_START.as_secs(),
        b.listen,
        log.display(),
        tail(&log, 8)
    )
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

async fn create_mesh(
    paths: &Paths,
    b: &LocalBrokerConfig,
    slug: &str,
    name: Option<&str>,
    did: &mut Vec<String>,
) -> anyhow::Result<()> {
    claudemesh_protocol::names::validate_mesh_slug(slug).context("choose another --mesh")?;
    let name = name.map(str::to_string).unwrap_or_else(|| super::join::default_name(paths));
    claudemesh_protocol::names::validate_display_name(&name).context("choose another --name")?;
    let token = b.admin_token().with_context(|| {
        format!("cannot read the broker's admin token {}", b.admin_token_file().display())
    })?;
    // The broker `up` runs is on this machine: its listen address is local even when it is not
    // a loopback address, so plaintext to it never leaves the host.
    let url = b.local_url();
    let local_plaintext = claudemesh_agent::transport::check(&url, false).is_err();
    let joined = claudemesh_agent::enroll::create_mesh(paths, &url, slug, &name, &token, local_plaintext)
        .await
        .with_context(|| format!("cannot create mesh {slug} on the broker on this machine"))?;
    did.push(format!("created mesh {} with you ({name}) as its admin", joined.mesh.slug));
    Ok(())
}

/// Adds claudemesh to Claude Code when `claude` is installed, asking first unless `yes`.
fn offer_install(yes: bool, did: &mut Vec<String>, notes: &mut Vec<String>) -> anyhow::Result<()> {
    if super::doctor::on_path("claude").is_none() {
        notes.push("Claude Code (`claude`) is not on PATH: install it, then run `claudemesh install`".into());
        return Ok(());
    }
    if claude_already_set_up() {
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            notes.push("did not add claudemesh to Claude Code (no terminal to ask; pass --yes, or run `claudemesh install`)".into());
            return Ok(());
        }
        out!(
            "Add claudemesh to Claude Code (an MCP server in ~/.claude.json, hooks in ~/.claude/settings.json)? [Y/n] "
        )?;
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if matches!(line.trim().to_ascii_lowercase().as_str(), "n" | "no") {
            notes.push("did not add claudemesh to Claude Code (`claudemesh install` does it later)".into());
            return Ok(());
        }
    }
    super::install::run(false)?;
    did.push("added claudemesh to Claude Code (MCP server and hooks)".into());
    Ok(())
}

/// Whether Claude Code already has our MCP entry and every one of our hooks.
fn claude_already_set_up() -> bool {
    let has_mcp = crate::claude_settings::claude_json()
        .and_then(|p| crate::claude_settings::read_object(&p))
        .ok()
        .flatten()
        .is_some_and(|root| {
            root.get("mcpServers").and_then(|m| m.get(super::install::SERVER_NAME)).is_some()
        });
    let has_hooks = crate::claude_settings::settings_json()
        .and_then(|p| crate::claude_settings::read_object(&p))
        .ok()
        .flatten()
        .is_some_and(|root| crate::claude_hooks::missing(&root).is_empty());
    has_mcp && has_hooks
}

/// What `up` did, where things are, and what to do next.
fn report(cfg: &Config, status: &StatusReply, did: &[String], notes: &[String]) -> anyhow::Result<()> {
    if did.is_empty() {
        outln!("claudemesh is up; nothing needed changing")?;
    }
    for d in did {
        outln!("- {d}")?;
    }
    for n in notes {
        outln!("note: {n}")?;
    }
    if let Some(b) = &status.local_broker {
        outln!(
            "broker: {} on {}{}",
            b.state,
            b.listen,
            b.public_url
                .as_deref()
                .map(|p| format!(", teammates use {p}"))
                .unwrap_or_else(|| ", this machine only".into()),
        )?;
    }
    for m in &status.meshes {
        outln!(
            "mesh {}: {} {} (you are {} {})",
            m.slug,
            super::word(&m.link),
            m.broker_url,
            m.role.as_str(),
            m.display_name,
        )?;
    }
    outln!("next:")?;
    outln!("  claudemesh launch                  start Claude Code as a session on the mesh")?;
    if cfg.meshes.iter().any(|m| m.role == claudemesh_protocol::frames::Role::Admin) {
        outln!("  claudemesh invite create --uses 5  make a link for teammates to join")?;
    }
    if let Some(b) = cfg.local_broker.as_ref().filter(|b| b.public_url.is_none()) {
        let port = b.listen.rsplit_once(':').map_or("7900", |(_, p)| p);
        outln!(
            "  (the broker listens on this machine only; for a team on your network run \
             `claudemesh up --listen 0.0.0.0:{port} --public-url ws://HOST:{port}/ws`)"
        )?;
    }
    if cfg.local_broker.is_some() {
        outln!("  claudemesh agent install           start the agent and this broker at login")?;
    }
    outln!("  claudemesh down                    stop the agent and the broker (data is kept)")?;
    Ok(())
}
