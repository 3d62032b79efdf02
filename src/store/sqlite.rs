//! Opening SQLite files: the settings every connection gets, whichever
//! code opens it (the pool, the send path's writer, imports, checkpoints).

use std::path::{Path, PathBuf};

use super::StoreError;

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
pub(super) const SQLITE_PRAGMAS: [&str; 5] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA journal_size_limit = 25165824",
];

/// Opens a plain connection to a SQLite file with followupd's settings.
pub(super) fn open_sqlite(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    for pragma in SQLITE_PRAGMAS {
        // `journal_mode` and `journal_size_limit` answer with a row; the
        // others with none.
        conn.query_row(pragma, [], |_| Ok(()))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                other => Err(other),
            })?;
    }
    Ok(conn)
}

/// The file behind a SQLite URL; `None` for an in-memory database or
/// another kind of URL.
pub(super) fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

pub(super) fn create_sqlite_parent(url: &str) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::{SQLITE_LOG_LIMIT_BYTES, SQLITE_PRAGMAS};

    /// The pragma sets the limit the constant documents.
    #[test]
    fn the_log_limit_pragma_matches_its_constant() {
        let wanted = format!("PRAGMA journal_size_limit = {SQLITE_LOG_LIMIT_BYTES}");
        assert!(
            SQLITE_PRAGMAS.contains(&wanted.as_str()),
            "{SQLITE_PRAGMAS:?}"
        );
    }
}
