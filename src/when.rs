//! Times as the CLI shows them: a message's time (`15:04` today, `Nov 29 15:04` this year,
//! `2024-11-29 15:04` before), a date with a distance (`2025-12-06 15:04 (in 6d 23h)`), all in
//! local time. `--json` keeps the raw Unix numbers.

use chrono::{DateTime, Datelike, Local, TimeZone};

/// A message's time, from Unix milliseconds, as short as today's date allows.
pub fn message_time(unix_ms: u64) -> String {
    match Local.timestamp_millis_opt(i64::try_from(unix_ms).unwrap_or(i64::MAX)).single() {
        Some(t) => short(&t, &Local::now()),
        None => "?".into(),
    }
}

/// A date from Unix seconds, with how far it is from now: `2025-12-06 15:04 (in 6d 23h)` or
/// `… (2h 5m ago)`.
pub fn date_from_now(unix_secs: u64, now_secs: u64) -> String {
    let at = match Local.timestamp_opt(i64::try_from(unix_secs).unwrap_or(i64::MAX), 0).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => return format!("{unix_secs} (unix)"),
    };
    if unix_secs >= now_secs {
        format!("{at} (in {})", span(unix_secs - now_secs))
    } else {
        format!("{at} ({} ago)", span(now_secs - unix_secs))
    }
}

/// `t` as `15:04` on `now`'s day, `Nov 29 15:04` in its year, `2024-11-29 15:04` otherwise.
pub fn short<Tz: TimeZone>(t: &DateTime<Tz>, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if t.date_naive() == now.date_naive() {
        t.format("%H:%M").to_string()
    } else if t.year() == now.year() {
        t.format("%b %-d %H:%M").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// A duration in its two largest units: `6d 23h`, `2h 5m`, `4m`, `30s`.
pub fn span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, TimeZone};

    use super::*;

    #[test]
    fn message_times_are_as_short_as_the_date_allows() {
        let tz = FixedOffset::east_opt(3600).unwrap();
        let now = tz.with_ymd_and_hms(2025, 11, 30, 9, 0, 0).unwrap();
        let at = |y, mo, d, h, mi| tz.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        assert_eq!(short(&at(2025, 11, 30, 8, 5), &now), "08:05");
        assert_eq!(short(&at(2025, 11, 29, 15, 4), &now), "Nov 29 15:04");
        assert_eq!(short(&at(2025, 1, 2, 0, 0), &now), "Jan 2 00:00");
        assert_eq!(short(&at(2024, 11, 29, 15, 4), &now), "2024-11-29 15:04");
    }

    #[test]
    fn spans_show_two_units() {
        assert_eq!(span(30), "30s");
        assert_eq!(span(240), "4m");
        assert_eq!(span(2 * 3600 + 5 * 60), "2h 5m");
        assert_eq!(span(6 * 86_400 + 23 * 3600 + 59 * 60), "6d 23h");
    }

    #[test]
    fn dates_say_how_far_away_they_are() {
        let s = date_from_now(1_000_000 + 7 * 86_400, 1_000_000);
        assert!(s.ends_with(" (in 7d 0h)") && s.len() == "2025-12-06 15:04 (in 7d 0h)".len(), "{s}");
        assert!(date_from_now(1_000_000, 1_000_000 + 125 * 60).ends_with(" (2h 5m ago)"));
        assert_eq!(date_from_now(u64::MAX, 0), format!("{} (unix)", u64::MAX), "out of range: no panic");
        assert_eq!(message_time(u64::MAX), "?");
    }
}
