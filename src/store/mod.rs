//! Persistence: orders, the state of every stage, stored messages and the
//! send log, in SQLite (the default) or PostgreSQL.
//!
//! One set of SQL serves both databases through sqlx's `Any` driver: times
//! are Unix seconds, flags are integers and placeholders are `$N`, which
//! both understand (the bulk statements built at run time use `?` on
//! SQLite; see [`placeholder`]). Rows read back are parsed into domain types
//! again, so a hand-edited database cannot hand the scheduler an invalid
//! order. The writes of the send path go through a group commit
//! (`writer.rs`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Connection, Executor, Row, Transaction};

use crate::import::OrderRecord;
use crate::message::Outgoing;
use crate::order::{
    check_dates, parse_time_zone, parse_url, BuyerEmail, FieldError, Line, Order, OrderKey,
    OrderStatus,
};
use crate::schedule::StageState;

mod bulk;
mod checkpoint;
mod suppressions;
mod webhooks;
mod writer;

pub use suppressions::{EventKind, NewEvent};

use bulk::SqliteImport;
use checkpoint::Checkpointer;
pub use webhooks::{Applied, Change, ChangeWriter, Delivery, LineCount, OrderChange};
use writer::{ClaimWrite, Done, FinishWrite, UpdateWrite, Write, Writer};

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

/// The stored state of one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    pub stage: String,
    pub state: StageState,
    pub next_check_at: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub reason: Option<String>,
    pub message_id: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Who holds the stage while it is `sending`.
    pub claim_owner: Option<String>,
    /// Incremented by every claim; fences late writes.
    pub claim_token: i64,
    pub lease_until: Option<DateTime<Utc>>,
}

/// A change to a stage row, applied only if the row is still in
/// `expected` state.
#[derive(Debug, Clone)]
pub struct StageUpdate {
    pub stage: String,
    pub expected: StageState,
    pub state: StageState,
    pub next_check_at: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub reason: Option<String>,
    pub message_id: Option<String>,
}

/// A claim on a stage about to be sent.
#[derive(Debug, Clone)]
pub struct Claim {
    pub stage: String,
    pub expected: StageState,
    pub owner: String,
    pub lease_until: DateTime<Utc>,
    pub attempts: i64,
    pub reason: String,
    pub message_id: String,
}

/// The exact bytes of a message about to be handed to a transport, kept
/// with its claim.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: String,
    pub recipient: String,
    pub subject: String,
    pub raw: Vec<u8>,
}

impl From<&Outgoing> for NewMessage {
    fn from(message: &Outgoing) -> Self {
        Self {
            message_id: message.message_id.clone(),
            recipient: message.to.to_string(),
            subject: message.subject.clone(),
            raw: message.raw.clone(),
        }
    }
}

/// One row of the send log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub order_id: String,
    pub marketplace: String,
    pub stage: String,
    pub to: String,
    pub status: String,
    pub attempt: i64,
    pub smtp_code: Option<i64>,
    pub smtp_text: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub detail: Option<String>,
    pub duration_ms: Option<i64>,
    #[serde(skip)]
    pub message_ref: Option<i64>,
}

/// A send-log row to write, for the stage whose outcome it goes with.
#[derive(Debug, Clone)]
pub struct NewLogEntry {
    pub at: DateTime<Utc>,
    pub to: String,
    pub message_id: Option<String>,
    pub attempt: i64,
    pub status: StageState,
    pub smtp_code: Option<u16>,
    pub smtp_text: Option<String>,
    pub detail: Option<String>,
    pub duration_ms: Option<i64>,
    pub subject: Option<String>,
    pub message_ref: Option<i64>,
}

/// An order with its stages as read from the store (by
/// [`Store::due_orders`]), or why it could not be read.
#[derive(Debug)]
pub struct DueOrder {
    /// The stored key, as text (it may be what failed to decode).
    pub marketplace: String,
    pub order_id: String,
    /// The order and its stages, or why they could not be read.
    pub loaded: Result<(Order, Vec<StageRow>), StoreError>,
}

/// Filters for reading the send log.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub order_id: Option<String>,
    pub email: Option<String>,
    pub stage: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// The figures behind the daemon's one-line status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusSummary {
    pub due: i64,
    pub sent_today: i64,
    pub retrying: i64,
    pub blocked: i64,
}

impl std::fmt::Display for StatusSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "due {}, sent today {}, retrying {}, blocked {}",
            self.due, self.sent_today, self.retrying, self.blocked
        )
    }
}

/// A stored message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: i64,
    pub raw: Vec<u8>,
}

const ORDER_COLUMNS: &str = "o.marketplace, o.order_id, o.buyer_email, o.buyer_name, \
    o.product_name, o.locale, o.time_zone, o.shipped_at, o.delivered_at, o.status, \
    o.complaint, o.opted_out, o.order_url, o.tracking_url, o.review_url, o.extra";

const STAGE_COLUMNS: &str = "s.stage, s.state, s.next_check_at, s.retry_at, s.attempts, \
    s.reason, s.message_id, s.updated_at, s.claim_owner, s.claim_token, s.lease_until";

const LOG_COLUMNS: &str = "id, at, order_id, marketplace, stage, recipient, status, attempt, \
    smtp_code, smtp_text, message_id, subject, detail, duration_ms, message_ref";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        LAST_DATABASE_ERROR.store(Utc::now().timestamp(), Ordering::Relaxed);
        Self::Database(error)
    }
}

/// When a database statement last failed (Unix seconds; 0: never). While
/// errors are recent, connections going back to the pool are checked for a
/// transaction left open (see [`connection_is_clean`]); otherwise that check
/// would cost a round trip on every release.
static LAST_DATABASE_ERROR: AtomicI64 = AtomicI64::new(0);

/// How long after a database error released connections are checked.
const CHECK_CONNECTIONS_AFTER_ERROR_SECS: i64 = 300;

/// Whether a connection going back to the pool is fit to be handed out
/// again. After an I/O error (a full disk, say) SQLite may leave a
/// transaction open that neither it nor sqlx's bookkeeping will close: every
/// later statement on that connection would then run inside it, "succeed",
/// and never become durable, while holding the write lock against every other
/// connection. Such a connection is closed instead; the pool opens a fresh one.
async fn connection_is_clean(conn: &mut sqlx::AnyConnection, backend: Backend) -> bool {
    if conn.is_in_transaction() {
        tracing::warn!("closing a database connection returned inside a transaction");
        return false;
    }
    let since_error = Utc::now().timestamp() - LAST_DATABASE_ERROR.load(Ordering::Relaxed);
    if backend != Backend::Sqlite || since_error > CHECK_CONNECTIONS_AFTER_ERROR_SECS {
        return true;
    }
    // A connection stuck this way makes every other writer fail with "database
    // is locked", which keeps the error recent until it is found and closed.
    // ROLLBACK fails ("no transaction is active") on a healthy connection;
    // if it succeeds, a transaction was still open.
    match conn.execute("ROLLBACK").await {
        Ok(_) => {
            tracing::warn!(
                "closing a database connection that SQLite had left inside a transaction"
            );
            false
        }
        Err(_) => true,
    }
}

/// The size a SQLite file's write-ahead log is cut back to when it starts
/// over, if it had grown past it. In normal running the writers'
/// checkpoint limit keeps the log near 16 MB (`checkpoint.rs`), so this
/// only cuts the log after a burst, such as a big import while readers kept
/// the log from starting over; without it the file would keep its largest
/// size until the last connection closes.
pub const SQLITE_LOG_LIMIT_BYTES: u64 = 24 * 1024 * 1024;

/// Settings of every SQLite connection. WAL lets readers (plan, logs) work
/// while the daemon writes; the busy timeout turns brief lock contention
/// into a wait instead of an error; the journal size limit is
/// [`SQLITE_LOG_LIMIT_BYTES`].
const SQLITE_PRAGMAS: [&str; 5] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA journal_size_limit = 25165824",
];

/// The database handle shared by every command and the daemon.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Group commit for the writes of the send path.
    writer: Writer,
    /// Where imports are stored on a SQLite file (`None`: through the pool).
    sqlite_import: Option<Arc<SqliteImport>>,
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
            create_sqlite_parent(url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in SQLITE_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .after_release(move |conn, _meta| {
                Box::pin(async move { Ok(connection_is_clean(conn, backend).await) })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let file = sqlite_file(url);
        let checkpointer = file.clone().and_then(Checkpointer::start);
        let sqlite_import = file.clone().map(|path| {
            let signal = checkpointer.as_ref().map(Checkpointer::signal);
            Arc::new(SqliteImport::new(path, signal))
        });
        let writer = Writer::start(pool.clone(), backend, file, checkpointer);
        Ok(Self {
            pool,
            backend,
            writer,
            sqlite_import,
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
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Inserts or updates a batch of orders in one transaction and makes sure
    /// each has a row for every stage. Ended stages are never touched; open
    /// ones are flagged for the scheduler to look at again. Returns
    /// (inserted, updated).
    pub async fn upsert_orders(
        &self,
        records: Vec<OrderRecord>,
        stages: &[String],
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let now = to_secs(now);
        let Some(import) = &self.sqlite_import else {
            let mut conn = self.pool.acquire().await?;
            return bulk::upsert_on_connection(&mut conn, self.backend, &records, stages, now)
                .await;
        };
        let import = Arc::clone(import);
        let stages = stages.to_vec();
        match tokio::task::spawn_blocking(move || import.upsert(&records, &stages, now)).await {
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
                .await?;
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
            .await?;
        }
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('stages', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(&wanted)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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
            .await?;
        group_by_order(&rows)
    }

    /// The earliest moment an open stage wants looking at, if any.
    pub async fn next_check(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_check_at) FROM stages WHERE state IN ('scheduled', 'retrying')",
        )
        .fetch_one(&self.pool)
        .await?;
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
            .await?;
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
        .await?;
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
        while let Some(row) = rows.try_next().await? {
            let stage = decode_stage(&row, 16)?;
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

    /// Writes, fenced by the claim `(owner, token)`, the stage's outcome
    /// and its send-log row, in one transaction. With `log_if_fenced` the
    /// row is written even when the claim was taken over (a send that did
    /// happen); without it (settling someone else's claim) only with the
    /// outcome. Returns whether the outcome was recorded; false means the
    /// claim's lease ran out and the new holder's record stands.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_with_log(
        &self,
        key: &OrderKey,
        owner: &str,
        token: i64,
        update: StageUpdate,
        entry: NewLogEntry,
        log_if_fenced: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let write = Write::Finish(FinishWrite {
            key: key.clone(),
            owner: owner.to_string(),
            token,
            update,
            entry,
            log_if_fenced,
            at: now,
        });
        match self.writer.apply(write).await? {
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
        .await?;
        Ok(result.rows_affected())
    }

    /// The status of the newest send-log row of one stage.
    pub async fn last_log_status(
        &self,
        key: &OrderKey,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT status FROM send_log WHERE marketplace = $1 AND order_id = $2 AND stage = $3 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(key.marketplace.as_str())
        .bind(key.order_id.as_str())
        .bind(stage)
        .fetch_optional(&self.pool)
        .await?)
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
            .await?;
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
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode_log).collect()
    }

    /// One send-log row by id.
    pub async fn log_entry(&self, id: i64) -> Result<Option<LogEntry>, StoreError> {
        let sql = format!("SELECT {LOG_COLUMNS} FROM send_log WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_log).transpose()
    }

    /// A stored message by id.
    pub async fn message(&self, id: i64) -> Result<Option<StoredMessage>, StoreError> {
        let row = sqlx::query("SELECT id, raw FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
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
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect()
    }

    /// The figures for the service status line: stages due now, messages
    /// sent since `since`, stages retrying, stages blocked.
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
        .await?;
        let sent: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM send_log WHERE status = 'sent' AND at >= $1")
                .bind(to_secs(since))
                .fetch_one(&self.pool)
                .await?;
        let counts = self.state_counts().await?;
        Ok(StatusSummary {
            due,
            sent_today: sent,
            retrying: counts.get("retrying").copied().unwrap_or(0),
            blocked: counts.get("blocked").copied().unwrap_or(0),
        })
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

enum Bind {
    Text(String),
    Int(i64),
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

/// The file behind a SQLite URL; `None` for an in-memory database or
/// another kind of URL.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

fn create_sqlite_parent(url: &str) -> Result<(), StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

fn key_from_parts(marketplace: &str, order_id: &str) -> Result<OrderKey, StoreError> {
    let corrupt = |e: FieldError| StoreError::Corrupt {
        key: format!("{marketplace}/{order_id}"),
        message: e.to_string(),
    };
    Ok(OrderKey {
        marketplace: Line::parse("marketplace", marketplace).map_err(corrupt)?,
        order_id: Line::parse("order_id", order_id).map_err(corrupt)?,
    })
}

fn decode_order(row: &AnyRow) -> Result<Order, StoreError> {
    let marketplace: String = row.try_get(0)?;
    let order_id: String = row.try_get(1)?;
    let key = key_from_parts(&marketplace, &order_id)?;
    let corrupt = |message: String| StoreError::Corrupt {
        key: key.to_string(),
        message,
    };
    let text = |i: usize| -> Result<Option<String>, StoreError> { Ok(row.try_get(i)?) };
    let optional_line = |field: &'static str, i: usize| -> Result<Option<Line>, StoreError> {
        match text(i)? {
            Some(v) => Line::parse_optional(field, &v).map_err(|e| corrupt(e.to_string())),
            None => Ok(None),
        }
    };
    let url = |field: &'static str, i: usize| -> Result<Option<Line>, StoreError> {
        parse_url(field, &text(i)?.unwrap_or_default()).map_err(|e| corrupt(e.to_string()))
    };
    let buyer_email =
        BuyerEmail::parse(&row.try_get::<String, _>(2)?).map_err(|e| corrupt(e.to_string()))?;
    let product_name = Line::parse("product_name", &row.try_get::<String, _>(4)?)
        .map_err(|e| corrupt(e.to_string()))?;
    let time_zone = text(6)?
        .map(|z| parse_time_zone(&z))
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let shipped_at = row.try_get::<Option<i64>, _>(7)?.map(from_secs);
    let delivered_at = row.try_get::<Option<i64>, _>(8)?.map(from_secs);
    check_dates(shipped_at, delivered_at).map_err(|e| corrupt(e.to_string()))?;
    let status =
        OrderStatus::from_str(&row.try_get::<String, _>(9)?).map_err(|e| corrupt(e.to_string()))?;
    let extra: BTreeMap<String, String> = serde_json::from_str(&row.try_get::<String, _>(15)?)
        .map_err(|e| corrupt(format!("extra: {e}")))?;
    Ok(Order {
        buyer_name: optional_line("buyer_name", 3)?,
        locale: optional_line("locale", 5)?,
        complaint: row.try_get::<i64, _>(10)? != 0,
        opted_out: row.try_get::<i64, _>(11)? != 0,
        order_url: url("order_url", 12)?,
        tracking_url: url("tracking_url", 13)?,
        review_url: url("review_url", 14)?,
        key,
        buyer_email,
        product_name,
        time_zone_source: if time_zone.is_some() {
            crate::order::ZoneSource::Order
        } else {
            crate::order::ZoneSource::Default
        },
        time_zone,
        shipped_at,
        delivered_at,
        status,
        items: Vec::new(),
        extra,
    })
}

/// Orders with their stages from rows of `ORDER_COLUMNS, STAGE_COLUMNS`
/// that come grouped by order. Each order is decoded on its own: one that
/// cannot be read carries its error and leaves the others alone.
fn group_by_order(rows: &[AnyRow]) -> Result<Vec<DueOrder>, StoreError> {
    let mut orders: Vec<DueOrder> = Vec::new();
    for row in rows {
        let marketplace: String = row.try_get(0)?;
        let order_id: String = row.try_get(1)?;
        let same = orders
            .last()
            .is_some_and(|o| o.marketplace == marketplace && o.order_id == order_id);
        if !same {
            orders.push(DueOrder {
                loaded: decode_order(row).map(|order| (order, Vec::new())),
                marketplace,
                order_id,
            });
        }
        if let Some(DueOrder {
            loaded: loaded @ Ok(_),
            ..
        }) = orders.last_mut()
        {
            match decode_stage(row, 16) {
                Ok(stage) => {
                    if let Ok((_, stages)) = loaded {
                        stages.push(stage);
                    }
                }
                Err(e) => *loaded = Err(e),
            }
        }
    }
    Ok(orders)
}

fn decode_stage(row: &AnyRow, offset: usize) -> Result<StageRow, StoreError> {
    let state: String = row.try_get(offset + 1)?;
    let stage: String = row.try_get(offset)?;
    Ok(StageRow {
        state: state.parse().map_err(|message| StoreError::Corrupt {
            key: stage.clone(),
            message,
        })?,
        stage,
        next_check_at: row.try_get::<Option<i64>, _>(offset + 2)?.map(from_secs),
        retry_at: row.try_get::<Option<i64>, _>(offset + 3)?.map(from_secs),
        attempts: row.try_get(offset + 4)?,
        reason: row.try_get(offset + 5)?,
        message_id: row.try_get(offset + 6)?,
        updated_at: from_secs(row.try_get(offset + 7)?),
        claim_owner: row.try_get(offset + 8)?,
        claim_token: row.try_get(offset + 9)?,
        lease_until: row.try_get::<Option<i64>, _>(offset + 10)?.map(from_secs),
    })
}

fn decode_log(row: &AnyRow) -> Result<LogEntry, StoreError> {
    Ok(LogEntry {
        id: row.try_get(0)?,
        at: from_secs(row.try_get(1)?),
        order_id: row.try_get(2)?,
        marketplace: row.try_get(3)?,
        stage: row.try_get(4)?,
        to: row.try_get(5)?,
        status: row.try_get(6)?,
        attempt: row.try_get(7)?,
        smtp_code: row.try_get(8)?,
        smtp_text: row.try_get(9)?,
        message_id: row.try_get(10)?,
        subject: row.try_get(11)?,
        detail: row.try_get(12)?,
        duration_ms: row.try_get(13)?,
        message_ref: row.try_get(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::{StoreError, SQLITE_LOG_LIMIT_BYTES, SQLITE_PRAGMAS};

    /// The pragma sets the limit the constant documents.
    #[test]
    fn the_log_limit_pragma_matches_its_constant() {
        let wanted = format!("PRAGMA journal_size_limit = {SQLITE_LOG_LIMIT_BYTES}");
        assert!(
            SQLITE_PRAGMAS.contains(&wanted.as_str()),
            "{SQLITE_PRAGMAS:?}"
        );
    }

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
