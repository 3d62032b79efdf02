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

/// Creates a SQLite file's folder, and the file itself readable and
/// writable by its owner only, whatever the umask: it holds buyers'
/// addresses, and SQLite gives the log files it creates beside it (`-wal`,
/// `-shm`) the database file's mode. A file that exists loses any access
/// for others (its owner and group keep theirs).
pub(super) fn prepare_sqlite_file(url: &str) -> Result<(), StoreError> {
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
    if !path.exists() {
        create_private(&path).map_err(|source| StoreError::CreateDir {
            path: path.display().to_string(),
            source,
        })?;
    }
    for file in [
        path.clone(),
        with_suffix(&path, "-wal"),
        with_suffix(&path, "-shm"),
    ] {
        keep_private(&file);
    }
    Ok(())
}

/// A SQLite file as opened: its device and inode tell the same file from
/// another one put at its path later.
#[derive(Debug, Clone)]
pub(super) struct OpenedFile {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl OpenedFile {
    pub(super) fn new(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Whether the file at the path is still the one opened.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let shown = self.path.display().to_string();
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => Ok(()),
            Ok(_) => Err(StoreError::FileReplaced(shown)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::FileDeleted(shown, self.still_open_at()))
            }
            // Unreadable for another reason (permissions): not evidence of
            // a different file.
            Err(_) => Ok(()),
        }
    }

    /// Where this process still holds the deleted file open.
    fn still_open_at(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let found = std::fs::read_dir("/proc/self/fd").ok().and_then(|fds| {
            fds.filter_map(|fd| fd.ok()).find(|fd| {
                std::fs::metadata(fd.path())
                    .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
            })
        });
        match found {
            Some(fd) => format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                fd.file_name().to_string_lossy()
            ),
            None => format!("/proc/{}/fd", std::process::id()),
        }
    }
}

/// `path` with `suffix` appended to its name (`test.db` → `test.db-wal`).
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates an empty file only its owner may read and write (SQLite takes an
/// empty file for an empty database).
pub(super) fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Takes any access for others away from an existing file; a file that is
/// missing or not ours is left as it is (with a warning for the latter).
fn keep_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o007 == 0 {
        return;
    }
    let private = std::fs::Permissions::from_mode(mode & !0o007);
    if let Err(error) = std::fs::set_permissions(path, private) {
        tracing::warn!(file = %path.display(), %error, "cannot make the database file private");
    }
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
