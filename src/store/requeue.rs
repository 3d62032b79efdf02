//! Putting ended stages back in the queue, for `followupd requeue`: a
//! stage blocked by a template or a forbidden list that has since been
//! fixed, or failed while a relay was misconfigured.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{to_secs, Store, StoreError};
use crate::schedule::StageState;

/// Which ended stages to requeue.
#[derive(Debug, Clone)]
pub struct RequeueFilter {
    pub state: StageState,
    pub stage: Option<String>,
    /// Only stages that reached `state` at or after this instant.
    pub since: Option<DateTime<Utc>>,
}

/// One stage that was (or with a dry run, would be) requeued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeued {
    pub marketplace: String,
    pub order_id: String,
    pub stage: String,
}

impl Store {
    /// Sets the matching stages back to `scheduled`, due at `now`, with no
    /// attempts; the next pass composes them afresh and the scheduler
    /// decides again (a closed window makes them `expired`). With
    /// `dry_run`, only says which stages those would be.
    pub async fn requeue(
        &self,
        filter: &RequeueFilter,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<Requeued>, StoreError> {
        let mut conditions = vec!["state = $1".to_string()];
        if filter.stage.is_some() {
            conditions.push(format!("stage = ${}", conditions.len() + 1));
        }
        if filter.since.is_some() {
            conditions.push(format!("updated_at >= ${}", conditions.len() + 1));
        }
        let filter_sql = conditions.join(" AND ");
        let n = conditions.len();
        let sql = if dry_run {
            format!("SELECT marketplace, order_id, stage FROM stages WHERE {filter_sql}")
        } else {
            format!(
                "UPDATE stages SET state = 'scheduled', next_check_at = ${a}, retry_at = NULL, \
                 attempts = 0, reason = ${b}, updated_at = ${a} WHERE {filter_sql} \
                 RETURNING marketplace, order_id, stage",
                a = n + 1,
                b = n + 2
            )
        };
        let mut query = sqlx::query(&sql).bind(filter.state.as_str());
        if let Some(stage) = &filter.stage {
            query = query.bind(stage.as_str());
        }
        if let Some(since) = filter.since {
            query = query.bind(to_secs(since));
        }
        if !dry_run {
            query = query
                .bind(to_secs(now))
                .bind(format!("requeued by hand (was {})", filter.state));
        }
        let rows = query.fetch_all(self.pool()).await?;
        let mut requeued = rows
            .iter()
            .map(|row| {
                Ok(Requeued {
                    marketplace: row.try_get(0)?,
                    order_id: row.try_get(1)?,
                    stage: row.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        requeued.sort_by(|a, b| {
            (&a.marketplace, &a.order_id, &a.stage).cmp(&(&b.marketplace, &b.order_id, &b.stage))
        });
        Ok(requeued)
    }
}
