//! Checkpoints of a SQLite file's write-ahead log, kept off the paths that
//! write.
//!
//! SQLite copies its log back into the database file (a checkpoint) on the
//! connection whose commit grew the log past a limit, and each checkpoint
//! syncs both files to disk. On the send path's writer that stalls every
//! claim behind two syncs once per 1,000 pages, roughly every 70 messages:
//! on the benchmark machine a third of a send run's wall time went to those
//! syncs while every SMTP session waited. An import stalled the same way,
//! a tenth of its time (bench/README.md).
//!
//! Here a thread of its own runs PASSIVE checkpoints, which never block a
//! writing connection, a few milliseconds after commits. The log can only
//! start over from its beginning once a checkpoint has copied all of it,
//! which a background checkpoint chasing a busy writer seldom manages, so
//! each writing connection keeps a limit of its own as a backstop
//! ([`WRITER_LIMIT_PAGES`]): its checkpoint then finds most pages already
//! copied, and the log stays bounded.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use super::sqlite::open_sqlite;

/// Log pages at which a writing connection checkpoints itself (SQLite's
/// default is 1,000): 16 MB of log at 4 KB pages.
pub(super) const WRITER_LIMIT_PAGES: u32 = 4_000;

/// How long the checkpointer lets commits gather after a checkpoint, so a
/// busy writer costs a checkpoint (and its two syncs) per pause, not per
/// commit.
const PAUSE: Duration = Duration::from_millis(20);

/// The checkpointing thread: the send path's writer owns it and stops it.
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

    /// A handle another connection tells about its commits.
    pub(super) fn signal(&self) -> CommitSignal {
        CommitSignal(self.commits.clone())
    }

    /// Lets the thread finish what it is doing, close its connection and
    /// end; returns once it has, and once every [`CommitSignal`] is dropped,
    /// so a closed store leaves no connection behind.
    pub(super) fn stop(self) {
        drop(self.commits);
        if self.thread.join().is_err() {
            tracing::warn!("the checkpoint thread panicked");
        }
    }
}

/// Tells the checkpointing thread about another connection's commits. Not
/// `Clone`: [`Checkpointer::stop`] waits until each one handed out is
/// dropped.
#[derive(Debug)]
pub(super) struct CommitSignal(Sender<()>);

impl CommitSignal {
    /// Says that a transaction was committed.
    pub(super) fn committed(&self) {
        let _ = self.0.send(());
    }
}

fn keep_checkpointing(path: &Path, commits: &Receiver<()>) {
    let mut conn = None;
    let mut failing = false;
    // Sleeps until a commit; ends when the writer stops and every signal is
    // dropped.
    while commits.recv().is_ok() {
        while commits.try_recv().is_ok() {}
        let result = match &conn {
            Some(conn) => checkpoint(conn),
            None => open_sqlite(path).and_then(|opened| checkpoint(conn.insert(opened))),
        };
        match result {
            Ok(()) => failing = false,
            Err(error) => {
                // The writing connections' own checkpoints keep the log
                // bounded meanwhile; said once per run of failures, not per
                // commit.
                if !failing {
                    tracing::warn!(%error, "background checkpoint failed; the log is checkpointed by the connections that write it until this works again");
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
