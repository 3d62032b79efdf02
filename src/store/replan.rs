//! What a reload asks of the store: every open stage looked at again under
//! the new settings, and the blocked stages found so that they can be
//! composed again with a new template set or forbidden list.

use chrono::{DateTime, Utc};

use super::decode::{group_by_order, ORDER_COLUMNS, STAGE_COLUMNS};
use super::pool::Noted;
use super::{to_secs, DueOrder, Store, StoreError};

impl Store {
    /// Flags every open stage for the next pass: its next check was worked
    /// out under settings that may have changed (sending hours, windows).
    /// Returns how many were flagged.
    pub async fn replan_open_stages(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE stages SET next_check_at = 0 \
             WHERE state IN ('scheduled', 'retrying') AND next_check_at > 0",
        )
        .execute(&self.pool)
        .await
        .noted()?;
        Ok(done.rows_affected())
    }

    /// Brings every retry planned later than `latest` forward to it: after
    /// the wall clock jumped forward and back, a retry worked out at the
    /// false time would otherwise wait out the jump. Returns how many.
    pub async fn clamp_retries(&self, latest: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE stages SET retry_at = $1, next_check_at = $1 \
             WHERE state = 'retrying' AND retry_at > $1",
        )
        .bind(to_secs(latest))
        .execute(&self.pool)
        .await
        .noted()?;
        Ok(done.rows_affected())
    }

    /// Up to `limit` orders with a blocked stage, in key order after
    /// `after` (a marketplace and order id), each with all its stages.
    pub async fn blocked_orders(
        &self,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<DueOrder>, StoreError> {
        let (marketplace, order_id) = after.unwrap_or(("", ""));
        let sql = format!(
            "SELECT {ORDER_COLUMNS}, {STAGE_COLUMNS} FROM ( \
             SELECT DISTINCT marketplace, order_id FROM stages WHERE state = 'blocked' \
             AND (marketplace > $1 OR (marketplace = $1 AND order_id > $2)) \
             ORDER BY marketplace, order_id LIMIT $3) b \
             JOIN orders o ON o.marketplace = b.marketplace AND o.order_id = b.order_id \
             JOIN stages s ON s.marketplace = b.marketplace AND s.order_id = b.order_id \
             ORDER BY b.marketplace, b.order_id"
        );
        let rows = sqlx::query(&sql)
            .bind(marketplace)
            .bind(order_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .noted()?;
        group_by_order(&rows)
    }

    /// A value kept in the `settings` table.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .noted()
    }

    /// Keeps `value` under `key` in the `settings` table.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .noted()?;
        Ok(())
    }

    /// Removes `key` from the `settings` table.
    pub async fn delete_setting(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .noted()?;
        Ok(())
    }
}
