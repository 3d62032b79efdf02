//! The suppression list and the bounces and complaints received.
//!
//! The list is keyed by the normalised address, so "may we write to this
//! buyer?" is one primary-key lookup, and suppressing an address twice (two
//! clicks on the link, a bounce and a complaint for the same message, two
//! instances at once) leaves the first entry and is not an error.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::pool::Noted;
use super::{from_secs, to_secs, Store, StoreError};
use crate::order::OrderKey;
use crate::suppress::{Address, Reason, Suppression};

/// A bounce, complaint or unsubscribe to keep, with the message it answers
/// when that is known.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: DateTime<Utc>,
    pub address: Address,
    pub kind: EventKind,
    /// The enhanced status code (`5.1.1`) or the feedback type (`abuse`).
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    /// The SMTP reply code the remote server gave, when the report quotes it.
    pub smtp_code: Option<u16>,
    /// The message it answers (without angle brackets), with its order and
    /// stage when the Message-ID is one of ours.
    pub message_id: Option<String>,
    pub answers: Option<(OrderKey, String)>,
    /// `dsn`, `arf`, `unsubscribe`, or the relay's name.
    pub source: String,
}

/// What happened to a message after it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A permanent failure (5.x.x).
    Permanent,
    /// A temporary failure (4.x.x), counted towards the soft-bounce limit.
    Temporary,
    /// A spam complaint.
    Complaint,
    /// The buyer used the unsubscribe link.
    Unsubscribe,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permanent => "permanent",
            Self::Temporary => "temporary",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
        }
    }

    /// The status of the send-log row written on the order it answers.
    pub fn log_status(self) -> &'static str {
        match self {
            Self::Permanent | Self::Temporary => "bounced",
            Self::Complaint => "complained",
            Self::Unsubscribe => "unsubscribed",
        }
    }
}

const COLUMNS: &str = "address, reason, detail, created_at";

fn decode(row: &AnyRow) -> Result<Suppression, StoreError> {
    let address: String = row.try_get(0)?;
    let reason: String = row.try_get(1)?;
    let reason = reason
        .parse::<Reason>()
        .map_err(|message| StoreError::Corrupt {
            key: address.clone(),
            message,
        })?;
    Ok(Suppression {
        address: Address::from_stored(address),
        reason,
        detail: row.try_get(2)?,
        at: from_secs(row.try_get(3)?),
    })
}

impl Store {
    /// Puts an address on the list. Returns false (and changes nothing)
    /// when it is already there: the first reason stays.
    pub async fn suppress(&self, entry: &Suppression) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO suppressions (address, reason, detail, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING",
        )
        .bind(entry.address.as_str())
        .bind(entry.reason.as_str())
        .bind(entry.detail.as_deref())
        .bind(to_secs(entry.at))
        .execute(&self.pool)
        .await
        .noted()?;
        Ok(done.rows_affected() > 0)
    }

    /// Puts many addresses on the list in one transaction; returns how many
    /// were new.
    pub async fn suppress_all(&self, entries: &[Suppression]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.noted()?;
        let mut added = 0;
        for entry in entries {
            added += sqlx::query(
                "INSERT INTO suppressions (address, reason, detail, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING",
            )
            .bind(entry.address.as_str())
            .bind(entry.reason.as_str())
            .bind(entry.detail.as_deref())
            .bind(to_secs(entry.at))
            .execute(&mut *tx)
            .await
            .noted()?
            .rows_affected();
        }
        tx.commit().await.noted()?;
        Ok(added)
    }

    /// Takes an address off the list; false when it was not on it.
    pub async fn unsuppress(&self, address: &Address) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM suppressions WHERE address = $1")
            .bind(address.as_str())
            .execute(&self.pool)
            .await
            .noted()?;
        Ok(done.rows_affected() > 0)
    }

    /// The entry for one address, if it is on the list.
    pub async fn suppression(&self, address: &Address) -> Result<Option<Suppression>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM suppressions WHERE address = $1");
        let row = sqlx::query(&sql)
            .bind(address.as_str())
            .fetch_optional(&self.pool)
            .await
            .noted()?;
        row.as_ref().map(decode).transpose()
    }

    /// The entries among `addresses`, in one statement (the engine asks for
    /// a batch of due orders at once).
    pub async fn suppressions_among(
        &self,
        addresses: &[Address],
    ) -> Result<HashMap<Address, Suppression>, StoreError> {
        let mut found = HashMap::new();
        // Well under both databases' limits on parameters.
        for chunk in addresses.chunks(500) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM suppressions WHERE address IN ({})",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for address in chunk {
                query = query.bind(address.as_str());
            }
            for row in query.fetch_all(&self.pool).await.noted()? {
                let entry = decode(&row)?;
                found.insert(entry.address.clone(), entry);
            }
        }
        Ok(found)
    }

    /// How many addresses are on the list for each reason.
    pub async fn suppression_counts(&self) -> Result<Vec<(Reason, i64)>, StoreError> {
        let rows = sqlx::query("SELECT reason, COUNT(*) FROM suppressions GROUP BY reason")
            .fetch_all(&self.pool)
            .await?;
        let mut counts = Vec::new();
        for row in &rows {
            let reason: String = row.try_get(0)?;
            // A reason this build does not know is left out, not an error.
            if let Ok(reason) = reason.parse::<Reason>() {
                counts.push((reason, row.try_get::<i64, _>(1)?));
            }
        }
        Ok(counts)
    }

    /// The whole list, newest first.
    pub async fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM suppressions ORDER BY created_at DESC, address");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.noted()?;
        rows.iter().map(decode).collect()
    }

    /// Keeps a bounce, complaint or unsubscribe; when it answers one of our
    /// messages, the order's send log gets a row for it too (`bounced`,
    /// `complained`, `unsubscribed`), so `logs --email` tells the story.
    pub async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.noted()?;
        let (marketplace, order_id, stage) = match &event.answers {
            Some((key, stage)) => (
                Some(key.marketplace.as_str()),
                Some(key.order_id.as_str()),
                Some(stage.as_str()),
            ),
            None => (None, None, None),
        };
        if event.kind != EventKind::Unsubscribe {
            sqlx::query(
                "INSERT INTO bounces (at, address, kind, status, diagnostic, message_id, \
                 marketplace, order_id, stage, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(to_secs(event.at))
            .bind(event.address.as_str())
            .bind(event.kind.as_str())
            .bind(event.status.as_deref())
            .bind(event.diagnostic.as_deref())
            .bind(event.message_id.as_deref())
            .bind(marketplace)
            .bind(order_id)
            .bind(stage)
            .bind(event.source.as_str())
            .execute(&mut *tx)
            .await
            .noted()?;
        }
        if let (Some(marketplace), Some(order_id), Some(stage)) = (marketplace, order_id, stage) {
            let detail = [event.status.as_deref(), event.diagnostic.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            sqlx::query(
                "INSERT INTO send_log (at, marketplace, order_id, stage, recipient, message_id, \
                 attempt, status, smtp_code, smtp_text, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10)",
            )
            .bind(to_secs(event.at))
            .bind(marketplace)
            .bind(order_id)
            .bind(stage)
            .bind(event.address.as_str())
            .bind(event.message_id.as_deref())
            .bind(event.kind.log_status())
            .bind(event.smtp_code.map(i64::from))
            .bind(event.diagnostic.as_deref())
            .bind(format!("{} ({})", detail, event.source).trim().to_string())
            .execute(&mut *tx)
            .await
            .noted()?;
        }
        tx.commit().await.noted()?;
        Ok(())
    }

    /// How many temporary failures for `address` were kept at or after
    /// `since`.
    pub async fn temporary_bounces_since(
        &self,
        address: &Address,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bounces WHERE address = $1 AND kind = 'temporary' AND at >= $2",
        )
        .bind(address.as_str())
        .bind(to_secs(since))
        .fetch_one(&self.pool)
        .await
        .noted()?;
        Ok(n.max(0) as u64)
    }

    /// Who the last message sent for this stage went to.
    pub async fn sent_recipient(
        &self,
        key: &OrderKey,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT recipient FROM send_log WHERE marketplace = $1 AND order_id = $2 \
             AND stage = $3 AND status = 'sent' ORDER BY id DESC LIMIT 1",
        )
        .bind(key.marketplace.as_str())
        .bind(key.order_id.as_str())
        .bind(stage)
        .fetch_optional(&self.pool)
        .await
        .noted()
    }

    /// The order, stage and recipient of the last message sent to any of
    /// `recipients` at or before `before`: how a report that quotes no
    /// Message-ID is matched.
    pub async fn last_sent_to(
        &self,
        recipients: &[String],
        before: DateTime<Utc>,
    ) -> Result<Option<(OrderKey, String, String)>, StoreError> {
        let list: Vec<String> = (2..recipients.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT marketplace, order_id, stage, recipient FROM send_log \
             WHERE status = 'sent' AND at <= $1 AND recipient IN ({}) ORDER BY id DESC LIMIT 1",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(to_secs(before));
        for r in recipients {
            query = query.bind(r.as_str());
        }
        let Some(row) = query.fetch_optional(&self.pool).await.noted()? else {
            return Ok(None);
        };
        let marketplace: String = row.try_get(0)?;
        let order_id: String = row.try_get(1)?;
        let key = super::key_from_parts(&marketplace, &order_id)?;
        Ok(Some((key, row.try_get(2)?, row.try_get(3)?)))
    }
}
