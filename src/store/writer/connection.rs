//! The connections the writer commits on.
//!
//! On a SQLite file the writer owns a plain (rusqlite) connection and runs
//! each transaction on its own thread, start to finish. sqlx's SQLite
//! driver would hand every statement to a worker thread and the result
//! back, and those hand-offs, not SQLite, were most of a group commit's
//! time (see bench/README.md). PostgreSQL, and an in-memory SQLite database
//! that only the pool's connections can see, keep a sqlx connection taken
//! from the pool.

use std::path::PathBuf;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};

use super::RowKey;
use crate::store::checkpoint::{Checkpointer, WRITER_LIMIT_PAGES};
use crate::store::pool::Noted;
use crate::store::sqlite::open_sqlite;
use crate::store::StoreError;

/// A parameter of a writer statement. A null keeps its type: PostgreSQL
/// types the columns of a `VALUES` list from what is bound to them.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(&'a [u8]),
}

/// A row returned by a writer statement: the stage row it touched and, when
/// the statement returns a fourth column, that number (a fencing token or a
/// stored message's id).
#[derive(Debug)]
pub(super) struct Returned {
    pub key: RowKey,
    pub number: Option<i64>,
}

/// A connection the writer can run its transactions on. The methods are
/// async so that one transaction body serves both kinds; the SQLite one
/// never waits inside them.
pub(super) trait WriteConnection: Sized {
    /// Where connections come from.
    type Source;

    async fn open(source: &Self::Source) -> Result<Self, StoreError>;
    /// Runs one statement and returns the rows it returned.
    async fn run(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Returned>, StoreError>;
    async fn close(self);
    /// Hears that a transaction was committed on a connection from `source`.
    fn committed(_source: &Self::Source) {}
    /// Stops whatever `source` runs beside the writer; called once, when
    /// the writer stops.
    fn stop(_source: &mut Self::Source) {}
}

impl WriteConnection for AnyConnection {
    type Source = AnyPool;

    async fn open(pool: &AnyPool) -> Result<Self, StoreError> {
        // Kept for the writer alone; the pool opens another in its place.
        Ok(pool.acquire().await.noted()?.detach())
    }

    async fn run(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Returned>, StoreError> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = bind_param(query, *param);
        }
        let rows = query.fetch_all(&mut *self).await.noted()?;
        rows.iter()
            .map(|row| {
                Ok(Returned {
                    key: (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                    number: if row.len() > 3 {
                        Some(row.try_get(3)?)
                    } else {
                        None
                    },
                })
            })
            .collect()
    }

    async fn close(self) {
        let _ = Connection::close(self).await;
    }
}

/// Binds `param` as the next parameter of `query`.
pub(in crate::store) fn bind_param<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    param: Param<'q>,
) -> Query<'q, Any, AnyArguments<'q>> {
    match param {
        Param::Int(v) => query.bind(v),
        Param::Text(v) => query.bind(v),
        Param::Blob(v) => query.bind(v),
    }
}

/// Distinct statement texts kept prepared. A text depends on the kind of
/// write and the batch size, so a busy send run uses a few dozen.
const PREPARED_STATEMENTS: usize = 256;

/// A SQLite database file, and the thread that checkpoints its log.
pub(super) struct SqliteFile {
    pub path: PathBuf,
    pub checkpointer: Option<Checkpointer>,
}

impl WriteConnection for rusqlite::Connection {
    type Source = SqliteFile;

    async fn open(file: &SqliteFile) -> Result<Self, StoreError> {
        let conn = open_sqlite(&file.path)?;
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_LIMIT_PAGES)?;
        conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
        Ok(conn)
    }

    async fn run(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Returned>, StoreError> {
        let mut statement = self.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut returned = Vec::new();
        while let Some(row) = rows.next()? {
            returned.push(Returned {
                key: (row.get(0)?, row.get(1)?, row.get(2)?),
                number: if columns > 3 { Some(row.get(3)?) } else { None },
            });
        }
        Ok(returned)
    }

    async fn close(self) {
        let _ = rusqlite::Connection::close(self);
    }

    fn committed(file: &SqliteFile) {
        if let Some(checkpointer) = &file.checkpointer {
            checkpointer.committed();
        }
    }

    fn stop(file: &mut SqliteFile) {
        if let Some(checkpointer) = file.checkpointer.take() {
            checkpointer.stop();
        }
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match *self {
            Param::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Param::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Param::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Param::Int(None) | Param::Text(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}
