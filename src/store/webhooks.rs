//! Order changes that arrive over HTTP, committed in groups.
//!
//! A webhook may only be answered with a 2xx once its change is durable
//! (the source stops retrying when it sees one), so every request waits for
//! a commit. Committed one by one, concurrent requests would queue for
//! SQLite's write lock and pay a commit each; instead they queue here and
//! one writer applies whatever queued up while the previous transaction was
//! committing in the next one (the send path's writer does the same for
//! its writes). On a SQLite file the writer is a thread of its own with a
//! plain connection; PostgreSQL, and an in-memory SQLite database, take a
//! connection from the pool.
//!
//! Each change is applied with its delivery's id: the id is inserted into
//! `webhook_deliveries` in the same transaction, so a duplicate finds the
//! row and changes nothing, on one instance or several. If one change of a
//! batch fails, the batch is rolled back and its changes are applied one
//! transaction each, so one bad change cannot fail the others.

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::bulk::{order_params, stage_upsert_sql, upsert_orders_sql, OrderTexts};
use super::checkpoint::WRITER_LIMIT_PAGES;
use super::sqlite::open_sqlite;
use super::writer::{bind_param, Param};
use super::{to_secs, Backend, Store, StoreError};
use crate::import::OrderRecord;
use crate::order::{Line, OrderKey};

/// Changes per transaction at most.
const MAX_BATCH: usize = 256;

/// Changes waiting for the writer at most; senders wait beyond that.
const QUEUE: usize = 4096;

/// The delivery a change came with, for deduplication.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `shopify` or `woocommerce`.
    pub source: &'static str,
    pub id: String,
}

/// One line item as the source counts it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineCount {
    pub id: String,
    pub quantity: i64,
    pub refunded: i64,
}

/// What a delivery asks to change.
#[derive(Debug, Clone)]
pub enum OrderChange {
    /// The whole order as the source has it now. `version` is the source's
    /// own updated time: an older version than the stored one is stale.
    Upsert {
        record: Box<OrderRecord>,
        /// `None`: not from a webhook (the orders API); no version kept.
        version: Option<i64>,
        items: Vec<LineCount>,
    },
    /// A shipment: the first ship time is kept, a tracking link replaces
    /// the stored one.
    Shipped {
        key: OrderKey,
        at: DateTime<Utc>,
        tracking_url: Option<Line>,
    },
    Delivered {
        key: OrderKey,
        at: DateTime<Utc>,
    },
    /// A refund of these line items (id, quantity). Every item refunded:
    /// the order is `refunded`; otherwise `partially_refunded` (which the
    /// stages' `skip_when` decide about), unless it already ended worse.
    Refunded {
        key: OrderKey,
        lines: Vec<(String, i64)>,
    },
    Cancelled {
        key: OrderKey,
    },
}

/// A change and the delivery it came with (none for the orders API).
#[derive(Debug, Clone)]
pub struct Change {
    pub delivery: Option<Delivery>,
    pub change: OrderChange,
}

/// What applying a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new order.
    Inserted,
    Updated,
    /// The delivery was applied before.
    Duplicate,
    /// Older than what is stored; nothing changed.
    Stale,
    /// The change needs an order that is not stored (yet).
    UnknownOrder,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inserted => "imported",
            Self::Updated => "updated",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::UnknownOrder => "unknown_order",
        }
    }
}

struct Job {
    change: Change,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

/// The queue in front of the change writer; cheap to clone. The writer
/// stops when the last clone is dropped, after committing what is queued.
#[derive(Debug, Clone)]
pub struct ChangeWriter {
    jobs: mpsc::Sender<Job>,
}

impl ChangeWriter {
    /// Applies `change` and returns once it is committed.
    pub async fn apply(&self, change: Change) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { change, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Store {
    /// Starts the writer of HTTP order changes. `database_url` is the URL
    /// the store was opened with; `stages` the configured stage names.
    pub fn change_writer(&self, database_url: &str, stages: Vec<String>) -> ChangeWriter {
        let (jobs, receiver) = mpsc::channel(QUEUE);
        let writer = Batches {
            backend: self.backend,
            stages,
        };
        match super::sqlite::sqlite_file(database_url) {
            Some(path) => {
                // A thread of its own: the transactions never wait on
                // anything but SQLite, and would block the runtime's workers.
                let spawned = std::thread::Builder::new()
                    .name("followupd-webhooks".into())
                    .spawn(move || writer.run_sqlite(path, receiver));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start the webhook writer thread");
                }
            }
            None => {
                let pool = self.pool.clone();
                tokio::spawn(async move { writer.run_pool(pool, receiver).await });
            }
        }
        ChangeWriter { jobs }
    }
}

struct Batches {
    backend: Backend,
    stages: Vec<String>,
}

impl Batches {
    fn run_sqlite(self, path: std::path::PathBuf, mut receiver: mpsc::Receiver<Job>) {
        let mut conn: Option<rusqlite::Connection> = None;
        while let Some(first) = receiver.blocking_recv() {
            let batch = gather(first, &mut receiver);
            if conn.is_none() {
                match open_sqlite(&path).and_then(|c| {
                    c.pragma_update(None, "wal_autocheckpoint", WRITER_LIMIT_PAGES)?;
                    Ok(c)
                }) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        fail_all(batch, &StoreError::from(e));
                        continue;
                    }
                }
            }
            let Some(db) = conn.as_mut() else { continue };
            // Every await inside is on rusqlite, which never suspends.
            let healthy = self.commit(db, batch).now_or_never().unwrap_or(false);
            if !healthy {
                conn = None;
            }
        }
    }

    async fn run_pool(self, pool: AnyPool, mut receiver: mpsc::Receiver<Job>) {
        let mut conn: Option<AnyConnection> = None;
        while let Some(first) = receiver.recv().await {
            let batch = gather(first, &mut receiver);
            if conn.is_none() {
                match pool.acquire().await {
                    Ok(c) => conn = Some(c.detach()),
                    Err(e) => {
                        fail_all(batch, &StoreError::from(e));
                        continue;
                    }
                }
            }
            let Some(db) = conn.as_mut() else { continue };
            if !self.commit(db, batch).await {
                conn = None;
            }
        }
    }

    /// Applies `batch` in one transaction, or after a failure each change
    /// in its own; answers every job. Returns false when the connection
    /// should be replaced.
    async fn commit<D: Db>(&self, db: &mut D, batch: Vec<Job>) -> bool {
        let changes: Vec<&Change> = batch.iter().map(|j| &j.change).collect();
        match self.transaction(db, &changes).await {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
                true
            }
            Err(e) if batch.len() == 1 => {
                fail_all(batch, &e);
                false
            }
            Err(_) => {
                let mut healthy = true;
                for job in batch {
                    let result = self.transaction(db, &[&job.change]).await;
                    healthy &= result.is_ok();
                    let _ = job.reply.send(result.map(|r| r[0]));
                }
                healthy
            }
        }
    }

    async fn transaction<D: Db>(
        &self,
        db: &mut D,
        changes: &[&Change],
    ) -> Result<Vec<Applied>, StoreError> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        db.exec(begin, &[]).await?;
        let now = to_secs(Utc::now());
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            match self.apply(db, change, now).await {
                Ok(r) => results.push(r),
                Err(e) => {
                    let _ = db.exec("ROLLBACK", &[]).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = db.exec("COMMIT", &[]).await {
            let _ = db.exec("ROLLBACK", &[]).await;
            return Err(e);
        }
        Ok(results)
    }

    async fn apply<D: Db>(
        &self,
        db: &mut D,
        change: &Change,
        now: i64,
    ) -> Result<Applied, StoreError> {
        if let Some(delivery) = &change.delivery {
            let fresh = db
                .ints(
                    "INSERT INTO webhook_deliveries (source, delivery_id, received_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (source, delivery_id) DO NOTHING \
                     RETURNING received_at",
                    &[
                        Param::Text(Some(delivery.source)),
                        Param::Text(Some(&delivery.id)),
                        Param::Int(Some(now)),
                    ],
                )
                .await?;
            if fresh.is_empty() {
                return Ok(Applied::Duplicate);
            }
        }
        match &change.change {
            OrderChange::Upsert {
                record,
                version,
                items,
            } => self.upsert(db, record, *version, items, now).await,
            OrderChange::Shipped {
                key,
                at,
                tracking_url,
            } => {
                let at = to_secs(*at);
                let sql = "UPDATE orders SET \
                     shipped_at = CASE WHEN shipped_at IS NULL AND (delivered_at IS NULL OR delivered_at >= $3) \
                     THEN $3 ELSE shipped_at END, \
                     tracking_url = COALESCE($4, tracking_url), \
                     status = CASE WHEN status = 'pending' THEN 'shipped' ELSE status END, \
                     revision = revision + 1, updated_at = $5 \
                     WHERE marketplace = $1 AND order_id = $2 RETURNING revision";
                let url = tracking_url.as_ref().map(|u| u.as_str());
                let params = [
                    key_param(key, 0),
                    key_param(key, 1),
                    Param::Int(Some(at)),
                    Param::Text(url),
                    Param::Int(Some(now)),
                ];
                self.order_update(db, key, sql, &params, now).await
            }
            OrderChange::Delivered { key, at } => {
                let at = to_secs(*at);
                let sql = "UPDATE orders SET \
                     delivered_at = CASE WHEN delivered_at IS NULL AND (shipped_at IS NULL OR shipped_at <= $3) \
                     THEN $3 ELSE delivered_at END, \
                     status = CASE WHEN status IN ('pending', 'shipped') THEN 'delivered' ELSE status END, \
                     revision = revision + 1, updated_at = $4 \
                     WHERE marketplace = $1 AND order_id = $2 RETURNING revision";
                let params = [
                    key_param(key, 0),
                    key_param(key, 1),
                    Param::Int(Some(at)),
                    Param::Int(Some(now)),
                ];
                self.order_update(db, key, sql, &params, now).await
            }
            OrderChange::Cancelled { key } => self.set_status(db, key, "cancelled", now).await,
            OrderChange::Refunded { key, lines } => self.refund(db, key, lines, now).await,
        }
    }

    async fn upsert<D: Db>(
        &self,
        db: &mut D,
        record: &OrderRecord,
        version: Option<i64>,
        items: &[LineCount],
        now: i64,
    ) -> Result<Applied, StoreError> {
        let key = &record.order.key;
        if let Some(version) = version {
            if !self.newer(db, key, version, items, now).await? {
                return Ok(Applied::Stale);
            }
        }
        let texts = OrderTexts::of(record);
        let fields = order_params(record, &texts);
        let mut params = vec![Param::Int(Some(now)), Param::Int(Some(now))];
        params.extend(fields);
        let revision = db
            .ints(&upsert_orders_sql(self.backend, 1), &params)
            .await?;
        let mut params = vec![Param::Int(Some(now)), key_param(key, 0), key_param(key, 1)];
        params.extend(self.stages.iter().map(|s| Param::Text(Some(s.as_str()))));
        db.exec(
            &stage_upsert_sql(self.backend, 1, self.stages.len()),
            &params,
        )
        .await?;
        Ok(match revision.first() {
            Some(1) => Applied::Inserted,
            _ => Applied::Updated,
        })
    }

    /// Records `version` as the order's latest unless a newer one is
    /// stored; returns whether it was recorded.
    async fn newer<D: Db>(
        &self,
        db: &mut D,
        key: &OrderKey,
        version: i64,
        items: &[LineCount],
        now: i64,
    ) -> Result<bool, StoreError> {
        let items = serde_json::to_string(items).unwrap_or_else(|_| "[]".into());
        let recorded = db
            .ints(
                "INSERT INTO webhook_orders (marketplace, order_id, version, items, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (marketplace, order_id) DO UPDATE SET \
                 version = excluded.version, items = excluded.items, updated_at = excluded.updated_at \
                 WHERE webhook_orders.version <= excluded.version RETURNING version",
                &[
                    key_param(key, 0),
                    key_param(key, 1),
                    Param::Int(Some(version)),
                    Param::Text(Some(&items)),
                    Param::Int(Some(now)),
                ],
            )
            .await?;
        Ok(!recorded.is_empty())
    }

    /// Runs an `UPDATE orders … RETURNING revision` and lets the scheduler
    /// look at the order's open stages again.
    async fn order_update<D: Db>(
        &self,
        db: &mut D,
        key: &OrderKey,
        sql: &str,
        params: &[Param<'_>],
        now: i64,
    ) -> Result<Applied, StoreError> {
        if db.ints(sql, params).await?.is_empty() {
            return Ok(Applied::UnknownOrder);
        }
        db.exec(
            "UPDATE stages SET next_check_at = 0, updated_at = $3 \
             WHERE marketplace = $1 AND order_id = $2 AND state IN ('scheduled', 'retrying')",
            &[key_param(key, 0), key_param(key, 1), Param::Int(Some(now))],
        )
        .await?;
        Ok(Applied::Updated)
    }

    async fn set_status<D: Db>(
        &self,
        db: &mut D,
        key: &OrderKey,
        status: &str,
        now: i64,
    ) -> Result<Applied, StoreError> {
        let sql = "UPDATE orders SET status = $3, revision = revision + 1, updated_at = $4 \
                   WHERE marketplace = $1 AND order_id = $2 RETURNING revision";
        let params = [
            key_param(key, 0),
            key_param(key, 1),
            Param::Text(Some(status)),
            Param::Int(Some(now)),
        ];
        self.order_update(db, key, sql, &params, now).await
    }

    async fn refund<D: Db>(
        &self,
        db: &mut D,
        key: &OrderKey,
        lines: &[(String, i64)],
        now: i64,
    ) -> Result<Applied, StoreError> {
        let stored = db
            .text(
                "SELECT items FROM webhook_orders WHERE marketplace = $1 AND order_id = $2",
                &[key_param(key, 0), key_param(key, 1)],
            )
            .await?;
        let mut items: Vec<LineCount> = stored
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        for (id, quantity) in lines {
            if let Some(item) = items.iter_mut().find(|i| &i.id == id) {
                item.refunded += quantity;
            }
        }
        // Unknown items (or none at all): only a partial refund is certain.
        let full = !items.is_empty() && items.iter().all(|i| i.refunded >= i.quantity);
        if stored.is_some() {
            let text = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
            db.exec(
                "UPDATE webhook_orders SET items = $3, updated_at = $4 \
                 WHERE marketplace = $1 AND order_id = $2",
                &[
                    key_param(key, 0),
                    key_param(key, 1),
                    Param::Text(Some(&text)),
                    Param::Int(Some(now)),
                ],
            )
            .await?;
        }
        let sql = "UPDATE orders SET status = $3, revision = revision + 1, updated_at = $4 \
                   WHERE marketplace = $1 AND order_id = $2 \
                   AND status NOT IN ('refunded', 'cancelled', 'returned') RETURNING revision";
        let status = if full {
            "refunded"
        } else {
            "partially_refunded"
        };
        let params = [
            key_param(key, 0),
            key_param(key, 1),
            Param::Text(Some(status)),
            Param::Int(Some(now)),
        ];
        match self.order_update(db, key, sql, &params, now).await? {
            Applied::UnknownOrder => {
                // Stored but already ended (refunded, cancelled, returned):
                // nothing left to change.
                let known = db
                    .ints(
                        "SELECT revision FROM orders WHERE marketplace = $1 AND order_id = $2",
                        &[key_param(key, 0), key_param(key, 1)],
                    )
                    .await?;
                Ok(if known.is_empty() {
                    Applied::UnknownOrder
                } else {
                    Applied::Updated
                })
            }
            applied => Ok(applied),
        }
    }
}

fn key_param(key: &OrderKey, part: usize) -> Param<'_> {
    Param::Text(Some(if part == 0 {
        key.marketplace.as_str()
    } else {
        key.order_id.as_str()
    }))
}

/// `first` and whatever else is queued, up to [`MAX_BATCH`].
fn gather(first: Job, receiver: &mut mpsc::Receiver<Job>) -> Vec<Job> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

fn fail_all(batch: Vec<Job>, error: &StoreError) {
    for job in batch {
        let _ = job.reply.send(Err(StoreError::Batch(error.to_string())));
    }
}

/// The three statement shapes the change writer needs, on either kind of
/// connection. (The methods are async so one body serves both; the SQLite
/// one never suspends.)
trait Db {
    /// Runs a statement; returns the rows changed.
    async fn exec(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// The first column of every row, as integers.
    async fn ints(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<i64>, StoreError>;
    /// The first column of the first row, as text.
    async fn text(&mut self, sql: &str, params: &[Param<'_>])
        -> Result<Option<String>, StoreError>;
}

/// The statement with `$N` written as `?N`: SQLite numbers `$N` by order of
/// first appearance (it is a name to SQLite), `?N` by N, as PostgreSQL does.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

impl Db for rusqlite::Connection {
    async fn exec(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut statement = self.prepare_cached(&numbered(sql))?;
        Ok(statement.execute(rusqlite::params_from_iter(params))? as u64)
    }

    async fn ints(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<i64>, StoreError> {
        let mut statement = self.prepare_cached(&numbered(sql))?;
        let rows = statement.query_map(rusqlite::params_from_iter(params), |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn text(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<String>, StoreError> {
        let mut statement = self.prepare_cached(&numbered(sql))?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        Ok(match rows.next()? {
            Some(row) => row.get(0)?,
            None => None,
        })
    }
}

impl Db for AnyConnection {
    async fn exec(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = bind_param(query, *param);
        }
        Ok(query.execute(&mut *self).await?.rows_affected())
    }

    async fn ints(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<i64>, StoreError> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = bind_param(query, *param);
        }
        let rows = query.fetch_all(&mut *self).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?)
    }

    async fn text(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<String>, StoreError> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = bind_param(query, *param);
        }
        let row = query.fetch_optional(&mut *self).await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>(0)?,
            None => None,
        })
    }
}
