//! Instants on the command line. Every option that takes one (`--now`,
//! `--since`, `--until`) takes the same forms, and a value in none of them
//! is refused with the forms it could have been.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// What every time option accepts, for error messages and `--help`.
pub(super) const FORMS: &str = "RFC 3339 (2026-12-08T10:00:00Z), a date (2026-12-08, \
     midnight UTC), a UTC date and time (2026-12-08 10:00), or a duration from now \
     (-3d, +2h)";

/// Parses an instant in any of the [`FORMS`], relative ones against `now`.
pub(super) fn parse_instant(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(date.and_time(NaiveTime::MIN).and_utc());
    }
    for format in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Some((sign, rest)) = s
        .strip_prefix('-')
        .map(|r| (-1, r))
        .or_else(|| s.strip_prefix('+').map(|r| (1, r)))
    {
        if let Ok(d) = humantime::parse_duration(rest) {
            let d = chrono::Duration::from_std(d).map_err(|_| format!("'{s}' is too far away"))?;
            return Ok(now + d * sign);
        }
    }
    Err(format!("'{s}' is not a time; use {FORMS}"))
}

/// clap's parser for every time option.
pub(super) fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    parse_instant(s, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-08T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn every_documented_form_is_read() {
        let at = |s| parse_instant(s, now()).unwrap().to_rfc3339();
        assert_eq!(at("2026-12-08T10:00:00+01:00"), "2026-12-08T09:00:00+00:00");
        assert_eq!(at("2026-12-08"), "2026-12-08T00:00:00+00:00");
        assert_eq!(at("2026-12-08 10:30"), "2026-12-08T10:30:00+00:00");
        assert_eq!(at("-3d"), "2026-12-05T12:00:00+00:00");
        assert_eq!(at("+2h"), "2026-12-08T14:00:00+00:00");
    }

    #[test]
    fn a_bad_value_names_the_accepted_forms() {
        for bad in ["2026-12-", "tomorrow", "3d", "2026-13-01"] {
            let e = parse_instant(bad, now()).unwrap_err();
            assert!(e.contains("RFC 3339") && e.contains("-3d"), "{bad}: {e}");
            assert!(!e.contains("premature"), "{bad}: {e}");
        }
    }
}
