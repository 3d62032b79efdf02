//! Instants on the command line.

use chrono::{DateTime, Utc};

pub(super) fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected RFC 3339 such as 2026-12-01T10:00:00Z: {e}"))
}

pub(super) fn parse_bound(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_now(s)
}
