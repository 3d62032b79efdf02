//! The sqlx connection pool every query but the send path's writes and
//! imports goes through, with the migrations it applies on start.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Utc;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, Executor};

use super::sqlite::SQLITE_PRAGMAS;
use super::{Backend, StoreError};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

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

/// Turns a failed statement on a pool connection into a [`StoreError`],
/// noting the time so that connections going back to the pool are checked
/// for a transaction the failure left open (see [`connection_is_clean`]).
pub(super) trait Noted<T> {
    fn noted(self) -> Result<T, StoreError>;
}

impl<T> Noted<T> for Result<T, sqlx::Error> {
    fn noted(self) -> Result<T, StoreError> {
        self.map_err(|error| {
            LAST_DATABASE_ERROR.store(Utc::now().timestamp(), Ordering::Relaxed);
            StoreError::Database(error)
        })
    }
}

/// Connects the pool (SQLite connections get [`SQLITE_PRAGMAS`]) and
/// applies any pending migrations.
pub(super) async fn open_pool(url: &str, backend: Backend) -> Result<AnyPool, StoreError> {
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
        .await
        .noted()?;
    match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
        Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
    }
    Ok(pool)
}
