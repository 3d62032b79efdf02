//! Storing imported orders in bulk.
//!
//! An import hands over thousands of parsed orders at a time. Each is
//! upserted (the merge rules live in the SQL, see [`upsert_orders_sql`]) and
//! given a row for every configured stage, the whole batch in one
//! transaction. On a SQLite file the batch runs on a blocking thread over a
//! plain rusqlite connection kept for imports, with one prepared statement
//! an order bound straight from the parsed fields. That connection is set
//! up for the job: no foreign-key lookups (see [`open_for_import`]), a big
//! page cache, and its commits checkpointed by the store's checkpoint
//! thread instead of stalling the import on the log's syncs
//! (bench/README.md, row 2). PostgreSQL, and an in-memory SQLite database
//! that only the pool's connections can see, take multi-row statements
//! through sqlx instead, so that a million-row import is not a million
//! round trips.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sqlx::{AnyConnection, Connection, Row};

use super::checkpoint::{CommitSignal, WRITER_LIMIT_PAGES};
use super::pool::Noted;
use super::sqlite::open_sqlite;
use super::writer::{bind_param, Param};
use super::{placeholder, placeholders, Backend, StoreError};
use crate::import::OrderRecord;

/// Orders per multi-row statement: 18 parameters a row stays well inside
/// both databases' parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

/// Parameters per order row in [`upsert_orders_sql`].
const ORDER_PARAMS: usize = 20;

/// Page cache of the import connection, in KiB (SQLite's default is 2 MiB):
/// keeps the B-tree pages an import revisits in memory instead of reading
/// them again.
const IMPORT_CACHE_KIB: i64 = 32 * 1024;

/// A `settings` row written in the same transaction as a batch: how far an
/// import got, so that it resumes there after being stopped or killed.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

const SET_SETTING: &str = "INSERT INTO settings (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// The connection a SQLite file's imports are stored on, opened on first use
/// and kept between batches (with its page cache and prepared statements).
#[derive(Debug)]
pub(super) struct SqliteImport {
    path: PathBuf,
    connection: Mutex<ImportConnection>,
}

#[derive(Debug)]
struct ImportConnection {
    open: Option<rusqlite::Connection>,
    /// Tells the checkpoint thread about commits; `None` when the thread
    /// could not start: the connection's own limit then checkpoints the log.
    checkpoints: Option<CommitSignal>,
    closed: bool,
}

impl SqliteImport {
    pub fn new(path: PathBuf, checkpoints: Option<CommitSignal>) -> Self {
        Self {
            path,
            connection: Mutex::new(ImportConnection {
                open: None,
                checkpoints,
                closed: false,
            }),
        }
    }

    /// Stores `records` in one transaction. Blocks: call it where blocking
    /// is allowed. Returns (inserted, updated).
    pub fn upsert(
        &self,
        records: &[OrderRecord],
        stages: &[String],
        progress: Option<&Setting>,
        now: i64,
    ) -> Result<(u64, u64), StoreError> {
        let mut slot = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.closed {
            return Err(StoreError::Closed);
        }
        let mut conn = match slot.open.take() {
            Some(conn) => conn,
            None => open_for_import(&self.path)?,
        };
        let result = upsert_rows(&mut conn, records, stages, progress, now);
        // After an error the connection is dropped, and the next batch
        // starts on a fresh one.
        if result.is_ok() {
            slot.open = Some(conn);
            if let Some(checkpoints) = &slot.checkpoints {
                checkpoints.committed();
            }
        }
        result
    }

    /// Closes the connection, if one is open, and lets go of the checkpoint
    /// thread; an import after this fails with [`StoreError::Closed`]. Waits
    /// for a batch under way: call it where blocking is allowed.
    pub fn close(&self) {
        let mut slot = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.closed = true;
        slot.checkpoints = None;
        if let Some(conn) = slot.open.take() {
            let _ = conn.close();
        }
    }
}

fn open_for_import(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = open_sqlite(path)?;
    conn.pragma_update(None, "cache_size", -IMPORT_CACHE_KIB)?;
    // Statement journals in memory, not in temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Every stage row this connection inserts follows the upsert of its
    // order in the same transaction, so the check could only pass; it cost
    // three lookups an order.
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_LIMIT_PAGES)?;
    Ok(conn)
}

/// [`SqliteImport::upsert`] on its connection: two prepared statements an
/// order. Repeated orders need no care here: each statement sees the rows
/// the ones before it wrote.
fn upsert_rows(
    conn: &mut rusqlite::Connection,
    records: &[OrderRecord],
    stages: &[String],
    progress: Option<&Setting>,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    // The write lock at once, as the send path's writes take it.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut tally = Tally::default();
    {
        let mut upsert = tx.prepare_cached(&upsert_orders_sql(Backend::Sqlite, 1))?;
        let mut add_stages =
            tx.prepare_cached(&stage_upsert_sql(Backend::Sqlite, 1, stages.len()))?;
        let now = Param::Int(Some(now));
        for record in records {
            let texts = OrderTexts::of(record);
            let fields = order_params(record, &texts);
            tally.count(upsert.query_row(
                rusqlite::params_from_iter([now, now].iter().chain(&fields)),
                |row| row.get(0),
            )?);
            let key = &record.order.key;
            let stage_params = [
                now,
                Param::Text(Some(key.marketplace.as_str())),
                Param::Text(Some(key.order_id.as_str())),
            ];
            let names = stages.iter().map(|s| Param::Text(Some(s.as_str())));
            add_stages.execute(rusqlite::params_from_iter(
                stage_params.into_iter().chain(names),
            ))?;
        }
    }
    if let Some(progress) = progress {
        tx.execute(
            SET_SETTING,
            rusqlite::params![progress.key.as_str(), progress.value.as_str()],
        )?;
    }
    tx.commit()?;
    Ok(tally.totals())
}

/// Stores `records` in one transaction on a sqlx connection, as multi-row
/// statements. Returns (inserted, updated).
pub(super) async fn upsert_on_connection(
    conn: &mut AnyConnection,
    backend: Backend,
    records: &[OrderRecord],
    stages: &[String],
    progress: Option<&Setting>,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    // The write lock at once, as in `Store::begin_write`.
    let mut tx = match backend {
        Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await.noted()?,
        Backend::Postgres => conn.begin().await.noted()?,
    };
    let mut tally = Tally::default();
    for chunk in chunks_without_repeats(records, ROWS_PER_STATEMENT) {
        let extras: Vec<OrderTexts> = chunk.iter().map(OrderTexts::of).collect();
        let order_sql = upsert_orders_sql(backend, chunk.len());
        let mut query = sqlx::query(&order_sql).bind(now).bind(now);
        for (record, extra) in chunk.iter().zip(&extras) {
            for param in order_params(record, extra) {
                query = bind_param(query, param);
            }
        }
        for row in query.fetch_all(&mut *tx).await.noted()? {
            tally.count(row.try_get(0)?);
        }

        let stage_sql = stage_upsert_sql(backend, chunk.len(), stages.len());
        let mut query = sqlx::query(&stage_sql).bind(now);
        for record in chunk {
            query = query
                .bind(record.order.key.marketplace.as_str())
                .bind(record.order.key.order_id.as_str());
        }
        for stage in stages {
            query = query.bind(stage.as_str());
        }
        query.execute(&mut *tx).await.noted()?;
    }
    if let Some(progress) = progress {
        sqlx::query(SET_SETTING)
            .bind(progress.key.as_str())
            .bind(progress.value.as_str())
            .execute(&mut *tx)
            .await
            .noted()?;
    }
    tx.commit().await.noted()?;
    Ok(tally.totals())
}

/// New and updated orders, told apart by the `revision` each upsert
/// returns: 1 for an order stored for the first time.
#[derive(Default)]
struct Tally {
    inserted: u64,
    updated: u64,
}

impl Tally {
    fn count(&mut self, revision: i64) {
        if revision == 1 {
            self.inserted += 1;
        } else {
            self.updated += 1;
        }
    }

    /// (inserted, updated)
    fn totals(self) -> (u64, u64) {
        (self.inserted, self.updated)
    }
}

/// The columns of `order.extra` as stored: a JSON object.
fn extra_json(record: &OrderRecord) -> String {
    let extra = &record.order.extra;
    if extra.is_empty() {
        "{}".to_string()
    } else {
        serde_json::to_string(extra).unwrap_or_else(|_| "{}".into())
    }
}

/// An order's values stored as JSON text: `extra` (an object) and `items`
/// (an array).
pub(super) struct OrderTexts {
    extra: String,
    items: String,
}

impl OrderTexts {
    pub(super) fn of(record: &OrderRecord) -> Self {
        let items = &record.order.items;
        Self {
            extra: extra_json(record),
            items: if items.is_empty() {
                "[]".to_string()
            } else {
                serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
            },
        }
    }
}

/// One order's parameters of [`upsert_orders_sql`], in text order.
pub(super) fn order_params<'a>(
    record: &'a OrderRecord,
    texts: &'a OrderTexts,
) -> [Param<'a>; ORDER_PARAMS] {
    let o = &record.order;
    let text = |v: Option<&'a str>| Param::Text(v);
    let int = |v: Option<i64>| Param::Int(v);
    [
        text(Some(o.key.marketplace.as_str())),
        text(Some(o.key.order_id.as_str())),
        text(Some(o.buyer_email.as_str())),
        text(o.buyer_name.as_ref().map(|v| v.as_str())),
        text(Some(o.product_name.as_str())),
        text(o.locale.as_ref().map(|v| v.as_str())),
        text(o.time_zone.map(|z| z.name())),
        int(o.shipped_at.map(super::to_secs)),
        int(o.delivered_at.map(super::to_secs)),
        text(Some(o.status.as_str())),
        int(Some(i64::from(o.complaint))),
        int(Some(i64::from(o.opted_out))),
        text(o.order_url.as_ref().map(|v| v.as_str())),
        text(o.tracking_url.as_ref().map(|v| v.as_str())),
        text(o.review_url.as_ref().map(|v| v.as_str())),
        text(Some(&texts.extra)),
        int(Some(i64::from(record.status_given))),
        int(Some(i64::from(record.complaint_given))),
        text(Some(&texts.items)),
        text(o.time_zone.map(|_| o.time_zone_source.as_str())),
    ]
}

/// Upserts `rows` orders. The merge rules live in the SELECT, which reads
/// the stored row: an empty cell keeps what an earlier import said, a status
/// or complaint flag the row did not state keeps the stored one, an opt-out
/// is never withdrawn. Each row's `revision` is returned, telling inserted
/// (1) from updated rows. (sqlx and rusqlite both prepare each distinct text
/// once per connection and reuse it.)
pub(super) fn upsert_orders_sql(backend: Backend, rows: usize) -> String {
    // Parameters in text order: the import time twice, then the rows.
    let (created, updated) = (placeholder(backend, 1), placeholder(backend, 2));
    let values: Vec<String> = (0..rows)
        .map(|r| {
            format!(
                "({})",
                placeholders(backend, r * ORDER_PARAMS + 3, ORDER_PARAMS)
            )
        })
        .collect();
    let sql = format!(
            "INSERT INTO orders (marketplace, order_id, buyer_email, buyer_name, product_name, \
             locale, time_zone, shipped_at, delivered_at, status, complaint, opted_out, order_url, \
             tracking_url, review_url, extra, items, time_zone_source, revision, created_at, \
             updated_at) \
             SELECT v.column1, v.column2, v.column3, COALESCE(v.column4, o.buyer_name), v.column5, \
             COALESCE(v.column6, o.locale), COALESCE(v.column7, o.time_zone), \
             COALESCE(v.column8, o.shipped_at), COALESCE(v.column9, o.delivered_at), \
             CASE WHEN v.column17 = 1 OR o.status IS NULL THEN v.column10 ELSE o.status END, \
             CASE WHEN v.column18 = 1 OR o.complaint IS NULL THEN v.column11 ELSE o.complaint END, \
             CASE WHEN v.column12 = 1 OR o.opted_out = 1 THEN 1 ELSE 0 END, \
             COALESCE(v.column13, o.order_url), COALESCE(v.column14, o.tracking_url), \
             COALESCE(v.column15, o.review_url), \
             CASE WHEN v.column16 = '{{}}' AND o.extra IS NOT NULL THEN o.extra ELSE v.column16 END, \
             CASE WHEN v.column19 = '[]' AND o.items IS NOT NULL THEN o.items ELSE v.column19 END, \
             CASE WHEN v.column7 IS NULL THEN o.time_zone_source ELSE v.column20 END, \
             COALESCE(o.revision + 1, 1), COALESCE(o.created_at, {created}), {updated} \
             FROM (VALUES {values}) AS v {stored} \
             WHERE true \
             ON CONFLICT (marketplace, order_id) DO UPDATE SET \
             buyer_email = excluded.buyer_email, buyer_name = excluded.buyer_name, \
             product_name = excluded.product_name, locale = excluded.locale, \
             time_zone = excluded.time_zone, shipped_at = excluded.shipped_at, \
             delivered_at = excluded.delivered_at, status = excluded.status, \
             complaint = excluded.complaint, opted_out = excluded.opted_out, \
             order_url = excluded.order_url, tracking_url = excluded.tracking_url, \
             review_url = excluded.review_url, extra = excluded.extra, items = excluded.items, \
             time_zone_source = excluded.time_zone_source, \
             revision = excluded.revision, updated_at = excluded.updated_at \
             RETURNING revision",
            values = values.join(", "),
            stored = match backend {
                Backend::Sqlite => {
                    "LEFT JOIN orders o ON o.marketplace = v.column1 AND o.order_id = v.column2"
                }
                // A plain join lets PostgreSQL hash-join the VALUES against a
                // full scan of `orders` (during a bulk load its statistics
                // still say the table is small), which makes each statement
                // cost more the more orders are stored. The LIMIT keeps the
                // lateral subquery from being flattened back into such a
                // join, so every row is one primary-key lookup.
                Backend::Postgres => {
                    "LEFT JOIN LATERAL (SELECT * FROM orders s \
                     WHERE s.marketplace = v.column1 AND s.order_id = v.column2 LIMIT 1) o ON true"
                }
            },
        );
    sql
}

/// Inserts every stage row of `rows` orders; for rows that exist, flags the
/// open ones for a fresh look (next_check_at = 0) and leaves ended ones
/// alone.
pub(super) fn stage_upsert_sql(backend: Backend, rows: usize, stages: usize) -> String {
    // Parameters in text order: the import time, the keys, the stage names.
    let now = placeholder(backend, 1);
    let keys: Vec<String> = (0..rows)
        .map(|r| format!("({})", placeholders(backend, r * 2 + 2, 2)))
        .collect();
    let names: Vec<String> = (0..stages)
        .map(|i| format!("({})", placeholder(backend, rows * 2 + 2 + i)))
        .collect();
    let sql = format!(
            "INSERT INTO stages (marketplace, order_id, stage, state, next_check_at, attempts, updated_at) \
             SELECT k.column1, k.column2, n.column1, 'scheduled', 0, 0, {now} \
             FROM (VALUES {keys}) AS k CROSS JOIN (VALUES {names}) AS n WHERE true \
             ON CONFLICT (marketplace, order_id, stage) DO UPDATE SET \
             next_check_at = 0, updated_at = excluded.updated_at \
             WHERE stages.state IN ('scheduled', 'retrying')",
            keys = keys.join(", "),
            names = names.join(", ")
        );
    sql
}

/// Splits `records` into runs of at most `size` in which no order appears
/// twice: one statement cannot upsert the same row twice, and the second
/// occurrence must see the first.
fn chunks_without_repeats(records: &[OrderRecord], size: usize) -> Vec<&[OrderRecord]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut seen = std::collections::HashSet::new();
    for (i, record) in records.iter().enumerate() {
        if i - start == size || !seen.insert(&record.order.key) {
            chunks.push(&records[start..i]);
            start = i;
            seen.clear();
            seen.insert(&record.order.key);
        }
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}
