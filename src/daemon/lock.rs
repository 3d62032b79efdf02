//! The one-instance lock beside a SQLite database.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::DaemonError;

/// Holds the one-instance lock on a SQLite database for as long as it lives.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock beside a SQLite database file; PostgreSQL needs none
    /// (several instances share the work there). Fails at once, naming the
    /// holder, when another process has it.
    pub fn acquire(database_url: &str) -> Result<Option<Self>, DaemonError> {
        let Some(rest) = database_url.strip_prefix("sqlite://") else {
            return Ok(None);
        };
        let db = rest.split('?').next().unwrap_or(rest);
        if db.is_empty() || db == ":memory:" {
            return Ok(None);
        }
        let path = PathBuf::from(format!("{db}.lock"));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| DaemonError::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let io = |source| DaemonError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(DaemonError::Locked(format!(
                "another followupd ({}) is already using {db}; only one process may send from a \
                 SQLite database (lock: {})",
                if holder.is_empty() {
                    "unknown pid".to_string()
                } else {
                    holder.to_string()
                },
                path.display()
            )));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "pid {}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Some(Self { _file: file }))
    }
}
