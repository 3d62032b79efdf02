//! `followupd pause` / `resume`: a flag in the database, so that every
//! instance sharing it stops sending, not only the one on this machine.

use chrono::{DateTime, Utc};

use super::{from_secs, to_secs, Store, StoreError};

/// Sending is paused: since when, and the operator's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub since: DateTime<Utc>,
    pub reason: String,
}

impl std::fmt::Display for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "paused since {}",
            self.since.format("%Y-%m-%d %H:%M UTC")
        )?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

const KEY: &str = "paused";

impl Store {
    /// Pauses sending for every instance on this database.
    pub async fn pause(&self, reason: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(KEY)
        .bind(format!("{} {reason}", to_secs(now)))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Lets sending go on; whether it was paused.
    pub async fn resume(&self) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(KEY)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether sending is paused, and since when.
    pub async fn paused(&self) -> Result<Option<Paused>, StoreError> {
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(KEY)
            .fetch_optional(self.pool())
            .await?;
        Ok(value.map(|v| {
            let (secs, reason) = v.split_once(' ').unwrap_or((&v, ""));
            Paused {
                since: from_secs(secs.parse().unwrap_or(0)),
                reason: reason.to_string(),
            }
        }))
    }
}
