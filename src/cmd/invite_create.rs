//! `claudemesh invite create`: the agent signs an invite with your admin key and registers it.

use std::process::ExitCode;

use claudemesh_protocol::frames::{GroupRole, Role};
use claudemesh_protocol::local::{AgentCall, InviteCreate, InviteReply};

use crate::cli::InviteCreateArgs;
use crate::out::outln;

/// The longest an invite may last: a (leap) year.
const MAX_LIFETIME_SECS: u64 = 366 * 86_400;

/// `--expires`: a lifetime with units (`30m`, `24h`, `7d`, `1h30m`, `2w`; humantime's syntax) →
/// seconds, between a minute and a year.
pub fn parse_expires(s: &str) -> anyhow::Result<u64> {
    use humantime::DurationError;
    let secs = match humantime::parse_duration(s.trim()) {
        Ok(d) => d.as_secs(),
        Err(DurationError::UnknownUnit { unit, .. }) if unit.is_empty() => {
            anyhow::bail!("--expires {s}: give a unit: 30m, 24h, 7d")
        }
        // Too many digits for any clock: longer than the longest allowed.
        Err(DurationError::NumberOverflow) => u64::MAX,
        Err(e) => anyhow::bail!("--expires {s} is not a lifetime like 30m, 24h, 7d or 1h30m ({e})"),
    };
    if secs < 60 {
        anyhow::bail!("--expires {s}: an invite must last at least a minute (e.g. 30m, 24h, 7d)");
    }
    if secs > MAX_LIFETIME_SECS {
        anyhow::bail!(
            "--expires {s}: an invite lasts at most a year (366d); create a new one when it runs out"
        );
    }
    Ok(secs)
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
    // Checked before the agent is asked anything.
    let expires_in_secs = parse_expires(&a.expires)?;
    let groups = parse_groups(&a.groups)?;
    let role = if a.role == "admin" { Role::Admin } else { Role::Member };
    let mut c = super::agent().await?;
    let r: InviteReply = c
        .request(AgentCall::InviteCreate(InviteCreate {
            mesh: a.mesh,
            role,
            groups,
            max_uses: a.uses,
            expires_in_secs,
            broker_url: a.broker_url,
        }))
        .await?;
    // Also with --json: a warning belongs on stderr, where scripts do not parse it.
    if let Some(w) = &r.warning {
        eprintln!("warning: {w}");
    }
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!("{}", r.url)?;
        eprintln!(
            "invite {} for {}: {} use(s), role {}, expires {}; share the link, it holds no secret",
            r.invite_id,
            r.mesh,
            r.max_uses,
            r.role.as_str(),
            crate::when::date_from_now(r.expires_at, super::now_unix())
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_expires;

    #[test]
    fn lifetimes_with_units() {
        for (s, secs) in [
            ("30m", 1800),
            ("24h", 86_400),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            (" 90s ", 90),
            ("366d", 366 * 86_400),
        ] {
            assert_eq!(parse_expires(s).unwrap(), secs, "{s}");
        }
    }

    #[test]
    fn a_bare_number_asks_for_a_unit() {
        for s in ["2", "30", "7"] {
            let e = parse_expires(s).unwrap_err().to_string();
            assert!(e.contains("give a unit: 30m, 24h, 7d"), "{s}: {e}");
        }
    }

    #[test]
    fn more_than_a_year_is_refused_without_overflow() {
        for s in [
            "367d",
            "2y",
            "53w",
            "18446744073709551615s",
            "18446744073709551615d",
            "99999999999999999999999h",
        ] {
            let e = parse_expires(s).unwrap_err().to_string();
            assert!(e.contains("at most a year"), "{s}: {e}");
        }
    }

    #[test]
    fn nonsense_and_too_short_are_refused() {
        for (s, want) in [
            ("soon", "not a lifetime"),
            ("5q", "not a lifetime"),
            ("", "not a lifetime"),
            ("30s", "at least a minute"),
            ("0", "at least a minute"),
        ] {
            let e = parse_expires(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
