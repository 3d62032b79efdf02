//! Persistence: orders, the state of every stage, stored messages and the
//! send log, in SQLite (the default) or PostgreSQL.
//!
//! One set of SQL serves both databases through sqlx's `Any` driver: times
//! are Unix seconds, flags are integers and placeholders are `$N`, which
//! both understand (the bulk statements built at run time use `?` on
//! SQLite; see [`placeholder`]). Rows read back are parsed into domain types
//! again, so a hand-edited database cannot hand the scheduler an invalid
//! order. The writes of the send path go through a group commit
//! (`writer/`); SQLite files are opened in `sqlite.rs`, the pool in
//! `pool.rs`.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::import::OrderRecord;
use crate::order::{Order, OrderKey};

mod bulk;
mod checkpoint;
mod decode;
mod log;
mod lookup;
mod pool;
mod records;
mod replan;
mod sqlite;
pub use lookup::OrderWithStages;
mod requeue;
mod suppressions;
pub use requeue::{RequeueFilter, Requeued};
mod pause;
pub use pause::Paused;
mod webhooks;
mod writer;

pub use suppressions::{EventKind, NewEvent};

pub use bulk::Setting;
use bulk::SqliteImport;
use checkpoint::Checkpointer;
use decode::{decode_order, decode_stage, group_by_order, key_from_parts};
use decode::{ORDER_COLUMNS, STAGE_COLUMNS};
use pool::Noted;
pub use records::{
    Claim, DueOrder, Finish, LogEntry, LogQuery, NewLogEntry, NewMessage, Reporter, StageRow,
    StageUpdate, StatusSummary, StoredMessage,
};
pub use sqlite::SQLITE_LOG_LIMIT_BYTES;
use sqlite::{prepare_sqlite_file, sqlite_file, OpenedFile};
pub use webhooks::{Applied, Change, ChangeWriter, Delivery, LineCount, OrderChange};
use writer::{ClaimWrite, Done, UpdateWrite, Write, Writer};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// From the SQLite connections of the send path's writer and of imports.
    /// (Not the error's source too: its text is already in this one's.)
    #[error("database: {0}")]
    Sqlite(rusqlite::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored order {key} is invalid: {message}")]
    Corrupt { key: String, message: String },
    #[error("the database is closed")]
    Closed,
    #[error(
        "the database file {0} was deleted while followupd had it open; sending has stopped. \
         Restore the file (until followupd stops, its content can be copied from {1}) and restart"
    )]
    FileDeleted(String, String),
    #[error(
        "the database file {0} was replaced by another file while followupd had it open; \
         sending has stopped until followupd is restarted on the file meant to be used"
    )]
    FileReplaced(String),
    /// A batch of writes failed together; each write gets the error's text.
    #[error("{0}")]
    Batch(String),
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The file behind a SQLite database URL; `None` for an in-memory database
/// or PostgreSQL.
pub fn sqlite_path_of(url: &str) -> Option<std::path::PathBuf> {
    sqlite_file(url)
}

/// Converts to the stored representation of an instant.
pub fn to_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// Converts back from the stored representation.
pub fn from_secs(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

/// A failed statement on a pool connection goes through [`Noted::noted`]
/// instead, which also notes when it happened; this is for the rest (reading
/// a column, the writer's own connection).
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// The database handle shared by every command and the daemon.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Group commit for the writes of the send path.
    writer: Writer,
    /// Where imports are stored on a SQLite file (`None`: through the pool).
    sqlite_import: Option<Arc<SqliteImport>>,
    /// The SQLite file opened, to notice it deleted or replaced.
    opened: Option<OpenedFile>,
}

impl Store {
    /// Connects, creating a SQLite file (and its folder) if needed, and
    /// applies any pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            prepare_sqlite_file(url)?;
        }
        let pool = pool::open_pool(url, backend).await?;
        let file = sqlite_file(url);
        let checkpointer = file.clone().and_then(Checkpointer::start);
        let sqlite_import = file.clone().map(|path| {
            let signal = checkpointer.as_ref().map(Checkpointer::signal);
            Arc::new(SqliteImport::new(path, signal))
        });
        let opened = file.as_deref().and_then(OpenedFile::new);
        let writer = Writer::start(pool.clone(), backend, file, checkpointer);
        Ok(Self {
            pool,
            backend,
            writer,
            sqlite_import,
            opened,
        })
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): waiting for it is bounded by the busy timeout,
    /// whereas a deferred transaction that read first could only fail when it
    /// came to write. Nothing outside the transaction happens until its
    /// commit has returned, so a send never starts on a claim that is not on
    /// disk.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await.noted()?,
            Backend::Postgres => self.pool.begin().await.noted()?,
        })
    }

    /// The SQLite file behind the store, if it is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.opened.as_ref().map(|o| o.path.as_path())
    }

    /// Fails if the SQLite file the store opened was deleted or replaced
    /// since: the store would go on working on the old file, unseen by
    /// every other process and lost when this one stops.
    pub fn check_file(&self) -> Result<(), StoreError> {
        self.opened.as_ref().map_or(Ok(()), OpenedFile::check)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Inserts or updates a batch of orders in one transaction and makes sure
    /// each has a row for every stage. Ended stages are never touched; open
    /// ones are flagged for the scheduler to look at again. `progress` is
    /// written in the same transaction. Returns (inserted, updated).
    pub async fn upsert_orders(
        &self,
        records: Vec<OrderRecord>,
        stages: &[String],
        progress: Option<Setting>,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let now = to_secs(now);
        let Some(import) = &self.sqlite_import else {
            let mut conn = self.pool.acquire().await.noted()?;
            return bulk::upsert_on_connection(
                &mut conn,
                self.backend,
                &records,
                stages,
                progress.as_ref(),
                now,
            )
            .await;
        };
        let import = Arc::clone(import);
        let stages = stages.to_vec();
        match tokio::task::spawn_blocking(move || {
            import.upsert(&records, &stages, progress.as_ref(), now)
        })
        .await
        {
            Ok(result) => result,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // The runtime is shutting down.
                Err(_) => Err(StoreError::Closed),
            },
        }
    }

    /// Adds the rows of stages that were configured after orders were
    /// imported. Cheap when nothing changed: the configured stage list is
    /// remembered and the backfill only runs when it differs.
    pub async fn ensure_stage_rows(&self, stages: &[String]) -> Result<(), StoreError> {
        let wanted = stages.join(",");
        let known: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'stages'")
                .fetch_optional(&self.pool)
                .await
                .noted()?;
        if known.as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for stage in stages {
            sqlx::query(
                "INSERT INTO stages (marketplace, order_id, stage, state, next_check_at, attempts, updated_at) \
                 SELECT o.marketplace, o.order_id, $1, 'scheduled', 0, 0, o.updated_at FROM orders o \
                 WHERE NOT EXISTS (SELECT 1 FROM stages s WHERE s.marketplace = o.marketplace \
                 AND s.order_id = o.order_id AND s.stage = $1)",
            )
            .bind(stage.as_str())
            .execute(&mut *tx)
            .await.noted()?;
        }
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('stages', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(&wanted)
        .execute(&mut *tx)
        .await
        .noted()?;
        tx.commit().await.noted()?;
        Ok(())
    }

    /// The orders of the `limit` open stages the scheduler should look at
    /// earliest by `now`, each with all its stage rows: one query for the
    /// whole batch. The stages are read as a range of `stages_open_by_check`
    /// that stops after `limit` entries, so a batch costs the same however
    /// many stages are due or stored (grouping every due stage by order
    /// first read the whole table on every batch). Each order is decoded on
    /// its own, so one that cannot be read (a hand-edited row, say) is
    /// reported without hiding the rest.
    pub async fn due_orders(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueOrder>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS}, {STAGE_COLUMNS} FROM ( \
             SELECT marketplace, order_id, MIN(next_check_at) AS first_check FROM ( \
             SELECT marketplace, order_id, next_check_at FROM stages \
             WHERE state IN ('scheduled', 'retrying') AND next_check_at <= $1 \
             ORDER BY next_check_at LIMIT $2) due \
             GROUP BY marketplace, order_id) d \
             JOIN orders o ON o.marketplace = d.marketplace AND o.order_id = d.order_id \
             JOIN stages s ON s.marketplace = d.marketplace AND s.order_id = d.order_id \
             ORDER BY d.first_check, d.marketplace, d.order_id"
        );
        let rows = sqlx::query(&sql)
            .bind(to_secs(now))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .noted()?;
        group_by_order(&rows)
    }

    /// The earliest moment an open stage wants looking at, if any.
    pub async fn next_check(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_check_at) FROM stages WHERE state IN ('scheduled', 'retrying')",
        )
        .fetch_one(&self.pool)
        .await
        .noted()?;
        Ok(next.map(from_secs))
    }

    /// One order with all its stage rows.
    pub async fn load_order(
        &self,
        key: &OrderKey,
    ) -> Result<Option<(Order, Vec<StageRow>)>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS}, {STAGE_COLUMNS} FROM orders o \
             JOIN stages s ON s.marketplace = o.marketplace AND s.order_id = o.order_id \
             WHERE o.marketplace = $1 AND o.order_id = $2"
        );
        let rows = sqlx::query(&sql)
            .bind(key.marketplace.as_str())
            .bind(key.order_id.as_str())
            .fetch_all(&self.pool)
            .await
            .noted()?;
        group_by_order(&rows)?
            .pop()
            .map(|order| order.loaded)
            .transpose()
    }

    /// Finds orders by id on any marketplace (support staff rarely know it).
    pub async fn find_order_keys(&self, order_id: &str) -> Result<Vec<OrderKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT marketplace, order_id FROM orders WHERE order_id = $1 ORDER BY marketplace",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
        .await
        .noted()?;
        rows.iter()
            .map(|row| key_from_parts(&row.try_get::<String, _>(0)?, &row.try_get::<String, _>(1)?))
            .collect()
    }

    /// Every order with its stages, streamed in key order, for `plan`.
    /// `f` returns false to stop early.
    pub async fn for_each_order<F>(&self, mut f: F) -> Result<(), StoreError>
    where
        F: FnMut(Order, Vec<StageRow>) -> bool,
    {
        let sql = format!(
            "SELECT {ORDER_COLUMNS}, {STAGE_COLUMNS} FROM orders o \
             JOIN stages s ON s.marketplace = o.marketplace AND s.order_id = o.order_id \
             ORDER BY o.marketplace, o.order_id"
        );
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        let mut current: Option<(Order, Vec<StageRow>)> = None;
        while let Some(row) = rows.try_next().await.noted()? {
            let stage = decode_stage(&row, decode::ORDER_COLUMN_COUNT)?;
            let marketplace: String = row.try_get(0)?;
            let order_id: String = row.try_get(1)?;
            let same = current.as_ref().is_some_and(|(o, _)| {
                o.key.marketplace.as_str() == marketplace && o.key.order_id.as_str() == order_id
            });
            if same {
                if let Some((_, stages)) = current.as_mut() {
                    stages.push(stage);
                }
            } else {
                if let Some((o, s)) = current.take() {
                    if !f(o, s) {
                        return Ok(());
                    }
                }
                current = Some((decode_order(&row)?, vec![stage]));
            }
        }
        if let Some((o, s)) = current {
            f(o, s);
        }
        Ok(())
    }

    /// Claims a stage and stores the message about to be sent, in one
    /// transaction. Returns the claim's token and the stored message's id,
    /// or `None` when the claim was lost (nothing is stored then).
    pub async fn claim_and_store(
        &self,
        key: &OrderKey,
        claim: Claim,
        message: Option<NewMessage>,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let write = Write::Claim(ClaimWrite {
            key: key.clone(),
            claim,
            message,
            at: now,
        });
        match self.writer.apply(write).await? {
            Done::Claimed(claimed) => Ok(claimed),
            other => Err(StoreError::Batch(format!("a claim was answered {other:?}"))),
        }
    }

    /// Writes, fenced by its claim, the stage's outcome and its send-log
    /// row, in one transaction (the row also without the outcome if
    /// [`Reporter::Sender`] says the send did happen). Returns whether the
    /// outcome was recorded; false means the claim's lease ran out and the
    /// new holder's record stands.
    pub async fn finish_with_log(&self, finish: Finish) -> Result<bool, StoreError> {
        match self.writer.apply(Write::Finish(finish)).await? {
            Done::Finished(recorded) => Ok(recorded),
            other => Err(StoreError::Batch(format!(
                "an outcome was answered {other:?}"
            ))),
        }
    }

    /// Extends the lease of every claim `owner` holds.
    pub async fn renew_leases(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE stages SET lease_until = $1 WHERE state = 'sending' AND claim_owner = $2",
        )
        .bind(to_secs(lease_until))
        .bind(owner)
        .execute(&self.pool)
        .await
        .noted()?;
        Ok(result.rows_affected())
    }

    /// The status of the newest send-log row of one stage.
    pub async fn last_log_status(
        &self,
        key: &OrderKey,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT status FROM send_log WHERE marketplace = $1 AND order_id = $2 AND stage = $3 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(key.marketplace.as_str())
        .bind(key.order_id.as_str())
        .bind(stage)
        .fetch_optional(&self.pool)
        .await
        .noted()
    }

    /// Stages in `sending` whose lease ended before `expired_before` (all
    /// of them when `None`), with their order key and recipient.
    pub async fn abandoned_claims(
        &self,
        expired_before: Option<DateTime<Utc>>,
    ) -> Result<Vec<(OrderKey, StageRow, String)>, StoreError> {
        let sql = format!(
            "SELECT s.marketplace, s.order_id, o.buyer_email, {STAGE_COLUMNS} FROM stages s \
             JOIN orders o ON o.marketplace = s.marketplace AND o.order_id = s.order_id \
             WHERE s.state = 'sending' AND COALESCE(s.lease_until, 0) < $1"
        );
        let rows = sqlx::query(&sql)
            .bind(expired_before.map(to_secs).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .noted()?;
        rows.iter()
            .map(|row| {
                let key =
                    key_from_parts(&row.try_get::<String, _>(0)?, &row.try_get::<String, _>(1)?)?;
                Ok((key, decode_stage(row, 3)?, row.try_get(2)?))
            })
            .collect()
    }

    /// Applies each update whose stage is still in the state it was read
    /// in, all in one transaction. Returns, per update, whether it applied
    /// (false: someone else changed the stage first).
    pub async fn update_stages(
        &self,
        key: &OrderKey,
        updates: Vec<StageUpdate>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        // Queued together, so they land in the same transaction unless the
        // batch is full.
        let pending: Vec<_> = updates
            .into_iter()
            .map(|update| {
                self.writer.apply(Write::Update(UpdateWrite {
                    key: key.clone(),
                    update,
                    at: now,
                }))
            })
            .collect();
        let mut applied = Vec::with_capacity(pending.len());
        for done in futures_util::future::join_all(pending).await {
            match done? {
                Done::Updated(ok) => applied.push(ok),
                other => {
                    return Err(StoreError::Batch(format!(
                        "an update was answered {other:?}"
                    )))
                }
            }
        }
        Ok(applied)
    }

    /// Commits what is queued, then closes every connection.
    pub async fn close(&self) {
        // First: the writer stops the checkpoint thread, which waits for
        // the import's signal to be dropped. Off the runtime's threads: it
        // waits for a batch under way.
        if let Some(import) = &self.sqlite_import {
            let import = Arc::clone(import);
            let _ = tokio::task::spawn_blocking(move || import.close()).await;
        }
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// The placeholder for parameter `i` (1-based). Bulk statements number
/// their parameters in the order they appear in the text, so SQLite can take
/// anonymous `?` (it looks numbered ones up by name, at a cost that grows
/// with the parameter count) while PostgreSQL takes `$i`.
fn placeholder(backend: Backend, i: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_string(),
        Backend::Postgres => format!("${i}"),
    }
}

/// Placeholders for `count` consecutive parameters from `first`.
fn placeholders(backend: Backend, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| placeholder(backend, i))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    /// A SQLite error is not also the error's source, so a report of the
    /// whole chain (`{:#}`, as the command line prints) says it once.
    #[test]
    fn a_sqlite_error_is_reported_once() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let report = format!("{:#}", anyhow::Error::new(StoreError::from(full)));
        assert_eq!(
            report.matches("database or disk is full").count(),
            1,
            "{report}"
        );
    }
}
