//! Reading the send log and the figures of the status line.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::decode::{decode_log, LOG_COLUMNS};
use super::pool::Noted;
use super::{to_secs, LogEntry, LogQuery, StatusSummary, Store, StoreError, StoredMessage};

enum Bind {
    Text(String),
    Int(i64),
}

impl Store {
    /// Reads the send log, newest first.
    pub async fn logs(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let mut add = |condition: &str, value: Bind| {
            binds.push(value);
            conditions.push(condition.replace('?', &format!("${}", binds.len())));
        };
        if let Some(v) = &q.order_id {
            add("order_id = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = &q.email {
            add("LOWER(recipient) = LOWER(?)", Bind::Text(v.clone()));
        }
        if let Some(v) = &q.stage {
            add("stage = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = &q.status {
            add("status = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = q.since {
            add("at >= ?", Bind::Int(to_secs(v)));
        }
        if let Some(v) = q.until {
            add("at < ?", Bind::Int(to_secs(v)));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM send_log {filter} ORDER BY id DESC LIMIT {}",
            q.limit.max(1)
        );
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Text(s) => query.bind(s),
                Bind::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(&self.pool).await.noted()?;
        rows.iter().map(decode_log).collect()
    }

    /// One send-log row by id.
    pub async fn log_entry(&self, id: i64) -> Result<Option<LogEntry>, StoreError> {
        let sql = format!("SELECT {LOG_COLUMNS} FROM send_log WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .noted()?;
        row.as_ref().map(decode_log).transpose()
    }

    /// A stored message by id.
    pub async fn message(&self, id: i64) -> Result<Option<StoredMessage>, StoreError> {
        let row = sqlx::query("SELECT id, raw FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .noted()?;
        row.map(|r| {
            Ok(StoredMessage {
                id: r.try_get(0)?,
                raw: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// How many stages are in each state.
    pub async fn state_counts(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM stages GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .noted()?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect()
    }

    /// The figures for the service status line: stages due now, messages
    /// sent since `since`, stages retrying, blocked and in doubt.
    pub async fn status_summary(
        &self,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<StatusSummary, StoreError> {
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM stages WHERE state IN ('scheduled', 'retrying') AND next_check_at <= $1",
        )
        .bind(to_secs(now))
        .fetch_one(&self.pool)
        .await.noted()?;
        let sent: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM send_log WHERE status = 'sent' AND at >= $1")
                .bind(to_secs(since))
                .fetch_one(&self.pool)
                .await
                .noted()?;
        let counts = self.state_counts().await?;
        Ok(StatusSummary {
            due,
            sent_today: sent,
            retrying: counts.get("retrying").copied().unwrap_or(0),
            blocked: counts.get("blocked").copied().unwrap_or(0),
            unknown: counts.get("unknown").copied().unwrap_or(0),
        })
    }
}
