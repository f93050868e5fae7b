//! `claudemesh leave <slug>`: remove the mesh and its key from config.json after confirmation;
//! the agent drops the link through its config watch.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use claudemesh_agent::Config;

use crate::cli::LeaveArgs;
use crate::out::{out, outln};

pub fn run(a: LeaveArgs) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let mut cfg = Config::load(&paths)?;
    let Some(pos) = cfg.meshes.iter().position(|m| m.slug == a.slug || m.id == a.slug) else {
        let known: Vec<&str> = cfg.meshes.iter().map(|m| m.slug.as_str()).collect();
        anyhow::bail!(
            "not a member of {}; joined: {}",
            a.slug,
            if known.is_empty() { "none".into() } else { known.join(", ") }
        );
    };
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("leaving deletes your key for {}; pass --yes to confirm", a.slug);
        }
        out!(
            "Leave {} and delete your key for it? You will need a new invite to come back. Type the slug to confirm: ",
            a.slug
        )?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != cfg.meshes[pos].slug {
            eprintln!("not confirmed; nothing changed");
            return Ok(ExitCode::from(1));
        }
    }
    let m = cfg.meshes.remove(pos);
    cfg.save(&paths)?;
    if a.json {
        outln!("{}", serde_json::json!({"left": m.slug}))?;
    } else {
        outln!("left {}; its key was deleted", m.slug)?;
    }
    Ok(ExitCode::SUCCESS)
}
