//! Checkpoints of a SQLite file's write-ahead log, kept off the writer's path.
//!
//! SQLite copies its log back into the database file (a checkpoint) on the
//! connection whose commit grew the log past a limit, and each checkpoint
//! syncs both files to disk. On the writer's connection that stalls every
//! claim behind two syncs once per 1,000 pages, roughly every 70 messages:
//! on the benchmark machine a third of a send run's wall time went to those
//! syncs while every SMTP session waited (bench/README.md).
//!
//! Here a thread of its own runs PASSIVE checkpoints, which never block the
//! writer, a few milliseconds after commits. The log can only start over
//! from its beginning once a checkpoint has copied all of it, which a
//! background checkpoint chasing a busy writer seldom manages, so the
//! writer keeps a limit of its own as a backstop ([`WRITER_LIMIT_PAGES`]):
//! its checkpoint then finds most pages already copied, and the log stays
//! bounded.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use super::connection::open_sqlite;

/// Log pages at which the writer checkpoints itself (SQLite's default is
/// 1,000): 16 MB of log at 4 KB pages.
pub(super) const WRITER_LIMIT_PAGES: u32 = 4_000;

/// How long the checkpointer lets commits gather after a checkpoint, so a
/// busy writer costs a checkpoint (and its two syncs) per pause, not per
/// commit.
const PAUSE: Duration = Duration::from_millis(20);

/// The handle the writer tells about its commits.
#[derive(Debug)]
pub(super) struct Checkpointer {
    commits: Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the checkpointing thread for the database at `path`; it runs
    /// until [`Checkpointer::stop`]. `None` if the thread cannot be started
    /// (the writer's own limit then does all checkpoints).
    pub(super) fn start(path: PathBuf) -> Option<Self> {
        let (commits, heard) = channel();
        let spawned = std::thread::Builder::new()
            .name("followupd-checkpoint".into())
            .spawn(move || keep_checkpointing(&path, &heard));
        match spawned {
            Ok(thread) => Some(Self { commits, thread }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the checkpoint thread");
                None
            }
        }
    }

    /// Says that a transaction was committed.
    pub(super) fn committed(&self) {
        let _ = self.commits.send(());
    }

    /// Lets the thread finish what it is doing, close its connection and
    /// end; returns once it has, so a closed store leaves no connection
    /// behind.
    pub(super) fn stop(self) {
        drop(self.commits);
        if self.thread.join().is_err() {
            tracing::warn!("the checkpoint thread panicked");
        }
    }
}

fn keep_checkpointing(path: &Path, commits: &Receiver<()>) {
    let mut conn = None;
    let mut failing = false;
    // Sleeps until the writer commits; ends when the writer stops.
    while commits.recv().is_ok() {
        while commits.try_recv().is_ok() {}
        let result = match &conn {
            Some(conn) => checkpoint(conn),
            None => open_sqlite(path).and_then(|opened| checkpoint(conn.insert(opened))),
        };
        match result {
            Ok(()) => failing = false,
            Err(error) => {
                // The writer's own checkpoints keep the log bounded
                // meanwhile; said once per run of failures, not per commit.
                if !failing {
                    tracing::warn!(%error, "background checkpoint failed; the writer checkpoints the log itself until it works again");
                }
                failing = true;
                conn = None;
            }
        }
        std::thread::sleep(PAUSE);
    }
}

fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
