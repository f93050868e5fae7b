//! `claudemesh invite create`: the agent signs an invite with your admin key and registers it.

use std::process::ExitCode;

use anyhow::Context;
use claudemesh_protocol::frames::{GroupRole, Role};
use claudemesh_protocol::local::{AgentCall, InviteCreate};

use crate::cli::InviteCreateArgs;

/// `30m`, `24h`, `7d`, `90s` → seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => anyhow::bail!("{s:?}: use s, m, h, d or w"),
    };
    Ok(n * mult)
}

/// `--group` values, `name` or `name:role`, checked.
pub fn parse_groups(groups: &[String]) -> anyhow::Result<Vec<GroupRole>> {
    groups
        .iter()
        .map(|g| {
            let (name, role) = match g.split_once(':') {
                Some((n, r)) => (n, Some(r.to_string())),
                None => (g.as_str(), None),
            };
            claudemesh_protocol::names::validate_group_name(name)?;
            Ok(GroupRole { name: name.into(), role })
        })
        .collect()
}

pub async fn run(a: InviteCreateArgs) -> anyhow::Result<ExitCode> {
    let groups = parse_groups(&a.groups)?;
    let role = if a.role == "admin" { Role::Admin } else { Role::Member };
    let mut c = super::agent().await?;
    let r = c
        .call(AgentCall::InviteCreate(InviteCreate {
            mesh: a.mesh,
            role,
            groups,
            max_uses: a.uses,
            expires_in_secs: parse_duration(&a.expires)?,
            broker_url: a.broker_url,
        }))
        .await?;
    // Also with --json: a warning belongs on stderr, where scripts do not parse it.
    if let Some(w) = r["warning"].as_str() {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!("{r}");
    } else {
        println!("{}", r["url"].as_str().unwrap_or(""));
        eprintln!(
            "invite {} for {}: {} use(s), role {}, expires at {} (unix); share the link, it holds no secret",
            r["invite_id"].as_str().unwrap_or("?"),
            r["mesh"].as_str().unwrap_or("?"),
            r["max_uses"],
            r["role"].as_str().unwrap_or("?"),
            r["expires_at"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert_eq!(parse_duration("2").unwrap(), 7200);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
