//! `claudemesh list`: the meshes in config.json and your identity in each.

use std::process::ExitCode;

use crate::out::outln;
use claudemesh_agent::Config;

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&super::paths())?;
    if json {
        let v: Vec<_> = cfg
            .meshes
            .iter()
            .map(|m| serde_json::json!({"slug": m.slug, "id": m.id, "broker_url": m.broker_url, "member_id": m.member_id, "role": m.role, "display_name": m.display_name}))
            .collect();
        crate::out::json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if cfg.meshes.is_empty() {
        outln!("no mesh joined yet: `claudemesh join <invite>`")?;
    }
    for m in &cfg.meshes {
        outln!("{:<16} {:<8} {:<20} {}", m.slug, m.role.as_str(), m.display_name, m.broker_url)?;
    }
    Ok(ExitCode::SUCCESS)
}
