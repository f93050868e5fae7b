//! Spotting two agents that hold one member key (a copied config dir). Each connects, replaces
//! the other's connection (4000 `replaced`), and is replaced in turn, forever. Replacements
//! between two different agent instances are counted per member; once there have been enough
//! within a window, the agent that started later is told `key_in_use` and closed, so the other
//! keeps its link. Reconnects of the same instance, and hellos that name no instance, never
//! count.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::AgentInstance;

/// What a bind over a live connection of the same member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An ordinary replacement: the newcomer takes over, the current one is closed with 4000.
    Replace,
    /// The newcomer's agent started later (or at the same time): refuse it, keep the current one.
    RefuseNewcomer,
    /// The current connection's agent started later: tell it `key_in_use`, close it, and accept
    /// the newcomer.
    CloseCurrent,
}

/// Recent replacements of one member's connection by another agent instance.
#[derive(Debug, Default)]
pub struct KeyUse {
    recent: VecDeque<Instant>,
}

/// How replacements are judged: `threshold` of them within `window` mean two agents.
#[derive(Debug, Clone, Copy)]
pub struct KeyUseRule {
    /// How far back replacements count.
    pub window: Duration,
    /// Replacements within the window, this one included, that stop the later agent.
    pub threshold: usize,
}

impl KeyUse {
    /// Judges a bind of `newcomer` over a live connection of `current` at `now`, counting it
    /// when both name an instance and the ids differ.
    pub fn judge(
        &mut self,
        current: Option<&AgentInstance>,
        newcomer: Option<&AgentInstance>,
        now: Instant,
        rule: KeyUseRule,
    ) -> Verdict {
        let (Some(cur), Some(new)) = (current, newcomer) else { return Verdict::Replace };
        if cur.id == new.id {
            return Verdict::Replace;
        }
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > rule.window)
            || self.recent.len() > rule.threshold.max(1)
        {
            self.recent.pop_front();
        }
        if self.recent.len() < rule.threshold {
            Verdict::Replace
        } else if new.started_at >= cur.started_at {
            Verdict::RefuseNewcomer
        } else {
            Verdict::CloseCurrent
        }
    }
}

/// What the agent that must stop is told: whose key, which mesh, when the other agent started,
/// and how to get an identity of its own.
pub fn key_in_use_message(name: &str, member_id: &str, slug: &str, other: &AgentInstance) -> String {
    format!(
        "the key of member {name} ({member_id}) in mesh {slug} is in use by another agent (started at \
         {}); each machine needs its own identity: on this machine run `claudemesh leave {slug} \
         --local-only` and join again with a new invite",
        utc(other.started_at)
    )
}

/// `2026-11-30 15:17:42 UTC` for Unix milliseconds (past chrono's range: the raw number).
pub fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| format!("{ms} ms after 1970"), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, started_at: u64) -> AgentInstance {
        AgentInstance { id: id.into(), started_at }
    }

    const RULE: KeyUseRule = KeyUseRule { window: Duration::from_secs(120), threshold: 3 };

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_051_862_123), "2026-11-30 15:17:42 UTC");
        assert_eq!(utc(4_102_444_799_000), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn only_distinct_instances_within_the_window_count() {
        let (a, b) = (inst("a", 10), inst("b", 20));
        let t0 = Instant::now();
        let mut k = KeyUse::default();
        for i in 0..10 {
            let t = t0 + Duration::from_millis(i);
            assert_eq!(k.judge(Some(&a), Some(&a), t, RULE), Verdict::Replace, "same instance");
            assert_eq!(k.judge(None, Some(&b), t, RULE), Verdict::Replace, "no instance");
            assert_eq!(k.judge(Some(&a), None, t, RULE), Verdict::Replace, "no instance");
        }
        // Spaced wider than the window, distinct instances never add up.
        for i in 0..10 {
            let t = t0 + RULE.window * (i + 1) + Duration::from_millis(u64::from(i));
            assert_eq!(k.judge(Some(&a), Some(&b), t, RULE), Verdict::Replace);
        }
    }

    #[test]
    fn the_third_replacement_stops_the_agent_that_started_later() {
        let (early, late) = (inst("a", 10), inst("b", 20));
        let t = Instant::now();
        let mut k = KeyUse::default();
        assert_eq!(k.judge(Some(&early), Some(&late), t, RULE), Verdict::Replace);
        assert_eq!(k.judge(Some(&late), Some(&early), t, RULE), Verdict::Replace);
        assert_eq!(k.judge(Some(&early), Some(&late), t, RULE), Verdict::RefuseNewcomer);
        assert_eq!(k.judge(Some(&late), Some(&early), t, RULE), Verdict::CloseCurrent);
        // A tie goes against the newcomer.
        let twin = inst("c", 10);
        assert_eq!(k.judge(Some(&early), Some(&twin), t, RULE), Verdict::RefuseNewcomer);
    }
}
